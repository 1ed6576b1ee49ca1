"""The report's sections on proactive protection and investigations.

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

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from markupsafe import Markup

from report.cases import CASE_DIR, CaseData, case_rows, iso_s, page_name  # noqa: F401
from report.cases import write_case_pages as _write_pages
from report.files import output
from report.html import ENV
from report.numbers import DAY_MS
from report.sections import ORDERS, Page, section
from schemas.rows import Outreach


def _day(ms: int, day_ms: int = DAY_MS) -> str:
    start = ms - ms % day_ms
    return datetime.fromtimestamp(start / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


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


def proactive_html(metrics: dict, out_dir: Optional[Path] = None,
                   cases: Optional[list] = None, data: Optional[CaseData] = None) -> str:
    """The three sections (assessments, calls, case files) one after the other, escaped
    (``cases``: the case files, when already read from ``out_dir``)."""
    if not metrics.get("proactive"):
        return ""
    if cases is None and out_dir is not None:
        cases = output(Path(out_dir), "cases")
    return Markup("").join((assessments_html(metrics), calls_html(metrics),
                            cases_html(metrics, cases or [], data)))


def _macro(name: str):
    return getattr(ENV.get_template("proactive.html").module, name)


def assessments_html(metrics: dict) -> str:
    a = (metrics.get("proactive") or {}).get("assessments")
    if not a:
        return ""
    return _macro("assessments")(a, [(d, n, a["per_day_cap"]) for d, n in a["per_day"].items()])


def calls_html(metrics: dict) -> str:
    c = (metrics.get("proactive") or {}).get("calls")
    if not c:
        return ""
    return _macro("calls")(c, [(d, v["asked"], v["made"], c["calls_per_day"])
                               for d, v in c["per_day"].items()])


def cases_html(metrics: dict, cases: list, data: Optional[CaseData] = None) -> str:
    """The case files: totals with the report's definitions, and a table to filter and
    sort, linked to the case pages."""
    k = (metrics.get("proactive") or {}).get("cases")
    if not k:
        return ""
    d = data if data is not None else CaseData()
    triggers = ", ".join(f"{t} {n}" for t, n in k["by_trigger"].items())
    return _macro("cases")(k, triggers, case_rows(d, cases), d.truth is not None, iso_s)


@section("Daily risk assessments", ORDERS["Daily risk assessments"])
def _assessments(p: Page) -> str:
    return assessments_html(p.metrics)


@section("Call capacity", ORDERS["Call capacity"])
def _calls(p: Page) -> str:
    return calls_html(p.metrics)


@section("Case files", ORDERS["Case files"])
def _cases(p: Page) -> str:
    return cases_html(p.metrics, p.extras.get("cases") or [], p.extras.get("case_data"))


def write_case_pages(out_dir: str | Path, cases: Optional[list] = None,
                     data: Optional[CaseData] = None) -> int:
    """One page per case under ``out_dir/cases/`` (:func:`report.cases.write_case_pages`);
    ``cases``: the case files, when already read."""
    cases = output(Path(out_dir), "cases") if cases is None else cases
    return _write_pages(out_dir, cases, data)
