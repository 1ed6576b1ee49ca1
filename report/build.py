"""Writing a backtest's ``metrics.json`` and ``report.html`` (with the case pages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from report import contacts, efficacy, pyramid, shadow
from report.files import output
from report.friction import add_friction
from report.metrics import compute
from report.page import render_html
from report.proactive import proactive_metrics, write_case_pages


def build_report(input_dir: str | Path, out_dir: str | Path, counters: Optional[dict] = None,
                 run: Optional[dict] = None, html: bool = True,
                 compare: Optional[str | Path] = None) -> dict:
    """Write ``metrics.json`` (and ``report.html``) into ``out_dir``; return the metrics."""
    out_dir = Path(out_dir)
    metrics, extras = compute(input_dir, out_dir, counters, run)
    add_friction(metrics, extras, out_dir)  # issue 11
    pol = (run or {}).get("policy") or {}
    metrics["shadow"] = shadow.compare(out_dir, extras, pol, (run or {}).get("shadow_policy"))
    metrics["warning_efficacy"] = efficacy.from_files(input_dir, out_dir, extras,
                                                      float(pol.get("warning_holdout") or 0.0))
    # issue 12: assessments and calls per day against their caps; the case files
    extras["cases"] = output(out_dir, "cases")  # read once: figures, section, pages
    metrics["proactive"] = proactive_metrics(out_dir, (run or {}).get("policy"),
                                             extras["outreach"], extras["cases"])
    metrics["pyramid"] = pyramid.from_files(input_dir, extras, pol)  # rule 14
    metrics["contacts"] = contacts.from_extras(extras, pol)  # rules 11, 15
    extras["out_dir"] = out_dir
    cmp_metrics = None
    if compare is not None:
        cmp_metrics = json.loads((Path(compare) / "metrics.json").read_text(encoding="utf-8"))
        metrics["compared_with"] = str(compare)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False,
                                                     default=str) + "\n", encoding="utf-8")
    if html:
        page = render_html(metrics, extras, cmp_metrics)
        (out_dir / "report.html").write_text(page, encoding="utf-8")
        write_case_pages(out_dir, extras["cases"])  # issue 12: one page per case
    return metrics
