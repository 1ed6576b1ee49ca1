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
import logging
import sys
from typing import Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

from pipelines.options import SafetyNetOptions, policy_from_options
from pipelines.pubsub_io import (  # noqa: F401 — create_resources is part of this API
    INPUT_NAMES,
    OUTPUT_NAMES,
    RECORD_OF_INPUT,
    ReadInput,
    WriteOutput,
    create_resources,
    is_local_runner,
    subscription_path,
    topic_path,
)
from transforms.checkpoint import CheckpointError, ReadSeeds, read_versions
from transforms.checkpoint import check as check_checkpoint
from transforms.graph import STEP_LABELS
from transforms.ingest import DEAD, Parse
from transforms.safetynet import SafetyNet

LOCAL_RUNNER = "BundleBasedDirectRunner"


class StreamOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        for n in INPUT_NAMES:
            parser.add_argument(f"--{n}_subscription", default=None,
                                help=f"subscription of {RECORD_OF_INPUT[n]} messages "
                                     f"(default projects/PROJECT/subscriptions/safetynet-{n})")
        for n in OUTPUT_NAMES:
            parser.add_argument(f"--{n}_topic", default=None,
                                help=f"topic for {n} (default "
                                     f"projects/PROJECT/topics/safetynet-{n})")
        parser.add_argument("--payload", choices=("json", "avro"), default="json",
                            help="message encoding of inputs and outputs (default json; "
                                 "avro = schemaless Avro with schemas/*.avsc)")
        parser.add_argument("--profiles", dest="profiles_path", default=None,
                            help="UserProfile file (Avro/Parquet), loaded once at start")
        parser.add_argument("--restore_state", default=None, metavar="DIR",
                            help="start every step from a state checkpoint (a backtest's "
                                 "--write_state DIR): payees, profiles, list state, pending "
                                 "labels and model versions of the replayed history")
        parser.add_argument("--model_versions_dir", default=None, metavar="DIR",
                            help="where the Learner publishes model versions and the "
                                 "scorers read them (a local path or gs://; default: a "
                                 "new local temporary directory, fine for the local runner "
                                 "only: on Dataflow or Flink give a shared location)")


def _parser() -> argparse.ArgumentParser:
    """Only for --help: the job's own options, the policy options and the main Beam ones."""
    p = argparse.ArgumentParser(
        prog="python -m pipelines.stream", description=__doc__.split("\n\n")[0],
        epilog="Any other Beam pipeline option (--runner, --region, --temp_location, "
               "--setup_file, --flink_master, ...) is passed to Beam.")
    p.add_argument("--project", required=True, help="Google Cloud project (any name on "
                   "the emulator)")
    p.add_argument("--runner", default=None, help=f"Beam runner (default {LOCAL_RUNNER})")
    StreamOptions._add_argparse_args(p)
    SafetyNetOptions._add_argparse_args(p)
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
    """Wire subscriptions -> Parse -> SafetyNet -> topics on ``p``; returns the outputs."""
    so = options.view_as(StreamOptions)
    project = options.get_all_options()["project"]
    local = is_local_runner(options.view_as(StandardOptions).runner)
    policy = policy_from_options(options, **({"profiles_path": so.profiles_path}
                                             if so.profiles_path else {}))
    payload = so.payload
    inputs, dead = {}, []
    for n in INPUT_NAMES:
        sub = getattr(so, f"{n}_subscription") or subscription_path(project, n)
        parsed = (p | f"Read{n.title()}" >> ReadInput(sub, local)
                  | f"Parse{n.title()}" >> Parse(RECORD_OF_INPUT[n], n, payload))
        inputs[n] = parsed.main
        dead.append(parsed[DEAD])
    seeds, versions = None, ()
    if so.restore_state:
        manifest = check_checkpoint(so.restore_state)
        seeds = p | "ReadState" >> ReadSeeds(so.restore_state, STEP_LABELS,
                                             manifest["end_time"] - 1)
        versions = tuple(read_versions(so.restore_state))
    outs = inputs | "SafetyNet" >> SafetyNet(policy, "stream", seeds=seeds,
                                             seed_versions=versions,
                                             versions_dir=so.model_versions_dir)
    outs = dict(outs)
    outs["dead_letter"] = (dead + [outs["dead_letter"]]) | "AllDeadLetters" >> beam.Flatten()
    for n in OUTPUT_NAMES:
        topic = getattr(so, f"{n}_topic") or topic_path(project, n)
        outs[n] | f"Write{n.title()}" >> WriteOutput(topic, payload, local)
    return outs


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
        _parser().parse_known_args(argv)
    except SystemExit as e:
        return int(e.code or 2)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = build_options(argv)
    restore = options.view_as(StreamOptions).restore_state
    if restore:
        try:
            check_checkpoint(restore)
        except CheckpointError as e:
            print(f"stream: error: {e}", file=sys.stderr)
            return 2
    std = options.view_as(StandardOptions)
    print(f"[stream] runner={std.runner} project={options.get_all_options()['project']} "
          f"payload={options.view_as(StreamOptions).payload}", flush=True)
    try:
        result = run(argv)
        print("[stream] running; Ctrl-C stops", flush=True)
        result.wait_until_finish()
    except KeyboardInterrupt:
        print("[stream] interrupted, stopping", flush=True)
        return 130
    return 0



def start_process(project: str, args: list[str], env: Optional[dict] = None,
                  log_path: Optional[str] = None):
    """Start ``python -m pipelines.stream --project P ARGS`` as a child process (its own
    session, so ``stop_process`` can end it and its threads cleanly)."""
    import os
    import subprocess
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    e = dict(os.environ if env is None else env)
    e["PYTHONPATH"] = root + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.stream", "--project", project,
                             *args], cwd=root, env=e, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log_path = log_path
    return proc


def stop_process(proc, kill: bool = False, timeout: float = 15.0) -> None:
    """SIGINT (or SIGKILL with ``kill``) the job's process group and wait for it."""
    import os
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGINT)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
