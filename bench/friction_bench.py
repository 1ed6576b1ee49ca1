"""Friction bench (issue 11): friction budget x per-user cap x hold-threshold floor, tuned on
one half of a replay and reported on the other.

The replay runs once, continuously, through ``core.reference``'s machines (the steps
up to LabelJoin once; then the Learner per (budget, floor), the Score step and Actions per
cap). The judgement is split by event time at ``--split``: a configuration is *chosen*
from the figures of the transfers before it (the tune half) only, and its figures on the
transfers from it on (the report half) are the ones to quote. One continuous run is what a
backtest of the first half with ``--write_state`` followed by ``--restore_state`` on the
second gives (chunked runs are decision-identical, tests/test_checkpoint.py): the second
half starts with the models, profiles and lists the first half built.

Judged as ``bench/MODELS.md`` says: on a ``pipelines.convert_eth`` directory *victims* are
victim payments (flagged recipient, sender not flagged) and *legitimate* is neither that
nor flagged -> flagged; on a simulator directory, ``truth``'s scam transfers and the rest.

Targets: legitimate held <= 0.5% by count and <= 5% by USD, no user > 10% of legitimate
holds; among configurations within them, the most victim USD prevented (held, refunded).

    PYTHONPATH=. .venv/bin/python bench/friction_bench.py --replay DIR --split 2018-04-01 \
        --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import pickle
import sys
import time
from pathlib import Path

from bench.models_bench import STEP, load_truth, upstream
from core import actions as act
from core.learner import MODEL_METRICS, Learner
from core.policy import Policy
from core.reference import Stats, _stage, load_replay, replay_policy
from core.scorer import SCORED_REPORTS, SCORED_TRANSFERS
from report.friction import friction_figures
from report.precision import precision_by_reason
from schemas.rows import DeadLetter

LIMITS = {"legit_held_share": 0.005, "legit_held_usd_share": 0.05,
          "max_user_share_of_legit_holds": 0.10}


def _ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp()
               * 1000)


def judge(transfers: list, kind_of, out: dict, capped: set, hold_ms: int) -> dict:
    f = friction_figures(transfers, kind_of, out[act.HOLDS], out[act.RESOLUTIONS], capped)
    frozen_at = {}
    for fz in out[act.FREEZES]:
        frozen_at[fz.address] = min(fz.frozen_at, frozen_at.get(fz.address, fz.frozen_at))
    # the ceiling: victim USD whose destination was frozen (a case outcome or a SCAM
    # verdict) before the end of a hold placed on it; no hold can refund the rest
    ceiling = sum(float(t.usd_value or 0.0) for t in transfers
                  if kind_of(t.transfer_id) == "scam"
                  and frozen_at.get(t.to_address, 1 << 62) < t.event_time + hold_ms)
    refunded = {r.transfer_id for r in out[act.RESOLUTIONS] if r.resolution == "REFUNDED"}
    held = {h.transfer_id for h in out[act.HOLDS]}
    v_usd = v_prev = v_held = 0.0
    n_v = n_prev = 0
    for t in transfers:
        if kind_of(t.transfer_id) != "scam":
            continue
        u = float(t.usd_value or 0.0)
        n_v += 1
        v_usd += u
        if t.transfer_id in held:
            v_held += u
        if t.transfer_id in refunded:
            n_prev += 1
            v_prev += u
    f.update(victim_n=n_v, victim_usd=round(v_usd, 2),
             victim_usd_prevented=v_prev / v_usd if v_usd else None,
             victim_count_prevented=n_prev / n_v if n_v else None,
             victim_usd_held=v_held / v_usd if v_usd else None,
             victim_usd_ceiling=ceiling / v_usd if v_usd else None)
    f["hold_precision"] = precision_by_reason(transfers, kind_of, out[act.HOLDS])
    f["within_limits"] = all(f[k] is not None and f[k] <= lim for k, lim in LIMITS.items())
    f.pop("legit_held_table")
    return f


def _policy(replay: Path, sets: list) -> Policy:
    """The replay's policy with ``--set FIELD=VALUE`` changes."""
    fields = {f.name: f.type for f in dataclasses.fields(Policy)}
    changes = {}
    for kv in sets:
        k, v = kv.split("=", 1)
        changes[k] = {"int": int, "float": float, "bool": lambda x: x == "true"}.get(
            fields[k], str)(v)
    return replay_policy(replay, dataclasses.replace(Policy(), **changes))


def _print_row(row: dict) -> None:
    tn, rp = row["tune"], row["report"]
    print(f"budget={row['budget']:<6} usd={row['budget_usd']:<5} floor={row['floor']} "
          f"loss={row['loss']:<7g} cap={row['cap']}/{row['cap_long']} | tune legit "
          f"{tn['legit_held_share']:.4f}/{tn['legit_held_usd_share']:.4f} "
          f"top {tn['max_user_share_of_legit_holds']:.2f} prevented "
          f"{tn['victim_usd_prevented']:.3f} | report legit "
          f"{rp['legit_held_share']:.4f}/{rp['legit_held_usd_share']:.4f} "
          f"top {rp['max_user_share_of_legit_holds']:.2f} prevented "
          f"{rp['victim_usd_prevented']:.3f}", file=sys.stderr, flush=True)


class _ManyBudgets(Learner):
    """The Learner once for many friction configurations: the model and its budget window
    do not depend on them, only the thresholds a version is published with do. Each
    published version is kept once per configuration with that configuration's
    thresholds (``self.versions[config]``)."""

    def __init__(self, policy: Policy, configs: list):
        super().__init__(policy)
        self.configs = configs
        self.versions: dict = {c: [] for c in configs}

    def publish(self, s, now: int):
        v = super().publish(s, now)
        for c in self.configs:
            budget, budget_usd, floor, loss = c
            if s.name != "transfer_risk":
                got = v
            elif (budget or budget_usd) and s.budget is not None:
                t, el = s.budget.thresholds(budget, budget_usd, floor, loss)
                got = v._replace(hold_threshold=t, hold_expected_loss=el)
            else:
                got = v._replace(hold_threshold=floor, hold_expected_loss=loss)
            self.versions[c].append(got)
        return v


def _learn_all(base: Policy, up: dict, configs: list) -> tuple:
    """One Learner pass (budget window on) for every configuration: (versions by config,
    the final model metrics)."""
    pol = dataclasses.replace(base, friction_budget=0.005)  # any: keeps the window
    learner = _ManyBudgets(pol, configs)
    st = STEP["Learner"]._replace(make=lambda policy, side: learner)
    learned = _stage(st, pol, up["side"], up["examples"], Stats())
    return learner.versions, learned[MODEL_METRICS]


def _runs(a, base: Policy, up: dict, halves: dict, kind_of, split: int) -> list:
    """One row per (budget, USD budget, floor, expected-loss floor, cap): the Learner once
    for all, then Score and Actions per configuration and cap, judged on both halves."""
    configs = [tuple(map(float, c.split(","))) for c in a.config] or list(itertools.product(
        *(list(map(float, x.split(","))) for x in (a.budgets, a.budgets_usd, a.floors,
                                                   a.losses))))
    t1 = time.perf_counter()
    if a.versions and a.versions.exists():  # an earlier run's Learner, same replay
        versions, metrics = pickle.loads(a.versions.read_bytes())
        configs = [c for c in configs if c in versions]
    else:
        versions, metrics = _learn_all(base, up, configs)
        if a.versions:
            a.versions.write_bytes(pickle.dumps((versions, metrics)))
    print(f"learner {time.perf_counter() - t1:.0f}s", file=sys.stderr, flush=True)
    results = []
    for c in configs:
        budget, budget_usd, floor, loss = c
        pol = dataclasses.replace(base, friction_budget=budget, friction_budget_usd=budget_usd,
                                  hold_threshold=floor, hold_expected_loss=loss,
                                  warn_threshold=min(floor, base.warn_threshold))
        vs = versions[c]
        thresholds = [(v.event_time, v.hold_threshold, v.hold_expected_loss) for v in vs
                      if v.model == "transfer_risk"]
        for cap, cap_long in itertools.product(map(int, a.caps.split(",")),
                                               map(int, a.caps_long.split(","))):
            t1 = time.perf_counter()
            p = dataclasses.replace(pol, friction_cap=cap, friction_cap_long=cap_long)
            m = _stage(STEP["Score"], p, up["side"], up["featured"], Stats(), side_value=vs)
            out = _stage(STEP["Actions"], p, up["side"],
                         m[SCORED_TRANSFERS] + m[SCORED_REPORTS] + up["facts"]
                         + up["blacklist"], Stats())
            capped = {s.featured.transfer.transfer_id for s in m[SCORED_TRANSFERS]
                      if s.capped}
            row = {"budget": budget, "budget_usd": budget_usd, "floor": floor, "loss": loss,
                   "cap": cap, "cap_long": cap_long,
                   "seconds": round(time.perf_counter() - t1, 1),
                   "threshold_at_split": next((x[1:] for x in reversed(thresholds)
                                               if x[0] < split), None),
                   "threshold_final": thresholds[-1][1:] if thresholds else None}
            for half, trs in halves.items():
                row[half] = judge(trs, kind_of, out, capped, p.hold_ms)
            row["roc_auc"] = {d["model"]: d.get("roc_auc") for d in metrics if d["final"]}
            results.append(row)
            _print_row(row)
    return results


def choose(results: list, tie: float) -> dict | None:
    """The configuration to pick from the tune half alone: within the limits, the most
    victim USD prevented; among those within ``tie`` of it, the fewest legitimate
    transfers held (then the least legitimate USD)."""
    ok = [r for r in results if r["tune"]["within_limits"]]
    if not ok:
        return None
    best = max(r["tune"]["victim_usd_prevented"] for r in ok)
    near = [r for r in ok if r["tune"]["victim_usd_prevented"] >= best - tie]
    return min(near, key=lambda r: (r["tune"]["legit_held_share"],
                                    r["tune"]["legit_held_usd_share"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replay", type=Path, required=True)
    ap.add_argument("--split", default="2018-04-01", help="first day of the report half")
    ap.add_argument("--budgets", default="0,0.0025,0.005")
    ap.add_argument("--caps", default="0,3,5,10")
    ap.add_argument("--floors", default="0.5,0.6,0.75")
    ap.add_argument("--caps_long", default="0", help="--friction_cap_long values")
    ap.add_argument("--versions", type=Path, help="a pickle of the Learner's versions per "
                    "configuration: written when absent, reused when present")
    ap.add_argument("--budgets_usd", default="0", help="shares of legitimate USD held")
    ap.add_argument("--losses", default="0", help="expected-loss thresholds (USD; 0: off)")
    ap.add_argument("--config", action="append", default=[], metavar="B,U,F,L",
                    help="one configuration (budget, USD budget, floor, expected-loss "
                         "floor) instead of the grid; repeatable")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a Policy field for every run, e.g. label_horizon_ms=86400000")
    ap.add_argument("--tie", type=float, default=0.001,
                    help="victim USD prevented (share) within which configurations tie; the "
                         "tie goes to the fewest legitimate transfers held")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    split = _ms(a.split)
    base = _policy(a.replay, a.set)
    truth = load_truth(a.replay)["TRANSFER"]
    inputs = load_replay(a.replay)
    transfers = {}
    for t in inputs["transfers"]:
        if type(t) is not DeadLetter:
            transfers.setdefault(t.transfer_id, t)

    def kind_of(tid):
        v = truth.get(tid)
        if v is None or v.detail == "laundering":
            return None
        return "scam" if v.is_scam else "legit"

    halves = {"tune": [t for t in transfers.values() if t.event_time < split],
              "report": [t for t in transfers.values() if t.event_time >= split]}
    t0 = time.perf_counter()
    up = upstream(inputs, base)
    print(f"upstream {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    results = _runs(a, base, up, halves, kind_of, split)
    chosen = choose(results, a.tie)
    summary = {"split": a.split, "limits": LIMITS, "results": results,
               "chosen_on_tune_half": chosen and {k: chosen[k] for k in (
                   "budget", "budget_usd", "floor", "loss", "cap", "cap_long")},
               "chosen_tune": chosen and chosen["tune"],
               "chosen_report": chosen and chosen["report"]}
    print(json.dumps({k: summary[k] for k in ("chosen_on_tune_half", "chosen_tune",
                                              "chosen_report")}, indent=1, default=str))
    if a.json:
        a.json.write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
