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

Before it starts, the job checks every subscription and topic it will use (a missing one:
one line naming it, exit 2; ``--create_missing`` creates it). While it runs, a topic that
refuses decisions holds back no other output; its decisions are kept and retried, a warning
names it at once, and after ``--publish_timeout`` seconds the job stops with one line (exit
1). Every ``--health_every`` seconds it prints a health line and publishes it as JSON to
``safetynet-health`` (:mod:`connectors.health`; README, "Operating the streaming job").
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import nullcontext
from typing import Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

from connectors import health, local_runner, pubsub
from connectors.local_runner import is_local_runner
from connectors.monitor import CountRead, NoteVersions, WatermarkProbe
from connectors.pubsub import (
    DEFAULT_PUBLISH_TIMEOUT_S,
    Publish,
    ReadInput,
    json_message,
    record_message,
)
from pipelines import preflight
from pipelines.argtypes import OneLineParser, UsageError, unknown_option
from pipelines.options import (
    SafetyNetOptions,
    SharedOptions,
    expand_policy_file,
    policy_from_options,
)
from schemas.streams import (
    DRIFT,
    HEALTH,
    INPUTS,
    OUTPUTS,
    SHADOW_DISAGREEMENTS,
    SHADOW_TOPICS,
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
_LOG = logging.getLogger("safetynet.stream")


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
        parser.add_argument("--health_every", type=float, default=60.0, metavar="SECONDS",
                            help="print a health line and publish a health record every "
                                 "SECONDS of wall time (default 60; 0: never)")
        parser.add_argument("--health_topic", default=None, metavar="TOPIC",
                            help="topic for the health records (default "
                                 "projects/PROJECT/topics/safetynet-health)")
        parser.add_argument("--publish_timeout", type=float, default=DEFAULT_PUBLISH_TIMEOUT_S,
                            metavar="SECONDS",
                            help="a decision that cannot be published for this long stops "
                                 "the job with one line naming the topic, exit status 1 "
                                 "(default 300; other topics keep flowing meanwhile; "
                                 "local runner)")
        parser.add_argument("--create_missing", action="store_true", default=False,
                            help="create the input subscriptions and output topics that do "
                                 "not exist yet (default: a missing one stops the job before "
                                 "it starts, exit status 2, naming it)")


def output_topics(options: PipelineOptions, policy: Policy,
                  shadow: Optional[Policy] = None) -> dict:
    """{output name: topic path} of every topic the job publishes to: the outputs, the
    daily drift figures', the health records' (unless ``--health_every 0``), the warning
    holdout's when the policy has one, the shadow's when ``shadow`` is given."""
    so = options.view_as(StreamOptions)
    project = options.get_all_options()["project"]
    topics = {n: getattr(so, f"{n}_topic") or topic_path(project, n) for n in OUTPUTS}
    if policy.warning_holdout > 0:
        topics["warning_holdout"] = (so.warning_holdout_topic
                                     or topic_path(project, "warning_holdout"))
    topics[DRIFT] = topic_path(project, DRIFT)
    if so.health_every > 0:
        topics[HEALTH] = so.health_topic or topic_path(project, HEALTH)
    if shadow is not None:
        names = list(SHADOW_TOPICS)
        if shadow.warning_holdout > 0:
            names.append("shadow-warning_holdout")
        topics.update({n: topic_path(project, n) for n in names})
    return topics


def input_subscriptions(options: PipelineOptions) -> dict:
    """{input name: subscription path} of the job's four inputs."""
    so = options.view_as(StreamOptions)
    project = options.get_all_options()["project"]
    return {n: getattr(so, f"{n}_subscription") or subscription_path(project, n)
            for n in INPUTS}


def _shadow_of(options: PipelineOptions, policy: Policy) -> Optional[Policy]:
    path = options.view_as(SharedOptions).shadow_policy
    if not path:
        return None
    from pipelines.shadow import shadow_policy

    return shadow_policy(path, policy, options.view_as(SafetyNetOptions).time_scale or 1.0)


def check_resources(options: PipelineOptions, create: bool) -> list:
    """Before the job starts: every input subscription and output topic it will use
    exists. A missing one raises PreflightError naming it (one line), unless ``create``:
    then it is created. Returns the paths created."""
    from connectors.pubsub_client import create_missing, missing_resources

    policy = policy_from_options(options)
    topics = output_topics(options, policy, _shadow_of(options, policy))
    subs = input_subscriptions(options)
    try:
        missing = missing_resources(list(dict.fromkeys(topics.values())),
                                    list(subs.values()))
        if missing and create:
            return create_missing(missing)
    except Exception as e:  # noqa: BLE001 - permission, network: one line
        raise preflight.PreflightError(
            f"cannot check the job's Pub/Sub topics and subscriptions: "
            f"{preflight.first_line(e)}") from None
    if missing:
        shown = "; ".join(f"{kind} {path}" for kind, path in missing)
        raise preflight.PreflightError(
            f"missing {shown} (create it, or add --create_missing; `safetynet publish` "
            "creates the input and output topics and subscriptions)")
    return []


RESOURCES_HELP = """\
What must exist before the job starts (checked; a missing one stops it, exit 2):
  subscriptions  safetynet-{transfers,reports,outcomes,blacklist}
  topics         safetynet-{holds,resolutions,freezes,outreach,verdicts,dead_letter,cases},
                 safetynet-health (unless --health_every 0),
                 safetynet-warning_holdout (with --warning_holdout),
                 safetynet-shadow-* (with --shadow_policy)
Who creates them:
  safetynet publish         the four input topics and subscriptions, the seven output
                            topics and a subscription of each (not health/holdout/shadow)
  safetynet stream --create_missing   whatever the job itself needs and is missing
                            (output topics without subscriptions: add your own)
  ./run_local.sh            everything, on its own emulator"""


def _parser() -> argparse.ArgumentParser:
    """The job's own options, the policy options and the main Beam ones: for --help and to
    check the command line before the job starts."""
    p = OneLineParser(
        prog="safetynet stream", raises=UsageError,
        description=__doc__.split("\n\n")[0].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RESOURCES_HELP + "\n\nAny other Beam pipeline option (--runner, --region, "
               "--temp_location, --setup_file, --flink_master, ...) is passed to Beam.")
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


def health_config(options: PipelineOptions) -> health.HealthConfig:
    so = options.view_as(StreamOptions)
    project = options.get_all_options()["project"]
    return health.HealthConfig(every_s=so.health_every,
                               topic=so.health_topic or topic_path(project, HEALTH))


def _read_inputs(p: beam.Pipeline, options: PipelineOptions) -> tuple:
    """({input name: parsed rows}, [dead letters of parsing]), each input counted."""
    payload = options.view_as(StreamOptions).payload
    shared = options.view_as(SharedOptions)
    cfg = health_config(options)
    inputs, dead = {}, []
    for n, sub in input_subscriptions(options).items():
        parsed = (p | f"Read{n.title()}" >> ReadInput(sub)
                  | f"Count{n.title()}" >> CountRead(n, cfg)
                  | f"Parse{n.title()}" >> Parse(INPUTS[n], n, payload,
                                               bounds=(shared.max_usd_value, shared.max_amount)))
        inputs[n] = parsed.main
        dead.append(parsed[DEAD])
    return inputs, dead


def build(p: beam.Pipeline, options: PipelineOptions) -> dict:
    """Wire subscriptions -> Parse -> SafetyNet -> topics on ``p``; returns the outputs."""
    so = options.view_as(StreamOptions)
    shared = options.view_as(SharedOptions)
    project = options.get_all_options()["project"]
    policy = policy_from_options(options, **({"profiles_path": so.profiles_path}
                                             if so.profiles_path else {}))
    payload, cfg = so.payload, health_config(options)
    inputs, dead = _read_inputs(p, options)
    seeds, versions = None, ()
    if shared.restore_state:
        manifest = check_checkpoint(shared.restore_state)
        seeds = p | "ReadState" >> ReadSeeds(shared.restore_state, STEP_LABELS,
                                             manifest["end_time"] - 1)
        versions = tuple(read_versions(shared.restore_state))
        for v in versions:
            health.REGISTRY.model(v.model, v.event_time, v.n_labels, v.version)
    outs = inputs | "SafetyNet" >> SafetyNet(policy, "stream", seeds=seeds,
                                             seed_versions=versions,
                                             versions_dir=so.model_versions_dir)
    outs = dict(outs)
    outs["dead_letter"] = (dead + [outs["dead_letter"]]) | "AllDeadLetters" >> beam.Flatten()
    outs["versions"] | "HealthVersions" >> NoteVersions(cfg)
    inputs["transfers"] | "HealthWatermark" >> WatermarkProbe(cfg)
    topics = output_topics(options, policy)
    kw = {"timeout_s": so.publish_timeout, "config": cfg}
    message = record_message(payload)
    for n in OUTPUTS:
        outs[n] | f"Write{n.title()}" >> Publish(topics[n], message, **kw)
    if policy.warning_holdout > 0:
        outs["warning_holdout"] | "WriteWarningHoldout" >> Publish(
            topics["warning_holdout"], message, **kw)
    wire_drift(outs, policy, topics[DRIFT], **kw)
    if shared.shadow_policy:
        from pipelines.shadow import shadow_policy

        scale = options.view_as(SafetyNetOptions).time_scale or 1.0
        shadow = shadow_policy(shared.shadow_policy, policy, scale)
        # the shadow's models publish apart from the live ones (its own versions directory)
        vdir = f"{so.model_versions_dir.rstrip('/')}/shadow" if so.model_versions_dir else None
        outs["shadow"] = build_stream_shadow(inputs, outs, shadow,
                                             lambda n: topic_path(project, n), payload,
                                             scale, versions_dir=vdir, publish_kw=kw)
    return outs


def hourly_attributes(row: dict) -> dict:
    """A shadow's hourly disagreement counts: stamped at the hour's start."""
    return {"event_time": str(row["window_start"]),
            "record_id": f"shadow-hour-{row['window_start']}",
            "record": "ShadowDisagreementsHourly"}


def build_stream_shadow(inputs: dict, outs: dict, shadow: Policy, topic_of, payload: str,
                        time_scale: float = 1.0,
                        versions_dir: Optional[str] = None,
                        publish_kw: Optional[dict] = None) -> dict:
    """The streaming job's shadow: ``SafetyNet(shadow, "stream", label="Shadow")`` on the
    same inputs, its decisions published to ``topic_of("shadow-NAME")`` (never acted on),
    and the hourly disagreement counts (fixed hourly windows of event time, divided by
    ``time_scale`` like every other duration) to ``topic_of("shadow-disagreements")``."""
    from transforms.shadow import HOUR_MS, ShadowDiff

    souts = inputs | "Shadow" >> SafetyNet(shadow, "stream", label="Shadow",
                                           versions_dir=versions_dir)
    kw, message = publish_kw or {}, record_message(payload)
    for n in SHADOWED:
        souts[n] | f"ShadowWrite{n.title()}" >> Publish(topic_of(f"shadow-{n}"), message, **kw)
    if shadow.warning_holdout > 0:
        (souts["warning_holdout"] | "ShadowWriteWarningHoldout"
         >> Publish(topic_of("shadow-warning_holdout"), message, **kw))
    diff = {"live": outs, "shadow": souts} | "ShadowDiff" >> ShadowDiff(
        window_ms=max(1, int(HOUR_MS / time_scale)))
    diff["hourly"] | "ShadowWriteHourly" >> Publish(topic_of(SHADOW_DISAGREEMENTS),
                                                    json_message(hourly_attributes), **kw)
    return {"shadow": souts, **diff}


def run(argv: Optional[list[str]] = None):
    """Build and start the job; returns the PipelineResult (does not wait). On Beam's local
    runner, call it inside :func:`connectors.local_runner.patched`, and wait there."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = build_options(argv)
    if not options.get_all_options().get("project"):
        raise SystemExit("stream: --project is required")
    p = beam.Pipeline(options=options)
    build(p, options)
    return p.run()


def _warm_line(restore: str, manifest: dict) -> str:
    from datetime import datetime, timezone

    end = datetime.fromtimestamp(manifest["end_time"] / 1000, timezone.utc)
    files = manifest.get("files", {})
    return (f"warm start from {restore}: the state of every step up to event time "
            f"{end:%Y-%m-%d %H:%M:%S}Z ({sum(n.startswith('state-') for n in files)} state "
            f"files, {len(read_versions(restore))} model versions)")


def _exit_on_publish_failure(e: Exception) -> None:
    """A topic unpublishable past ``--publish_timeout``: one line, exit status 1 (the
    local runner's threads cannot be stopped cleanly from here)."""
    print(f"stream: error: {e}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


# Counters of the job whose growth is printed as a warning: events the job dropped or set
# aside (dead-lettered inputs, late events) and saved states refused (``seeds_too_late``).
WARN_COUNTERS = ("dead_lettered", "late", "dropped")


class CounterWarnings:
    """Every ``every_s`` seconds (local runner, its own thread: reading the runner's
    counters can wait on the runner): a warning line for each warning counter that grew."""

    def __init__(self, result, every_s: float = 10.0):
        self.result, self.every_s = result, every_s
        self.seen: dict = {}

    def start(self) -> None:
        import threading

        threading.Thread(target=self._loop, name="safetynet-warnings", daemon=True).start()

    def _loop(self) -> None:
        import time

        while True:
            time.sleep(self.every_s)  # a period of the warnings, not a wait for the job
            try:
                self()
            except Exception as e:  # noqa: BLE001 - warnings must never stop the job
                _LOG.warning("reading the job's counters failed: %s", e)

    def __call__(self) -> None:
        for c in self.result.metrics().query()["counters"]:
            name = c.key.metric.name
            if not any(w in name for w in WARN_COUNTERS):
                continue
            key = (c.key.step, name)
            got, before = c.committed or 0, self.seen.get(key, 0)
            if got > before:
                self.seen[key] = got
                _LOG.warning("%s: %s +%d (%d in all)", c.key.step, name, got - before, got)


def _run_until_stopped(argv: list, options: PipelineOptions, args, local: bool) -> int:
    """Start the job and wait for it; the exit status."""
    try:
        result = run(argv)
        if not args.quiet:
            print("[stream] running; Ctrl-C stops", flush=True)
        if local:  # the driver is the worker: it reports, and warns from the counters
            health.ensure_reporter(health_config(options))
            CounterWarnings(result).start()
        result.wait_until_finish()
    except KeyboardInterrupt:
        print("[stream] interrupted, stopping", flush=True)
        if local and not pubsub.drain_all(5.0):
            print("[stream] some decisions were still unpublished after 5 s", flush=True)
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
        unknown = preflight.beam_unknown_flags(rest)
    except (UsageError, preflight.PreflightError) as e:
        print(f"stream: error: {e}", file=sys.stderr)
        return 2
    if unknown:
        print(f"stream: error: {unknown_option(unknown[0], _parser())}", file=sys.stderr)
        return 2
    argv = [a for a in argv if a not in ("--quiet", "-q", "--verbose", "-v")]
    preflight.apply_verbosity(args.quiet, args.verbose)
    options = build_options(argv)
    restore = options.view_as(SharedOptions).restore_state
    if restore:
        try:
            manifest = check_checkpoint(restore)
        except CheckpointError as e:
            print(f"stream: error: {e}", file=sys.stderr)
            return 2
        if not args.quiet:
            print(f"[stream] {_warm_line(restore, manifest)}", flush=True)
    std = options.view_as(StandardOptions)
    try:  # what can be checked before the job starts: one line, exit 2
        preflight.check_runner(std.runner)
        preflight.check_project(args.project)
        policy_from_options(options)
        if is_local_runner(std.runner) or os.environ.get("PUBSUB_EMULATOR_HOST"):
            preflight.check_pubsub_reachable(args.project, is_local_runner(std.runner))
        created = check_resources(options, options.view_as(StreamOptions).create_missing)
    except (preflight.PreflightError, ValueError) as e:
        print(f"stream: error: {e}", file=sys.stderr, flush=True)
        return 2
    for path in created:
        print(f"[stream] created {path}", flush=True)
    if not args.quiet:
        print(f"[stream] runner={std.runner} project={args.project} "
              f"payload={options.view_as(StreamOptions).payload}", flush=True)
    local = is_local_runner(std.runner)
    if local:
        pubsub.on_fatal(_exit_on_publish_failure)
    with local_runner.patched() if local else nullcontext():
        return _run_until_stopped(argv, options, args, local)


if __name__ == "__main__":
    sys.exit(main())
