"""Writing a backtest's ``metrics.json`` and ``report.html`` (with the case pages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from core.machine import gc_off
from report import cases, contacts, efficacy, pyramid, shadow
from report.drift import add_drift
from report.files import output
from report.friction import add_friction
from report.metrics import compute
from report.page import render_html
from report.precision import add_precision
from report.proactive import proactive_metrics, write_case_pages


def build_report(input_dir: str | Path, out_dir: str | Path, counters: Optional[dict] = None,
                 run: Optional[dict] = None, html: bool = True,
                 compare: Optional[str | Path] = None,
                 dest: Optional[str | Path] = None) -> dict:
    """Write ``metrics.json`` (and ``report.html`` and the case pages) of the backtest in
    ``out_dir`` into ``dest`` (default ``out_dir``); return the metrics."""
    # its rows stay alive until it ends: no collection traversing them (and the run's
    # kept inputs) again and again
    with gc_off():
        return _build(input_dir, out_dir, counters, run, html, compare, dest)


def _build(input_dir, out_dir, counters, run, html, compare, dest) -> dict:
    out_dir = Path(out_dir)
    dest = out_dir if dest is None else Path(dest)
    metrics, extras = compute(input_dir, out_dir, counters, run)
    add_friction(metrics, extras, out_dir)
    add_precision(metrics, extras)  # hold precision by reason
    add_drift(metrics, extras, out_dir)  # scores, threshold, precision per week
    pol = (run or {}).get("policy") or {}
    metrics["shadow"] = shadow.compare(out_dir, extras, pol, (run or {}).get("shadow_policy"))
    metrics["warning_efficacy"] = efficacy.from_files(input_dir, out_dir, extras,
                                                      float(pol.get("warning_holdout") or 0.0))
    # assessments and calls per day against their caps; the case files, read once
    extras["cases"] = output(out_dir, "cases")
    metrics["proactive"] = proactive_metrics(out_dir, (run or {}).get("policy"),
                                             extras["outreach"], extras["cases"])
    # the cases' money with the report's definitions (scam and honest apart)
    extras["case_data"] = cases.CaseData.of(extras, extras["cases"], pol.get("case_max_items"))
    metrics["proactive"]["cases"].update(cases.summaries(extras["case_data"], extras["cases"]))
    metrics["pyramid"] = pyramid.from_files(input_dir, extras, pol)  # rule 14
    metrics["contacts"] = contacts.from_extras(extras, pol)  # rules 11, 15
    extras["out_dir"] = out_dir
    cmp_metrics = None
    if compare is not None:
        cmp_metrics = json.loads((Path(compare) / "metrics.json").read_text(encoding="utf-8"))
        metrics["compared_with"] = str(compare)
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False,
                                                     default=str) + "\n", encoding="utf-8")
    if html:
        page = render_html(metrics, extras, cmp_metrics)
        (dest / "report.html").write_text(page, encoding="utf-8")
        write_case_pages(dest, extras["cases"], extras["case_data"])
    return metrics
