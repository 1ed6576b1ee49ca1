"""The backtest's ``metrics.json`` and ``report.html``: what a policy did, in money and people.

    python -m pipelines.report --input REPLAY_DIR --output BACKTEST_DIR [--compare OTHER_DIR]
                               [--report_dir DIR]

Reads the replay directory (inputs, and ``truth.*`` when present) and the backtest's output
directory (decision files and ``scores.parquet``), and writes ``metrics.json``,
``report.html`` and ``cases/`` into the backtest's directory, or into ``--report_dir``
(the figures and their definitions: the ``report`` package, :mod:`report.metrics`), and
says what it wrote. Refuses an output directory that did not come from that replay, and a
``--compare`` directory without a ``metrics.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from pipelines.argtypes import OneLineParser, dashed_aliases, parse_or_status
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
    p = OneLineParser(prog="safetynet report", allow_abbrev=False,
                      description=__doc__.split("\n")[0].replace("``", ""))
    p.add_argument("--input", required=True, metavar="DIR",
                   help="the replay directory the backtest read (checked: the backtest "
                        "recorded a fingerprint of its files)")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="the backtest's output directory (what `safetynet backtest --output` "
                        "wrote): read, and written to unless --report_dir says elsewhere")
    p.add_argument("--report_dir", default=None, metavar="DIR",
                   help="write metrics.json, report.html and cases/ here instead (created "
                        "if missing; the backtest's directory is left as it is)")
    p.add_argument("--compare", default=None, metavar="DIR",
                   help="another backtest output directory (e.g. rules-only) to compare with")
    dashed_aliases(p)
    a = parse_or_status(p, argv)
    if isinstance(a, int):
        return a
    problem = _check_dirs(a)
    old = Path(a.output) / "metrics.json"
    prev = json.loads(old.read_text(encoding="utf-8")) if old.exists() else {}
    problem = problem or mismatch(a.input, a.output, prev)
    if not problem and a.compare and not (Path(a.compare) / "metrics.json").is_file():
        problem = f"--compare {a.compare}: no metrics.json there (not a backtest's output)"
    if problem:
        print(f"report: error: {problem}", file=sys.stderr)
        return 2
    dest = Path(a.report_dir or a.output)
    dest.mkdir(parents=True, exist_ok=True)
    m = build_report(a.input, a.output, prev.get("counters"), prev.get("run"),
                     compare=a.compare, dest=dest)
    n = len(list((dest / "cases").glob("*.html"))) if (dest / "cases").is_dir() else 0
    print(f"report: wrote {dest / 'report.html'}, {dest / 'metrics.json'}"
          + (f" and {n:,} case pages in {dest / 'cases'}" if n else "")
          + f" (backtest {a.output}"
          + (f", compared with {a.compare}" if a.compare else "") + "): "
          + first_line(m))
    return 0


def _check_dirs(a) -> Optional[str]:
    """What is wrong with the directories named on the command line (None: nothing)."""
    if not Path(a.input).is_dir():
        return f"--input {a.input} is not a directory (the replay the backtest read)"
    if not Path(a.output).is_dir():
        return (f"--output {a.output} is not a directory: --output is the backtest's output "
                "directory (what `safetynet backtest --output` wrote); to write the report "
                "somewhere else, add --report_dir DIR")
    if a.compare and not Path(a.compare).is_dir():
        return f"--compare {a.compare} is not a directory (another backtest's output)"
    if a.report_dir and Path(a.report_dir).exists() and not Path(a.report_dir).is_dir():
        return f"--report_dir {a.report_dir} exists and is not a directory"
    return None


def first_line(m: dict) -> str:
    """The report's headline in one line: stopped, lost, honest holds."""
    s = m["summary"]
    stopped = s["scam_usd_prevented"] + s["scam_usd_recovered"]
    return (f"${stopped:,.0f} scam money stopped, ${s['scam_usd_lost']:,.0f} lost, "
            f"{s['legit_held']:,} honest transfers held")


if __name__ == "__main__":
    sys.exit(main())
