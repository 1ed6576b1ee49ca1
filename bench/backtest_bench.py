"""Backtest throughput: transfers per second end to end (read Avro, decide, write the
decision files), the Beam backtest against the plain-Python reference, in one run.

    python -m bench.backtest_bench [--transfers N] [--runs K] [--cases sim,eth]
        [--modes reference,beam1,beam2] [--data DIR] [--json FILE]

Cases:

* ``sim`` — the simulator's output sized to about ``--transfers`` transfers (default
  1,000,000; 30 days, seed 7, the simulator's default shares of reports, outcomes, list
  updates, malformed records and duplicates), generated once and cached under ``--data``;
* ``eth`` — the 120k real Ethereum transfers of ``../shared/data`` converted by
  ``pipelines.convert_eth`` (skipped with a message when the file or the converter is
  absent).

Modes, each run ``--runs`` times in a fresh process (medians printed):

* ``reference`` — ``core.reference``: read the Avro files, ``run_reference``, write the
  same sorted decision files and ``scores.parquet`` as the backtest;
* ``beam1`` — ``pipelines.backtest`` on the FnApiRunner, one process;
* ``beam2`` — the same with ``--direct_num_workers=2 --direct_running_mode=multi_processing``.

The time measured is the pipeline's (read, decide, write: the backtest's ``wall_seconds``,
without ``metrics.json``'s scoring against the truth, reported separately as ``total``).
The first run's decision files of every mode are compared byte for byte: the bench fails
if any mode decides differently from the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from bench import ROOT, run_child
from schemas.streams import DECISIONS

# The shared data beside the tree, or beside a parent of it (a worktree of the tree)
SHARED = next((d / "shared" / "data" for d in ROOT.parents
               if (d / "shared" / "data").is_dir()), ROOT.parent / "shared" / "data")
ETH_CSV = SHARED / "eth_transfers_2018H1_labeled.csv.gz"
TRANSFERS_PER_USER_DAY = 0.163  # the simulator's default mix, measured (30 days)
DAYS = 30
MODES = ("reference", "beam1", "beam2")
BEAM_FLAGS = {"beam1": [],
              "beam2": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]}


# ------------------------------------------------------------------------------- data sets
def sim_case(n_transfers: int, data: Path) -> Path:
    users = max(10, round(n_transfers / (TRANSFERS_PER_USER_DAY * DAYS)))
    d = data / f"sim-{users}u-{DAYS}d-s7"
    if not (d / "manifest.json").is_file():
        import simulator

        print(f"[bench] generating {d} ({users:,} users, {DAYS} days)...", file=sys.stderr,
              flush=True)
        t = time.monotonic()
        simulator.generate(d, users=users, days=DAYS, seed=7)
        print(f"[bench] generated in {time.monotonic() - t:.0f}s", file=sys.stderr)
    return d


def eth_case(data: Path) -> Path | None:
    if not ETH_CSV.is_file():
        print(f"[bench] eth: skipped, {ETH_CSV} is absent", file=sys.stderr)
        return None
    try:
        from pipelines import convert_eth
    except ImportError as e:
        print(f"[bench] eth: skipped, no converter (pipelines.convert_eth: {e})",
              file=sys.stderr)
        return None
    d = data / "eth-2018h1"
    if not (d / "manifest.json").is_file():
        print(f"[bench] converting {ETH_CSV.name} -> {d}", file=sys.stderr, flush=True)
        convert_eth.convert(ETH_CSV, d, seed=7)
    return d


def n_transfers_of(d: Path) -> int:
    from connectors.replay import count_records
    from schemas.codecs import find_input

    return count_records(find_input(d, "transfers"))


# --------------------------------------------------------------------------- one measurement
def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children: robust to
    other load on the machine, unlike wall time."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _peak_rss_mb() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(me, kids) / 1024.0


def child_reference(inp: Path, out: Path) -> dict:
    """Read, decide with the reference, write the backtest's decision files."""
    from connectors.files import SCORES_FILE, score_row, sort_key, write_scores
    from core.reference import Stats, run_reference
    from schemas.codecs import write_records
    from schemas.streams import FILE_ORDER, OUTPUTS
    from transforms.side import load_replay, load_side, replay_policy

    out.mkdir(parents=True, exist_ok=True)
    fmt = "avro"
    t0 = time.perf_counter()
    inputs = load_replay(inp)
    t1 = time.perf_counter()
    stats = Stats()
    policy = replay_policy(inp)
    outs = run_reference(inputs, policy, stats, load_side(policy))
    t2 = time.perf_counter()
    for name in FILE_ORDER:
        write_records(out / f"{name}.{fmt}", OUTPUTS[name],
                      sorted(outs[name], key=sort_key(name)), fmt)
    write_scores(out / SCORES_FILE, [score_row(s) for s in outs["scored"]])
    t3 = time.perf_counter()
    return {"seconds": t3 - t0, "total": t3 - t0, "read": t1 - t0, "decide": t2 - t1,
            "write": t3 - t2, "keys": stats.keys}


def child_beam(inp: Path, out: Path, flags: list) -> dict:
    from pipelines import backtest

    t0 = time.perf_counter()
    rc = backtest.run(["--input", str(inp), "--output", str(out), "--no_progress", "--overwrite",
                       "--no_report", *flags])
    total = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"backtest failed with status {rc}")
    m = json.loads((out / "metrics.json").read_text())
    wall = m.get("run", {}).get("wall_seconds", total)
    return {"seconds": wall, "total": total}


def measure(mode: str, inp: Path, out: Path) -> dict:
    """Run one measurement in a fresh Python process; return its figures."""
    return run_child("bench.backtest_bench", [mode, "--input", inp, "--output", out], mode)


def same_files(a: Path, b: Path) -> list[str]:
    """Decision files that differ between two output directories."""
    bad = []
    for name in DECISIONS:
        fa, fb = a / f"{name}.avro", b / f"{name}.avro"
        if not (fa.is_file() and fb.is_file()) or fa.read_bytes() != fb.read_bytes():
            bad.append(name)
    return bad


# ------------------------------------------------------------------------------------ main
def bench_case(label: str, inp: Path, modes: list, runs: int, scratch: Path) -> dict:
    n = n_transfers_of(inp)
    print(f"\n== {label}: {inp} ({n:,} transfers), {runs} run(s) per mode", flush=True)
    res: dict = {"input": str(inp), "transfers": n, "modes": {}}
    firsts = {}
    for mode in modes:
        secs, totals, extra = [], [], None
        for k in range(runs):
            out = scratch / f"{label}-{mode}-{k}"
            r = measure(mode, inp, out)
            secs.append(r["seconds"])
            totals.append(r["total"])
            extra = extra or r
            if k == 0:
                firsts[mode] = out
            print(f"   {mode:<10} run {k + 1}: {r['seconds']:8.2f}s  "
                  f"{n / r['seconds']:>9,.0f} transfers/s  (peak RSS {r['rss_mb']:,.0f} MB)",
                  flush=True)
        med = statistics.median(secs)
        res["modes"][mode] = {"runs": secs, "median_s": med, "per_s": n / med,
                              "median_total_s": statistics.median(totals),
                              "rss_mb": extra["rss_mb"],
                              **({"split": {k: round(extra[k], 2) for k in
                                            ("read", "decide", "write")}}
                                 if mode == "reference" else {})}
    if "reference" in firsts:
        for mode, d in firsts.items():
            if mode != "reference":
                bad = same_files(firsts["reference"], d)
                res["modes"][mode]["identical_to_reference"] = not bad
                if bad:
                    print(f"   !! {mode} decides differently from the reference: {bad}")
    ref = res["modes"].get("reference")
    print(f"   {'mode':<10} {'median s':>9} {'transfers/s':>12} {'vs reference':>13}")
    for mode, m in res["modes"].items():
        ratio = f"{m['per_s'] / ref['per_s']:.2f}" if ref else "-"
        m["ratio_to_reference"] = m["per_s"] / ref["per_s"] if ref else None
        print(f"   {mode:<10} {m['median_s']:9.2f} {m['per_s']:12,.0f} {ratio:>13}")
    if ref:
        print(f"   reference split (s): {ref['split']}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backtest_bench",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--transfers", type=int, default=1_000_000,
                    help="size of the simulated case (default 1,000,000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per mode (median; default 3)")
    ap.add_argument("--cases", default="sim,eth", help="sim, eth or both (default)")
    ap.add_argument("--modes", default=",".join(MODES), help="reference,beam1,beam2")
    ap.add_argument("--data", default=os.environ.get("SAFETYNET_BENCH_DATA",
                                                     "/tmp/safetynet-bench"),
                    help="where generated inputs are cached and outputs written")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child:
        inp, out = Path(a.input), Path(a.output)
        r = (child_reference(inp, out) if a.child == "reference"
             else child_beam(inp, out, BEAM_FLAGS[a.child]))
        r["rss_mb"] = _peak_rss_mb()
        r["cpu_s"] = _cpu_s()
        print(json.dumps(r))
        return 0

    data = Path(a.data)
    data.mkdir(parents=True, exist_ok=True)
    scratch = data / "out"
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    print(f"[bench] {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "cases": {}}
    cases = a.cases.split(",")
    if "sim" in cases:
        d = sim_case(a.transfers, data)
        results["cases"]["sim"] = bench_case("sim", d, modes, a.runs, scratch)
    if "eth" in cases:
        d = eth_case(data)
        if d is not None:
            results["cases"]["eth"] = bench_case("eth", d, modes, a.runs, scratch)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    bad = [(c, m) for c, r in results["cases"].items() for m, x in r["modes"].items()
           if x.get("identical_to_reference") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
