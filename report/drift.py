"""Drift in view, per week of event time (``metrics.json`` section ``"drift"`` and a plot
in ``report.html``): the score distribution's population stability index against the
first weeks, the hold threshold in force, and the precision and recall of the score tests'
holds (score, fan-in rule, expected loss) against the ground truth. The figures and their
reading are :mod:`transforms.drift`'s; a week past ``drift_psi_warn`` puts a warning at the
top of the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from report.columns import positions
from report.files import read_scores
from report.friction import hold_reason, read_versions_jsonl
from report.html import render
from report.numbers import DAY_MS, day
from report.scores import ScoreColumns
from report.sections import ORDERS, Page, section
from report.truth import kind_arrays, kinds
from transforms import drift as dr

WEEK_MS = 7 * DAY_MS
SCORE_TESTS = ("model", "rule", "expected_loss")


def weekly(scores, kind_of, held: set, versions: list, policy: dict,
           judged: Optional[tuple] = None) -> dict:
    """The weekly drift figures. ``scores``: ``report.files.read_scores`` columns (or its
    tuples); ``kind_of``: transfer id -> ``"scam"``, ``"legit"`` or neither
    (:func:`report.truth.kinds`), or ``judged``: its (scam, legit) arrays over the scores
    already; ``held``: ids of transfers the score tests held; ``versions``:
    ``versions.jsonl`` rows; ``policy``: the run's policy (field names)."""
    baseline_ms = int(policy.get("drift_baseline_ms") or 14 * DAY_MS)
    warn_at = float(policy.get("drift_psi_warn") or 0.25)
    floor = float(policy.get("hold_threshold") or 0.75)
    if not scores:
        return {}
    cols = ScoreColumns.of(scores)
    if judged is None:
        judged = kind_arrays(kind_of, cols.tid.to_pylist())
    scam, legit = judged
    is_held = positions(cols.tid, list(held)) >= 0
    model = cols.models()
    bins = np.minimum(dr.BINS - 1, np.maximum(0, (cols.score * dr.BINS).astype(np.int64)))
    t = cols.t
    first = int(t.min()) // DAY_MS * DAY_MS
    starts = first + (t - first) // WEEK_MS * WEEK_MS
    thr = sorted((v["valid_from"], v["hold_threshold"]) for v in versions
                 if v.get("model") == "transfer_risk")
    periods: dict = {}
    uniq, first_at = np.unique(starts, return_index=True)
    for start in uniq[np.argsort(first_at)].tolist():  # in the order the weeks come
        m = starts == start
        acc = periods[start] = dr.new_acc()  # the running figures of transforms.drift
        acc["hist"] = np.bincount(bins[m], minlength=dr.BINS).tolist()
        acc["n"] = int(np.count_nonzero(m))
        acc["model"] = int(np.count_nonzero(model & m))
        held_m = is_held & m
        acc["held"] = int(np.count_nonzero(held_m))
        acc["threshold"], acc["threshold_at"] = floor, int(t[m].max())
        acc["tp"] = int(np.count_nonzero(held_m & scam))
        acc["fp"] = int(np.count_nonzero(held_m & legit))
        acc["fn"] = int(np.count_nonzero(m & ~is_held & scam))
    for start, acc in periods.items():  # the threshold of the last version before its end
        last = [x for x in thr if x[0] < start + WEEK_MS]
        acc["threshold"] = last[-1][1] if last else floor
    rows = dr.drift_rows(periods, baseline_ms, warn_at)
    for r in rows:
        r["week"] = day(r.pop("start"))
    return {"period": "week", "baseline_days": baseline_ms / DAY_MS, "psi_warn": warn_at,
            "weeks": rows, "weeks_past_warning": [r["week"] for r in rows
                                                  if r["drift_warning"]]}


def add_drift(metrics: dict, extras: dict, out_dir) -> dict:
    """Put the weekly drift figures into ``metrics["drift"]`` (and a warning at the top of
    the report for each week past the PSI threshold)."""
    kind_of = kinds(extras["truth"].transfer)

    held = {h.transfer_id for h in extras["holds"] if hold_reason(h) in SCORE_TESTS}
    policy = (metrics.get("run") or {}).get("policy") or {}
    scores = extras.get("scores")  # read for the report already (report.metrics.compute)
    scores = read_scores(Path(out_dir)) if scores is None else scores
    d = weekly(scores, kind_of, held, read_versions_jsonl(out_dir), policy,
               judged=scores.judged(extras["truth"]) if scores else None)
    metrics["drift"] = d
    if d.get("weeks_past_warning"):
        metrics.setdefault("warnings", []).append(
            f"score drift: the score distribution of {len(d['weeks_past_warning'])} week(s) "
            f"moved past PSI {d['psi_warn']:g} against the first {d['baseline_days']:g} days "
            f"(from {d['weeks_past_warning'][0]}); see Drift")
    return d


def drift_plot(d: dict) -> str:
    """PSI per week (bars, the warning level dashed), and precision, recall and the hold
    threshold (lines), as a base64 PNG ('' without weeks)."""
    from datetime import datetime

    from report.plots import _pyplot, png

    rows = d.get("weeks") or []
    if not rows:
        return ""
    x = [datetime.strptime(r["week"], "%Y-%m-%d") for r in rows]
    fig, ax = _pyplot().subplots(figsize=(10, 3.2))
    ax.bar(x, [r["psi"] or 0.0 for r in rows], width=5, color="#e9c46a", label="PSI")
    ax.axhline(d["psi_warn"], color="#e76f51", ls="--", lw=1, label="warning")
    ax.set_ylabel("PSI")
    ax2 = ax.twinx()
    for key, color in (("precision", "#264653"), ("recall", "#2a9d8f"),
                       ("hold_threshold", "#8d99ae")):
        ax2.plot(x, [r[key] for r in rows], marker=".", color=color, label=key)
    ax2.set_ylim(0, 1.05)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8, ncol=5)
    ax.set_title("Drift per week: score PSI against the first weeks; precision and recall "
                 "of score-test holds; hold threshold")
    fig.autofmt_xdate()
    return png(fig)


def html_section(d: Optional[dict]) -> str:
    if not d:
        return ""
    return render("drift.html", d=d, plot=drift_plot(d))


@section("Drift", ORDERS["Drift"])
def _section(p: Page) -> str:
    return html_section(p.metrics.get("drift"))
