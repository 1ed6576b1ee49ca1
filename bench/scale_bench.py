"""Scale: backtest memory against the length of history, and two worker processes
against one (issue: "no serial key on the transfer path, memory bounded by live state").

    python -m bench.scale_bench memory  [--users 4000] [--days 15,60] [--chunk 7d] [--runs 3]
    python -m bench.scale_bench workers [--transfers 200000] [--runs 3]
    python -m bench.scale_bench one     --input DIR [--chunk 7d]      # one run, e.g. 10M

Every measurement is one backtest (``pipelines.backtest.run``, FnApiRunner) in a fresh
process; peak RSS is that process's (plus its worker processes', for two workers);
medians of ``--runs``. ``memory`` compares the same users over a short and a long history,
with and without ``--chunk``; ``workers`` compares ``--direct_num_workers 2
--direct_running_mode multi_processing`` with one process on the same data, alternating,
and checks that both wrote identical decision files. Data are simulated once under
``--data`` (default bench/results/data).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench import ROOT, run_child

DECISIONS = ("holds", "resolutions", "freezes", "outreach", "verdicts", "dead_letter")
PER_USER_DAY = 0.163  # transfers per user per day in the simulator's default mix


def simulated(data: Path, users: int, days: int, seed: int = 7) -> Path:
    d = data / f"sim-u{users}-d{days}-s{seed}"
    if not (d / "transfers.avro").exists():
        from pipelines import simulate

        assert simulate.main(["--output", str(d), "--users", str(users), "--days", str(days),
                              "--seed", str(seed)]) == 0
    return d


def child(args) -> None:
    from pipelines import backtest

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    argv = ["--input", args.input, "--output", str(out), "--no_progress", "--no_report"]
    argv += json.loads(args.extra)
    t0 = time.monotonic()
    rc = backtest.run(argv)
    wall = time.monotonic() - t0
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    m = json.loads((out / "metrics.json").read_text()) if rc == 0 else {}
    print(json.dumps({"rc": rc, "wall": wall, "peak_mb": me, "workers_peak_mb": kids,
                      "pipeline_s": m.get("run", {}).get("wall_seconds"),
                      "transfers": m.get("summary", {}).get("transfers_read")}))


def once(inp: Path, out: Path, extra: list) -> dict:
    r = run_child("bench.scale_bench", ["--input", inp, "--out", out,
                                        "--extra", json.dumps(extra)], f"backtest {extra}")
    if r["rc"] != 0:
        raise SystemExit(f"[bench] backtest failed: {extra}")
    return r


def med(rs: list, k: str) -> float:
    return round(statistics.median(r[k] for r in rs), 1)


def memory(args) -> dict:
    days = [int(x) for x in args.days.split(",")]
    res: dict = {}
    for chunk in (None, args.chunk):
        for d in days:
            inp = simulated(Path(args.data), args.users, d)
            extra = ["--chunk", chunk] if chunk else []
            rs = [once(inp, Path(args.data) / "out-mem", extra) for _ in range(args.runs)]
            key = f"{d}d" + (f" chunk {chunk}" if chunk else "")
            res[key] = {"transfers": rs[0]["transfers"], "peak_mb": med(rs, "peak_mb"),
                        "wall_s": med(rs, "wall"), "runs": rs}
            print(f"[bench] {key}: {res[key]['transfers']:,} transfers, peak "
                  f"{res[key]['peak_mb']:.0f} MB, {res[key]['wall_s']:.1f} s", flush=True)
        lo, hi = f"{days[0]}d", f"{days[-1]}d"
        if chunk:
            lo, hi = lo + f" chunk {chunk}", hi + f" chunk {chunk}"
        ratio = res[hi]["peak_mb"] / res[lo]["peak_mb"]
        print(f"[bench] peak RSS {hi} / {lo}: {ratio:.2f}", flush=True)
        res[f"ratio {hi} / {lo}"] = round(ratio, 2)
    return res


def workers(args) -> dict:
    users = max(100, round(args.transfers / (PER_USER_DAY * 30)))
    inp = simulated(Path(args.data), users, 30)
    one_dir, two_dir = Path(args.data) / "out-w1", Path(args.data) / "out-w2"
    two = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
    r1, r2 = [], []
    for _ in range(args.runs):  # alternating: the machine's drift hits both alike
        r1.append(once(inp, one_dir, []))
        r2.append(once(inp, two_dir, two))
    same = all((one_dir / f"{n}.avro").read_bytes() == (two_dir / f"{n}.avro").read_bytes()
               for n in DECISIONS)
    ratios = [a["pipeline_s"] / b["pipeline_s"] for a, b in zip(r1, r2, strict=True)]
    res = {"transfers": r1[0]["transfers"], "one_s": med(r1, "pipeline_s"),
           "two_s": med(r2, "pipeline_s"), "speedup_median": round(statistics.median(ratios), 2),
           "identical_decisions": same, "one": r1, "two": r2}
    print(f"[bench] {res['transfers']:,} transfers: one process {res['one_s']} s, two "
          f"workers {res['two_s']} s, speedup {res['speedup_median']} (median of pairs); "
          f"identical decisions: {same}", flush=True)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.scale_bench")
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--users", type=int, default=4000)
    m.add_argument("--days", default="15,60")
    m.add_argument("--chunk", default="7d")
    w = sub.add_parser("workers")
    w.add_argument("--transfers", type=int, default=200_000)
    o = sub.add_parser("one")
    o.add_argument("--input", required=True)
    o.add_argument("--chunk", default="7d")
    for s in (m, w, o):
        s.add_argument("--runs", type=int, default=3)
        s.add_argument("--data", default=str(ROOT / "bench" / "results" / "data"))
        s.add_argument("--json", default=None)
    c = sub.add_parser("child")
    c.add_argument("--input", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--extra", default="[]")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":  # how bench.run_child starts a measurement
        argv[0] = "child"
    args = p.parse_args(argv)
    if args.what == "child":
        child(args)
        return 0
    Path(args.data).mkdir(parents=True, exist_ok=True)
    if args.what == "memory":
        res = memory(args)
    elif args.what == "workers":
        res = workers(args)
    else:
        r = once(Path(args.input), Path(args.data) / "out-one",
                 ["--chunk", args.chunk] if args.chunk else [])
        print(f"[bench] {r['transfers']:,} transfers in {r['wall']:.0f} s "
              f"({r['transfers'] / r['wall']:,.0f}/s), peak {r['peak_mb']:.0f} MB", flush=True)
        res = r
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
