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

import json
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from report.files import output
from report.html import render
from report.numbers import DAY_MS
from schemas.rows import CaseFile, Outreach

CASE_DIR = "cases"


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


def proactive_metrics(out_dir: str | Path, policy: Optional[dict] = None,
                      outreach: Optional[list] = None, cases: Optional[list] = None) -> dict:
    """Figures for metrics.json: assessments and calls per day against their caps, and a
    summary of the case files (``outreach``, ``cases``: the rows, when already read)."""
    out_dir = Path(out_dir)
    policy = policy or {}
    day_ms = int(policy.get("day_ms") or DAY_MS)
    outreach = output(out_dir, "outreach") if outreach is None else outreach
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
    cases = output(out_dir, "cases") if cases is None else cases
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


def page_name(case_id: str) -> str:
    """A file name that is safe whatever the id holds."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", case_id)[:80] + ".html"


def proactive_html(metrics: dict, out_dir: Optional[Path] = None,
                   cases: Optional[list] = None) -> str:
    """The report.html sections (escaped); the cases table links to the case pages
    (``cases``: the case files, when already read from ``out_dir``)."""
    m = metrics.get("proactive")
    if not m:
        return ""
    cases = None
    if out_dir is not None:
        rows = output(Path(out_dir), "cases") if cases is None else cases
        cases = sorted(rows, key=lambda x: (-x.usd_lost, x.opened_at, x.case_id))
    a, c, k = m["assessments"], m["calls"], m["cases"]
    return render("proactive.html", a=a, c=c, k=k,
                  assessments=[(d, n, a["per_day_cap"]) for d, n in a["per_day"].items()],
                  calls=[(d, v["asked"], v["made"], c["calls_per_day"])
                         for d, v in c["per_day"].items()],
                  triggers=", ".join(f"{t} {n}" for t, n in k["by_trigger"].items()),
                  cases=cases, case_dir=CASE_DIR, page_name=page_name, iso=_iso)


def _items(texts: list, fields: tuple) -> list:
    """Rows of a case file's JSON items: times as text, lists joined."""
    rows = []
    for it in (json.loads(t) for t in texts):
        rows.append(tuple(_iso(it.get(f)) if f == "at" else
                          ("; ".join(it[f]) if isinstance(it.get(f), list) else it.get(f))
                          for f in fields))
    return rows


# A case page's lists: (title, CaseFile field, table head, item fields)
CASE_SECTIONS = (
    ("Transfers to the suspect", "transfers",
     ["time", "transfer", "sender", "amount", "asset", "USD", "fate"],
     ("at", "transfer_id", "sender", "amount", "asset", "usd_value", "fate")),
    ("Reports", "reports",
     ["time", "report", "reporter", "category", "text", "claimed USD", "established"],
     ("at", "report_id", "reporter", "category", "text", "claimed_loss_usd", "established")),
    ("Verdicts", "verdicts",
     ["time", "report", "verdict", "score", "model version", "reasons"],
     ("at", "report_id", "verdict", "score", "model_version", "reasons")),
    ("Blacklist entries", "blacklist",
     ["time", "action", "source", "reason"], ("at", "action", "source", "reason")),
    ("Outreach about it", "outreach",
     ["time", "user", "kind", "channel"], ("at", "user", "kind", "channel")),
    ("Timeline", "timeline", ["time", "event"], ("at", "event")),
)


def case_page(c: CaseFile) -> str:
    """One case file as a standalone HTML page (everything escaped)."""
    freeze = None
    if c.freeze:
        f = json.loads(c.freeze)
        freeze = [(_iso(f.get("at")), f.get("verdict_score"), ", ".join(f.get("report_ids", [])),
                   "; ".join(f.get("reasons", [])))]
    sections = [(title, head, _items(getattr(c, name), fields), getattr(c, f"{name}_omitted"))
                for title, name, head, fields in CASE_SECTIONS]
    return render("case.html", c=c, iso=_iso, freeze=freeze, sections=sections)


def write_case_pages(out_dir: str | Path, cases: Optional[list] = None) -> int:
    """One page per case under ``out_dir/cases/`` (the pages of an earlier run there are
    removed first); returns how many. ``cases``: the case files, when already read."""
    out_dir = Path(out_dir)
    cases = output(out_dir, "cases") if cases is None else cases
    d = out_dir / CASE_DIR
    if d.is_dir():
        for old in d.glob("*.html"):
            old.unlink()
    if not cases:
        return 0
    d.mkdir(exist_ok=True)
    for c in cases:
        (d / page_name(c.case_id)).write_text(case_page(c), encoding="utf-8")
    return len(cases)
