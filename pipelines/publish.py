"""``safetynet publish``: replay a directory into the streaming job's Pub/Sub topics.

    safetynet publish --input DIR --project P [--speedup F] [--payload json|avro]
        [--keep_times] [--no_create]

Publishes ``transfers``, ``reports``, ``outcomes`` and ``blacklist`` of a replay directory to
``projects/P/topics/safetynet-NAME`` in event-time order, as the local demo does
(:func:`simulator.publish.publish_replay`): the history is **re-timed to the present** and
played ``F`` times faster than it happened, so start the streaming job with
``--time_scale F`` (every duration divided by the same factor; the command prints the line to
use). ``--keep_times`` publishes the original event times instead (for a runner whose
watermark follows the data, not the wall clock). Topics and subscriptions are created when
missing (``--no_create``: they must exist). Against the emulator, set
``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Optional

from pipelines import preflight
from pipelines.argtypes import OneLineParser, parse_or_status
from schemas import codecs

PROG = "publish"
NAMES = ("transfers", "reports", "outcomes", "blacklist")


def _speedup(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0 and not math.isnan(v)):
        raise argparse.ArgumentTypeError(f"must be a number > 0 (e.g. 1440: a day a minute), "
                                         f"got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=f"safetynet {PROG}", allow_abbrev=False,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Publish a replay directory into the streaming job's Pub/Sub "
                            "topics, in event-time order, re-timed to the present.",
                epilog="Then run: safetynet stream --project P --time_scale F (the same F).")
    p.add_argument("--input", required=True, metavar="DIR", help="replay directory")
    p.add_argument("--project", required=True, metavar="P", help="Google Cloud project id")
    p.add_argument("--speedup", type=_speedup, default=1.0, metavar="F",
                   help="play the history F times faster than it happened (default 1: real "
                        "time; 10080 plays a week in a minute); 'inf' publishes at once")
    p.add_argument("--payload", choices=("json", "avro"), default="json",
                   help="message encoding (default json), as the job's --payload")
    p.add_argument("--keep_times", action="store_true",
                   help="publish the original event times (default: re-time to the present)")
    p.add_argument("--no_create", action="store_true",
                   help="do not create missing topics and subscriptions")
    preflight.add_verbosity(p)
    return p


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    a = parse_or_status(parser, argv)
    if isinstance(a, int):
        return a
    d = Path(a.input)
    try:
        if not d.is_dir():
            raise preflight.PreflightError(f"--input {d}: not a directory")
        found = {n: codecs.find_input(d, n) for n in NAMES}
        if found["transfers"] is None:
            raise preflight.PreflightError(f"--input {d}: holds no transfers.avro or "
                                           "transfers.parquet")
        preflight.check_project(a.project)
        preflight.check_pubsub_reachable(a.project, True)
    except (preflight.PreflightError, codecs.CodecError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    preflight.apply_verbosity(a.quiet, a.verbose)
    from connectors.pubsub_client import create_resources
    from schemas.streams import ALL_TOPICS, topic_path
    from simulator.publish import publish_replay

    names = [n for n in NAMES if found[n] is not None]
    t0 = time.monotonic()
    try:
        if not a.no_create:
            create_resources(a.project, ALL_TOPICS)
        if not a.quiet:
            print(f"[{PROG}] {d} -> projects/{a.project}/topics/safetynet-{{{','.join(names)}}}"
                  f", x{a.speedup:g}; start the job with: safetynet stream --project "
                  f"{a.project} --time_scale {a.speedup:g} --payload {a.payload}",
                  file=sys.stderr, flush=True)
        counts = publish_replay(
            d, a.project, {n: topic_path(a.project, n) for n in names}, speedup=a.speedup,
            fmt=a.payload,
            retime_to_ms=None if a.keep_times else int(time.time() * 1000) + 1000)
    except KeyboardInterrupt:
        print(f"[{PROG}] interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - Pub/Sub errors: one line (--verbose: all)
        if a.verbose:
            raise
        print(f"{parser.prog}: error: {preflight.first_line(e)}", file=sys.stderr)
        return 1
    if not a.quiet:
        print(f"[{PROG}] published {sum(counts.values()):,} messages in "
              f"{time.monotonic() - t0:.1f}s: "
              + ", ".join(f"{k} {v:,}" for k, v in counts.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
