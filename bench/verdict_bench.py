"""Verdict bench (issue 11): does the Scam Verdict Model decide, and how well, after a warm
start from an earlier simulated month?

1. ``--prior DIR``: a simulated month before the live one (generated here if missing:
   seed ``--prior-seed``, ending where the live month starts). Its replay runs through
   ``core.reference``'s machines and the Learner's final state is snapshotted.
2. The live month (``--sim DIR``, the simulator's default run) is replayed warm-started
   from that snapshot, once per verdict warm-up setting, and once with the verdict rules
   only (warm-up never reached) for comparison on the same reports.

For each run: the share of verdicts the model decided, and SCAM precision / recall for
rules vs model, on honest reports (true scams and false reports by payers) and on the
report-bombing bursts; freezes of addresses that are not scams, bombing targets frozen, and
freezes triggered by a false report.

    PYTHONPATH=. .venv/bin/python bench/verdict_bench.py --sim DIR --prior DIR2 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.models_bench import STEP, load_truth, upstream
from core import actions as act
from core.labels import SCAM_VERDICT
from core.learner import SNAPSHOTS, VERSIONS
from core.policy import DAY, Policy
from core.reference import Stats, _stage
from core.scorer import SCORED_REPORTS, SCORED_TRANSFERS
from transforms.side import load_replay, replay_policy, warm_versions
from transforms.snapshots import snapshot_file, write_snapshot_bytes

NEVER = 10**9  # a warm-up no run reaches: the rules decide every verdict


def prior_snapshot(prior: Path, policy: Policy, where: Path) -> dict:
    """Replay ``prior`` (reference machines) and snapshot each model's final state into
    ``where``; returns labels learned per model."""
    pol = dataclasses.replace(replay_policy(prior, policy), model_snapshot_path=str(where))
    up = upstream(load_replay(prior), pol)
    learned = _stage(STEP["Learner"], pol, up["side"], up["examples"], Stats())
    out = {}
    for name, data in learned[SNAPSHOTS]:
        write_snapshot_bytes(data, snapshot_file(str(where), name))
    for ex in up["examples"]:
        c = out.setdefault(ex.model, Counter())
        c["labels"] += 1
        c["positives" if ex.y else "negatives"] += 1
    return {k: dict(v) for k, v in out.items()}


def judge(up: dict, m: dict, out: dict, truth: dict) -> dict:
    r_truth = truth["REPORT"]
    cls = {}
    for rid, v in r_truth.items():
        cls[rid] = "bombing" if v.detail == "bombing" else "honest"
    cells: dict = {}
    n_model = n_all = 0
    for sr in m[SCORED_REPORTS]:
        rid = sr.featured.report_in.report.report_id
        v = r_truth.get(rid)
        if v is None:
            continue
        n_all += 1
        src = "rules" if sr.model_version == "rules" else "model"
        n_model += src == "model"
        for key in ((src, cls[rid]), (src, "all"), ("any", cls[rid]), ("any", "all")):
            c = cells.setdefault(key, Counter())
            scam = sr.verdict == "SCAM"
            c["tp" if scam and v.is_scam else "fp" if scam else "fn" if v.is_scam else "tn"] \
                += 1
    q = {}
    for (src, kind), c in sorted(cells.items()):
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        q[f"{src}/{kind}"] = {"verdicts": sum(c.values()), "scam_verdicts": tp + fp,
                              "precision": tp / (tp + fp) if tp + fp else None,
                              "recall": tp / (tp + fn) if tp + fn else None}
    scam_addr = {a for a, v in truth["ADDRESS"].items() if v.is_scam}
    scam_addr |= {v.address for v in truth["TRANSFER"].values() if v.is_scam and v.address}
    bombed = {v.address for v in r_truth.values() if v.detail == "bombing" and v.address}
    false_rep = {rid for rid, v in r_truth.items() if v.detail == "false_report"}
    frozen = out[act.FREEZES]
    wrong = [f for f in frozen if f.address not in scam_addr]
    by_false = [f for f in frozen if any(
        r.startswith("verdict:SCAM report=") and r.split("=", 1)[1] in false_rep
        for r in f.reasons)]
    return {"verdicts": n_all, "model_share": n_model / n_all if n_all else None,
            "quality": q, "freezes": len(frozen), "freezes_not_scam": len(wrong),
            "freezes_not_scam_share": len(wrong) / len(frozen) if frozen else 0.0,
            "bombing_targets": len(bombed),
            "bombing_targets_frozen": len(bombed & {f.address for f in frozen}),
            "freezes_by_false_report": len(by_false),
            "false_reports": len(false_rep)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", type=Path, required=True)
    ap.add_argument("--prior", type=Path, required=True)
    ap.add_argument("--prior-seed", type=int, default=8)
    ap.add_argument("--settings", default="200:50:200,100:30:30,60:20:20,40:10:10",
                    help="verdict warm-up settings labels:positives:negatives, comma-separated")
    ap.add_argument("--cold", action="store_true",
                    help="no warm start: the live month alone (the prior is not used)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    import simulator

    live = json.loads((a.sim / "manifest.json").read_text())
    if not (a.prior / "manifest.json").exists():
        days = max(1, (live["end_ms"] - live["start_ms"]) // DAY)
        simulator.generate(a.prior, users=20000, days=days, seed=a.prior_seed,
                           start_ms=live["start_ms"] - days * DAY)
    truth = load_truth(a.sim)
    res: dict = {}
    with tempfile.TemporaryDirectory() as snap:
        if not a.cold:
            res["prior_labels"] = prior_snapshot(a.prior, Policy(), Path(snap))
            print(json.dumps({"prior_labels": res["prior_labels"]}), file=sys.stderr)
        base = replay_policy(a.sim, Policy(model_warm_start=None if a.cold else snap))
        up = upstream(load_replay(a.sim), base)
        runs = [("rules", dataclasses.replace(base, verdict_warmup_labels=NEVER))]
        for s in a.settings.split(","):
            w, pos, neg = map(int, s.split(":"))
            runs.append((s, dataclasses.replace(base, verdict_warmup_labels=w,
                                                verdict_min_positives=pos,
                                                verdict_min_negatives=neg)))
        exs = {k: [e for e in up["examples"] if (e.model == SCAM_VERDICT) == k]
               for k in (True, False)}
        # the transfer model does not depend on the verdict settings: learned once
        transfer_versions = _stage(STEP["Learner"], base, up["side"], exs[False],
                                   Stats())[VERSIONS]
        for name, pol in runs:
            learned = _stage(STEP["Learner"], pol, up["side"], exs[True], Stats())
            m = _stage(STEP["Score"], pol, up["side"], up["featured"], Stats(),
                       side_value=warm_versions(pol) + transfer_versions + learned[VERSIONS])
            out = _stage(STEP["Actions"], pol, up["side"],
                         m[SCORED_TRANSFERS] + m[SCORED_REPORTS] + up["facts"]
                         + up["blacklist"], Stats())
            res[name] = judge(up, m, out, truth)
            print(name, json.dumps(res[name], default=str), file=sys.stderr, flush=True)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
