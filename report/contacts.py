"""How often users are contacted (rules 6, 11, 15): the report's figures and section.

* **Contacts per 1,000 active users per week, by kind**: weeks are 7-day blocks of event
  time from the day of the first transfer; a week's active users are the distinct senders
  of its transfers; a week shorter than 7 days (the replay's end) is marked partial.
* **Risk assessments**: the share of each week's active users assessed (the issue's target:
  at most 1%), and how often one user is assessed: the most days of any 7 on which a user
  was assessed, and how many users were assessed on more than 1 and more than 2 days of
  any 7.
* **Users contacted repeatedly**: users with 3 or more contacts of any kind within one week,
  and the most contacts one user got in a week.

>>> days_in_any_window([0, 1, 2, 9, 10], 7)
3
>>> days_in_any_window([0, 7, 14], 7)
1
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from typing import Optional

import numpy as np

from report.columns import TransferColumns
from report.html import render
from report.numbers import DAY_MS, r
from report.sections import ORDERS, Page, section

WEEK_DAYS = 7
ASSESSMENT = "RISK_ASSESSMENT"


def days_in_any_window(days: list, width: int) -> int:
    """The most of ``days`` (day numbers) inside any ``width`` consecutive days."""
    ds = sorted(set(days))
    best = 0
    for i, d in enumerate(ds):
        best = max(best, bisect.bisect_left(ds, d + width) - i)
    return best


def _weeks(trs: TransferColumns, day_ms: int) -> tuple[int, dict, int]:
    """(first day, week -> active users, last day)."""
    days = trs.t // day_ms
    first, last = int(days.min()), int(days.max())
    weeks = (days - first) // WEEK_DAYS
    users = trs.user.codes.astype(np.int64) + 1  # 0: None
    active = {}
    for w in np.unique(weeks).tolist():  # the distinct senders of each week
        seen = np.bincount(users[weeks == w], minlength=len(trs.user.names) + 1)
        active[w] = int(np.count_nonzero(seen))
    return first or 0, active, last or 0


def measure(transfers: dict, outreach: list, day_ms: int = DAY_MS) -> dict:
    """The figures for metrics.json (``contacts``); ``transfers``: the report's
    :class:`report.columns.TransferColumns`, or a dict of rows by id."""
    if not transfers:
        return {}
    first, active, last = _weeks(TransferColumns.of(transfers), day_ms)
    per_week: dict = defaultdict(Counter)
    user_week: Counter = Counter()
    assessed_days: dict = defaultdict(list)
    assessed_week: dict = defaultdict(set)
    for o in outreach:
        d = o.created_at // day_ms
        w = (d - first) // WEEK_DAYS
        per_week[w][o.kind] += 1
        user_week[(o.user_id, w)] += 1
        if o.kind == ASSESSMENT:
            assessed_days[o.user_id].append(d)
            assessed_week[w].add(o.user_id)
    weeks = []
    for w in sorted(active):
        n = active[w]
        weeks.append({"week": w, "days": min(WEEK_DAYS, last - first - w * WEEK_DAYS + 1),
                      "active_users": n,
                      "per_1000_active": {k: r(1000 * v / n, 2)
                                          for k, v in sorted(per_week[w].items())},
                      "assessed_share": r(len(assessed_week[w]) / n, 6)})
    spread = {u: days_in_any_window(ds, WEEK_DAYS) for u, ds in assessed_days.items()}
    full = [x for x in weeks if x["days"] == WEEK_DAYS] or weeks
    repeated = {u for (u, _w), c in user_week.items() if c >= 3}
    return {
        "weeks": weeks,
        "assessments": {
            "users": len(assessed_days),
            "max_assessed_share_of_week": max(x["assessed_share"] for x in full),
            "max_days_of_any_7": max(spread.values(), default=0),
            "users_on_more_than_1_day_of_any_7": sum(1 for v in spread.values() if v > 1),
            "users_on_more_than_2_days_of_any_7": sum(1 for v in spread.values() if v > 2)},
        "repeated": {"users_3_or_more_in_a_week": len(repeated),
                     "max_contacts_in_a_week": max(user_week.values(), default=0)},
    }


def from_extras(extras: dict, policy: dict) -> dict:
    return measure(extras["transfers"], extras["outreach"],
                   int(policy.get("day_ms") or DAY_MS))


def html_section(fig: Optional[dict]) -> str:
    if not fig:
        return ""
    kinds = sorted({k for w in fig["weeks"] for k in w["per_1000_active"]})
    rows = [(w["week"] + 1, w["days"], w["active_users"],
             *[w["per_1000_active"].get(k, 0) for k in kinds],
             f"{100 * w['assessed_share']:.2f}%") for w in fig["weeks"]]
    return render("contacts.html", fig=fig, kinds=kinds, rows=rows)


@section("Contacts per user", ORDERS["Contacts per user"])
def _section(p: Page) -> str:
    return html_section(p.metrics.get("contacts"))
