"""report.html as a whole: the tables' rows, the charts and every section, put together
in the ``report.html`` template (:mod:`report.html` renders; each section's module gives
its own part)."""

from __future__ import annotations

from typing import Optional

from report import contacts, efficacy, friction, proactive, pyramid, shadow
from report.comparison import comparison
from report.html import iso, opt, pct, render, short, usd
from report.metrics import HOLD_CAUSES
from report.numbers import duration, share
from report.plots import plots


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
    sections = {"shadow": shadow.html_section(metrics.get("shadow")),
                "efficacy": efficacy.html_section(metrics.get("warning_efficacy")),
                "proactive": proactive.proactive_html(metrics, extras.get("out_dir"),
                                                     extras.get("cases")),
                "friction": friction.html_section(metrics.get("friction")),
                "pyramid": pyramid.html_section(metrics.get("pyramid")),
                "contacts": contacts.html_section(metrics.get("contacts"))}
    return render("report.html", m=metrics, s=metrics["summary"], run=metrics.get("run") or {},
                  imgs=plots(metrics, extras), rows=_rows(metrics, extras),
                  compare=comparison(metrics, compare) if compare else None,
                  sections=sections)
