"""Models benchmark: cost of the Models step, and its quality on the simulator's data.

Cost (median of ``--runs`` runs, all in this one process, so ratios are comparable on a
noisy machine):

* ``baseline``: a bare ``StandardScaler() | LogisticRegression()``, ``predict_proba_one`` +
  ``learn_one`` per labelled transfer, on the same model input (``transfer_x``, built
  outside the timed loop);
* ``models_step``: the Models step itself (``core.models.Models`` through
  ``run_history``, exactly as the batch face and ``core.reference`` run it) over the
  featured transfers and their labels: per transfer one score (rule, model, reasons) and
  one test-then-train update; ``[model on]``: the model decides from the first label (no
  warm-up), so every score runs the model; ``[rules]``: ``use_models=False`` (the model
  still learns, in shadow); given as µs per (score + label) pair and as a ratio to the
  baseline's µs per (predict + learn) pair;
* ``--old-models FILE``: the same for another version of ``core/models.py`` (for
  before / after figures in one run);
* ``scam_verdict``: predict + learn per report (TF-IDF etc.), for the record.

Quality (``--sim DIR``, or ``--generate DIR`` to make one with the simulator): the decision
graph is replayed without Beam with ``core.reference``'s machines and routing: the
steps up to LabelJoin once, then Models and Actions per policy: rules only
(``use_models=False``) and with the models. Against ``truth.*`` it prints

* ``transfer_risk``: prequential ROC AUC (test-then-train at label time, from the step's
  own metrics) and, per hold threshold, the false-hold rate (legitimate transfers held /
  legitimate transfers), legitimate USD held, scam USD held and scam USD prevented (held,
  then refunded), with the false holds split by their first reason; the lowest threshold
  with a false-hold rate <= 0.5% is the operating point;
* ``scam_verdict``: precision and recall of SCAM verdicts against the reports' truth, and
  freezes of addresses that are not scams (report-bombing targets, merchants).

Run::

    PYTHONPATH=. .venv/bin/python bench/models_bench.py --sim DIR --runs 5 --json out.json
    PYTHONPATH=. .venv/bin/python bench/models_bench.py --generate /tmp/sim --no-quality
    PYTHONPATH=. .venv/bin/python bench/models_bench.py --eth DIR   # real data (issue 4)
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

from river import linear_model, preprocessing

from core import actions as act
from core.events import FeaturedTransfer
from core.graph import STEPS
from core.labels import SCAM_VERDICT, TRANSFER_RISK
from core.learner import MODEL_METRICS, VERSIONS, Learner
from core.machine import run_history
from core.models import new_model, report_x, transfer_x
from core.policy import Policy
from core.reference import Stats, _stage, run_steps
from core.scorer import SCORED_REPORTS, SCORED_TRANSFERS, Score
from schemas.codecs import find_input, read_records
from schemas.rows import DeadLetter
from transforms.side import load_replay, load_side, replay_policy

STEP = {st.label: st for st in STEPS}


# ------------------------------------------------------------------- a Beam-free replay
def upstream(inputs: dict, policy: Policy) -> dict:
    """core.reference's steps up to CounterpartyProfile (with LabelJoin): featured
    events, examples, facts."""
    clean = {k: [r for r in inputs.get(k, ()) if type(r) is not DeadLetter] for k in
             ("transfers", "reports", "outcomes", "blacklist")}
    side = load_side(policy)
    st = run_steps(clean, policy, Stats(), until="CounterpartyProfile", side=side)
    facts = [f for n in ("outcomes:address", "TransferLedger:facts", "ReportLedger:facts")
             for f in st[n]]
    return {"featured": st["CounterpartyProfile:featured"],
            "examples": st["CounterpartyProfile:examples"], "facts": facts,
            "blacklist": clean["blacklist"], "side": side}


def downstream(up: dict, policy: Policy) -> dict:
    """The Learner, then the Score step from its versions (outputs by tag, plus their
    seconds)."""
    t0 = time.perf_counter()
    learned = _stage(STEP["Learner"], policy, up["side"], up["examples"], Stats())
    m = _stage(STEP["Score"], policy, up["side"], up["featured"], Stats(),
               side_value=learned[VERSIONS])
    m[MODEL_METRICS] = learned[MODEL_METRICS]
    m["seconds"] = time.perf_counter() - t0
    return m


def actions(up: dict, m: dict, policy: Policy) -> dict:
    return _stage(STEP["Actions"], policy, up["side"],
                  m[SCORED_TRANSFERS] + m[SCORED_REPORTS] + up["facts"] + up["blacklist"],
                  Stats())


def load_truth(directory) -> dict:
    truth: dict = defaultdict(dict)
    path = find_input(directory, "truth")
    if path is not None:
        for t in read_records(path, "Truth"):
            if type(t) is not DeadLetter:
                truth[t.subject_type][t.subject_id] = t
    return truth


# ------------------------------------------------------------------------------ scoring
def evaluate(out: dict, truth: dict, scored: Optional[list] = None) -> dict:
    """Holds against the truth of transfers; verdicts and freezes against the truth."""
    t_truth = truth["TRANSFER"]
    legit = sum(1 for v in t_truth.values() if not v.is_scam)
    legit_usd = sum(v.usd_value or 0.0 for v in t_truth.values() if not v.is_scam)
    scam_usd = sum(v.usd_value or 0.0 for v in t_truth.values() if v.is_scam)
    refunded = {r.transfer_id for r in out[act.RESOLUTIONS] if r.resolution == "REFUNDED"}
    held_legit = held_legit_usd = held_scam_usd = prevented_usd = 0.0
    n_scam_held = 0
    why: dict = defaultdict(int)
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
            first = h.reasons[0] if h.reasons else "?"
            why[first.split("=")[0].split(":")[0]] += 1
    r_truth = truth["REPORT"]
    scam_reports = sum(1 for v in r_truth.values() if v.is_scam)
    tp = fp = 0
    for sr in out.get(SCORED_REPORTS, ()):
        if sr.verdict != "SCAM":
            continue
        tv = r_truth.get(sr.featured.report_in.report.report_id)
        if tv is not None and tv.is_scam:
            tp += 1
        else:
            fp += 1
    frozen = {f.address for f in out[act.FREEZES]}
    scam_addresses = {a for a, v in truth["ADDRESS"].items() if v.is_scam}
    scam_addresses |= {v.address for v in t_truth.values() if v.is_scam and v.address}
    bombed = {v.address for v in r_truth.values() if v.detail == "bombing" and v.address}
    return {
        "false_hold_rate": held_legit / legit if legit else 0.0,
        "false_holds": int(held_legit),
        "false_holds_by_reason": dict(why),
        "legit_usd_held_share": held_legit_usd / legit_usd if legit_usd else 0.0,
        "scam_usd": round(scam_usd, 2),
        "scam_usd_held": round(held_scam_usd, 2),
        "scam_usd_prevented": round(prevented_usd, 2),
        "scam_usd_held_share": held_scam_usd / scam_usd if scam_usd else 0.0,
        "scam_usd_prevented_share": prevented_usd / scam_usd if scam_usd else 0.0,
        "scam_transfers_held": n_scam_held,
        "scam_verdicts": tp + fp,
        "scam_verdict_precision": tp / (tp + fp) if tp + fp else None,
        "scam_verdict_recall": tp / scam_reports if scam_reports else None,
        "freezes": len(frozen),
        "non_scam_addresses_frozen": sorted(frozen - scam_addresses),
        "bombing_targets": len(bombed),
        "bombing_targets_frozen": len(bombed & frozen),
    }


THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99)


def quality(sim: Path, policy: Optional[Policy] = None, thresholds=THRESHOLDS) -> dict:
    base = replay_policy(sim, policy or Policy())
    inputs = load_replay(sim)
    truth = load_truth(sim)
    t0 = time.perf_counter()
    up = upstream(inputs, base)
    result: dict = {"upstream_seconds": round(time.perf_counter() - t0, 1)}
    for name, pol in (("rules", dataclasses.replace(base, use_models=False)),
                      ("models", base)):
        m = downstream(up, pol)
        final = {d["model"]: d for d in m[MODEL_METRICS] if d["final"]}
        sweep = {}
        for thr in sorted(set(thresholds) | {pol.hold_threshold}):
            p = dataclasses.replace(pol, hold_threshold=thr,
                                    warn_threshold=min(thr, pol.warn_threshold))
            a = actions(up, m, p)
            a[SCORED_REPORTS] = m[SCORED_REPORTS]
            sweep[thr] = evaluate(a, truth)
        ok = [t for t, r in sweep.items() if r["false_hold_rate"] <= 0.005]
        result[name] = {
            "models_step_seconds": round(m["seconds"], 1),
            "prequential": {k: {kk: final[k].get(kk) for kk in (
                "labels", "positives", "roc_auc", "precision", "recall", "usd_recall",
                "false_positive_rate", "model_at_fpr_0.005")} for k in final},
            "at_default": sweep[pol.hold_threshold],
            "operating_point": min(ok) if ok else None,
            "at_operating_point": sweep[min(ok)] if ok else None,
            "sweep": {t: {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()
                          if k in ("false_hold_rate", "scam_usd_held_share",
                                   "scam_usd_prevented_share", "legit_usd_held_share")}
                      for t, r in sweep.items()},
        }
    return result


def victim_payments(directory: Path, thresholds=(0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95),
                    max_held: float = 0.01, max_held_usd: float = 0.05) -> dict:
    """Issue 4's real-data judgement (a ``pipelines.convert_eth`` directory): share of
    victim-payment USD and count prevented (held, then refunded), rules only and with the
    models per hold threshold, and the best threshold with at most ``max_held`` of
    legitimate transfers and ``max_held_usd`` of their USD held. Legitimate = neither a
    victim payment nor flagged -> flagged (laundering)."""
    base = replay_policy(directory, Policy())
    t_truth = load_truth(directory)["TRANSFER"]
    up = upstream(load_replay(directory), base)
    legit = {k for k, v in t_truth.items() if not v.is_scam and v.detail != "laundering"}
    victim = {k for k, v in t_truth.items() if v.is_scam}
    n_l, usd_l = len(legit), sum(t_truth[k].usd_value or 0.0 for k in legit)
    n_v, usd_v = len(victim), sum(t_truth[k].usd_value or 0.0 for k in victim)

    def judge(a):
        refunded = {r.transfer_id for r in a[act.RESOLUTIONS] if r.resolution == "REFUNDED"}
        hl = hlu = n_p = usd_p = 0.0
        for h in a[act.HOLDS]:
            k = h.transfer_id
            if k in legit:
                hl += 1
                hlu += t_truth[k].usd_value or 0.0
            elif k in victim and k in refunded:
                n_p += 1
                usd_p += t_truth[k].usd_value or 0.0
        return {"legit_held": round(hl / n_l, 4), "legit_usd_held": round(hlu / usd_l, 4),
                "victim_usd_prevented": round(usd_p / usd_v, 4),
                "victim_count_prevented": round(n_p / n_v, 4),
                "within_limits": hl / n_l <= max_held and hlu / usd_l <= max_held_usd}

    out: dict = {"victim_payments": n_v, "victim_usd": round(usd_v, 2), "legit": n_l}
    for name, pol in (("rules", dataclasses.replace(base, use_models=False)),
                      ("models", base)):
        m = downstream(up, pol)
        final = {d["model"]: d.get("roc_auc") for d in m[MODEL_METRICS] if d["final"]}
        sweep = {}
        for thr in (thresholds if name == "models" else (pol.hold_threshold,)):
            p = dataclasses.replace(pol, hold_threshold=thr,
                                    warn_threshold=min(thr, pol.warn_threshold))
            sweep[thr] = judge(actions(up, m, p))
        ok = [t for t, r in sweep.items() if r["within_limits"]]
        best = max(ok, key=lambda t: sweep[t]["victim_usd_prevented"]) if ok else None
        out[name] = {"roc_auc": final, "sweep": sweep, "best_threshold": best,
                     "at_best": sweep.get(best)}
    return out


# --------------------------------------------------------------------------------- cost
def _step_events(up: dict, n: int) -> tuple[list, int, int]:
    """The first ``n`` featured transfers (by time) and the labels of those transfers."""
    trs = sorted((e for e in up["featured"] if type(e) is FeaturedTransfer),
                 key=lambda e: e.event_time)[:n]
    ids = {"T:" + e.transfer.transfer_id for e in trs}
    exs = [e for e in up["examples"] if e.model == TRANSFER_RISK and e.subject_id in ids]
    return trs + exs, len(trs), len(exs)


def _time(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _load_models_module(path: Path):
    spec = importlib.util.spec_from_file_location("models_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cost(up: dict, runs: int, n: int, policy: Policy, old: Optional[Path] = None) -> dict:
    events, n_tr, n_ex = _step_events(up, n)
    xs = [(transfer_x(e.x, policy), bool(e.y)) for e in events if type(e) is not FeaturedTransfer]

    def bare():
        model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        for x, y in xs:
            model.predict_proba_one(x)
            model.learn_one(x, y)

    variants = {"baseline StandardScaler|LogisticRegression": (bare, len(xs))}
    on = dataclasses.replace(policy, model_warmup_labels=0, model_min_negatives=0,
                             model_min_positives=0, model_sync_labels=False)
    labels = [e for e in events if type(e) is not FeaturedTransfer]
    featured = [e for e in events if type(e) is FeaturedTransfer]
    versions = [o[2] for o in run_history(Learner(on), TRANSFER_RISK, labels)
                if o[0] == VERSIONS]
    for mode, p in (("model on", on), ("rules", dataclasses.replace(
            policy, use_models=False))):
        def learn(p=p):
            run_history(Learner(p), TRANSFER_RISK, labels)

        def score(p=p):
            sc = Score(p)
            sc.bind(versions)
            state = sc.new_state(None)
            for e in featured:
                sc.on_event(state, e, e.event_time)
        variants[f"learner [{mode}]"] = (learn, max(len(labels), 1))
        variants[f"score [{mode}]"] = (score, max(len(featured), 1))
    rp = [(report_x(e.x), bool(e.y)) for e in up["examples"] if e.model == SCAM_VERDICT]
    while rp and len(rp) < 2000:  # few reports: cycle them
        rp = rp + rp

    def verdict():
        model = new_model(SCAM_VERDICT)
        for x, y in rp:
            model.predict_proba_one(x)
            model.learn_one(x, y)

    if rp:
        variants[SCAM_VERDICT + " predict+learn"] = (verdict, len(rp))
    times: dict = defaultdict(list)
    for _ in range(runs):  # interleaved: each run measures every variant once
        for name, (fn, count) in variants.items():
            times[name].append(_time(fn) / count * 1e6)
    res = {"transfers": n_tr, "labels": n_ex}
    for name, ts in times.items():
        res[name] = {"us_per_pair_median": round(statistics.median(ts), 1),
                     "runs": [round(t, 1) for t in ts]}
    base = res["baseline StandardScaler|LogisticRegression"]["us_per_pair_median"]
    for name in times:
        res[name]["ratio_to_baseline"] = round(res[name]["us_per_pair_median"] / base, 2)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", type=Path, help="a simulator replay directory (with truth.*)")
    ap.add_argument("--generate", type=Path, help="generate a replay directory here first")
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--transfers", type=int, default=20000,
                    help="transfers (and their labels) in the cost runs")
    ap.add_argument("--old-models", type=Path,
                    help="another core/models.py to time in the same run")
    ap.add_argument("--eth", type=Path,
                    help="also judge victim payments on a pipelines.convert_eth directory")
    ap.add_argument("--no-cost", action="store_true")
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args(argv)
    sim = a.sim
    if a.generate:
        import simulator

        simulator.generate(a.generate, users=a.users, days=a.days, seed=a.seed)
        sim = a.generate
    if sim is None and not a.eth:
        ap.error("--sim, --generate or --eth is required")
    if sim is None:
        a.no_cost = a.no_quality = True
    out: dict = {}
    if not a.no_cost:
        pol = replay_policy(sim, Policy())
        up = upstream(load_replay(sim), pol)
        out["cost"] = cost(up, a.runs, a.transfers, pol, a.old_models)
        print(json.dumps({"cost": out["cost"]}, indent=1))
        del up
    if not a.no_quality:
        out["quality"] = quality(sim)
        print(json.dumps({"quality": out["quality"]}, indent=1, default=str))
    if a.eth:
        out["eth"] = victim_payments(a.eth)
        print(json.dumps({"eth": out["eth"]}, indent=1, default=str))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
