"""Same decisions before and after a change of structure: the backtest's output files of
two commits, compared byte for byte on the simulator's data and on the real ETH transfers.

    python -m bench.same_decisions --base REV [--users N] [--days D] [--cases sim,chunked,eth]
        [--work DIR]

The base commit is checked out into a temporary git worktree; the data is made once with
the base's code (``simulate``, ``convert_eth``), then each case is replayed by both trees
(``backtest``, one process, ``PYTHONHASHSEED=0``) and every file of the two outputs is
compared: decision files, case files, scores, state checkpoints, hourly aggregates and
model versions byte for byte; ``metrics.json`` without its ``run`` block and its
throughput (wall time, commit, paths); a state checkpoint by its records (its Avro files
are written by Beam with a random sync marker, in any order), each state decoded and
encoded again by this tree (a pickle names the module of each class, and the core package
moved them: ``transforms.machine`` is ``core.machine``), and its manifest without the
files' hashes; HTML pages are listed, not compared (they show the wall time and the commit).
Exits 1 when any file differs.

Cases: ``sim`` (the simulator, seed 7), ``chunked`` (the same data with ``--chunk 7d
--write_state``), ``eth`` (``../shared/data``'s labelled Ethereum transfers, skipped when
absent).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ROOT
from bench.backtest_bench import ETH_CSV

CASES = ("sim", "chunked", "eth")


def run(tree: Path, module: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", module, *args]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"[same] {' '.join(cmd)} failed in {tree}:\n{done.stderr[-2000:]}")


def make_data(base: Path, work: Path, cases: list, users: int, days: int) -> dict:
    data = {}
    if {"sim", "chunked"} & set(cases):
        sim = work / "data-sim"
        run(base, "pipelines.simulate", "--output", str(sim), "--users", str(users),
            "--days", str(days), "--seed", "7")
        data["sim"] = data["chunked"] = sim
    if "eth" in cases and ETH_CSV.is_file():
        eth = work / "data-eth"
        run(base, "pipelines.convert_eth", "--input", str(ETH_CSV), "--output", str(eth))
        data["eth"] = eth
    return data


def backtest(tree: Path, case: str, data: Path, out: Path) -> None:
    extra = ["--chunk", "7d", "--write_state", str(out / "state")] if case == "chunked" else []
    run(tree, "pipelines.backtest", "--input", str(data), "--output", str(out), "--quiet",
        *extra)


def _metrics(p: Path) -> dict:
    m = json.loads(p.read_text())
    m.pop("run", None)
    m.get("summary", {}).pop("transfers_per_second", None)
    return m


def _records(p: Path) -> list:
    import pickle

    import fastavro

    with open(p, "rb") as f:
        return sorted((r["step"], r["key"], pickle.dumps(pickle.loads(r["state"]), 4))
                      for r in fastavro.reader(f))


def _manifest(p: Path) -> dict:
    m = json.loads(p.read_text())
    m["files"] = sorted(m.get("files", {}))
    return m


def _same(pa: Path, pb: Path) -> bool:
    if pa.name == "metrics.json":
        return _metrics(pa) == _metrics(pb)
    if "state" in pa.parts and pa.suffix == ".avro":
        return _records(pa) == _records(pb)
    if "state" in pa.parts and pa.name == "manifest.json":
        return _manifest(pa) == _manifest(pb)
    return filecmp.cmp(pa, pb, shallow=False)


def compare(a: Path, b: Path) -> tuple[list, list, list]:
    """(same, different, not compared) relative paths of two output directories."""
    names = sorted({p.relative_to(a) for p in a.rglob("*") if p.is_file()}
                   | {p.relative_to(b) for p in b.rglob("*") if p.is_file()})
    same, diff, skipped = [], [], []
    for n in names:
        pa, pb = a / n, b / n
        if not (pa.is_file() and pb.is_file()):
            diff.append(f"{n} (only in {'before' if pa.is_file() else 'after'})")
        elif n.suffix == ".html":
            skipped.append(str(n))
        else:
            try:
                (same if _same(pa, pb) else diff).append(str(n))
            except Exception as e:  # noqa: BLE001 - a state of the other tree's layout
                diff.append(f"{n} (not comparable: {type(e).__name__}: {e})")
    return same, diff, skipped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="same_decisions", description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the commit before the change")
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--work", help="keep the data and outputs here (default: a temp dir)")
    a = ap.parse_args(argv)
    cases = [c for c in a.cases.split(",") if c]
    work = Path(a.work or tempfile.mkdtemp(prefix="same-decisions-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base-tree"
    if base.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), a.base],
                   cwd=ROOT, check=True)
    bad = 0
    try:
        data = make_data(base, work, cases, a.users, a.days)
        for case in cases:
            if case not in data:
                print(f"[same] {case}: skipped (no data)")
                continue
            before, after = work / f"{case}-before", work / f"{case}-after"
            for d in (before, after):
                shutil.rmtree(d, ignore_errors=True)
            backtest(base, case, data[case], before)
            backtest(ROOT, case, data[case], after)
            same, diff, skipped = compare(before, after)
            bad += len(diff)
            print(f"[same] {case}: {len(same)} files identical, {len(diff)} different"
                  f"{': ' + ', '.join(diff) if diff else ''}; not compared: "
                  f"{len(skipped)} HTML pages")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
