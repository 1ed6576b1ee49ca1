"""Daily risk assessments (decision rule 11), between Actions and Outreach.

Once per event-time day, users whose day shows risk get a ``RISK_ASSESSMENT`` on ``APP``
naming its top reasons, highest expected loss first, from ``assessment_min_loss`` USD. The
day's number follows a rule (rule 15, :func:`daily_number`): ``assessment_share`` of the
day's active users (the users with a transfer that day), rounded up, never more than the
team's capacity ``assessments_per_day``. The selection is global across users, so this is
Beam windowing, not keyed state:

1. **Signals** (:func:`transfer_signals`, :class:`LossMemory`): each scored transfer
   becomes a small tuple of counts for its sender; each confirmed loss (``LossConfirmed``
   from Actions) counts as a *past scam loss* on its day and every day of the lookback
   after it (the keyed LossMemory step tells each day's count at the day's start).
2. **Per-user day** (``CombinePerKey`` in fixed windows of ``day_ms``): the counts add up
   (integers only, so any combining order gives the same sums).
3. **Candidates** (:func:`assess`): a user with at least one transfer that day and at
   least one signal, with the profile side data (a vulnerable profile is a signal).
4. **Top-K per window** (:class:`DayTop`, a combiner: combined in parts before one merge per
   day): it counts the day's active users and keeps the highest expected losses (ties:
   lower user id first), then keeps the day's number of them.
5. The chosen become ``OutreachRequest``s at the day's last millisecond and go into the
   Outreach step, which applies the cool-down and de-duplication (rule 6) and the user's
   own assessment cool-down (rule 15, ``assessment_cooldown``: again only after it, or on a
   new signal). The Outreach step is the only one that knows who was assessed (the graph
   is acyclic), so a slot the day gave to a user still cooling down is not given to
   another: the number sent is at most the day's number.

Signals of a day (thresholds are policy options): warnings (score at or above the warning
threshold, or a listed or look-alike destination), look-alike payments, payments to a
young destination (first seen less than a day before, already paid by others), to a
high-fan-in destination (``assessment_fan_in`` senders in 24h into an address first seen
less than ``young_dest`` before, as the fan-in rule: into an old address it is a merchant),
a sudden rise in amount (``amount_z`` at or above ``assessment_amount_z``),
``assessment_new_payees`` new payees in the day, a vulnerable profile, a past scam loss.
Expected loss of the day: the sum over its transfers of USD x risk score (x 1 for a listed
or look-alike destination), in cents.

Inputs are the scored transfers and the confirmed losses, never the Outreach step's own
outputs (the graph is acyclic). Latency: an assessment is a daily digest, decided when the
watermark passes the day's end. A candidate later than that (late data) misses the day's
ranking and is dropped by the window (the cap holds).

>>> from core.policy import Policy
>>> p = Policy()
>>> s = DaySignals(transfers=2, warnings=1, new_payees=1, loss_cents=150000)
>>> r = assess("u1", s, None, p, day_end=86_399_999)
>>> (r.kind, r.channel, r.event_time, r.expected_loss, r.reasons)
('RISK_ASSESSMENT', 'APP', 86399999, 1500.0, ('warnings=1', 'expected_loss_usd=1500.00'))
>>> assess("u2", DaySignals(transfers=3, new_payees=1), None, p, 86_399_999) is None
True
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple, Optional

from core.events import LossConfirmed, OutreachRequest, ScoredTransfer
from core.machine import Machine
from core.models import is_young_dest
from core.policy import Policy
from schemas.rows import UserProfile

KIND = "RISK_ASSESSMENT"
TOP_REASONS = 3


class DaySignals(NamedTuple):
    """One user's risk signals over one day: counts, added field by field."""

    transfers: int = 0
    warnings: int = 0
    lookalikes: int = 0
    young_destinations: int = 0
    high_fan_in: int = 0
    amount_rises: int = 0
    new_payees: int = 0
    past_losses: int = 0
    loss_cents: int = 0  # expected loss, USD cents


def add_signals(parts: Iterable[DaySignals]) -> DaySignals:
    """Field-by-field sum (associative and commutative: a Beam combiner)."""
    acc = [0] * len(DaySignals._fields)
    for s in parts:
        for i, v in enumerate(s):
            acc[i] += v
    return DaySignals(*acc)


def transfer_signals(st: ScoredTransfer, policy: Policy) -> DaySignals:
    """What one scored transfer adds to its sender's day."""
    ft = st.featured
    f = ft.features
    sure = bool(ft.blacklist) or bool(ft.lookalike_of)
    risk = 1.0 if sure else st.score
    age = f.get("dest_age_days", 99.0)
    young = age < 1.0 and f.get("log_dest_transfers", 0.0) > 0.0
    # many senders into an old address is a merchant; into a young one, a campaign
    crowded = (f.get("fan_in_24h", 0.0) >= policy.assessment_fan_in
               and is_young_dest(f, policy))
    return DaySignals(
        transfers=1,
        warnings=int(sure or st.score >= policy.warn_threshold),
        lookalikes=int(bool(ft.lookalike_of)),
        young_destinations=int(young),
        high_fan_in=int(crowded),
        amount_rises=int(f.get("amount_z", 0.0) >= policy.assessment_amount_z),
        new_payees=int(f.get("new_dest", 0.0) > 0.0),
        loss_cents=int(round(risk * ft.transfer.usd_value * 100)))


PAST_LOSSES = "past_losses"


class PastLosses(NamedTuple):
    """``n`` scam losses of ``user_id`` confirmed within the lookback count on the day of
    ``event_time``."""

    user_id: str
    event_time: int
    n: int


class LossMemory(Machine):
    """Keyed by user, between Actions and the assessments: the scam losses confirmed within
    the lookback (``LossConfirmed``), told to the daily assessments as a count per day: a
    new loss at its own time, then every loss still within the lookback at the start of
    each later day. A keyed step (not a window) so that a chunked replay carries the
    memory from chunk to chunk in its state checkpoint; it forgets a user whose losses are
    all older than the lookback.

    >>> from core.machine import run_history
    >>> from core.policy import DAY
    >>> m = LossMemory(Policy(lookback_ms=2 * DAY))
    >>> [(t, x.n) for _tag, t, x in run_history(m, "u", [
    ...     LossConfirmed("u", 10, "t1", "0xa"), LossConfirmed("u", DAY + 5, "t2", "0xa")])]
    [(10, 1), (86400000, 1), (86400005, 1), (172800000, 2), (259200000, 1)]
    """

    def __init__(self, policy: Policy):
        self.p = policy

    def new_state(self, key):
        return {"user": key, "losses": [], "next": None}

    def is_empty(self, s) -> bool:
        return not s["losses"]

    def next_deadline(self, s) -> Optional[int]:
        return s["next"]

    def advance(self, s, now: int) -> list:
        out = []
        while s["next"] is not None and s["next"] <= now:
            day = s["next"]
            s["losses"] = [t for t in s["losses"] if day < t + self.p.lookback_ms]
            if not s["losses"]:
                s["next"] = None
                break
            out.append((PAST_LOSSES, day, PastLosses(s["user"], day, len(s["losses"]))))
            s["next"] = day + self.p.day_ms
        return out

    def on_event(self, s, ev: LossConfirmed, now: int) -> list:
        s["losses"].append(now)
        if s["next"] is None:
            s["next"] = (now // self.p.day_ms + 1) * self.p.day_ms
        return [(PAST_LOSSES, now, PastLosses(s["user"], now, 1))]


def assess(user: str, s: DaySignals, profile: Optional[UserProfile], policy: Policy,
           day_end: int) -> Optional[OutreachRequest]:
    """A candidate assessment for ``user``'s day (ending at ``day_end``, its last ms), or
    None when the day shows no risk (or no transfer)."""
    if s.transfers == 0:
        return None
    named = [
        (s.past_losses, f"past_scam_losses={s.past_losses}"),
        (s.lookalikes, f"lookalike_payments={s.lookalikes}"),
        (s.warnings, f"warnings={s.warnings}"),
        (s.high_fan_in, f"high_fan_in_destinations={s.high_fan_in}"),
        (s.young_destinations, f"young_destinations={s.young_destinations}"),
        (s.amount_rises, f"amount_rises={s.amount_rises}"),
        (s.new_payees >= policy.assessment_new_payees, f"new_payees={s.new_payees}"),
        (profile is not None and profile.vulnerable, "vulnerable_user"),
    ]
    reasons = [text for hit, text in named if hit]
    loss = s.loss_cents / 100.0
    if not reasons or loss < policy.assessment_min_loss:
        return None
    return OutreachRequest(user, day_end, KIND, "APP", None, None,
                           tuple(reasons[:TOP_REASONS]) + (f"expected_loss_usd={loss:.2f}",),
                           (), loss)


def rank_key(req: OutreachRequest) -> tuple:
    """Smallest first: highest expected loss (in cents: exact), then lower user id."""
    return (-int(round((req.expected_loss or 0.0) * 100)), req.user_id)


def top_assessments(candidates: Iterable[OutreachRequest], k: int) -> list:
    """The day's ``k`` highest expected losses (pure: the reference and the tests)."""
    return sorted(candidates, key=rank_key)[:k]


def daily_number(policy: Policy, active: int) -> int:
    """How many risk assessments a day with ``active`` active users sends at most: the
    share of them, rounded up, within the capacity.

    >>> p = Policy(assessment_share=0.0025, assessments_per_day=50)
    >>> daily_number(p, 2900), daily_number(p, 100_000), daily_number(p, 0)
    (8, 50, 0)
    """
    return min(policy.assessments_per_day, math.ceil(policy.assessment_share * active - 1e-9))


class DayTop:
    """The day's selection as a combiner's four functions (pure; :mod:`transforms.daily`
    wraps them in a Beam ``CombineFn``). An input is ``(active, candidate or None)``; the
    accumulator ``[active users, candidates]`` keeps at most the capacity of candidates."""

    def __init__(self, policy: Policy):
        self.p = policy

    def create(self) -> list:
        return [0, []]

    def add(self, acc: list, item: tuple) -> list:
        acc[0] += item[0]
        if item[1] is not None:
            acc[1].append(item[1])
            if len(acc[1]) > 2 * self.p.assessments_per_day:
                acc[1] = top_assessments(acc[1], self.p.assessments_per_day)
        return acc

    def merge(self, accs: Iterable[list]) -> list:
        out = self.create()
        for a in accs:
            out[0] += a[0]
            out[1] = top_assessments(out[1] + a[1], self.p.assessments_per_day)
        return out

    def extract(self, acc: list) -> list:
        return top_assessments(acc[1], daily_number(self.p, acc[0]))


def daily_assessments(scored: Iterable[ScoredTransfer], losses: Iterable[PastLosses],
                      policy: Policy, profile_of: Callable[[str], Optional[UserProfile]]
                      ) -> list[OutreachRequest]:
    """Rule 11 over a bounded history without Beam (the reference): the requests that
    :class:`transforms.daily.Assessments` sends to the Outreach step."""
    d = policy.day_ms
    days: dict = {}
    for st in scored:
        k = (st.featured.transfer.user_id, st.event_time // d)
        days.setdefault(k, []).append(transfer_signals(st, policy))
    for m in losses:
        days.setdefault((m.user_id, m.event_time // d), []).append(
            DaySignals(past_losses=m.n))
    top = DayTop(policy)
    by_day: dict = {}
    for (user, day), parts in days.items():
        s = add_signals(parts)
        c = assess(user, s, profile_of(user), policy, (day + 1) * d - 1)
        top.add(by_day.setdefault(day, top.create()), (int(s.transfers > 0), c))
    out = []
    for day in sorted(by_day):
        out += top.extract(by_day[day])
    return out


__all__ = ["DaySignals", "DayTop", "assess", "daily_assessments", "daily_number",
           "top_assessments",
           "transfer_signals", "LossMemory", "PastLosses"]
