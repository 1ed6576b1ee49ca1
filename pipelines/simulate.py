"""``safetynet simulate``: write a synthetic replay directory (see simulator/README.md).

    python -m pipelines.simulate --output DIR [--users N] [--days D] [--seed S]
        [--format avro|parquet] [--malformed_share X] [--duplicate_share X] [--overwrite]

A directory that already holds a replay (in either format) is refused unless ``--overwrite``,
which removes the files this command writes (both formats) first. Options are spelt with
underscores, like every other command's; the dashed spellings are accepted too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import simulator
from pipelines import preflight
from pipelines.argtypes import OneLineParser, dashed_aliases, positive_int, reader_left, share
from simulator.exchange import DEFAULT_START_MS

# The response model's default (simulator/response.py): an assumption, stated; the
# backtest's escalation holdout measures the real one
ESCALATION_RESPONSE = 0.5
_UNITS = {"m": 60_000, "h": 3_600_000}


def _minutes_or_hours(text: str) -> int:
    """``90m`` or ``1h`` -> ms (the simulator's CLI stays free of Beam's options module)."""
    try:
        return int(float(text[:-1]) * _UNITS[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use e.g. 90m or 1h)") from None

# What simulate writes into --output (either format): refused, or cleared with --overwrite.
OWNED = preflight.owned_files(("transfers", "reports", "outcomes", "blacklist", "profiles",
                               "blacklist_snapshot", "truth"), ("avro", "parquet"),
                              extra=("manifest.json",))


def _share(text: str) -> float:
    """A share of injected records: below one half."""
    v = share(text)
    if v >= 0.5:
        raise argparse.ArgumentTypeError(f"must be in [0, 0.5), got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="safetynet simulate",
                description="Write a synthetic replay directory: transfers, reports, outcomes, "
                            "blacklist, profiles, blacklist_snapshot, truth and manifest.json.")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="directory to write (created if missing); one holding an earlier replay "
                        "is refused unless --overwrite")
    p.add_argument("--users", type=positive_int, default=20000,
                   help="number of users (default 20000; 200000 with 30 days gives ~1M transfers)")
    p.add_argument("--days", type=positive_int, default=30, help="days of history (default 30)")
    p.add_argument("--seed", type=int, default=7,
                   help="random seed; the same seed and options give byte-identical files "
                        "(default 7)")
    p.add_argument("--format", choices=("avro", "parquet"), default="avro", dest="fmt",
                   help="file format (default avro)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier replay in --output (both formats)")
    p.add_argument("--start_ms", type=int, default=DEFAULT_START_MS,
                   help="first instant of the period, epoch ms (default 2026-01-05T00:00Z)")
    p.add_argument("--malformed_share", type=_share, default=0.002,
                   help="share of extra malformed records per input file (default 0.002; "
                        "every kind is also injected once when > 0)")
    p.add_argument("--duplicate_share", type=_share, default=0.002,
                   help="share of transfers and reports delivered twice (default 0.002)")
    p.add_argument("--efficacy_victims", type=int, default=0, metavar="N",
                   help="add N victims of efficacy campaigns (simulator/efficacy.py): a warned "
                        "victim cancels later scam payments with probability "
                        "--warning_effect (default 0: none)")
    p.add_argument("--warning_effect", type=share, default=0.5, metavar="P",
                   help="probability that a warned efficacy-campaign victim cancels (0.5)")
    p.add_argument("--warning_holdout", type=share, default=0.0, metavar="SHARE",
                   help="the backtest's --warning_holdout (e.g. 5%%): holdout victims are "
                        "never warned, so never cancel (default 0)")
    p.add_argument("--escalation_response", type=share, default=ESCALATION_RESPONSE,
                   metavar="P",
                   help="probability that a victim contacted during a hold (rule 14) reports "
                        f"the scam within it (simulator/response.py; default "
                        f"{ESCALATION_RESPONSE}; 0: none)")
    p.add_argument("--escalation_holdout", type=share, default=0.0, metavar="SHARE",
                   help="the backtest's --escalation_holdout (e.g. 20%%): holdout holds are "
                        "never contacted, so never prompt a report (default 0)")
    p.add_argument("--hold_warn_after", type=_minutes_or_hours, default=3_600_000,
                   metavar="DURATION", help="the backtest's --hold_warn_after: when the "
                                            "contact comes (default 1h)")
    dashed_aliases(p)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Run the CLI; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        out = Path(args.output)
        if args.users < 10:
            parser.error(f"argument --users: must be >= 10, got {args.users}")
        if out.exists() and not out.is_dir():
            parser.error(f"argument --output: {out} exists and is not a directory")
        preflight.prepare_output(out, OWNED, args.overwrite)
    except preflight.PreflightError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help (0) or a usage error (2, one line already printed)
        return e.code if isinstance(e.code, int) else 2
    t = time.perf_counter()
    try:
        m = simulator.generate(out, users=args.users, days=args.days, seed=args.seed,
                               fmt=args.fmt, start_ms=args.start_ms,
                               malformed_share=args.malformed_share,
                               duplicate_share=args.duplicate_share,
                               warning_effect=args.warning_effect,
                               warning_holdout=args.warning_holdout,
                               efficacy_victims=args.efficacy_victims,
                               escalation_response=args.escalation_response,
                               escalation_holdout=args.escalation_holdout,
                               hold_warn_after_ms=args.hold_warn_after)
    except (ValueError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t
    try:
        _summary(out, m, elapsed)
    except BrokenPipeError:  # `safetynet simulate ... | head`: the reader left; not an error
        return reader_left()
    return 0


def _summary(out: Path, m: dict, elapsed: float) -> None:
    print(f"wrote {out} (seed {m['seed']}, {m['users']} users, {m['days']} days, "
          f"{m['format']}) in {elapsed:.1f}s")
    for name, n in m["files"].items():
        print(f"  {name:<24} {n:>10,}")
    scam = m["scam"]
    share = scam["transfers"] / max(1, m["files"][f"transfers.{m['format']}"])
    print(f"  scam transfers {scam['transfers']:,} ({share:.2%}), ${scam['usd']:,.0f}")
    for typ, v in scam["by_typology"].items():
        print(f"    {typ:<20} {v['transfers']:>7,} transfers  ${v['usd']:>14,.0f}")
    if "efficacy" in m:
        e = m["efficacy"]
        print(f"  efficacy campaigns: {e['victims']} victims, {e['holdout_victims']} in the "
              f"holdout, {e['cancelling_victims']} cancel {e['cancelled_payments']} payments "
              f"(${e['cancelled_usd']:,.0f})")
    if "escalation" in m:
        e = m["escalation"]
        print(f"  escalation response {e['response']}: {e['certainly_held']} certainly-held "
              f"scam transfers, {e['holdout_holds']} in the holdout, "
              f"{e['prompted_reports']} prompted reports (${e['prompted_usd']:,.0f})")
    print(f"  malformed {sum(m['malformed_total'].values()):,}, duplicates "
          f"{sum(m['duplicates'].values()):,}, report-bombing bursts {len(m['report_bombing'])}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
