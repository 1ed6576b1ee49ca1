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
import os
import sys
from contextlib import nullcontext
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

from connectors import health, local_runner, pubsub
from connectors.local_runner import is_local_runner
from connectors.monitor import CounterWarnings, CountRead, NoteVersions, WatermarkProbe
from connectors.pubsub import (
    Publish,
    ReadInput,
    json_message,
    record_message,
)
from core.graph import STEP_LABELS
from core.policy import Policy
from pipelines import preflight
from pipelines.argtypes import OneLineParser, UsageError, unknown_option
from pipelines.options import (
    CachedViews,
    SafetyNetOptions,
    SharedOptions,
    expand_policy_file,
    policy_from_options,
)
from pipelines.stream_options import (
    RESOURCES_HELP,
    StreamOptions,
    _shadow_of,
    check_resources,
    input_subscriptions,
    output_topics,
)
from schemas.streams import (
    DRIFT,
    HEALTH,
    INPUTS,
    OUTPUTS,
    SHADOW_DISAGREEMENTS,
    SHADOWED,
    topic_path,
)
from transforms.checkpoint import CheckpointError, ReadSeeds, read_versions
from transforms.checkpoint import check as check_checkpoint
from transforms.drift import wire_drift
from transforms.ingest import DEAD, Parse
from transforms.safetynet import SafetyNet
from transforms.shadow import HOUR_MS, Shadow, hourly_attributes

LOCAL_RUNNER = "BundleBasedDirectRunner"


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
    options = CachedViews(argv)
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


class Prepared(NamedTuple):
    """The job's options with what they name, read and checked once before it starts."""

    options: PipelineOptions
    policy: Policy
    shadow: Optional[Policy]
    manifest: Optional[dict]  # of the --restore_state checkpoint


def prepare(options: PipelineOptions) -> Prepared:
    """The policy (with ``--profiles``), the shadow policy and the state checkpoint's
    manifest; raises ValueError or CheckpointError with one line."""
    restore = options.view_as(SharedOptions).restore_state
    manifest = check_checkpoint(restore) if restore else None
    so = options.view_as(StreamOptions)
    policy = policy_from_options(options, **({"profiles_path": so.profiles_path}
                                             if so.profiles_path else {}))
    return Prepared(options, policy, _shadow_of(options, policy), manifest)


def build(p: beam.Pipeline, options: PipelineOptions, job: Optional[Prepared] = None) -> dict:
    """Wire subscriptions -> Parse -> SafetyNet -> topics on ``p``; returns the outputs."""
    job = job or prepare(options)
    so, policy = options.view_as(StreamOptions), job.policy
    restore = options.view_as(SharedOptions).restore_state
    cfg = health_config(options)
    inputs, dead = _read_inputs(p, options)
    seeds, versions = None, ()
    if job.manifest is not None:
        seeds = p | "ReadState" >> ReadSeeds(restore, STEP_LABELS, job.manifest["end_time"] - 1)
        versions = tuple(read_versions(restore))
        for v in versions:
            health.REGISTRY.model(v.model, v.event_time, v.n_labels, v.version)
    outs = inputs | "SafetyNet" >> SafetyNet(policy, "stream", seeds=seeds,
                                             seed_versions=versions,
                                             versions_dir=so.model_versions_dir)
    outs = dict(outs)
    outs["dead_letter"] = (dead + [outs["dead_letter"]]) | "AllDeadLetters" >> beam.Flatten()
    outs["versions"] | "HealthVersions" >> NoteVersions(cfg)
    inputs["transfers"] | "HealthWatermark" >> WatermarkProbe(cfg)
    topics = output_topics(options, policy, job.shadow)
    kw = {"timeout_s": so.publish_timeout, "config": cfg}
    message = record_message(so.payload)
    names = [*OUTPUTS, *(["warning_holdout"] if policy.warning_holdout > 0 else [])]
    for n in names:
        label = "WriteWarningHoldout" if n == "warning_holdout" else f"Write{n.title()}"
        outs[n] | label >> Publish(topics[n], message, **kw)
    wire_drift(outs, policy, topics[DRIFT], **kw)
    if job.shadow is not None:
        scale = options.view_as(SafetyNetOptions).time_scale or 1.0
        # the shadow's models publish apart from the live ones (its own versions directory)
        vdir = f"{so.model_versions_dir.rstrip('/')}/shadow" if so.model_versions_dir else None
        sh = {"inputs": inputs, "live": outs} | "Shadow" >> Shadow(
            job.shadow, "stream", window_ms=max(1, int(HOUR_MS / scale)), versions_dir=vdir)
        _publish_shadow(sh, job.shadow, topics, message, kw)
        outs["shadow"] = sh
    return outs


def _publish_shadow(sh: dict, shadow: Policy, topics: dict, message, kw: dict) -> None:
    """A shadow's decisions to the ``safetynet-shadow-NAME`` topics (never acted on), its
    hourly disagreement counts (fixed hourly windows of event time, divided by
    ``--time_scale`` like every other duration) to ``safetynet-shadow-disagreements``."""
    souts = sh["shadow"]
    for n in SHADOWED:
        souts[n] | f"ShadowWrite{n.title()}" >> Publish(topics[f"shadow-{n}"], message, **kw)
    if shadow.warning_holdout > 0:
        (souts["warning_holdout"] | "ShadowWriteWarningHoldout"
         >> Publish(topics["shadow-warning_holdout"], message, **kw))
    sh["hourly"] | "ShadowWriteHourly" >> Publish(
        topics[SHADOW_DISAGREEMENTS], json_message(hourly_attributes), **kw)


def run(job: Prepared):
    """Build and start the job; returns the PipelineResult (does not wait). On Beam's local
    runner, call it inside :func:`connectors.local_runner.patched`, and wait there."""
    p = beam.Pipeline(options=job.options)
    build(p, job.options, job)
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


def _run_until_stopped(job: Prepared, args, local: bool) -> int:
    """Start the job and wait for it; the exit status."""
    try:
        result = run(job)
        if not args.quiet:
            print("[stream] running; Ctrl-C stops", flush=True)
        if local:  # the driver is the worker: it reports, and warns from the counters
            health.ensure_reporter(health_config(job.options))
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
    try:
        job = prepare(options)
    except (CheckpointError, ValueError) as e:  # a bad policy value, shadow policy file
        print(f"stream: error: {e}", file=sys.stderr)
        return 2
    restore = options.view_as(SharedOptions).restore_state
    if job.manifest is not None and not args.quiet:
        print(f"[stream] {_warm_line(restore, job.manifest)}", flush=True)
    std = options.view_as(StandardOptions)
    try:  # what can be checked before the job starts: one line, exit 2
        preflight.check_runner(std.runner)
        preflight.check_project(args.project)
        if is_local_runner(std.runner) or os.environ.get("PUBSUB_EMULATOR_HOST"):
            preflight.check_pubsub_reachable(args.project, is_local_runner(std.runner))
        created = check_resources(options, job.policy, job.shadow,
                                  options.view_as(StreamOptions).create_missing)
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
        return _run_until_stopped(job, args, local)


if __name__ == "__main__":
    sys.exit(main())
