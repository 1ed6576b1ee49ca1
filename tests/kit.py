"""Helpers for the machine-level tests: build the events a keyed step receives and read its
outputs. No Beam: each test runs a pure machine (``transforms/``) in milliseconds.

Times come from ``tests.scenario.at``; addresses from ``tests.scenario.addr``.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Iterable, Optional

from core.events import (
    FeaturedReport,
    FeaturedTransfer,
    LossConfirmed,
    OutreachRequest,
    ReportIn,
    ScoredReport,
    ScoredTransfer,
)
from core.machine import Machine, step
from core.policy import Policy
from tests.scenario import report, transfer

P = Policy(use_models=False, assessments_per_day=0,  # rules 1-10 alone (no rule 11,
           hold_escalation=False)  # no rule 14)
LOW = 0.05  # a score below every threshold


def scored(tid: str, t: int, user: str, dest: str, score: float = LOW,
           blacklist: Optional[tuple] = None, lookalike_of: Optional[str] = None,
           reasons: tuple = ()) -> ScoredTransfer:
    """The transfer as Actions receives it: features, list hits and the score."""
    ft = FeaturedTransfer(transfer(tid, t, user, dest), t, {},
                          blacklist=blacklist,
                          list_version="snap-1" if blacklist else None,
                          lookalike_of=lookalike_of)
    return ScoredTransfer(ft, t, score, "rules", reasons)


def scored_report(rid: str, t: int, reporter: str, suspect: str,
                  verdict: str = "NOT_SCAM", score: float = 0.1) -> ScoredReport:
    ri = ReportIn(report(rid, t, reporter, suspect=suspect), t, suspect)
    return ScoredReport(FeaturedReport(ri, t, {}), t, score, verdict, "rules")


def request(user: str, t: int, kind: str = "WARNING", tid: Optional[str] = "t",
            address: Optional[str] = "0xdest", channel: str = "APP") -> OutreachRequest:
    return OutreachRequest(user, t, kind, "CHAT" if kind == "SILENT_SUFFERER" else channel,
                           tid, address)


def loss(user: str, t: int, tid: str, address: str = "0xscam") -> LossConfirmed:
    return LossConfirmed(user, t, tid, address)


def feed(machine: Machine, key: Any, events: Iterable[Any], until: Optional[int] = None,
         state: Any = None) -> tuple[Any, list]:
    """Feed ``events`` in the order given (as the streaming face does), then, if ``until``
    is set, fire every deadline due by then. Returns (state, outputs)."""
    if state is None:
        state = machine.new_state(key)
    out: list = []
    for ev in events:
        state, more = step(machine, key, state, ev)
        out.extend(more)
    if until is not None:
        out.extend(machine.advance(state, until))
        if machine.is_empty(state):
            state = machine.new_state(key)
    return state, out


def run_checked(machine: Machine, key: Any, events: Iterable[Any], check: Callable,
                until: Optional[int] = None, state: Any = None) -> tuple[Any, list]:
    """Like :func:`feed`, with ``check(state, now)`` after every step; the timers up to
    ``until`` fire one at a time at the machine's next deadline, as the stream face's
    timer does (checked after each firing, and again on a fresh state after a reset), and
    each deadline must come after the last one fired. Returns (state, outputs)."""
    state = machine.new_state(key) if state is None else state
    out: list = []
    for ev in events:
        state, more = step(machine, key, state, ev)
        out.extend(more)
        check(state, machine.time_of(ev))
    last = None
    while until is not None:
        d = machine.next_deadline(state)
        if d is None or d > until:
            break
        assert last is None or d > last  # every deadline due by the last one has fired
        last = d
        out.extend(machine.advance(state, d))
        check(state, d)
        if machine.is_empty(state):
            state = machine.new_state(key)
            check(state, d)
    return state, out


def tagged(out: list, tag: str) -> list:
    """The values of the outputs with ``tag``, in output order."""
    return [v for g, _, v in out if g == tag]


def stamped(out: list, tag: str) -> list:
    """(time, value) of the outputs with ``tag``, in output order."""
    return [(t, v) for g, t, v in out if g == tag]


def snapshot_models(states: dict, path: str, at: Optional[int] = None) -> str:
    """Write one snapshot file holding every model in ``states`` (``{name: ModelState}``)
    to ``path``. Returns ``path``."""
    from core.models import snapshot_bytes  # River: lazily
    from transforms.snapshots import write_snapshot_bytes

    return write_snapshot_bytes(snapshot_bytes(states, at), path)


class Cell:
    """An in-memory read-modify-write cell of bytes, as the runner keeps a ``head``."""

    def __init__(self):
        self.raw = None

    def read(self):
        return self.raw

    def write(self, raw: bytes) -> None:
        self.raw = raw

    def clear(self) -> None:
        self.raw = None


class Bag:
    """An in-memory bag, each item pickled as Beam's PickleCoder would."""

    def __init__(self):
        self.raw: list = []

    def read(self):
        return (pickle.loads(r) for r in self.raw)

    def add(self, item) -> None:
        self.raw.append(pickle.dumps(item, 4))

    def clear(self) -> None:
        self.raw = []
