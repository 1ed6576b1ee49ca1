"""The report's sections on proactive protection and investigations (issue 12).

* **Daily risk assessments** (rule 11): assessments sent per event-time day against the cap
  ``assessments_per_day``.
* **Call capacity** (rule 12): calls asked for (every ``INTERVENTION``: those made on
  ``CALL`` and those downgraded to ``CHAT`` past the capacity) against calls made, per day.
* **Case files**: the list of cases (``cases.avro`` / ``cases.parquet``, the latest version
  of each), each linked to its own page ``cases/<case_id>.html``.

Everything that comes from data is escaped; the pages carry the report's content security
policy (no scripts, nothing fetched).
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from pipelines.htmlcell import cell
from schemas import codecs
from schemas.rows import CaseFile, Outreach

CASE_DIR = "cases"
DAY_MS = 86_400_000
_HEAD = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
         "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
         "img-src data:; style-src 'unsafe-inline'\">")


def _rows(out_dir: Path, name: str, record: str) -> list:
    p = codecs.find_input(out_dir, name)
    if p is None:
        return []
    return [r for r in codecs.read_records(p, record) if type(r).__name__ == record]


def _day(ms: int, day_ms: int = DAY_MS) -> str:
    start = ms - ms % day_ms
    return datetime.fromtimestamp(start / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _iso(ms: Optional[int]) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def is_downgraded_call(o: Outreach) -> bool:
    return o.kind == "INTERVENTION" and o.channel == "CHAT" and any(
        r.startswith("call_capacity:") for r in o.reasons)


def proactive_metrics(out_dir: str | Path, policy: Optional[dict] = None) -> dict:
    """Figures for metrics.json: assessments and calls per day against their caps, and a
    summary of the case files."""
    out_dir = Path(out_dir)
    policy = policy or {}
    day_ms = int(policy.get("day_ms") or DAY_MS)
    outreach = _rows(out_dir, "outreach", "Outreach")
    assess: Counter = Counter()
    asked: Counter = Counter()
    made: Counter = Counter()
    for o in outreach:
        d = _day(o.created_at, day_ms)
        if o.kind == "RISK_ASSESSMENT":
            assess[d] += 1
        if o.channel == "CALL":
            asked[d] += 1
            made[d] += 1
        elif is_downgraded_call(o):
            asked[d] += 1
    cap = policy.get("assessments_per_day")
    calls = policy.get("calls_per_day")
    cases = _rows(out_dir, "cases", "CaseFile")
    triggers: Counter = Counter()
    for c in cases:
        for t in c.triggers:
            triggers[t.split(":")[0]] += 1
    return {
        "assessments": {
            "per_day_cap": cap, "total": sum(assess.values()),
            "max_per_day": max(assess.values(), default=0),
            "days_at_cap": sum(1 for v in assess.values() if cap is not None and v >= cap),
            "cap_held": cap is None or all(v <= cap for v in assess.values()),
            "per_day": dict(sorted(assess.items())),
        },
        "calls": {
            "calls_per_day": calls, "asked": sum(asked.values()), "made": sum(made.values()),
            "downgraded_to_chat": sum(asked.values()) - sum(made.values()),
            "max_made_per_day": max(made.values(), default=0),
            "capacity_held": calls is None or all(v <= calls for v in made.values()),
            "per_day": {d: {"asked": asked[d], "made": made[d]} for d in sorted(asked)},
        },
        "cases": {
            "count": len(cases), "by_trigger": dict(sorted(triggers.items())),
            "victims": sum(c.victims for c in cases),
            "usd_lost": round(sum(c.usd_lost for c in cases), 2),
            "usd_refunded": round(sum(c.usd_refunded for c in cases), 2),
        },
    }


_e = cell  # a table cell's escaped text (pipelines/htmlcell.py)


def _table(head: list, rows: list, raw_cols: tuple = ()) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td class=l>{v if i in raw_cols else _e(v)}</td>"
                         for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def page_name(case_id: str) -> str:
    """A file name that is safe whatever the id holds."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", case_id)[:80] + ".html"


def proactive_html(metrics: dict, out_dir: Optional[Path] = None) -> str:
    """The report.html sections (escaped); the cases table links to the case pages."""
    m = metrics.get("proactive")
    if not m:
        return ""
    a, c, k = m["assessments"], m["calls"], m["cases"]
    P = ["<h2>Daily risk assessments (rule 11)</h2>",
         f"<p class='note'>{_e(a['total'])} assessments; cap {_e(a['per_day_cap'])} a day, "
         f"at most {_e(a['max_per_day'])} sent on one day, {_e(a['days_at_cap'])} days at the "
         f"cap; cap held: <b>{'yes' if a['cap_held'] else 'NO'}</b>. Each day's users with "
         "risk signals are ranked by expected loss; the Outreach cool-down applies.</p>",
         _table(["day (UTC)", "assessments", "cap"],
                [(d, n, a["per_day_cap"]) for d, n in a["per_day"].items()]),
         "<h2>Call capacity (rule 12)</h2>",
         f"<p class='note'>Calls asked for: {_e(c['asked'])}; made: {_e(c['made'])} "
         f"(capacity {_e(c['calls_per_day'])} a day, at most {_e(c['max_made_per_day'])} "
         f"on one day); downgraded to CHAT with the reason: {_e(c['downgraded_to_chat'])}. "
         f"Capacity held: <b>{'yes' if c['capacity_held'] else 'NO'}</b>. The highest "
         "expected losses are called first.</p>",
         _table(["day (UTC)", "calls asked", "calls made", "capacity"],
                [(d, v["asked"], v["made"], c["calls_per_day"])
                 for d, v in c["per_day"].items()]),
         "<h2>Case files</h2>",
         f"<p class='note'>{_e(k['count'])} cases (frozen, blacklisted, or with a SCAM / "
         f"REVIEW verdict): {_e(k['victims'])} senders, ${_e(k['usd_lost'])} lost, "
         f"${_e(k['usd_refunded'])} refunded. By trigger: "
         f"{_e(', '.join(f'{t} {n}' for t, n in k['by_trigger'].items()))}.</p>"]
    if out_dir is not None:
        cases = sorted(_rows(Path(out_dir), "cases", "CaseFile"),
                       key=lambda x: (-x.usd_lost, x.opened_at, x.case_id))
        rows = []
        for x in cases:
            link = (f"<a href='{CASE_DIR}/{html.escape(page_name(x.case_id))}'>"
                    f"{html.escape(x.address)}</a>")
            rows.append((link, _iso(x.opened_at), ", ".join(x.triggers), x.victims,
                         x.usd_lost, x.usd_refunded, len(x.reports)))
        P.append(_table(["suspect", "opened (UTC)", "why", "senders", "USD lost",
                         "USD refunded", "reports"], rows, raw_cols=(0,)))
    return "\n".join(P)


def _items(texts: list) -> list:
    return [json.loads(t) for t in texts]


def case_page(c: CaseFile, css: str = "") -> str:
    """One case file as a standalone HTML page (everything escaped)."""
    P = [_HEAD, f"<title>Case {_e(c.case_id)}</title><style>{css}</style></head><body>",
         "<p><a href='../report.html'>← report</a></p>",
         f"<h1>Case {_e(c.case_id)}</h1>",
         _table(["", ""], [
             ("suspect address", c.address), ("network", c.network),
             ("exchange account", c.user_id), ("opened", _iso(c.opened_at)),
             ("last event", _iso(c.updated_at)), ("why", ", ".join(c.triggers)),
             ("senders (victims)", c.victims), ("USD sent", c.usd_sent),
             ("USD lost (not held, or released)", c.usd_lost),
             ("USD refunded", c.usd_refunded), ("USD still held", c.usd_held)])]
    if c.freeze:
        f = json.loads(c.freeze)
        P.append("<h2>Freeze</h2>")
        P.append(_table(["frozen at", "verdict score", "reports", "reasons"], [
            (_iso(f.get("at")), f.get("verdict_score"), ", ".join(f.get("report_ids", [])),
             "; ".join(f.get("reasons", [])))]))

    def section(title, texts, omitted, head, fields):
        P.append(f"<h2>{html.escape(title)}</h2>")
        rows = []
        for it in _items(texts):
            rows.append(tuple(_iso(it.get(f)) if f == "at" else
                              ("; ".join(it[f]) if isinstance(it.get(f), list) else it.get(f))
                              for f in fields))
        P.append(_table(head, rows))
        if omitted:
            P.append(f"<p class='note'>{_e(omitted)} more left out (case_max_items).</p>")

    section("Transfers to the suspect", c.transfers, c.transfers_omitted,
            ["time", "transfer", "sender", "amount", "asset", "USD", "fate"],
            ("at", "transfer_id", "sender", "amount", "asset", "usd_value", "fate"))
    section("Reports", c.reports, c.reports_omitted,
            ["time", "report", "reporter", "category", "text", "claimed USD", "established"],
            ("at", "report_id", "reporter", "category", "text", "claimed_loss_usd",
             "established"))
    section("Verdicts", c.verdicts, c.verdicts_omitted,
            ["time", "report", "verdict", "score", "model version", "reasons"],
            ("at", "report_id", "verdict", "score", "model_version", "reasons"))
    section("Blacklist entries", c.blacklist, c.blacklist_omitted,
            ["time", "action", "source", "reason"], ("at", "action", "source", "reason"))
    section("Outreach about it", c.outreach, c.outreach_omitted,
            ["time", "user", "kind", "channel"], ("at", "user", "kind", "channel"))
    section("Timeline", c.timeline, c.timeline_omitted, ["time", "event"], ("at", "event"))
    P.append("</body></html>")
    return "\n".join(P)


def write_case_pages(out_dir: str | Path, css: str = "") -> int:
    """One page per case under ``out_dir/cases/`` (the pages of an earlier run there are
    removed first); returns how many."""
    out_dir = Path(out_dir)
    cases = _rows(out_dir, "cases", "CaseFile")
    d = out_dir / CASE_DIR
    if d.is_dir():
        for old in d.glob("*.html"):
            old.unlink()
    if not cases:
        return 0
    d.mkdir(exist_ok=True)
    for c in cases:
        (d / page_name(c.case_id)).write_text(case_page(c, css), encoding="utf-8")
    return len(cases)
