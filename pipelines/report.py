"""The backtest's ``metrics.json`` and ``report.html``: what a policy did, in money and people.

    python -m pipelines.report --input REPLAY_DIR --output BACKTEST_DIR [--compare OTHER_DIR]

Reads the replay directory (inputs, and ``truth.*`` when present) and the backtest's output
directory (decision files and ``scores.parquet``), and writes both again (the figures and
their definitions: the ``report`` package, :mod:`report.metrics`). Refuses an output
directory that did not come from that replay, and a ``--compare`` directory without a
``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from pipelines.argtypes import parse_or_status
from report import build_report


def mismatch(input_dir: str | Path, out_dir: str | Path, prev: dict) -> Optional[str]:
    """Why ``out_dir`` (a backtest output, its metrics.json read as ``prev``) cannot be
    reported against the replay ``input_dir``; None when it can. The backtest records a
    fingerprint of the replay files it read; the report recomputes it and must find the
    same replay."""
    from pipelines.provenance import replay_fingerprint

    if not prev:
        return (f"--output {out_dir}: no metrics.json there; it is not the output of "
                "`safetynet backtest`")
    rec = (prev.get("run") or {}).get("input_fingerprint")
    if not rec:
        return (f"--output {out_dir}: its metrics.json does not say which replay it came from "
                "(written by an older version); rerun the backtest")
    now = replay_fingerprint(input_dir)
    if now["sha256"] == rec["sha256"]:
        return None
    old, new = rec.get("files", {}), now["files"]
    if not new:
        return (f"--input {input_dir} holds no replay files: it is not the replay "
                f"{(prev.get('run') or {}).get('input')} that {out_dir} came from")
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return (f"--input {input_dir} is not the replay {out_dir} came from "
            f"({(prev.get('run') or {}).get('input')}): {', '.join(differ)} differ")


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="safetynet report", description=__doc__.split("\n")[0]
                                .replace("``", ""))
    p.add_argument("--input", required=True, metavar="DIR",
                   help="the replay directory the backtest read (checked: the backtest "
                        "recorded a fingerprint of its files)")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="the backtest's output directory")
    p.add_argument("--compare", default=None, metavar="DIR",
                   help="another backtest output directory (e.g. rules-only) to compare with")
    a = parse_or_status(p, argv)
    if isinstance(a, int):
        return a
    for d in (a.input, a.output) + ((a.compare,) if a.compare else ()):
        if not Path(d).is_dir():
            print(f"report: error: {d} is not a directory", file=sys.stderr)
            return 2
    old = Path(a.output) / "metrics.json"
    prev = json.loads(old.read_text(encoding="utf-8")) if old.exists() else {}
    problem = mismatch(a.input, a.output, prev)
    if a.compare and not (Path(a.compare) / "metrics.json").is_file():
        problem = f"--compare {a.compare}: no metrics.json there (not a backtest's output)"
    if problem:
        print(f"report: error: {problem}", file=sys.stderr)
        return 2
    build_report(a.input, a.output, prev.get("counters"), prev.get("run"), compare=a.compare)
    print(Path(a.output) / "report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
