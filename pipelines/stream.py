"""The streaming job: Pub/Sub subscriptions -> SafetyNet -> Pub/Sub topics.

    python -m pipelines.stream --project P [--payload json|avro] [--blacklist FILES]
        [--profiles FILE] [--transfers_subscription S ...] [--holds_topic T ...]
        [policy options: --hold 24h --hold_threshold 0.75 ... --time_scale F]
        [Beam options: --runner DataflowRunner --region ... | --runner FlinkRunner ...]

Subscriptions default to ``projects/P/subscriptions/safetynet-NAME`` and topics to
``projects/P/topics/safetynet-NAME``. Every input message is one record (JSON, or schemaless
Avro with ``--payload avro``) whose ``event_time`` attribute (epoch ms or RFC 3339) is the
element timestamp; every decision is published with ``event_time`` (its decision time, epoch
ms) and ``record_id`` attributes. Malformed messages go to the dead-letter topic with the
reason, and the job keeps running.

Without ``--runner`` it runs on Beam's ``BundleBasedDirectRunner`` (never plain
``DirectRunner``: it would try to download Prism). That runner takes the watermark of a
Pub/Sub read from the wall clock, so locally event times must be near the present (the demo
re-times history and scales durations with ``--time_scale``); it acknowledges messages on
pull, so only Dataflow / Flink give at-least-once processing (bench/STREAMING.md).
Set ``PUBSUB_EMULATOR_HOST`` to run against the emulator.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

from connectors import local_runner
from connectors.local_runner import is_local_runner
from connectors.pubsub import PublishJson, ReadInput, WriteOutput
from pipelines import preflight
from pipelines.options import (
    SafetyNetOptions,
    SharedOptions,
    expand_policy_file,
    policy_from_options,
)
from schemas.streams import (
    DRIFT,
    INPUTS,
    OUTPUTS,
    SHADOW_DISAGREEMENTS,
    SHADOWED,
    subscription_path,
    topic_path,
)
from transforms.checkpoint import CheckpointError, ReadSeeds, read_versions
from transforms.checkpoint import check as check_checkpoint
from transforms.drift import wire_drift
from transforms.graph import STEP_LABELS
from transforms.ingest import DEAD, Parse
from transforms.policy import Policy
from transforms.safetynet import SafetyNet

LOCAL_RUNNER = "BundleBasedDirectRunner"


class StreamOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        for n in INPUTS:
            parser.add_argument(f"--{n}_subscription", default=None, metavar="SUBSCRIPTION",
                                help=f"subscription of {INPUTS[n]} messages "
                                     f"(default projects/PROJECT/subscriptions/safetynet-{n})")
        for n in OUTPUTS:
            parser.add_argument(f"--{n}_topic", default=None, metavar="TOPIC",
                                help=f"topic for {n} (default "
                                     f"projects/PROJECT/topics/safetynet-{n})")
        parser.add_argument("--payload", choices=("json", "avro"), default="json",
                            help="message encoding of inputs and outputs (default json; "
                                 "avro = schemaless Avro with schemas/*.avsc)")
        parser.add_argument("--profiles", dest="profiles_path", default=None, metavar="FILE",
                            help="UserProfile file (Avro/Parquet), loaded once at start")
        parser.add_argument("--model_versions_dir", default=None, metavar="DIR",
                            help="where the Learner publishes model versions and the "
                                 "scorers read them (a local path or gs://; default: a "
                                 "new local temporary directory, fine for the local runner "
                                 "only: on Dataflow or Flink give a shared location)")
        parser.add_argument("--warning_holdout_topic", default=None,
                            help="topic for the warnings the holdout withheld (default "
                                 "projects/PROJECT/topics/safetynet-warning_holdout)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2)."""

    def error(self, message):
        self.exit(2, f"stream: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    """The job's own options, the policy options and the main Beam ones: for --help and to
    check the command line before the job starts."""
    p = _Parser(
        prog="safetynet stream", description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="Any other Beam pipeline option (--runner, --region, --temp_location, "
               "--setup_file, --flink_master, ...) is passed to Beam.")
    p.add_argument("--project", required=True, help="Google Cloud project (any name on "
                   "the emulator)")
    p.add_argument("--runner", default=None, help=f"Beam runner (default {LOCAL_RUNNER})")
    StreamOptions._add_argparse_args(p)
    SharedOptions._add_argparse_args(p)
    SafetyNetOptions._add_argparse_args(p)
    preflight.add_verbosity(p)
    return p


def build_options(argv: list[str]) -> PipelineOptions:
    options = PipelineOptions(argv)
    std = options.view_as(StandardOptions)
    if not std.runner:
        std.runner = LOCAL_RUNNER
    std.streaming = True
    if not is_local_runner(std.runner):
        options.view_as(SetupOptions).save_main_session = False
    return options


def build(p: beam.Pipeline, options: PipelineOptions) -> dict:
    """Wire subscriptions -> Parse -> SafetyNet -> topics on ``p``; returns the outputs.
    For Beam's local runner it first installs the runner's patches
    (:mod:`connectors.local_runner`)."""
    so = options.view_as(StreamOptions)
    shared = options.view_as(SharedOptions)
    project = options.get_all_options()["project"]
    local = is_local_runner(options.view_as(StandardOptions).runner)
    if local:
        local_runner.install()
    policy = policy_from_options(options, **({"profiles_path": so.profiles_path}
                                             if so.profiles_path else {}))
    payload = so.payload
    inputs, dead = {}, []
    for n in INPUTS:
        sub = getattr(so, f"{n}_subscription") or subscription_path(project, n)
        parsed = (p | f"Read{n.title()}" >> ReadInput(sub, local)
                  | f"Parse{n.title()}" >> Parse(INPUTS[n], n, payload,
                                               bounds=(shared.max_usd_value, shared.max_amount)))
        inputs[n] = parsed.main
        dead.append(parsed[DEAD])
    seeds, versions = None, ()
    if shared.restore_state:
        manifest = check_checkpoint(shared.restore_state)
        seeds = p | "ReadState" >> ReadSeeds(shared.restore_state, STEP_LABELS,
                                             manifest["end_time"] - 1)
        versions = tuple(read_versions(shared.restore_state))
    outs = inputs | "SafetyNet" >> SafetyNet(policy, "stream", seeds=seeds,
                                             seed_versions=versions,
                                             versions_dir=so.model_versions_dir)
    outs = dict(outs)
    outs["dead_letter"] = (dead + [outs["dead_letter"]]) | "AllDeadLetters" >> beam.Flatten()
    for n in OUTPUTS:
        topic = getattr(so, f"{n}_topic") or topic_path(project, n)
        outs[n] | f"Write{n.title()}" >> WriteOutput(topic, payload, local)
    if policy.warning_holdout > 0:
        outs["warning_holdout"] | "WriteWarningHoldout" >> WriteOutput(
            so.warning_holdout_topic or topic_path(project, "warning_holdout"), payload, local)
    wire_drift(outs, policy, topic_path(project, DRIFT), local)
    if shared.shadow_policy:
        from pipelines.shadow import shadow_policy

        scale = options.view_as(SafetyNetOptions).time_scale or 1.0
        shadow = shadow_policy(shared.shadow_policy, policy, scale)
        # the shadow's models publish apart from the live ones (its own versions directory)
        vdir = f"{so.model_versions_dir.rstrip('/')}/shadow" if so.model_versions_dir else None
        outs["shadow"] = build_stream_shadow(inputs, outs, shadow,
                                             lambda n: topic_path(project, n), payload, local,
                                             scale, versions_dir=vdir)
    return outs


def hourly_attributes(row: dict) -> dict:
    """A shadow's hourly disagreement counts: stamped at the hour's start."""
    return {"event_time": str(row["window_start"]),
            "record_id": f"shadow-hour-{row['window_start']}",
            "record": "ShadowDisagreementsHourly"}


def build_stream_shadow(inputs: dict, outs: dict, shadow: Policy, topic_of, payload: str,
                        local: bool, time_scale: float = 1.0,
                        versions_dir: Optional[str] = None) -> dict:
    """The streaming job's shadow: ``SafetyNet(shadow, "stream", label="Shadow")`` on the
    same inputs, its decisions published to ``topic_of("shadow-NAME")`` (never acted on),
    and the hourly disagreement counts (fixed hourly windows of event time, divided by
    ``time_scale`` like every other duration) to ``topic_of("shadow-disagreements")``."""
    from transforms.shadow import HOUR_MS, ShadowDiff

    souts = inputs | "Shadow" >> SafetyNet(shadow, "stream", label="Shadow",
                                           versions_dir=versions_dir)
    for n in SHADOWED:
        souts[n] | f"ShadowWrite{n.title()}" >> WriteOutput(topic_of(f"shadow-{n}"), payload,
                                                            local)
    if shadow.warning_holdout > 0:
        (souts["warning_holdout"] | "ShadowWriteWarningHoldout"
         >> WriteOutput(topic_of("shadow-warning_holdout"), payload, local))
    diff = {"live": outs, "shadow": souts} | "ShadowDiff" >> ShadowDiff(
        window_ms=max(1, int(HOUR_MS / time_scale)))
    diff["hourly"] | "ShadowWriteHourly" >> PublishJson(topic_of(SHADOW_DISAGREEMENTS), local,
                                                        hourly_attributes)
    return {"shadow": souts, **diff}


def run(argv: Optional[list[str]] = None):
    """Build and start the job; returns the PipelineResult (does not wait)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = build_options(argv)
    if not options.get_all_options().get("project"):
        raise SystemExit("stream: --project is required")
    p = beam.Pipeline(options=options)
    build(p, options)
    return p.run()


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        _parser().print_help()
        return 0
    try:
        argv = expand_policy_file(argv)
    except ValueError as e:
        print(f"stream: error: {e}", file=sys.stderr)
        return 2
    try:
        args, rest = _parser().parse_known_args(argv)
    except SystemExit as e:
        return int(e.code or 2)
    try:
        unknown = preflight.beam_unknown_flags(rest)
    except preflight.PreflightError as e:
        print(f"stream: error: {e}", file=sys.stderr)
        return 2
    if unknown:
        print(f"stream: error: unknown option {unknown[0]} (see --help)", file=sys.stderr)
        return 2
    argv = [a for a in argv if a not in ("--quiet", "-q", "--verbose", "-v")]
    preflight.apply_verbosity(args.quiet, args.verbose)
    options = build_options(argv)
    restore = options.view_as(SharedOptions).restore_state
    if restore:
        try:
            check_checkpoint(restore)
        except CheckpointError as e:
            print(f"stream: error: {e}", file=sys.stderr)
            return 2
    std = options.view_as(StandardOptions)
    try:  # what can be checked before the job starts: one line, exit 2
        preflight.check_runner(std.runner)
        preflight.check_project(args.project)
        policy_from_options(options)
        if is_local_runner(std.runner) or os.environ.get("PUBSUB_EMULATOR_HOST"):
            preflight.check_pubsub_reachable(args.project, is_local_runner(std.runner))
    except (preflight.PreflightError, ValueError) as e:
        print(f"stream: error: {e}", file=sys.stderr, flush=True)
        return 2
    if not args.quiet:
        print(f"[stream] runner={std.runner} project={args.project} "
              f"payload={options.view_as(StreamOptions).payload}", flush=True)
    try:
        result = run(argv)
        if not args.quiet:
            print("[stream] running; Ctrl-C stops", flush=True)
        result.wait_until_finish()
    except KeyboardInterrupt:
        print("[stream] interrupted, stopping", flush=True)
        return 130
    except ValueError as e:  # a bad policy value or shadow policy file
        print(f"stream: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a runner's failure: one line (--verbose: all)
        if args.verbose:
            raise
        print(f"stream: error: {preflight.first_line(e)} (--verbose shows the traceback)",
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
