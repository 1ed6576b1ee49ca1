"""SenderProfile (keyed by user) and CounterpartyProfile (keyed by destination / suspect).

Both keep per-key features in state with event-time expiry, because a hold must be decided
per transfer, not at a window's end (DESIGN.md, "Windows"). They emit the transfer or the
report with a ``features`` dict that the models score and the rules read.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable, Optional

from core import lookalike
from core.events import CATEGORY, TEXT, FeaturedReport, FeaturedTransfer, ReportIn
from core.machine import Derived, Machine, Table
from core.policy import DAY, HOUR, Policy
from schemas.blacklist import BlacklistSnapshot
from schemas.rows import BlacklistUpdate, Transfer, UserProfile

FEATURED = "featured"


# --------------------------------------------------------------------------- SenderProfile
PAYEES, BY_LOOK = "sender.payees", "sender.by_look"


class _Sender:
    """A user's state: a small head (velocity windows, counters) and two tables that grow
    with the payees and are read one entry per event (``core.machine.Table``)."""

    __slots__ = ("recent", "payees", "by_look", "n", "mean", "m2", "last_t", "n_reports",
                 "report_times", "oldest")

    def __init__(self):
        self.recent: deque = deque()  # (t, usd) within the long window
        # address -> (last time paid, its lookalike.key) (genuine payees only)
        self.payees = Table(PAYEES)
        self.by_look = Table(BY_LOOK)  # lookalike.key -> tuple of payees with that key
        # no payee was last paid before this (a bound: the sweep reads the table only
        # when a payee may have passed the payee memory)
        self.oldest: Optional[int] = None
        self.n = 0  # transfers seen
        self.mean = 0.0  # running mean / M2 of log1p(usd) (Welford)
        self.m2 = 0.0
        self.last_t: Optional[int] = None
        self.n_reports = 0
        self.report_times: deque = deque()


class SenderProfile(Machine):
    """Per-user features for transfers (velocity, payees, look-alikes) and for reports (the
    reporter's record: account age, did it pay the suspect, its past reports)."""

    LOGS = (PAYEES, BY_LOOK)

    def __init__(self, policy: Policy, profiles: Callable[[str], Optional[UserProfile]]):
        self.p = policy
        self.profiles = profiles
        self.shown = lookalike.shown(policy)

    def new_state(self, key):
        return _Sender()

    def is_empty(self, s: _Sender) -> bool:
        return s.last_t is None

    def next_deadline(self, s: _Sender) -> Optional[int]:
        return None if s.last_t is None else s.last_t + self.p.payee_memory_ms

    def advance(self, s: _Sender, now: int) -> list:
        if s.last_t is not None and s.last_t + self.p.payee_memory_ms <= now:
            s.__init__()  # idle past the payee memory: forget the user
        return []

    def _age_days(self, user_id: str, now: int) -> float:
        prof = self.profiles(user_id)
        if prof is None:
            return -1.0
        return max(0.0, (now - prof.created_time) / DAY)

    def _forget_old_payees(self, s: _Sender, now: int) -> None:
        horizon = now - self.p.payee_memory_ms
        if s.oldest is None or s.oldest >= horizon:
            return  # no payee can be that old: nothing to read
        payees = s.payees
        old, oldest = [], None
        for a in payees:
            t, look = payees.get(a)
            if t < horizon:
                old.append((a, look))
            elif oldest is None or t < oldest:
                oldest = t
        s.oldest = oldest
        for a, look in old:
            payees.delete(a)
            if look is not None:
                kept = tuple(x for x in s.by_look.get(look, ()) if x != a)
                if kept:
                    s.by_look.set(look, kept)
                else:
                    s.by_look.delete(look)

    def on_event(self, s: _Sender, ev, now: int) -> list:
        if type(ev) is ReportIn:
            return self._report(s, ev, now)
        tr: Transfer = ev
        p = self.p
        while s.recent and s.recent[0][0] <= now - p.long_window_ms:
            s.recent.popleft()
        n1 = usd1 = 0.0
        n24 = usd24 = 0.0
        short_from = now - p.short_window_ms
        for t, usd in s.recent:
            n24 += 1
            usd24 += usd
            if t > short_from:
                n1 += 1
                usd1 += usd
        dest = tr.to_address
        known = dest in s.payees
        imitated = None
        look = None if known else lookalike.key(dest, tr.network, self.shown)
        if look is not None:
            same = s.by_look.get(look)
            if same is not None:
                imitated = lookalike.imitated(dest, look, same)
        lu = math.log1p(tr.usd_value)
        if s.n >= 3:
            std = math.sqrt(s.m2 / (s.n - 1)) or 1.0
            z = (lu - s.mean) / std
        else:
            z = 0.0
        age = self._age_days(tr.user_id, now)
        features = {
            "log_usd": lu,
            "n_1h": n1, "log_usd_1h": math.log1p(usd1),
            "n_24h": n24, "log_usd_24h": math.log1p(usd24),
            "new_dest": 0.0 if known else 1.0,
            "amount_z": max(-10.0, min(10.0, z)),
            "account_age_days": age,
            "fresh_account": 1.0 if 0 <= age * DAY < p.fresh_account_ms else 0.0,
            "log_tx_count": math.log1p(s.n),
            "n_payees": float(len(s.payees)),
            "lookalike": 1.0 if imitated else 0.0,
            "internal": 1.0 if tr.channel != "WITHDRAWAL" else 0.0,
        }
        reasons = (lookalike.reason(imitated, look[0]),) if imitated else ()
        # update
        s.recent.append((now, tr.usd_value))
        s.n += 1
        d = lu - s.mean
        s.mean += d / s.n
        s.m2 += d * (lu - s.mean)
        if imitated is None:  # an imitation never becomes a known payee (rule 9)
            if known:
                look = s.payees.get(dest)[1]
            elif look is not None:
                same = s.by_look.get(look, ())
                if dest not in same:
                    s.by_look.set(look, tuple(sorted(same + (dest,))))
            s.payees.set(dest, (now, look))
            if s.oldest is None or now < s.oldest:
                s.oldest = now
        if s.n % p.payee_sweep_every == 0:
            self._forget_old_payees(s, now)
        s.last_t = now
        return [(FEATURED, now, FeaturedTransfer(tr, now, features, reasons,
                                                 lookalike_of=imitated))]

    def _report(self, s: _Sender, ev: ReportIn, now: int) -> list:
        p = self.p
        while s.report_times and s.report_times[0] <= now - p.reporter_window_ms:
            s.report_times.popleft()
        paid_at = ev.paid_at
        if paid_at is None:
            paid = s.payees.get(ev.suspect)
            if paid is not None:
                paid_at = paid[0]
        age = self._age_days(ev.report.reporter_user_id, now)
        fresh = 0 <= age * DAY < p.fresh_account_ms
        features = {
            "reporter_age_days": age,
            "reporter_fresh": 1.0 if fresh else 0.0,
            "reporter_log_tx_count": math.log1p(s.n),
            "reporter_paid_suspect": 1.0 if paid_at is not None else 0.0,
            "hours_since_paid": (now - paid_at) / HOUR if paid_at is not None else -1.0,
            "reporter_reports_7d": float(len(s.report_times)),
            "reporter_reports_total": float(s.n_reports),
            # What the Scam Verdict Model reads of the report itself (core/models.py);
            # keys starting with "_" are not numeric. They ride in the features so that
            # LabelJoin's example carries exactly what the model scored.
            "log_claimed_loss": math.log1p(max(0.0, ev.report.claimed_loss_usd or 0.0)),
            "claimed_loss_missing": 1.0 if ev.report.claimed_loss_usd is None else 0.0,
            "log_paid_usd": math.log1p(max(0.0, ev.paid_usd or 0.0)),
            "text_len": math.log1p(len(ev.report.description or "")),
            TEXT: ev.report.description or "",
            CATEGORY: ev.report.category,
        }
        s.n_reports += 1
        s.report_times.append(now)
        s.last_t = now
        return [(FEATURED, now, FeaturedReport(ev._replace(paid_at=paid_at), now, features))]


# ---------------------------------------------------------------------- CounterpartyProfile
class _FanIn:
    """Distinct senders of a destination's window, kept as the window moves: counts per
    user of the long window's entries and of the short window's, so a transfer costs the
    same however many senders the window holds (a busy collector's history would
    otherwise be read whole at every transfer). Valid while the entries are in time
    order and events come in time order (the batch face, and the stream face in order);
    :meth:`_Counterparty.fan` falls back to reading the window otherwise."""

    __slots__ = ("long", "short", "short_n", "last_t")

    def __init__(self, senders: deque):
        self.long: dict = {}
        for _t, u in senders:
            self.long[u] = self.long.get(u, 0) + 1
        self.short: deque = deque(senders)  # trimmed to the short window at first use
        self.short_n: dict = dict(self.long)
        self.last_t = senders[-1][0] if senders else None

    def trim_short(self, short_from: int) -> None:
        short, n = self.short, self.short_n
        while short and short[0][0] <= short_from:
            _, u = short.popleft()
            _drop(n, u)

    def add(self, t: int, u) -> None:
        self.long[u] = self.long.get(u, 0) + 1
        self.short.append((t, u))
        self.short_n[u] = self.short_n.get(u, 0) + 1
        self.last_t = t


def _drop(counts: dict, u) -> None:
    c = counts[u]
    if c == 1:
        del counts[u]
    else:
        counts[u] = c - 1


def _in_order(senders: deque) -> bool:
    prev = None
    for t, _u in senders:
        if prev is not None and t < prev:
            return False
        prev = t
    return True


class _Counterparty(Derived):
    __slots__ = ("senders", "first_t", "last_t", "live", "reports", "n_in", "index", "est")
    SAVED = ("senders", "first_t", "last_t", "live", "reports", "n_in")  # pickled

    def __init__(self):
        self.senders: deque = deque()  # (t, user) within the long window
        self.first_t: Optional[int] = None
        self.last_t: Optional[int] = None
        self.live: Optional[tuple] = None  # last live update: (action, source, t)
        self.reports: deque = deque()  # (t, reporter, established) within reporter window
        self.n_in = 0
        self.index: Optional[_FanIn] = None  # derived from senders: never pickled
        self.est: Optional[dict] = None  # derived from reports: established ones by reporter

    def forget(self) -> None:
        self.index = None  # rebuilt from ``senders`` when needed
        self.est = None  # and from ``reports``

    def trim_reports(self, now: int, window_ms: int) -> None:
        """Drop the reports older than the reporter window ending at ``now``."""
        reports, est = self.reports, self.est
        while reports and reports[0][0] <= now - window_ms:
            _, r, established = reports.popleft()
            if established and est is not None:
                _drop(est, r)

    def add_report(self, now: int, reporter, established: bool) -> None:
        self.reports.append((now, reporter, established))
        if established and self.est is not None:
            self.est[reporter] = self.est.get(reporter, 0) + 1

    def established(self) -> int:
        """Distinct established reporters among the reports in the window: kept as reports
        come and leave (the same operations on the deque, whatever their order), so a
        transfer into a much-reported address does not read its reports."""
        est = self.est
        if est is None:
            est = self.est = {}
            for _, r, e in self.reports:
                if e:
                    est[r] = est.get(r, 0) + 1
        return len(est)

    def trim(self, now: int, long_ms: int) -> None:
        """Drop the senders older than the long window ending at ``now``."""
        senders, index = self.senders, self.index
        while senders and senders[0][0] <= now - long_ms:
            _, u = senders.popleft()
            if index is not None:
                _drop(index.long, u)

    def fan(self, now: int, short_from: int, user) -> tuple[int, int]:
        """Distinct senders in the long window and in the short one (after ``short_from``),
        ``user`` included, as a transfer at ``now`` sees them."""
        index = self.index
        if index is not None and index.last_t is not None and now < index.last_t:
            index = self.index = None  # an event out of order: read the window
        if index is None and _in_order(self.senders) and (
                not self.senders or now >= self.senders[-1][0]):
            index = self.index = _FanIn(self.senders)
        if index is None:
            users24 = {u for _, u in self.senders}
            users1 = {u for ts, u in self.senders if ts > short_from}
            return len(users24 | {user}), len(users1 | {user})
        index.trim_short(short_from)
        return (len(index.long) + (user not in index.long),
                len(index.short_n) + (user not in index.short_n))

    def add_sender(self, now: int, user) -> None:
        self.senders.append((now, user))
        if self.index is not None:
            self.index.add(now, user)

    def distinct_senders(self) -> int:
        """Distinct senders in the long window."""
        if self.index is not None:
            return len(self.index.long)
        return len({u for _, u in self.senders})


class CounterpartyProfile(Machine):
    """Per-destination features: fan-in, age, reports against it, and list state (the
    snapshot side data plus the live ADD / REMOVE stream; a REMOVE delists the address
    from every source until a later ADD)."""

    def __init__(self, policy: Policy, snapshot: BlacklistSnapshot):
        self.p = policy
        self.snapshot = snapshot

    def new_state(self, key):
        return _Counterparty()

    def is_empty(self, s: _Counterparty) -> bool:
        return s.last_t is None and s.live is None

    def next_deadline(self, s: _Counterparty) -> Optional[int]:
        return None if s.last_t is None else s.last_t + self._ttl()

    def _ttl(self) -> int:
        return max(self.p.long_window_ms, self.p.reporter_window_ms, self.p.lookback_ms)

    def advance(self, s: _Counterparty, now: int) -> list:
        if s.last_t is not None and s.last_t + self._ttl() <= now:
            live = s.live
            s.__init__()
            # List membership outlives activity: a live ADD, and a live REMOVE of a
            # snapshot listing (its tombstone: without it the snapshot would list the
            # address again). on_event keeps no REMOVE that has no snapshot listing to
            # override, so this is one small tuple per key at most.
            s.live = live
        return []

    def listed(self, address: str, s: _Counterparty) -> tuple[Optional[tuple], Optional[str]]:
        """(sources, list version) holding ``address`` now, or (None, None)."""
        if s.live is not None:
            action, source, t = s.live
            if action == "REMOVE":
                return None, None
            snap = self.snapshot.lookup(address) or ()
            return tuple(sorted(set(snap) | {source})), f"live@{t}"
        snap = self.snapshot.lookup(address)
        if snap:
            return tuple(snap), self.snapshot.version
        return None, None

    def on_event(self, s: _Counterparty, ev, now: int) -> list:
        t = type(ev)
        if t is BlacklistUpdate:
            if ev.action == "REMOVE" and not self.snapshot.lookup(ev.address):
                s.live = None  # nothing listed it but a live ADD: no tombstone needed
            else:
                s.live = (ev.action, ev.source, now)
            return []
        p = self.p
        s.trim(now, p.long_window_ms)
        s.trim_reports(now, p.reporter_window_ms)
        short_from = now - p.short_window_ms
        reporters_from = now - p.reporter_short_window_ms
        if t is FeaturedTransfer:
            tr = ev.transfer
            users24, users1 = s.fan(now, short_from, tr.user_id)
            address = tr.to_address
            sources, version = self.listed(address, s)
            if s.first_t is None:
                s.first_t = now
            f = dict(ev.features)
            f.update({
                "fan_in_1h": float(users1),
                "fan_in_24h": float(users24),
                "log_dest_transfers": math.log1p(s.n_in),
                "dest_age_days": (now - s.first_t) / DAY,
                "blacklisted": 1.0 if sources else 0.0,
                "reports_7d": float(len(s.reports)),
                "established_reporters_7d": float(s.established()),
            })
            s.add_sender(now, tr.user_id)
            s.n_in += 1
            s.last_t = now
            return [(FEATURED, now, ev._replace(features=f, blacklist=sources,
                                                  list_version=version))]
        # FeaturedReport against this suspect
        rep = ev.report_in.report
        f = dict(ev.features)
        established = f.get("reporter_paid_suspect", 0.0) > 0 and not f.get("reporter_fresh")
        reporters24 = {r for ts, r, _ in s.reports if ts > reporters_from} | {rep.reporter_user_id}
        est24 = {r for ts, r, e in s.reports if e and ts > reporters_from}
        est7 = {r for _, r, e in s.reports if e}
        if established:
            est24.add(rep.reporter_user_id)
            est7.add(rep.reporter_user_id)
        fresh24 = sum(1 for ts, r, e in s.reports if ts > reporters_from and not e)
        sources, version = self.listed(ev.report_in.suspect, s)
        f.update({
            "suspect_fan_in_24h": float(s.distinct_senders()),
            "suspect_log_transfers": math.log1p(s.n_in),
            "suspect_blacklisted": 1.0 if sources else 0.0,
            "reporters_24h": float(len(reporters24)),
            "established_reporters_24h": float(len(est24)),
            "established_reporters_7d": float(len(est7)),
            "unestablished_reports_24h": float(fresh24),
        })
        s.add_report(now, rep.reporter_user_id, established)
        s.last_t = now
        reasons = tuple(f"blacklist:{x}" for x in sources) if sources else ()
        return [(FEATURED, now, ev._replace(features=f, reasons=ev.reasons + reasons))]
