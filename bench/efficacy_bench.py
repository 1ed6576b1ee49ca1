"""Warning efficacy against a known effect: is the true effect inside the measured interval?

    python -m bench.efficacy_bench [--seeds 1,2,3,4,5] [--users 5000] [--days 30]
        [--victims 400] [--effect 0.5] [--holdout 30%] [--data DIR] [--json FILE]

For each seed: the simulator writes a history with efficacy campaigns
(``simulator/efficacy.py``: warned victims outside the holdout cancel their later scam
payments with probability ``--effect``), the backtest replays it with the same
``--warning_holdout``, and the report measures the effect of a warning (holdout minus warned:
the share of eligible users who lost money to a scam within 7 days; Newcombe 95% interval)
against the true effect among the warned, known from the simulator's cancelled payments.
About 1 seed in 20 may miss at a 95% level. Prints one line per seed and a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, seeds_summary


def one(seed: int, a: argparse.Namespace, base: Path) -> dict:
    from pipelines import backtest
    from pipelines import simulate as simulate_cli

    sim, out = base / f"sim-{seed}", base / f"bt-{seed}"
    args = ["--output", str(sim), "--users", str(a.users), "--days", str(a.days), "--seed",
            str(seed), "--efficacy-victims", str(a.victims), "--warning-effect", str(a.effect),
            "--warning-holdout", a.holdout]
    if simulate_cli.main(args) != 0:
        raise SystemExit(f"simulate failed for seed {seed}")
    t = time.monotonic()
    bt = ["--input", str(sim), "--output", str(out), "--no_progress", "--no_report",
          "--warning_holdout", a.holdout] + (["--use_models", "false"] if a.rules_only else [])
    if backtest.run(bt) != 0:
        raise SystemExit(f"backtest failed for seed {seed}")
    m = json.loads((out / "metrics.json").read_text())["warning_efficacy"]
    m["seed"], m["backtest_seconds"] = seed, round(time.monotonic() - t, 1)
    return m


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.efficacy_bench", description=__doc__)
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--victims", type=int, default=400)
    p.add_argument("--effect", type=float, default=0.5)
    p.add_argument("--holdout", default="30%")
    p.add_argument("--rules_only", action="store_true", help="backtest with --use_models false")
    p.add_argument("--data", default=None, help="working directory (default: a temp dir)")
    p.add_argument("--json", default=None, help="write every seed's figures here")
    a = p.parse_args(argv)
    base = Path(a.data) if a.data else Path(tempfile.mkdtemp(prefix="efficacy-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    rows = []
    print(f"[bench] {a.users} users, {a.days} days, {a.victims} campaign victims, effect "
          f"{a.effect}, holdout {a.holdout}; data in {base}", flush=True)
    hdr = (f"{'seed':>4} {'warned':>7} {'holdout':>7} {'lost% w':>8} {'lost% h':>8} "
           f"{'measured':>9} {'95% interval':>19} {'true':>7} {'inside':>6} {'USD/user':>9}")
    print(hdr, flush=True)
    for seed in (int(s) for s in a.seeds.split(",") if s):
        m = one(seed, a, base)
        rows.append(m)
        e = m["effect"]
        lo, hi = e["lost_share_reduction_ci95"]
        # no cancelled payment in the truth (--effect 0): the true effect is 0
        t = m.get("true_effect") or {"lost_share_reduction": 0.0, "within_ci95": lo <= 0 <= hi}
        m["true_effect"] = t
        print(f"{seed:>4} {m['warned']['eligible_users']:>7} {m['holdout']['eligible_users']:>7} "
              f"{100 * m['warned']['lost_share']:>7.1f}% {100 * m['holdout']['lost_share']:>7.1f}% "
              f"{100 * e['lost_share_reduction']:>8.1f}% [{100 * lo:>6.1f}%, {100 * hi:>6.1f}%] "
              f"{100 * t.get('lost_share_reduction', float('nan')):>6.1f}% "
              f"{'yes' if t.get('within_ci95') else 'NO':>6} "
              f"{e['usd_per_user_reduction']:>9,.0f}", flush=True)
    inside = sum(1 for m in rows if (m.get("true_effect") or {}).get("within_ci95"))
    return seeds_summary(rows, inside, a.json)


if __name__ == "__main__":
    sys.exit(main())
