"""``safetynet validate``: read and validate a replay directory without running the pipeline.

    python -m pipelines.validate --input DIR [--max_usd_value X] [--max_amount X]
        [--max_dead_letter_share X]

Prints, per input file, the records read, valid and dead-lettered, and the dead-letter
reasons with their counts (most frequent first). Exit status 0 when every input is within
``--max_dead_letter_share``, 1 when one is not, 2 on a usage error (a missing directory, an
unreadable file).

Also the home of what the backtest's command line shares with it: the input guards (upper
bounds on money fields, the dead-letter share that fails a run). Both read the replay with
:func:`connectors.replay.read_validated`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

from connectors.replay import read_validated
from pipelines import argtypes
from pipelines.argtypes import OneLineParser, parse_or_status, positive_number
from schemas import codecs
from schemas.rows import DeadLetter
from schemas.streams import REPLAY_FILES

PROG = "validate"
DEFAULT_MAX_DEAD_LETTER_SHARE = 0.5
# Files a replay directory may hold, with their record types (REPLAY_FILES: the decided ones).
EXTRA_FILES = {"truth": "Truth"}
ID_FIELDS = {"transfers": "transfer_id", "reports": "report_id"}


def add_input_options(p, share: bool = True, bounds: bool = True) -> None:
    """The input guards, on any argparse parser (or argument group); ``share=False``: the
    money bounds only (a streaming job does not end, so it has no share to fail on);
    ``bounds=False``: the share only (the bounds declared elsewhere)."""
    if bounds:
        _add_bounds(p)
    if share:
        p.add_argument("--max_dead_letter_share", type=argtypes.share,
                       default=DEFAULT_MAX_DEAD_LETTER_SHARE, metavar="SHARE",
                       help="fail the run (exit status 1) when more than this share of any "
                            f"input's records is dead-lettered (default "
                            f"{DEFAULT_MAX_DEAD_LETTER_SHARE}; 1 never fails)")


def _add_bounds(p) -> None:
    p.add_argument("--max_usd_value", type=positive_number, default=codecs.MAX_USD_VALUE,
                   metavar="USD",
                   help="dead-letter a record whose usd_value or claimed_loss_usd exceeds this "
                        f"(default {codecs.MAX_USD_VALUE:g})")
    p.add_argument("--max_amount", type=positive_number, default=codecs.MAX_AMOUNT, metavar="X",
                   help="dead-letter a transfer whose amount (asset units) exceeds this "
                        f"(default {codecs.MAX_AMOUNT:g})")


def dead_letter_excess(recon: dict, max_share: float) -> Optional[str]:
    """One line when an input's dead-lettered share exceeds ``max_share``; else None.
    ``recon``: {input: {"read": n, "dead_lettered": n}}."""
    worst = []
    for src, v in recon.items():
        read, dead = int(v.get("read") or 0), int(v.get("dead_lettered") or 0)
        if read and dead / read > max_share:
            worst.append(f"{dead:,} of {read:,} {src} ({dead / read:.1%})")
    if not worst:
        return None
    return (f"{'; '.join(worst)} dead-lettered, more than --max_dead_letter_share "
            f"{max_share:g}: the input is not what the pipeline expects (see the dead-letter "
            "reasons, or `safetynet validate --input DIR`)")


# ------------------------------------------------------------------------------ the command
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=f"safetynet {PROG}", allow_abbrev=False,
                description="Read and validate a replay directory without running the "
                            "pipeline: records read, valid and dead-lettered per input, and "
                            "the dead-letter reasons.")
    p.add_argument("--input", required=True, metavar="DIR", help="replay directory")
    add_input_options(p)
    return p


_VALUE_RE = re.compile(r"(: |unknown \w+ |^\w+ )"
                       r"('[^']*'|-?\d[^\s()]*|nan|-?inf)(?= |$)")


def reason_of(error: str) -> str:
    """A dead-letter error with its values blanked, so that reasons group.

    >>> reason_of("unknown channel 'X' (expected one of WITHDRAWAL, INTERNAL, P2P)")
    'unknown channel … (expected one of WITHDRAWAL, INTERNAL, P2P)'
    >>> reason_of("event_time out of range: 5 (years 2000..2100)")
    'event_time out of range: … (years 2000..2100)'
    >>> reason_of("usd_value 1e+300 exceeds the upper bound 1e+10 (--max_usd_value)")
    'usd_value … exceeds the upper bound 1e+10 (--max_usd_value)'
    """
    return _VALUE_RE.sub(lambda m: m.group(1) + "…", error)


def validate_dir(directory: str | Path, max_usd: float = codecs.MAX_USD_VALUE,
                 max_amount: float = codecs.MAX_AMOUNT) -> dict:
    """{input: {"file", "read", "valid", "dead_lettered", "reasons": {reason: n}}}; for
    transfers and reports also ``duplicates`` (an id again with the same content: ignored by
    the pipeline) and ``conflicts`` (an id again with other content: dead-lettered by it)."""
    d = Path(directory)
    out = {}
    for name, record in {**REPLAY_FILES, **EXTRA_FILES}.items():
        p = codecs.find_input(d, name)
        if p is None:
            continue
        read = dead = dups = conflicts = 0
        reasons: Counter = Counter()
        id_field = ID_FIELDS.get(name)
        seen: dict = {}
        for batch in read_validated(p, record, name, max_usd, max_amount):
            read += len(batch)
            for r in batch:
                if type(r) is DeadLetter:
                    dead += 1
                    reasons[reason_of(r.error)] += 1
                elif id_field is not None:
                    key, h = getattr(r, id_field), hash(r)  # a row's fields are hashable
                    if key not in seen:
                        seen[key] = h
                    elif seen[key] == h:
                        dups += 1
                    else:
                        conflicts += 1
        out[name] = {"file": p.name, "read": read, "valid": read - dead, "dead_lettered": dead,
                     "reasons": dict(reasons.most_common())}
        if id_field is not None:
            out[name].update(duplicates=dups, conflicts=conflicts)
    return out


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    a = parse_or_status(parser, argv)
    if isinstance(a, int):
        return a
    d = Path(a.input)
    if not d.is_dir():
        print(f"{parser.prog}: error: --input {d}: not a directory", file=sys.stderr)
        return 2
    try:
        res = validate_dir(d, a.max_usd_value, a.max_amount)
    except codecs.CodecError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    if "transfers" not in res:
        print(f"{parser.prog}: error: {d} holds no transfers.avro or transfers.parquet",
              file=sys.stderr)
        return 2
    try:
        rc = _print(res, a, parser.prog)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:  # `safetynet validate ... | head`
        from pipelines.argtypes import reader_left

        return reader_left()


def _print(res: dict, a: argparse.Namespace, prog: str) -> int:
    print(f"{'input':<20} {'file':<26} {'read':>10} {'valid':>10} {'dead-lettered':>14}")
    for name, v in res.items():
        print(f"{name:<20} {v['file']:<26} {v['read']:>10,} {v['valid']:>10,} "
              f"{v['dead_lettered']:>14,}")
        if "duplicates" in v:
            print(f"    duplicate deliveries (ignored) {v['duplicates']:,}; conflicting "
                  f"deliveries (same id, other content: dead-lettered) {v['conflicts']:,}")
        for reason, n in v["reasons"].items():
            print(f"    {n:>8,}  {reason}")
    msg = dead_letter_excess({k: v for k, v in res.items() if k in REPLAY_FILES},
                             a.max_dead_letter_share)
    if msg:
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
