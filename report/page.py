"""report.html as a whole: the first screen, the table of contents and every section in page
order (:mod:`report.sections`; the page's own sections are registered here, the others by
their modules), rendered from the templates in ``report/templates``."""

from __future__ import annotations

from typing import Optional

from markupsafe import Markup

from report.cases import address_link, case_links
from report.comparison import comparison
from report.first import first_screen
from report.html import ENV, SCRIPT, iso, opt, pct, render, short, usd
from report.numbers import duration, share
from report.plots import plots
from report.sections import ORDERS, Page, rendered, section, toc

TOC_MARK = "<!--toc-->"
LATEST_FREEZES = 25


def _macro(name: str):
    return getattr(ENV.get_template("sections.html").module, name)


def _freeze_rows(items, links: dict) -> list:
    """(wrong, row) per freeze: wrong = not a known scam, or cleared later."""
    rows = []
    for f, _fr, delay, ok, refunds, cleared in items:
        n_ref, usd_ref, n_legit, usd_legit = refunds
        rows.append((not ok or bool(cleared), (
            iso(f.frozen_at), address_link(f.address, links),
            "–" if delay is None else f"{delay:,.1f}", "yes" if ok else "NO", cleared or "–",
            len(f.report_ids), f"{n_ref:,} ({usd(usd_ref)})",
            f"{n_legit:,} ({usd(usd_legit)})", "; ".join(f.reasons)[:100])))
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
        ("… lost (paid, not refunded)", s["scam_lost"], usd(s["scam_usd_lost"])),
        ("honest transfers", s["legit_transfers"], "–"),
        ("… held (friction)", s["legit_held"], usd(s["legit_held_usd"])),
        ("… refunded (wrongly)", s["legit_refunded"], usd(s["legit_refunded_usd"]))]


def _table_rows(metrics: dict) -> dict:
    """The rows of the tables per typology, per month and of the threshold sweep."""
    return {
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
    run, rec = metrics.get("run") or {}, metrics["reconciliation"]
    freezes = _freeze_rows(extras["freeze_rows"], case_links(extras.get("cases") or []))
    pol = run.get("policy_options") or as_options(run.get("policy") or {})
    from pipelines.options import option_help

    meaning = option_help()
    return {
        **_table_rows(metrics),
        "money": _money_rows(metrics["summary"]),
        "wrong_freezes": [row for wrong, row in freezes if wrong],
        "freezes": [row for _w, row in freezes[-LATEST_FREEZES:]][::-1],
        "freeze_flags": [w for w, _row in freezes[-LATEST_FREEZES:]][::-1],
        "reports": _report_rows(extras),
        "inputs": [(k, v["read"], v["valid"], v["dead_lettered"],
                    "yes" if v["reconciles"] else "NO") for k, v in rec["inputs"].items()],
        "dead_letters": [(a, b, n) for (a, b), n in sorted(extras["dead_by"].items())],
        "policy": [(f"--{k}", opt(v), meaning.get(k, "")) for k, v in pol.items()],
    }


def as_options(pol: dict) -> dict:
    """An older metrics.json's policy (field names, milliseconds) in the CLI's terms."""
    return {(k[:-3] if k.endswith("_ms") else k): (duration(v) if k.endswith("_ms") else v)
            for k, v in pol.items()}


def sweep_reading(metrics: dict) -> str:
    """The threshold sweep in two sentences: what raising the threshold costs in stopped
    money and saves in honest holds, and how this run's own holds differ from the sweep."""
    sw = metrics.get("threshold_sweep") or []
    if len(sw) < 2:
        return ""
    lo, hi = sw[0], sw[-1]

    def stop(r):
        return (r["prevented_usd"] or 0) + (r["recovered_usd"] or 0)

    best = max(stop(r) for r in sw)
    keep = [r for r in sw if stop(r) >= 0.95 * best]
    k = keep[-1]
    text = (f"From {lo['threshold']:.2f} to {hi['threshold']:.2f}, the scam money stopped "
            f"(prevented + recovered, est.) goes from {usd(stop(lo))} to {usd(stop(hi))} while "
            f"honest holds fall from {lo['legit_held']:,} to {hi['legit_held']:,}. The highest "
            f"threshold that keeps 95% of the most money stopped is {k['threshold']:.2f}: "
            f"{usd(stop(k))} stopped for {k['legit_held']:,} honest holds.")
    pol = (metrics.get("run") or {}).get("policy") or {}
    cur = pol.get("hold_threshold")
    row = next((r for r in sw if cur is not None and abs(r["threshold"] - cur) < 1e-9), None)
    s = metrics["summary"]
    if row is not None and (row["held"], row["legit_held"]) != (s["holds"], s["legit_held"]):
        text += (f" At this run's threshold ({cur:.2f}) the sweep counts {row['held']:,} holds "
                 f"({row['legit_held']:,} honest); the run placed {s['holds']:,} "
                 f"({s['legit_held']:,} honest): the sweep ignores the per-sender friction cap "
                 f"(--friction_cap {pol.get('friction_cap', '–')} holds a day: more become "
                 "warnings) and a friction budget's raised thresholds.")
    return text


# ---------------------------------------------------------------------- the page's sections
@section("Comparison", ORDERS["Comparison"])
def _comparison(p: Page) -> str:
    if not p.compare:
        return ""
    return _macro("comparison")(comparison(p.metrics, p.compare))


@section("Money", ORDERS["Money"])
def _money(p: Page) -> str:
    return _macro("money")(p.metrics["summary"], p.rows, p.imgs)


@section("Freezes", ORDERS["Freezes"])
def _freezes(p: Page) -> str:
    return _macro("freezes")(p.metrics["summary"], p.rows, p.imgs)


@section("Per typology", ORDERS["Per typology"])
def _typology(p: Page) -> str:
    return _macro("typology")(p.rows)


@section("Per month", ORDERS["Per month"])
def _month(p: Page) -> str:
    return _macro("month")(p.rows)


@section("Threshold sweep", ORDERS["Threshold sweep"])
def _sweep(p: Page) -> str:
    if not p.metrics.get("threshold_sweep"):
        return ""
    return _macro("sweep")(p.rows, p.imgs, sweep_reading(p.metrics))


@section("Models", ORDERS["Models"])
def _models(p: Page) -> str:
    mo = p.metrics.get("models")
    if not mo:
        return ""
    pol = (p.metrics.get("run") or {}).get("policy") or {}
    return _macro("models")(mo, pol.get("use_models", True))


@section("Outreach", ORDERS["Outreach"])
def _outreach(p: Page) -> str:
    return _macro("outreach")(p.metrics)


@section("Verdicts and reports", ORDERS["Verdicts and reports"])
def _verdicts(p: Page) -> str:
    return _macro("verdicts")(p.metrics, p.rows)


@section("Reconciliation", ORDERS["Reconciliation"])
def _reconciliation(p: Page) -> str:
    return _macro("reconciliation")(p.metrics["reconciliation"], p.rows)


@section("Run", ORDERS["Run"])
def _run(p: Page) -> str:
    return _macro("run")(p.metrics.get("run") or {}, p.rows)


def render_html(metrics: dict, extras: dict, compare: Optional[dict] = None) -> str:
    """report.html: the first screen, then the table of contents (every ``<h2>`` of the
    page) and every section with something to say, in page order."""
    page = Page(metrics, extras, compare, plots(metrics, extras), _rows(metrics, extras))
    html = str(render("report.html", m=metrics, s=metrics["summary"],
                      run=metrics.get("run") or {}, first=first_screen(metrics, compare),
                      sections=rendered(page), toc_mark=Markup(TOC_MARK), script=SCRIPT))
    nav = render("toc.html", toc=toc(html))
    return html.replace(TOC_MARK, str(nav), 1)
