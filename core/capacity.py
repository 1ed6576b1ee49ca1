"""Call capacity (decision rule 12), downstream of the Outreach step.

The team can make ``calls_per_day`` calls. The capacity is global across users, so it
cannot live in the per-user Outreach step: it is a global selection per event-time day.
Every ``CALL`` outreach goes into fixed windows of event time (``call_slot_ms``, by default
the whole ``day_ms``); at each window's end its calls are ranked by expected loss (highest
first; ties: earlier, then by id) and the first ones, up to the window's capacity, are
called. The rest are **downgraded** to ``CHAT`` with the reason recorded
(``call_capacity:...``): never dropped. Everything else passes through untouched.

Latency, stated honestly: a call is decided when the watermark passes the end of its window.
With the default one-day window the ranking is exact (the backtest's and the streaming
job's) but a call made at 00:05 waits until midnight. ``call_slot_ms`` shorter than the day
(e.g. 1h) cuts the wait to a slot; each slot then gets its share of the day's capacity
(:func:`slot_capacity`), so a busy slot cannot borrow from a quiet one and fewer calls than
the capacity may be made on a day of uneven demand; never more.

Late calls (behind the watermark, within ``lookback_ms``) arrive in a late pane after the
window's capacity was spent: all are downgraded, so the cap holds whatever the order.

The selection is one key per window (one group of the day's calls): calls are few (the
public figure: ~30,000 a year at a large exchange, under 100 a day) and off the transfer
path, so it is not a hot key of the main flow.

>>> from schemas.rows import Outreach
>>> calls = [Outreach(f"o{i}", f"u{i}", "INTERVENTION", "CALL", i, None, None, [], float(i))
...          for i in range(4)]
>>> called, down = select_calls(calls, 2)
>>> [o.outreach_id for o in called], [(o.outreach_id, o.channel) for o in down]
(['o3', 'o2'], [('o1', 'CHAT'), ('o0', 'CHAT')])
>>> down[0].reasons
['call_capacity:rank=3>2']
"""

from __future__ import annotations

from typing import Iterable

from core.policy import Policy
from schemas.rows import Outreach


def call_rank(o: Outreach) -> tuple:
    """Sort key: highest expected loss first, then earliest, then by id."""
    return (-(o.expected_loss_usd or 0.0), o.created_at, o.outreach_id)


def select_calls(calls: Iterable[Outreach], capacity: int) -> tuple[list, list]:
    """(called, downgraded): the ``capacity`` calls with the highest expected losses keep
    their CALL; the others become CHAT with the reason ``call_capacity:rank=R>C``. Both in
    rank order. Pure: what the Beam step and the reference both run per window."""
    ranked = sorted(calls, key=call_rank)
    called = ranked[:capacity]
    down = [downgrade(o, f"call_capacity:rank={i + 1}>{capacity}")
            for i, o in enumerate(ranked[capacity:], start=len(called))]
    return called, down


def downgrade(o: Outreach, reason: str) -> Outreach:
    return o._replace(channel="CHAT", reasons=list(o.reasons) + [reason])


def slot_capacity(calls_per_day: int, slots_per_day: int, slot: int) -> int:
    """The share of a day's calls of slot number ``slot`` (0-based) of the day: the
    capacity split evenly, the remainder going to the first slots.

    >>> [slot_capacity(10, 4, i) for i in range(4)]
    [3, 3, 2, 2]
    """
    base, extra = divmod(calls_per_day, slots_per_day)
    return base + (1 if slot < extra else 0)


def window_capacity(policy: Policy, window_start_ms: int) -> int:
    """The capacity of the call window starting at ``window_start_ms``."""
    slots = policy.day_ms // policy.call_slot_ms
    slot = (window_start_ms % policy.day_ms) // policy.call_slot_ms
    return slot_capacity(policy.calls_per_day, slots, slot)


def is_call(o: Outreach) -> bool:
    return o.channel == "CALL"


def split_calls(outreach: Iterable[Outreach], policy: Policy) -> dict:
    """The reference's face (no Beam): {window start: [calls]} and the rest."""
    by_window: dict = {}
    rest = []
    for o in outreach:
        if is_call(o):
            start = o.created_at - o.created_at % policy.call_slot_ms
            by_window.setdefault(start, []).append(o)
        else:
            rest.append(o)
    return {"windows": by_window, "rest": rest}


def apply_capacity(outreach: Iterable[Outreach], policy: Policy) -> list:
    """Rule 12 over a bounded history, without Beam: what
    :class:`transforms.daily.CallCapacity` outputs."""
    parts = split_calls(outreach, policy)
    out = list(parts["rest"])
    for start, calls in sorted(parts["windows"].items()):
        called, down = select_calls(calls, window_capacity(policy, start))
        out += called + down
    return out
