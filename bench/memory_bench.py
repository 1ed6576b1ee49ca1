"""Memory: resident memory against blacklist size and against the state a run holds.

    python -m bench.memory_bench [--lists real,1m,10m] [--users 1000,4000,16000]
        [--days 7] [--runs K] [--data DIR] [--json FILE]

Blacklist side input (each load in a fresh process, ``--runs`` times, medians):

* ``real`` — ``../shared/data/blacklist_union_evm.csv`` (64k addresses; skipped when absent);
* ``1m`` / ``10m`` — synthetic lists of 1,000,000 / 10,000,000 distinct random EVM
  addresses (one per line, as an OFAC-style text list), written once under ``--data``.

For each: the resident memory the loaded ``BlacklistSnapshot`` keeps (RSS after loading and
a full collection, minus RSS before), the peak RSS during the load, the load time, and a
lookup's cost. Target: a 1M-address list in <= 200 MB resident.

State: the reference (``core.reference``) over simulated histories of growing numbers
of users, in a fresh process each: the keys each step holds at the end (the state's size
before expiry) and the peak RSS of the whole run (inputs and outputs included).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

from bench import ROOT, run_child

REAL_LIST = ROOT.parent / "shared" / "data" / "blacklist_union_evm.csv"
SIZES = {"1m": 1_000_000, "10m": 10_000_000}


def rss_mb() -> float:
    """Current resident set size (VmRSS) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_list(n: int, data: Path) -> Path:
    p = data / f"synthetic_blacklist_{n}.txt"
    if not p.is_file():
        print(f"[bench] writing {n:,} synthetic addresses to {p}", file=sys.stderr, flush=True)
        rng = random.Random(n)
        tmp = p.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for i in range(0, n, 100_000):
                f.write("".join(f"0x{rng.getrandbits(160):040x}\n"
                                for _ in range(min(100_000, n - i))))
        os.replace(tmp, p)
    return p


# ----------------------------------------------------------------------------- children
def child_list(path: Path) -> dict:
    from schemas.blacklist import load_many

    gc.collect()
    before = rss_mb()
    t = time.perf_counter()
    snap, problems = load_many([path])
    load_s = time.perf_counter() - t
    gc.collect()
    after = rss_mb()
    # a lookup's cost: half hits, half misses
    some = [a for _, a in zip(range(50_000), snap, strict=False)]
    probes = some + [f"0x{i:040x}" for i in range(len(some))]
    t = time.perf_counter()
    hits = sum(1 for a in probes if snap.lookup(a) is not None)
    lookup_us = (time.perf_counter() - t) / len(probes) * 1e6
    return {"addresses": len(snap), "problems": len(problems), "resident_mb": after - before,
            "peak_mb": peak_mb(), "baseline_mb": before, "load_s": load_s,
            "lookup_us": lookup_us, "hits": hits}


def child_state(directory: Path) -> dict:
    from core.reference import Stats, run_reference
    from transforms.side import load_replay, load_side, replay_policy

    gc.collect()
    before = rss_mb()
    inputs = load_replay(directory)
    n = len(inputs["transfers"])
    stats = Stats()
    t = time.perf_counter()
    policy = replay_policy(directory)
    out = run_reference(inputs, policy, stats, load_side(policy))
    secs = time.perf_counter() - t
    return {"transfers": n, "keys": stats.keys, "peak_mb": peak_mb(), "baseline_mb": before,
            "seconds": secs, "holds": len(out["holds"])}


def measure(kind: str, arg: Path) -> dict:
    return run_child("bench.memory_bench", [kind, "--arg", arg], f"{kind} {arg}")


def med(rs: list, k: str) -> float:
    return statistics.median(r[k] for r in rs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memory_bench",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--lists", default="real,1m,10m", help="real, 1m, 10m (default: all)")
    ap.add_argument("--users", default="1000,4000,16000",
                    help="simulated users for the state runs ('' to skip)")
    ap.add_argument("--days", type=int, default=7, help="days of the state runs (default 7)")
    ap.add_argument("--runs", type=int, default=3, help="runs per case (median; default 3)")
    ap.add_argument("--data", default=os.environ.get("SAFETYNET_BENCH_DATA",
                                                     "/tmp/safetynet-bench"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", choices=("list", "state"), help=argparse.SUPPRESS)
    ap.add_argument("--arg", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        r = child_list(Path(a.arg)) if a.child == "list" else child_state(Path(a.arg))
        print(json.dumps(r))
        return 0

    data = Path(a.data)
    data.mkdir(parents=True, exist_ok=True)
    results: dict = {"lists": {}, "state": {}}
    print(f"[bench] {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("\n== blacklist side input (medians of %d)" % a.runs)
    print(f"   {'list':<6} {'addresses':>11} {'resident MB':>12} {'peak MB':>9} {'load s':>8} "
          f"{'lookup µs':>10}  target <= 200 MB per 1M")
    for name in [x for x in a.lists.split(",") if x]:
        if name == "real":
            if not REAL_LIST.is_file():
                print(f"   real: skipped, {REAL_LIST} is absent")
                continue
            path = REAL_LIST
        else:
            path = synthetic_list(SIZES[name], data)
        rs = [measure("list", path) for _ in range(a.runs)]
        r = {"addresses": rs[0]["addresses"], "resident_mb": med(rs, "resident_mb"),
             "peak_mb": med(rs, "peak_mb"), "load_s": med(rs, "load_s"),
             "lookup_us": med(rs, "lookup_us")}
        per_m = r["resident_mb"] / max(r["addresses"], 1) * 1e6
        r["resident_mb_per_million"] = per_m
        results["lists"][name] = r
        print(f"   {name:<6} {r['addresses']:>11,} {r['resident_mb']:>12,.1f} "
              f"{r['peak_mb']:>9,.0f} {r['load_s']:>8.2f} {r['lookup_us']:>10.2f}  "
              f"({per_m:,.0f} MB per million: {'ok' if per_m <= 200 else 'MISSED'})")

    users = [int(x) for x in a.users.split(",") if x]
    if users:
        import simulator

        print(f"\n== state: the reference over {a.days} days of growing numbers of users "
              f"(medians of {a.runs})")
        steps = ("SenderProfile", "CounterpartyProfile", "LabelJoin", "Actions", "Outreach",
                 "TransferLedger")
        print(f"   {'users':>7} {'transfers':>10} {'peak MB':>9} " +
              " ".join(f"{s[:12]:>12}" for s in steps))
        for u in users:
            d = data / f"sim-{u}u-{a.days}d-s7"
            if not (d / "manifest.json").is_file():
                simulator.generate(d, users=u, days=a.days, seed=7)
            rs = [measure("state", d) for _ in range(a.runs)]
            r = {"transfers": rs[0]["transfers"], "peak_mb": med(rs, "peak_mb"),
                 "keys": rs[0]["keys"], "seconds": med(rs, "seconds")}
            results["state"][u] = r
            print(f"   {u:>7,} {r['transfers']:>10,} {r['peak_mb']:>9,.0f} " +
                  " ".join(f"{r['keys'].get(s, 0):>12,}" for s in steps))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
