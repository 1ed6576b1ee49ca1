"""Models benchmark: cost of each model, and its quality on the simulator's data.

Cost: predictions + updates per second for ``transfer_risk`` and ``scam_verdict`` (median
of ``--runs`` runs, each one pass of score-then-learn over the same examples), printed with
the ratio to a plain ``StandardScaler() | LogisticRegression()`` measured in the same run
on the transfer examples.

Quality (``--sim DIR``, or ``--generate`` to make one with the simulator): the whole
decision graph is replayed without Beam, each keyed step's machine run over its keys'
sorted histories exactly as the batch face does (transforms/machine.py ``run_history``),
twice: rules only (``use_models=False``) and with the models. Against ``truth.*`` it prints

* ``transfer_risk``: prequential ROC AUC (test-then-train at label time, from the step's
  own metrics) and, per hold threshold, the false-hold rate (legitimate transfers held /
  legitimate transfers), scam USD held and scam USD prevented (held, then refunded); the
  lowest threshold with a false-hold rate <= 0.5% is the operating point;
* ``scam_verdict``: precision and recall of SCAM verdicts against the reports' truth
  (an honest report of a real scam), and whether any report-bombing target was frozen.

Run::

    PYTHONPATH=. .venv/bin/python bench/models_bench.py --runs 5
    PYTHONPATH=. .venv/bin/python bench/models_bench.py --generate /tmp/sim --users 20000 --days 30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

from river import linear_model, preprocessing

from schemas.blacklist import load_many
from schemas.codecs import find_input, normalize_address, read_records
from schemas.rows import DeadLetter
from transforms import actions as act
from transforms import ledger as led
from transforms.actions import Actions
from transforms.events import AddressFact, ReportIn
from transforms.labels import EXAMPLES, SCAM_VERDICT, TRANSFER_RISK, LabelJoin
from transforms.machine import run_history
from transforms.models import (
    MODEL_METRICS,
    SCORED_REPORTS,
    SCORED_TRANSFERS,
    Models,
    model_key,
    new_model,
    report_x,
    transfer_x,
)
from transforms.policy import Policy
from transforms.profiles import FEATURED, CounterpartyProfile, SenderProfile
from transforms.safetynet import ProfileBook, _address_of, _ledger_key, _user_of


# ------------------------------------------------------------------- a Beam-free replay
def _run_step(machine, keyed: list, tags: tuple) -> dict:
    """The batch face without Beam: group by key, run each key's history."""
    by_key: dict = defaultdict(list)
    for k, ev in keyed:
        by_key[k].append(ev)
    out: dict = {t: [] for t in tags}
    for k in sorted(by_key):
        for tag, _, v in run_history(machine, k, by_key[k]):
            if tag in out:
                out[tag].append(v)
    return out


def load_inputs(sim: Path) -> dict:
    rows = {}
    for name, rec in (("transfers", "Transfer"), ("reports", "ScamReport"),
                      ("outcomes", "CaseOutcome"), ("blacklist", "BlacklistUpdate"),
                      ("truth", "Truth")):
        p = find_input(sim, name)
        rows[name] = [] if p is None else [r for r in read_records(p, rec)
                                           if not isinstance(r, DeadLetter)]
    return rows


def replay(rows: dict, policy: Policy, sim: Path, upto_models: bool = False) -> dict:
    """Every step of transforms/safetynet.py, in order, on plain lists."""
    snap_path = find_input(sim, "blacklist_snapshot")
    snapshot = load_many([snap_path] if snap_path else [])[0]
    prof_path = find_input(sim, "profiles")
    profiles = ProfileBook.load(str(prof_path) if prof_path else None)

    direct, via, facts0, t_out, r_out = [], [], [], [], []
    for r in rows["reports"]:
        if r.transfer_id:
            via.append(r)
        elif r.suspect_address or r.suspect_user_id:
            direct.append(ReportIn(r, r.event_time, r.suspect_address or r.suspect_user_id))
    for o in rows["outcomes"]:
        if o.subject_type == "ADDRESS":
            facts0.append(AddressFact(normalize_address(o.subject_id), o.event_time,
                                      o.is_scam, o.case_id, o.subject_type, o.subject_id))
        elif o.subject_type == "TRANSFER":
            t_out.append(o)
        else:
            r_out.append(o)
    t_led = _run_step(led.Ledger(policy),
                      [(_ledger_key(e), e) for e in rows["transfers"] + t_out + via],
                      (led.TRANSFERS, led.REPORTS, led.FACTS))
    r_led = _run_step(led.Ledger(policy),
                      [(_ledger_key(e), e) for e in direct + t_led[led.REPORTS] + r_out],
                      (led.REPORTS, led.FACTS))
    facts = facts0 + t_led[led.FACTS] + r_led[led.FACTS]
    sender = _run_step(SenderProfile(policy, profiles.get),
                       [(_user_of(e), e) for e in t_led[led.TRANSFERS] + r_led[led.REPORTS]],
                       (FEATURED,))
    counter = _run_step(CounterpartyProfile(policy, snapshot),
                        [(_address_of(e), e) for e in sender[FEATURED]]
                        + [(b.address, b) for b in rows["blacklist"]], (FEATURED,))
    featured = counter[FEATURED]
    labels = _run_step(LabelJoin(policy), [(_address_of(e), e) for e in featured + facts],
                       (EXAMPLES,))
    models = _run_step(Models(policy),
                       [(model_key(e), e) for e in featured + labels[EXAMPLES]],
                       (SCORED_TRANSFERS, SCORED_REPORTS, MODEL_METRICS))
    models["facts"] = facts
    models["examples"] = labels[EXAMPLES]
    if upto_models:
        return models
    return actions(models, rows, policy)


def actions(models: dict, rows: dict, policy: Policy) -> dict:
    a = _run_step(Actions(policy),
                  [(_address_of(e), e) for e in models[SCORED_TRANSFERS]
                   + models[SCORED_REPORTS] + models["facts"] + rows["blacklist"]],
                  (act.HOLDS, act.RESOLUTIONS, act.FREEZES))
    a.update(models)
    return a


# ------------------------------------------------------------------------------ scoring
def evaluate(out: dict, truth: dict, rows: dict) -> dict:
    """Holds against the truth of transfers; verdicts against the truth of reports."""
    t_truth = truth["TRANSFER"]
    legit = sum(1 for v in t_truth.values() if not v.is_scam)
    legit_usd = sum(v.usd_value or 0.0 for v in t_truth.values() if not v.is_scam)
    scam_usd = sum(v.usd_value or 0.0 for v in t_truth.values() if v.is_scam)
    refunded = {r.transfer_id for r in out[act.RESOLUTIONS] if r.resolution == "REFUNDED"}
    held_legit = held_legit_usd = held_scam_usd = prevented_usd = 0.0
    n_scam_held = 0
    for h in out[act.HOLDS]:
        tv = t_truth.get(h.transfer_id)
        if tv is None:
            continue
        if tv.is_scam:
            held_scam_usd += tv.usd_value or 0.0
            n_scam_held += 1
            if h.transfer_id in refunded:
                prevented_usd += tv.usd_value or 0.0
        else:
            held_legit += 1
            held_legit_usd += tv.usd_value or 0.0
    r_truth = truth["REPORT"]
    scam_reports = sum(1 for v in r_truth.values() if v.is_scam)
    tp = fp = 0
    for sr in out[SCORED_REPORTS]:
        if sr.verdict != "SCAM":
            continue
        tv = r_truth.get(sr.featured.report_in.report.report_id)
        if tv is not None and tv.is_scam:
            tp += 1
        else:
            fp += 1
    frozen = {f.address for f in out[act.FREEZES]}
    bombed = {v.address for v in r_truth.values() if v.detail == "bombing" and v.address}
    return {
        "false_hold_rate": held_legit / legit if legit else 0.0,
        "legit_usd_held_share": held_legit_usd / legit_usd if legit_usd else 0.0,
        "scam_usd": round(scam_usd, 2),
        "scam_usd_held": round(held_scam_usd, 2),
        "scam_usd_held_share": held_scam_usd / scam_usd if scam_usd else 0.0,
        "scam_usd_prevented_share": prevented_usd / scam_usd if scam_usd else 0.0,
        "scam_transfers_held": n_scam_held,
        "scam_verdicts": tp + fp,
        "scam_verdict_precision": tp / (tp + fp) if tp + fp else None,
        "scam_verdict_recall": tp / scam_reports if scam_reports else None,
        "bombing_targets": len(bombed),
        "bombing_targets_frozen": len(bombed & frozen),
    }


def quality(sim: Path, thresholds=(0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)) -> dict:
    rows = load_inputs(sim)
    truth: dict = defaultdict(dict)
    for t in rows["truth"]:
        truth[t.subject_type][t.subject_id] = t
    result = {}
    for name, policy in (("rules", Policy(use_models=False)), ("models", Policy())):
        t0 = time.perf_counter()
        m = replay(rows, policy, sim, upto_models=True)
        final = {d["model"]: d for d in m[MODEL_METRICS] if d["final"]}
        sweep = {}
        for thr in (thresholds if name == "models" else (policy.hold_threshold,)):
            p = dataclasses.replace(policy, hold_threshold=thr,
                                    warn_threshold=min(thr, policy.warn_threshold))
            sweep[thr] = evaluate(actions(m, rows, p), truth, rows)
        ok = [t for t, r in sweep.items() if r["false_hold_rate"] <= 0.005]
        result[name] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "prequential": {k: {kk: final[k].get(kk) for kk in (
                "labels", "positives", "roc_auc", "precision", "recall", "usd_recall",
                "false_positive_rate", "model_at_fpr_0.005")} for k in final},
            "at_default": sweep.get(policy.hold_threshold),
            "operating_point": min(ok) if ok else None,
            "at_operating_point": sweep[min(ok)] if ok else None,
            "sweep": {t: {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()
                          if k in ("false_hold_rate", "scam_usd_held_share",
                                   "scam_usd_prevented_share", "legit_usd_held_share")}
                      for t, r in sweep.items()},
        }
    return result


# --------------------------------------------------------------------------------- cost
def _examples(sim: Optional[Path], n: int) -> tuple[list, list]:
    """(transfer features, report features) with labels: from the simulator's replay when
    given, else synthetic."""
    if sim is not None:
        rows = load_inputs(sim)
        m = replay(rows, Policy(use_models=False), sim, upto_models=True)
        tr = [(e.x, e.y) for e in m["examples"] if e.model == TRANSFER_RISK][:n]
        rp = [(e.x, e.y) for e in m["examples"] if e.model == SCAM_VERDICT][:n]
        return tr, rp
    import random

    rng = random.Random(1)
    words = "money scam lost platform withdraw refund seller fee address wallet".split()
    tr = [({"log_usd": rng.random() * 8, "fan_in_24h": rng.randint(1, 40),
            "dest_age_days": rng.random() * 5, "new_dest": float(rng.random() < .5),
            "n_24h": rng.randint(0, 5)}, rng.random() < .02) for _ in range(n)]
    rp = [({"_text": " ".join(rng.choice(words) for _ in range(20)), "_category": "OTHER",
            "reporter_paid_suspect": float(rng.random() < .5)}, rng.random() < .5)
          for _ in range(n)]
    return tr, rp


def _rate(make, xs: list, featurize, w: bool) -> float:
    model = make()
    t0 = time.perf_counter()
    for f, y in xs:
        x = featurize(f)
        model.predict_proba_one(x)
        if w:
            model.learn_one(x, y, w=3.0 if y else 1.0)
        else:
            model.learn_one(x, y)
    return len(xs) / (time.perf_counter() - t0)


def cost(sim: Optional[Path], runs: int, n: int) -> dict:
    tr, rp = _examples(sim, n)
    while len(rp) < min(n, 2000):  # few reports: cycle them
        rp = rp + rp
    plain = lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression()  # noqa
    res = {}
    for name, make, xs, fz, w in (
            ("baseline StandardScaler|LogisticRegression", plain, tr,
             lambda f: {k: float(v) for k, v in f.items() if not k.startswith("_")}, False),
            (TRANSFER_RISK, lambda: new_model(TRANSFER_RISK), tr, transfer_x, True),
            (SCAM_VERDICT, lambda: new_model(SCAM_VERDICT), rp, report_x, True)):
        rates = [_rate(make, xs, fz, w) for _ in range(runs)]
        res[name] = {"examples": len(xs), "per_second_median": round(statistics.median(rates)),
                     "runs": [round(r) for r in rates]}
    base = res["baseline StandardScaler|LogisticRegression"]["per_second_median"]
    for v in res.values():
        v["ratio_to_baseline"] = round(v["per_second_median"] / base, 3)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", type=Path, help="a simulator replay directory (with truth.*)")
    ap.add_argument("--generate", type=Path, help="generate a replay directory here first")
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args(argv)
    sim = a.sim
    if a.generate:
        import simulator

        simulator.generate(a.generate, users=a.users, days=a.days, seed=a.seed)
        sim = a.generate
    out = {"cost": cost(sim, a.runs, a.examples)}
    print(json.dumps({"cost": out["cost"]}, indent=1))
    if sim is not None and not a.no_quality:
        out["quality"] = quality(sim)
        print(json.dumps({"quality": out["quality"]}, indent=1, default=str))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
