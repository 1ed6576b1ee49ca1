"""Ledger: de-duplication (rule 8) and resolution of ids to addresses.

Keyed by ``"T:" + transfer_id`` (transfers, TRANSFER case outcomes, reports naming a
transfer) or ``"R:" + report_id`` (reports, REPORT case outcomes). It remembers each id for
``dedup_ms`` of event time, passes the first delivery on and counts the others (a later
delivery with the same content: rule 8), and turns
a case outcome about a transfer or a report into an :class:`AddressFact` about the address
concerned. A record that waits for an id never seen within ``resolve_wait_ms`` becomes a
dead letter with the reason: nothing is dropped silently (rule 7). A later delivery of an
id whose content differs from the first (another address, amount, ...) is not a duplicate
but a *conflict*: it becomes a dead letter naming both versions, and the first stands.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from core.events import AddressFact, ReportIn
from core.machine import METRIC, Machine
from core.policy import Policy
from schemas.codecs import to_wire
from schemas.rows import CaseOutcome, DeadLetter, ScamReport, Transfer

TRANSFERS, REPORTS, FACTS, DEAD = "transfers", "reports", "facts", "dead_letter"


def transfer_key(transfer_id: str) -> str:
    return "T:" + transfer_id


def report_key(report_id: str) -> str:
    return "R:" + report_id


class _State:
    __slots__ = ("first_at", "info", "waiting", "expires_at")

    def __init__(self):
        self.first_at: Optional[int] = None
        self.info: Any = None  # Transfer for T: keys, ReportIn for R: keys
        self.waiting: list = []  # (deadline, event) waiting for the id to be seen
        self.expires_at: Optional[int] = None


class Ledger(Machine):
    def __init__(self, policy: Policy):
        self.p = policy

    def new_state(self, key):
        return _State()

    def is_empty(self, s: _State) -> bool:
        return s.first_at is None and not s.waiting

    def next_deadline(self, s: _State) -> Optional[int]:
        ds = [d for d, _ in s.waiting]
        if s.expires_at is not None:
            ds.append(s.expires_at)
        return min(ds) if ds else None

    def advance(self, s: _State, now: int) -> list:
        out = []
        if s.waiting and min(d for d, _ in s.waiting) <= now:
            keep = []
            for d, ev in sorted(s.waiting, key=lambda w: w[0]):
                if d <= now:
                    out.append(self._unresolved(ev, d))
                else:
                    keep.append((d, ev))
            s.waiting = keep
        if s.expires_at is not None and s.expires_at <= now:
            s.first_at = s.info = s.expires_at = None
        return out

    def on_event(self, s: _State, ev, now: int) -> list:
        t = type(ev)
        if t is Transfer or t is ReportIn:
            if s.first_at is not None:
                first = s.info if t is Transfer else s.info.report
                second = ev if t is Transfer else ev.report
                if first != second:
                    return self._conflict(first, second, now)
                name = "duplicate_transfers" if t is Transfer else "duplicate_reports"
                return [(METRIC, now, (name, 1))]
            s.first_at, s.info = now, ev
            s.expires_at = now + self.p.dedup_ms
            out = [(TRANSFERS if t is Transfer else REPORTS, now, ev)]
            waiting, s.waiting = s.waiting, []
            for _, w in waiting:
                out.extend(self._resolve(s, w, now))
            return out
        if s.first_at is not None:
            return self._resolve(s, ev, now)
        if t is ScamReport and ev.suspect_address:
            # It names its suspect: it need not wait for the transfer to decide.
            return [(REPORTS, now, ReportIn(ev, now, ev.suspect_address))]
        s.waiting.append((now + self.p.resolve_wait_ms, ev))
        return []

    def _resolve(self, s: _State, ev, now: int) -> list:
        info = s.info
        if type(ev) is CaseOutcome:
            if type(info) is Transfer:
                fact = AddressFact(info.to_address, ev.event_time, ev.is_scam, ev.case_id,
                                   ev.subject_type, ev.subject_id, info.user_id)
            else:
                fact = AddressFact(info.suspect, ev.event_time, ev.is_scam, ev.case_id,
                                   ev.subject_type, ev.subject_id, info.report.reporter_user_id)
            return [(FACTS, max(now, ev.event_time), fact)]
        # A report naming this transfer: fill the suspect, note whether the reporter paid.
        report: ScamReport = ev
        paid = info.user_id == report.reporter_user_id
        suspect = report.suspect_address or info.to_address
        return [(REPORTS, max(now, report.event_time), ReportIn(
            report, report.event_time, suspect,
            info.event_time if paid else None, info.usd_value if paid else None))]

    def _conflict(self, first, second, at: int) -> list:
        """A second delivery of an id with other content: a dead letter naming both."""
        is_t = type(first) is Transfer
        a, b = to_wire(first), to_wire(second)
        differ = [k for k in a if a.get(k) != b.get(k)]
        id_name = "transfer_id" if is_t else "report_id"
        err = (f"conflicting delivery of {id_name} {a[id_name]!r}: differs from the first "
               f"delivery in {', '.join(differ)}; first: "
               f"{json.dumps(a, sort_keys=True, default=str)}; this one (payload) was not "
               "used")
        payload = json.dumps(b, sort_keys=True, default=str)
        name = "conflicting_transfers" if is_t else "conflicting_reports"
        return [(METRIC, at, (name, 1)),
                (DEAD, at, DeadLetter("transfers" if is_t else "reports", payload, err, at))]

    def _unresolved(self, ev, at: int):
        if type(ev) is CaseOutcome:
            kind = "transfer" if ev.subject_type == "TRANSFER" else "report"
            source, err = "outcomes", (
                f"case outcome names {kind} {ev.subject_id!r}, which was not seen within "
                f"{self.p.resolve_wait_ms // 3_600_000}h")
        else:
            source, err = "reports", (
                f"report names no suspect and its transfer {ev.transfer_id!r} was not seen "
                f"within {self.p.resolve_wait_ms // 3_600_000}h")
        payload = json.dumps(to_wire(ev), sort_keys=True, default=str)
        return (DEAD, at, DeadLetter(source, payload, err, at))
