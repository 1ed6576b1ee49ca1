"""The backtest's command line: its own flags (:class:`BacktestOptions`), the policy flags
(:class:`~pipelines.options.SafetyNetOptions`) and Beam's, parsed with one-line errors
(:mod:`pipelines.backtest` is the driver)."""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from connectors import chunks
from pipelines import preflight
from pipelines.argtypes import OneLineParser, UsageError, positive_int, unknown_option
from pipelines.options import (
    CachedViews,
    SafetyNetOptions,
    add_restore_state,
    add_shadow_policy,
    expand_policy_file,
)
from pipelines.validate import add_input_options
from schemas import codecs
from transforms.faces import DEFAULT_SHARDS

PROG = "backtest"
# Policy options that only the streaming job reads (accepted, not shown in --help).
STREAM_ONLY = ("stream_ordering",)


def _add_flags(parser, required: bool, shared: bool) -> None:
    """The backtest's own flags, in --help's order; ``shared``: with the flags the stream
    driver takes too (:class:`~pipelines.options.SharedOptions`), for --help."""
    parser.add_argument("--input", required=required, metavar="DIR",
                        help="replay directory: transfers (required), reports, outcomes, "
                             "blacklist, profiles, blacklist_snapshot, truth as NAME.avro or "
                             "NAME.parquet")
    parser.add_argument("--output", required=required, metavar="DIR",
                        help="output directory (created if missing)")
    parser.add_argument("--format", choices=codecs.FORMATS, default=None,
                        help="format of the decision files (default: that of transfers.*)")
    parser.add_argument("--no_progress", action="store_true",
                        help="no progress lines on stderr")
    preflight.add_verbosity(parser)
    parser.add_argument("--compare", default=None, metavar="DIR",
                        help="another backtest's output directory (e.g. a rules-only run, "
                             "--use_models=false) to compare with in the report")
    parser.add_argument("--no_report", action="store_true",
                        help="write metrics.json but not report.html")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output of an earlier run in --output (without it, "
                             "such a directory is refused before anything runs)")
    add_input_options(parser.add_argument_group("input guards"), bounds=shared)
    if shared:
        add_shadow_policy(parser)
    parser.add_argument("--batch_shards", type=positive_int, default=DEFAULT_SHARDS,
                        metavar="N",
                        help="shards of each step's key space: the most workers a step can "
                             f"use (default {DEFAULT_SHARDS}; raise it for a large cluster)")
    g = parser.add_argument_group("long replays and warm start")
    g.add_argument("--chunk", default=chunks.AUTO, metavar="DURATION",
                   help="replay in chunks of this much event time (whole days, e.g. 7d), "
                        "carrying every step's state from one chunk to the next: memory is "
                        "bounded by one chunk plus the live state; decisions are identical. "
                        "auto (default): whole days holding about --chunk_transfers "
                        "transfers (one run when the history fits in one); 0: one run, "
                        "whatever its length")
    g.add_argument("--chunk_transfers", type=positive_int, default=chunks.AUTO_TRANSFERS,
                   metavar="N", help="--chunk auto: transfers per chunk, about (default "
                   f"{chunks.AUTO_TRANSFERS:,})")
    g.add_argument("--write_state", default=None, metavar="DIR",
                   help="write the state the replay ends with (a state checkpoint) to DIR: "
                        "`safetynet stream --restore_state DIR` starts from it")
    if shared:
        add_restore_state(g)


class BacktestOptions(PipelineOptions):
    """The backtest's flags (``--input``, ``--output``, ``--format``, ``--chunk``, ...); the
    policy flags are :class:`~pipelines.options.SafetyNetOptions`', the flags it shares with
    the stream driver (``--restore_state``, ``--shadow_policy``, the money bounds)
    :class:`~pipelines.options.SharedOptions`'."""

    @classmethod
    def _add_argparse_args(cls, parser):
        _add_flags(parser, required=False, shared=False)


def arg_parser() -> argparse.ArgumentParser:
    """The command line's own flags and the policy flags: --help, and one-line errors."""
    p = OneLineParser(
        prog=f"safetynet {PROG}", add_help=True, allow_abbrev=False, raises=UsageError,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay a directory of history (Avro or Parquet) through the Safety Net "
                    "and write the decisions, metrics.json and report.html.",
        epilog="Beam pipeline options are accepted too, e.g. --runner (default FnApiRunner), "
               "--direct_num_workers N --direct_running_mode multi_processing.\n"
               "Durations take a unit: 90s, 15m, 24h, 30d.")
    _add_flags(p, required=True, shared=True)
    g = p.add_argument_group("Safety Net policy")
    SafetyNetOptions._add_argparse_args(g)
    for a in g._group_actions:  # options of the streaming job only: not shown here
        if a.dest in STREAM_ONLY:
            a.help = argparse.SUPPRESS
    return p


def parse(argv: list) -> PipelineOptions:
    """The command line as PipelineOptions (views: BacktestOptions, SafetyNetOptions and
    Beam's own); a bad or unknown flag raises UsageError or PreflightError."""
    argv = expand_policy_file(argv)
    parser = arg_parser()
    _, rest = parser.parse_known_args(argv)
    unknown = preflight.beam_unknown_flags(rest)
    if unknown:
        raise UsageError(unknown_option(unknown[0], parser))
    if not any(f == "--runner" or f.startswith("--runner=") for f in rest):
        argv = [*argv, "--runner=FnApiRunner"]
    return CachedViews(argv)
