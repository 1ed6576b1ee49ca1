"""The report's HTML, rendered from the Jinja2 templates in ``report/templates``.

Autoescape is on, and every value a template prints is escaped with :func:`html.escape`
(the environment's ``finalize``), so anything that comes from data (addresses, ids, report
text, reasons) is escaped as it always was (``'`` as ``&#x27;``, ``"`` as ``&quot;``).

>>> str(render_string("<td>{{ x|cell }}</td><td>{{ y|cell }}</td>", x=1234.5, y="<b>"))
'<td>1,234.50</td><td>&lt;b&gt;</td>'
"""

from __future__ import annotations

import html
from typing import Any, Optional

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from report.numbers import duration, share
from report.plots import plots


def cell(x: Any) -> str:
    """A table cell's text: ``–`` for nothing, thousands separators for numbers (floats to
    the cent).

    >>> cell(None), cell(1234), cell(0.5), cell("<b>")
    ('–', '1,234', '0.50', '<b>')
    """
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.2f}"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return str(x)


def usd(x: Optional[float], none: str = "–") -> str:
    return none if x is None else f"${x:,.0f}"


def pct(x: Optional[float], none: str = "–") -> str:
    return none if x is None else f"{100 * x:.2f}%"


def short(a: Optional[str], n: int = 18) -> str:
    """A long address shortened to ``n`` characters, its start and end kept."""
    if a is None:
        return ""
    return a if len(a) <= n else a[: n - 6] + "…" + a[-5:]


def iso(ms: Optional[int]) -> str:
    """Event time to the minute, UTC ('' for nothing)."""
    if ms is None:
        return ""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def slug(title: str) -> str:
    """A heading's anchor: ``Holds by reason`` -> ``holds-by-reason``."""
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def opt(v: Any) -> str:
    """A policy option's value as typed on the command line."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def _escape(v: Any) -> Markup:
    return v if isinstance(v, Markup) else Markup(html.escape(str(v)))


ENV = Environment(loader=PackageLoader("report", "templates"), autoescape=True,
                  finalize=_escape, trim_blocks=True, lstrip_blocks=True,
                  undefined=StrictUndefined)
ENV.filters.update(cell=cell, usd=usd, pct=pct, short=short, iso=iso, slug=slug, opt=opt)
CSS = Markup(ENV.loader.get_source(ENV, "report.css")[0])


def render(template: str, **context) -> Markup:
    """The template ``template`` (under report/templates) rendered with ``context``."""
    return Markup(ENV.get_template(template).render(**context))


def render_string(source: str, **context) -> Markup:
    return Markup(ENV.from_string(source).render(**context))


def _freeze_rows(items) -> list:
    rows = []
    for f, _fr, delay, ok, (n_ref, usd_ref, n_legit) in items:
        rows.append((iso(f.frozen_at), short(f.address, 24), f.user_id,
                     "–" if delay is None else f"{delay:.2f}", "yes" if ok else "NO",
                     len(f.report_ids), n_ref, usd(usd_ref), n_legit,
                     "; ".join(f.reasons)[:160]))
    return rows


def _report_rows(extras: dict) -> list:
    """The first 30 reports (event time) with their verdicts."""
    vby = {v.report_id: v for v in extras["verdicts"]}
    reps = sorted(extras["reports"].values(), key=lambda r: (r.event_time, r.report_id))[:30]
    rows = []
    for r in reps:
        v = vby.get(r.report_id)
        rows.append((iso(r.event_time), r.report_id, r.reporter_user_id,
                     short(r.suspect_address or r.suspect_user_id or r.transfer_id, 24),
                     r.category, (r.description or "")[:200],
                     v.verdict if v else "–", f"{v.score:.2f}" if v else "–"))
    return rows


def _money_rows(s: dict) -> list:
    return [
        ("scam transfers", s["scam_transfers"], usd(s["scam_usd"])),
        ("… held", s["scam_held"], usd(s["scam_usd_held"])),
        ("… prevented (held → refunded)", s["scam_prevented"], usd(s["scam_usd_prevented"])),
        ("… recovered (to frozen address)", s["scam_recovered"],
         usd(s["scam_usd_recovered"])),
        ("… lost", s["scam_lost"], usd(s["scam_usd_lost"])),
        ("legitimate transfers", s["legit_transfers"], "–"),
        ("… held (friction)", s["legit_held"], usd(s["legit_held_usd"])),
        ("… refunded (wrongly)", s["legit_refunded"], usd(s["legit_refunded_usd"]))]


def _table_rows(metrics: dict) -> dict:
    """The rows of the tables that are computed per run: holds by reason, per typology, per
    month, the threshold sweep."""
    from report.metrics import HOLD_CAUSES

    label = dict(HOLD_CAUSES)
    return {
        "holds_by_reason": [
            (label[k], v.get("holds", 0), usd(v.get("usd", 0)), v.get("scam", 0),
             v.get("refunded", 0)) for k, v in metrics.get("holds_by_reason", {}).items()],
        "typology": [
            (k, v.get("scam_n", 0), usd(v.get("scam_usd", 0)), v.get("scam_held_n", 0),
             usd(v.get("prevented_usd", 0)), usd(v.get("recovered_usd", 0)),
             usd(v.get("lost_usd", 0)),
             pct(share(v.get("prevented_usd", 0) + v.get("recovered_usd", 0),
                       v.get("scam_usd", 0))))
            for k, v in metrics["money_by_typology"].items()],
        "month": [
            (k, v.get("transfers", 0), v.get("holds", 0), v.get("scam_n", 0),
             usd(v.get("scam_usd", 0)), usd(v.get("prevented_usd", 0)),
             usd(v.get("recovered_usd", 0)), usd(v.get("lost_usd", 0)),
             v.get("legit_held_n", 0), pct(share(v.get("legit_held_n", 0), v.get("legit_n", 0))),
             v.get("freezes", 0)) for k, v in metrics["by_month"].items()],
        "sweep": [
            (f"{r['threshold']:.2f}", r["held"], r["scam_held"], usd(r["scam_held_usd"]),
             r["prevented"], usd(r["prevented_usd"]), usd(r.get("recovered_usd")),
             r["legit_held"], pct(r["legit_held_share"]), pct(r["precision"]))
            for r in metrics["threshold_sweep"]],
    }


def _rows(metrics: dict, extras: dict) -> dict:
    """Every table's rows, for report.html."""
    s, run, rec = metrics["summary"], metrics.get("run") or {}, metrics["reconciliation"]
    false = [x for x in extras["freeze_rows"] if not x[3]]
    pol = run.get("policy_options") or as_options(run.get("policy") or {})
    return {
        **_table_rows(metrics),
        "money": _money_rows(s),
        "false_freezes": _freeze_rows(sorted(false, key=lambda x: -x[4][0]))
        if false and s["ground_truth"] == "truth" else [],
        "freezes": _freeze_rows(extras["freeze_rows"][:25]),
        "reports": _report_rows(extras),
        "inputs": [(k, v["read"], v["valid"], v["dead_lettered"],
                    "yes" if v["reconciles"] else "NO") for k, v in rec["inputs"].items()],
        "dead_letters": [(a, b, n) for (a, b), n in sorted(extras["dead_by"].items())],
        "policy": [(f"--{k}", opt(v)) for k, v in pol.items()],
    }


def as_options(pol: dict) -> dict:
    """An older metrics.json's policy (field names, milliseconds) in the CLI's terms."""
    return {(k[:-3] if k.endswith("_ms") else k): (duration(v) if k.endswith("_ms") else v)
            for k, v in pol.items()}


def render_html(metrics: dict, extras: dict, compare: Optional[dict] = None) -> str:
    """report.html: the figures of ``metrics``, the tables and charts of ``extras`` (from
    :func:`report.metrics.compute`), and the sections of friction, the shadow policy,
    warning efficacy and proactive protection."""
    from report import efficacy, friction, proactive, shadow
    from report.comparison import comparison

    sections = {"shadow": shadow.html_section(metrics.get("shadow")),
                "efficacy": efficacy.html_section(metrics.get("warning_efficacy")),
                "proactive": proactive.proactive_html(metrics, extras.get("out_dir")),
                "friction": friction.html_section(metrics.get("friction"))}
    return render("report.html", m=metrics, s=metrics["summary"], run=metrics.get("run") or {},
                  imgs=plots(metrics, extras), rows=_rows(metrics, extras),
                  compare=comparison(metrics, compare) if compare else None,
                  sections=sections)
