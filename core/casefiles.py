"""Case files, keyed by suspect address, downstream of every decision.

Every frozen or blacklisted address, and every address with a SCAM or REVIEW verdict, gets
a :class:`~schemas.rows.CaseFile` an investigator or a law-enforcement request can use: the
suspect; the transfers to it in the lookback with amount, sender and fate (``HELD`` while a
hold is pending, ``REFUNDED``, ``RELEASED``, ``LOST`` = never held); the reports against it
(reporter, time, category, text, established or not); the verdicts with scores and model
versions; the freeze; the list entries with their source; the outreach sent about it; a
timeline; the totals (victims = distinct senders in the lookback, USD sent, lost = not held
or released, refunded, still held).

:class:`CaseBook` is a pure state machine (``core.machine``). It keeps per address
what the lookback keeps (like Actions), the item lists capped at ``case_max_items`` each
with counts of what was left out, and forgets an address idle for the lookback. Once the
case is open it re-issues the file after a change (``version``: events seen), at most one
version per ``case_update_ms`` of event time (the changes within it are batched: a busy
address does not re-issue its file for every transfer): the streaming job
publishes each version to ``safetynet-cases``; the backtest writes the latest version of
each case (:func:`latest_cases`).

Inputs are outputs of the graph (scored transfers and reports, holds, resolutions,
freezes, the final outreach) and the live blacklist: the step is downstream of all of
them, so the graph stays acyclic. A snapshot-listed address gets a case file when a
transfer to it is seen (the snapshot itself is not enumerated).
"""

from __future__ import annotations

import bisect
import json
from typing import Callable, Iterable, Optional

from core.actions import short_id
from core.events import ScoredReport, ScoredTransfer
from core.machine import Log, Machine
from core.policy import Policy
from schemas.rows import BlacklistUpdate, CaseFile, Freeze, Hold, HoldResolution, Outreach

CASES = "cases"
LOST, HELD, REFUNDED, RELEASED = "LOST", "HELD", "REFUNDED", "RELEASED"

_TIME = {ScoredTransfer: "event_time", ScoredReport: "event_time", BlacklistUpdate:
         "event_time", Hold: "placed_at", HoldResolution: "resolved_at", Freeze: "frozen_at",
         Outreach: "created_at"}
_RANK = {BlacklistUpdate: 0, Freeze: 1, ScoredReport: 2, ScoredTransfer: 3, Hold: 4,
         HoldResolution: 5, Outreach: 6}


def _time(ev) -> int:
    return getattr(ev, _TIME[type(ev)])


def _id(ev) -> str:
    t = type(ev)
    if t is ScoredTransfer:
        return ev.featured.transfer.transfer_id
    if t is ScoredReport:
        return ev.featured.report_in.report.report_id
    if t is BlacklistUpdate:
        return ev.source + ev.action
    if t is Hold or t is HoldResolution:
        return ev.hold_id
    if t is Freeze:
        return ev.freeze_id
    return ev.outreach_id


def case_key(ev) -> str:
    """The suspect address an event is about."""
    t = type(ev)
    if t is ScoredTransfer:
        return ev.featured.transfer.to_address
    if t is ScoredReport:
        return ev.featured.report_in.suspect
    if t is HoldResolution:
        return ev.to_address or ""
    if t is Hold:
        return ev.to_address
    return ev.address or ""  # Freeze, BlacklistUpdate, Outreach (none: "")


def about_an_address(ev) -> bool:
    """Outreach without an address (a daily risk assessment) is about no case: the
    CaseBook ignores it (it arrives under the key "")."""
    return type(ev) is not Outreach or ev.address is not None


def _j(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class _Capped:
    """The ``cap`` earliest items by key (any arrival order gives the same list), and a
    count of the rest. An item is built (``make()``, a JSON-able dict) and written as JSON
    only if it is kept."""

    __slots__ = ("items", "omitted")

    def __init__(self):
        self.items: list = []  # (key, JSON text), sorted by key
        self.omitted = 0

    def add(self, key: tuple, make: Callable[[], dict], cap: int) -> None:
        items = self.items
        if len(items) >= cap and (not items or key >= items[-1][0]):
            self.omitted += 1
            return
        bisect.insort(items, (key, _j(make())), key=lambda kv: kv[0])
        if len(items) > cap:
            items.pop()
            self.omitted += 1

    def texts(self) -> list:
        return [text for _k, text in self.items]


# Fates, by precedence: a resolution is final, a hold beats "never held".
_FATE_RANK = {LOST: 0, HELD: 1, REFUNDED: 2, RELEASED: 2}


SENT, FATES = "cases.sent", "cases.fates"
TRIM_AT_LEAST = 64  # the logs are trimmed when they have doubled since their last trim


class _Case:
    """An address's case: a small head (the capped lists, the totals' inputs are not in
    it) and two logs, the transfers and their fates, read only when a file is issued or
    the logs are trimmed: a transfer to a busy address costs the same however many came
    before."""

    __slots__ = ("network", "owner", "opened_at", "triggers", "sent", "fates", "oldest",
                 "kept", "reports", "verdicts", "freeze", "blacklist",
                 "outreach", "timeline", "n_events", "max_t", "last_t", "due", "address")

    def __init__(self):
        self.network: Optional[str] = None
        self.owner: Optional[str] = None
        self.opened_at: Optional[int] = None
        self.triggers: list = []
        self.sent = Log(SENT)  # (t, transfer_id, user, usd, amount, asset): the lookback's
        # transfers, and perhaps older ones not trimmed yet (readers skip those)
        self.fates = Log(FATES)  # (transfer_id, fate): holds and resolutions, in order
        self.oldest: Optional[int] = None  # earliest time in ``sent``
        self.kept = 0  # len(sent) after its last trim
        self.reports, self.verdicts = _Capped(), _Capped()
        self.blacklist, self.outreach, self.timeline = _Capped(), _Capped(), _Capped()
        self.freeze: Optional[dict] = None
        self.n_events = 0
        self.max_t: Optional[int] = None
        self.last_t: Optional[int] = None
        self.due: Optional[int] = None  # when the pending new version is issued
        self.address: str = ""


def _cents(usd: float) -> int:
    return int(round(usd * 100))


class CaseBook(Machine):
    """One suspect address's case file; see the module docstring. The file depends only on
    the set of events seen, not on their arrival order (lists keep their earliest items,
    totals are integer cents), so both faces give the same latest version."""

    LOGS = (SENT, FATES)

    def __init__(self, policy: Policy):
        self.p = policy
        self._digests: dict = {}  # id(case) -> _Digest (see _digest)

    def new_state(self, key):
        return _Case()

    def time_of(self, ev) -> int:
        return _time(ev)

    def sort_key(self, ev) -> tuple:
        return (_time(ev), _RANK[type(ev)], _id(ev))

    def is_empty(self, s: _Case) -> bool:
        return s.last_t is None

    def next_deadline(self, s: _Case) -> Optional[int]:
        if s.last_t is None:
            return None
        expiry = s.last_t + self.p.lookback_ms
        return expiry if s.due is None else min(s.due, expiry)

    def advance(self, s: _Case, now: int) -> list:
        out = []
        if s.due is not None and s.due <= now:
            out.append((CASES, s.due, self.case_file(s)))
            s.due = None
        if s.last_t is not None and s.last_t + self.p.lookback_ms <= now:
            s.__init__()
        return out

    # -- events --------------------------------------------------------------------------
    def on_event(self, s: _Case, ev, now: int) -> list:
        if not about_an_address(ev):
            return []
        s.max_t = now if s.max_t is None else max(s.max_t, now)
        s.last_t = s.max_t  # the latest event's time, whatever the arrival order
        s.n_events += 1
        self._trim(s)
        t = type(ev)
        cap = self.p.case_max_items
        key = self.sort_key(ev)
        if t is ScoredTransfer:
            line = self._on_transfer(s, ev, now)
        elif t is Hold:
            line = self._on_hold(s, ev, now)
        elif t is HoldResolution:
            line = self._on_resolution(s, ev)
        elif t is ScoredReport:
            line = self._on_report(s, ev, now, key, cap)
        elif t is Freeze:
            line = self._on_freeze(s, ev, now)
        elif t is BlacklistUpdate:
            line = self._on_list_update(s, ev, now, key, cap)
        elif t is Outreach:
            line = self._on_outreach(s, ev, now, key, cap)
        else:
            raise TypeError(f"CaseBook cannot handle {t.__name__}")
        s.timeline.add(key, lambda: {"at": now, "event": line()}, cap)
        s.address = case_key(ev)
        if s.opened_at is not None and s.due is None:
            s.due = now + self.p.case_update_ms  # one new version for the changes until then
        return []

    # Each handler updates the case for one kind of event and returns its timeline line,
    # unbuilt (a callable): the line is written only if the timeline keeps it.
    def _on_transfer(self, s: _Case, ev: ScoredTransfer, now: int) -> Callable[[], str]:
        ft = ev.featured
        tr = ft.transfer
        s.network = s.network or tr.network
        s.owner = s.owner or tr.to_user_id
        tid = tr.transfer_id
        s.sent.append((now, tid, tr.user_id, tr.usd_value, tr.amount, tr.asset))
        if s.oldest is None or now < s.oldest:
            s.oldest = now
        for src in ft.blacklist or ():
            self._open(s, now, f"blacklisted:{src}")
        return lambda: (f"transfer {tid}: {tr.amount} {tr.asset} (${tr.usd_value:,.2f})"
                        f" from {tr.user_id}, risk {ev.score:.2f}")

    def _on_hold(self, s: _Case, ev: Hold, now: int) -> Callable[[], str]:
        self._fate(s, ev.transfer_id, HELD)
        if "destination_frozen" in ev.reasons:
            self._open(s, now, "frozen")
        return lambda: f"hold {ev.hold_id} on transfer {ev.transfer_id}"

    def _on_resolution(self, s: _Case, ev: HoldResolution) -> Callable[[], str]:
        self._fate(s, ev.transfer_id, ev.resolution)
        return lambda: f"transfer {ev.transfer_id} {ev.resolution.lower()}: {ev.reason}"

    def _on_report(self, s: _Case, ev: ScoredReport, now: int, key: tuple,
                   cap: int) -> Callable[[], str]:
        rep = ev.featured.report_in.report
        f = ev.featured.features
        established = f.get("reporter_paid_suspect", 0.0) > 0 and not f.get("reporter_fresh")
        s.owner = s.owner or rep.suspect_user_id
        s.reports.add(key, lambda: {
            "report_id": rep.report_id, "at": now, "reporter": rep.reporter_user_id,
            "category": rep.category, "text": rep.description,
            "claimed_loss_usd": rep.claimed_loss_usd, "established": bool(established)}, cap)
        s.verdicts.add(key, lambda: {
            "report_id": rep.report_id, "at": now, "verdict": ev.verdict,
            "score": round(ev.score, 4), "model_version": ev.model_version,
            "reasons": list(ev.reasons)}, cap)
        if ev.verdict in ("SCAM", "REVIEW"):
            self._open(s, now, f"verdict:{ev.verdict}")
        return lambda: (f"report {rep.report_id} by {rep.reporter_user_id} "
                        f"({rep.category}): verdict {ev.verdict} {ev.score:.2f}")

    def _on_freeze(self, s: _Case, ev: Freeze, now: int) -> Callable[[], str]:
        s.owner = s.owner or ev.user_id
        s.freeze = {"freeze_id": ev.freeze_id, "at": now,
                    "verdict_score": round(ev.verdict_score, 4),
                    "report_ids": list(ev.report_ids), "reasons": list(ev.reasons)}
        self._open(s, now, "frozen")
        return lambda: f"frozen ({'; '.join(ev.reasons)[:120]})"

    def _on_list_update(self, s: _Case, ev: BlacklistUpdate, now: int, key: tuple,
                        cap: int) -> Callable[[], str]:
        s.network = s.network or ev.network
        s.blacklist.add(key, lambda: {"at": now, "action": ev.action,
                                      "source": ev.source, "reason": ev.reason}, cap)
        if ev.action == "ADD":
            self._open(s, now, f"blacklisted:{ev.source}")
        return lambda: f"list {ev.action} by {ev.source}"

    def _on_outreach(self, s: _Case, ev: Outreach, now: int, key: tuple,
                     cap: int) -> Callable[[], str]:
        s.outreach.add(key, lambda: {"outreach_id": ev.outreach_id, "at": now,
                                     "user": ev.user_id, "kind": ev.kind,
                                     "channel": ev.channel}, cap)
        return lambda: f"outreach {ev.kind} on {ev.channel} to {ev.user_id}"

    def _fate(self, s: _Case, tid: str, fate: str) -> None:
        s.fates.append((tid, fate))

    def _open(self, s: _Case, now: int, trigger: str) -> None:
        if s.opened_at is None or now < s.opened_at:
            s.opened_at = now
        if trigger not in s.triggers:
            s.triggers.append(trigger)
            s.triggers.sort()

    def _trim(self, s: _Case) -> None:
        """Drop the transfers past the lookback (and their fates) from the logs once the
        transfer log has doubled since its last trim: O(1) per event amortised."""
        if s.oldest is None or len(s.sent) < 2 * max(s.kept, TRIM_AT_LEAST):
            return
        horizon = s.max_t - self.p.lookback_ms
        if s.oldest >= horizon:
            return
        kept, gone = [], set()
        for x in s.sent.items():
            if x[0] >= horizon:
                kept.append(x)
            else:
                gone.add(x[1])
        gone -= {x[1] for x in kept}
        s.sent.replace(kept)
        s.kept = len(kept)
        s.oldest = min((x[0] for x in kept), default=None)
        s.fates.replace(f for f in s.fates.items() if f[0] not in gone)
        self._digests.pop(id(s), None)  # the logs were rewritten: read them afresh

    def _transfers(self, s: _Case) -> tuple[dict, dict]:
        """The lookback's transfers (transfer_id -> (t, user, usd, amount, asset), the
        first delivery of each) and their fates (by precedence: a resolution is final, a
        hold beats "never held")."""
        horizon = s.max_t - self.p.lookback_ms
        sent: dict = {}
        for t, tid, user, usd, amount, asset in s.sent.items():
            if t >= horizon and tid not in sent:
                sent[tid] = (t, user, usd, amount, asset)
        fates: dict = {}
        for tid, fate in s.fates.items():
            if _FATE_RANK[fate] >= _FATE_RANK[fates.get(tid, LOST)]:
                fates[tid] = fate
        return sent, fates

    def _digest(self, s: _Case) -> "_Digest":
        """The lookback's transfers of ``s`` as a :class:`_Digest`, brought up to date with
        what its logs gained since the last file. The digest is a cache beside the state
        (never part of it): kept for the few cases issued last, as long as their logs only
        grew, so a busy case costs each file what changed since the previous one, not its
        whole lookback; otherwise made afresh from the logs."""
        d = self._digests.get(id(s))
        if d is None or not d.valid_for(s):
            d = _Digest(s)
            self._digests.pop(id(s), None)
            while len(self._digests) >= DIGESTS_KEPT:
                self._digests.pop(next(iter(self._digests)))
            self._digests[id(s)] = d
        d.update(s, s.max_t - self.p.lookback_ms)
        return d

    def case_file(self, s: _Case) -> CaseFile:
        address = s.address
        cap = self.p.case_max_items
        d = self._digest(s)
        if d.exact:
            listed, n_sent = d.first(cap), d.n()
            c, victims = d.cents, len(d.users)
        else:  # a transfer logged twice: the plain reading of the logs
            sent, fates = self._transfers(s)
            order = sorted((rec[0], tid) for tid, rec in sent.items())
            c = {LOST: 0, HELD: 0, REFUNDED: 0, RELEASED: 0}
            for tid, rec in sent.items():
                c[fates.get(tid, LOST)] += _cents(rec[2])
            listed = [(t, tid, sent[tid], fates.get(tid, LOST)) for t, tid in order[:cap]]
            n_sent, victims = len(order), len({rec[1] for rec in sent.values()})
        items = [d.text(t, tid, rec, fate) for t, tid, rec, fate in listed]
        return CaseFile(
            short_id("case", address), address, s.network, s.owner, s.opened_at, s.max_t,
            s.n_events, list(s.triggers), items, s.reports.texts(), s.verdicts.texts(),
            _j(s.freeze) if s.freeze else None, s.blacklist.texts(), s.outreach.texts(),
            s.timeline.texts(), victims, sum(c.values()) / 100,
            (c[LOST] + c[RELEASED]) / 100, c[REFUNDED] / 100, c[HELD] / 100,
            max(0, n_sent - cap), s.reports.omitted, s.verdicts.omitted,
            s.blacklist.omitted, s.outreach.omitted, s.timeline.omitted)


DIGESTS_KEPT = 8  # the batch face runs one key's history at a time: one would do


class _Digest:
    """What a case file reads from a case's two logs, kept up to date as they grow: the
    lookback's transfers (first delivery of each) in time order, their fates by
    precedence, the USD cents per fate and the senders of the transfers in the lookback.
    Equal, field for field, to reading the logs afresh (:meth:`CaseBook._transfers`): the
    horizon only moves forward while the logs only grow, and a transfer logged twice
    (which the plain reading resolves by position) turns the digest off (``exact``)."""

    __slots__ = ("case", "sent_log", "fates_log", "n_sent", "n_fates", "horizon", "rec",
                 "order", "lo", "fates", "cents", "users", "exact", "texts")

    def __init__(self, s: _Case):
        self.case = s  # held, so that the id the digest is filed under stays this case's
        self.sent_log, self.fates_log = s.sent, s.fates
        self.n_sent = self.n_fates = 0  # log items read so far
        self.horizon: Optional[int] = None  # transfers before it are out of the lookback
        self.rec: dict = {}  # transfer_id -> (t, user, usd, amount, asset)
        self.order: list = []  # (t, transfer_id) of every transfer read, sorted
        self.lo = 0  # order[lo:] is the lookback
        self.fates: dict = {}  # transfer_id -> fate
        self.cents = {LOST: 0, HELD: 0, REFUNDED: 0, RELEASED: 0}  # of order[lo:]
        self.users: dict = {}  # sender -> transfers in order[lo:]
        self.exact = True
        self.texts: dict = {}  # transfer_id -> (fate, JSON text) of the listed ones

    def valid_for(self, s: _Case) -> bool:
        return (self.case is s and self.sent_log is s.sent and self.fates_log is s.fates
                and len(s.sent) >= self.n_sent and len(s.fates) >= self.n_fates)

    def _in(self, t: int) -> bool:
        return self.horizon is None or t >= self.horizon

    def _count(self, tid: str, sign: int) -> None:
        rec = self.rec[tid]
        self.cents[self.fates.get(tid, LOST)] += sign * _cents(rec[2])
        users, user = self.users, rec[1]
        n = users.get(user, 0) + sign
        if n:
            users[user] = n
        else:
            del users[user]

    def update(self, s: _Case, horizon: int) -> None:
        if not self.exact:
            return
        if self.horizon is not None and horizon < self.horizon:
            self.exact = False  # never in one case's life; the plain reading then
            return
        sent = s.sent.items()
        rec, order = self.rec, self.order
        for i in range(self.n_sent, len(sent)):
            t, tid, user, usd, amount, asset = sent[i]
            if tid in rec:
                self.exact = False
                return
            rec[tid] = (t, user, usd, amount, asset)
            if order and (t, tid) < order[-1]:
                bisect.insort(order, (t, tid))
            else:
                order.append((t, tid))
            if self._in(t):
                self._count(tid, 1)
            else:  # already out of the lookback: it sorts before order[lo]
                self.lo += 1
        self.n_sent = len(sent)
        fate_items, fates, cents = s.fates.items(), self.fates, self.cents
        for i in range(self.n_fates, len(fate_items)):
            tid, fate = fate_items[i]
            old = fates.get(tid, LOST)
            if _FATE_RANK[fate] >= _FATE_RANK[old]:
                fates[tid] = fate
                r = rec.get(tid)
                if r is not None and self._in(r[0]):
                    c = _cents(r[2])
                    cents[old] -= c
                    cents[fate] += c
        self.n_fates = len(fate_items)
        lo = self.lo
        while lo < len(order) and order[lo][0] < horizon:
            tid = order[lo][1]
            self._count(tid, -1)
            self.texts.pop(tid, None)
            del rec[tid]  # a later delivery of it would be read as the plain reading does
            lo += 1
        self.lo, self.horizon = lo, horizon

    def n(self) -> int:
        return len(self.order) - self.lo

    def first(self, cap: int) -> list:
        """(t, transfer_id, record, fate) of the ``cap`` earliest transfers of the lookback."""
        rec, fates = self.rec, self.fates
        return [(t, tid, rec[tid], fates.get(tid, LOST))
                for t, tid in self.order[self.lo:self.lo + cap]]

    def text(self, t: int, tid: str, r: tuple, fate: str) -> str:
        """A listed transfer as JSON, written again only when its fate changed."""
        hit = self.texts.get(tid) if self.exact else None
        if hit is not None and hit[0] == fate:
            return hit[1]
        _t, user, usd, amount, asset = r
        text = _j({"transfer_id": tid, "at": t, "sender": user, "usd_value": usd,
                   "amount": amount, "asset": asset, "fate": fate})
        if self.exact:
            self.texts[tid] = (fate, text)
        return text


def latest_cases(rows: Iterable[CaseFile]) -> list[CaseFile]:
    """The latest version of each case (the most events seen, then the latest), sorted by
    case id."""
    best: dict = {}
    for r in rows:
        b = best.get(r.case_id)
        if b is None or (r.version, r.updated_at) > (b.version, b.updated_at):
            best[r.case_id] = r
    return [best[k] for k in sorted(best)]
