"""Actions (keyed by destination / suspect): holds, refunds, releases, freezes, the live
blacklist, the silent-sufferer sweep and outreach *requests* (decision rules 1–5, 9).

The 24h hold is an event-time deadline: a hold still pending at ``placed_at + hold_ms`` is
RELEASED exactly then, unless evidence against its destination grew meanwhile, which extends
it up to ``hold_max_ms`` (rule 14); a scam confirmed before (a SCAM verdict, a case outcome
on the transfer or the address) REFUNDS it at that moment. While it is pending, its stages
(:mod:`core.pyramid`) ask Outreach for the sender's warning and call and the
destination account's request for information. Every hold ends in exactly one resolution.
Anything decided per user (cool-down, escalation of a warning to a call) is left to
Outreach.
"""

from __future__ import annotations

import hashlib
import heapq
from typing import Optional

from core import lookalike
from core import pyramid as pyr
from core.events import (
    AddressFact,
    LossConfirmed,
    OutreachRequest,
    ScoredReport,
    ScoredTransfer,
)
from core.machine import METRIC, Log, Machine, Table
from core.models import is_young_dest
from core.policy import Policy
from schemas.rows import BlacklistUpdate, Freeze, Hold, HoldResolution

HOLDS, RESOLUTIONS, FREEZES, REQUESTS, LOSSES = (
    "holds", "resolutions", "freezes", "outreach_requests", "losses")


def short_id(*parts) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


SENT, REFUNDED_IDS, REPORTERS, REPORT_IDS, LATER = (
    "actions.sent", "actions.refunded", "actions.reporters", "actions.report_ids",
    "actions.later")
TRIM_AT_LEAST = 64  # the sent log is trimmed when it has doubled since its last trim
# Pending holds whose next step (a stage, the information deadline, the deadline) is due
# within this much event time stay in the head; the others wait in a table, looked through
# once per this much event time (or by a freeze, a sweep).
SOON_MS = 3_600_000
SOON_MAX = 8  # ... and at most this many of them besides those already due


class _Dest:
    """An address's state: a small head, and logs (``core.machine.Log``) that only
    grow between trims and are read only by a sweep, a freeze or a trim, so that a
    transfer to a busy address costs the same however many came before."""
    __slots__ = ("soon", "later", "edge", "later_first", "sent", "refunded", "reporters",
                 "report_ids", "frozen", "confirmed", "owner", "last_t", "oldest", "kept",
                 "evidence")

    def __init__(self):
        # The pending holds, each as (Hold, pyramid.Life): in ``soon`` (the head) every
        # hold whose next step is due by ``edge``; the others in the table ``later``, whose
        # earliest next step is ``later_first``. So an event reads only the holds due
        # soon, however many are pending, and a hold moving between the two writes one
        # record.
        self.soon: dict = {}  # transfer_id -> (Hold, Life)
        self.later = Table(LATER)  # transfer_id -> (next step's time, Hold, Life)
        self.edge: Optional[int] = None
        self.later_first: Optional[int] = None
        self.sent = Log(SENT)  # (t, user, transfer_id): transfers here, the lookback's and
        # perhaps older ones not trimmed yet (readers skip those)
        self.refunded = Log(REFUNDED_IDS)  # transfer ids of the refunded holds
        self.reporters = Log(REPORTERS)  # (user, t): the reports against this address
        self.report_ids = Log(REPORT_IDS)  # reports against it (for the freeze record)
        self.frozen: Optional[tuple] = None  # (freeze_id, t)
        self.confirmed: Optional[int] = None  # time a scam was confirmed here
        self.owner: Optional[str] = None  # exchange account behind the address, if any
        self.last_t: Optional[int] = None
        self.oldest: Optional[int] = None  # earliest time in ``sent``
        self.kept = 0  # len(sent) after its last trim
        self.evidence = pyr.Evidence()  # what grew against this address (rule 14)


def expected_loss(ev: ScoredTransfer, certain: bool = False) -> float:
    """USD at risk weighted by the chance it is a scam: the transfer's USD times its risk
    score, or times 1 when a list, a freeze or a look-alike makes it ``certain``. What the
    call capacity (rule 12) ranks by; rounded to the cent.

    >>> from core.events import FeaturedTransfer
    >>> from schemas.rows import Transfer
    >>> t = Transfer("t", 0, "u", "0xa", None, "ETH", "ETH", "1", 2000.0, "WITHDRAWAL")
    >>> st = ScoredTransfer(FeaturedTransfer(t, 0, {}), 0, 0.5, "rules")
    >>> expected_loss(st), expected_loss(st, certain=True)
    (1000.0, 2000.0)
    """
    risk = 1.0 if certain else ev.score
    return round(risk * ev.featured.transfer.usd_value, 2)


HOLD_TEST = "hold_test="  # the reason naming the test that held a transfer


def scored_hold(ev: ScoredTransfer, p: Policy) -> Optional[str]:
    """The Score step's test that holds ``ev`` (``held_by``: score, rule or expected
    loss), or for a ScoredTransfer made without one, ``"score"`` when its score reaches its
    hold threshold."""
    if ev.held_by is not None:
        return ev.held_by
    threshold = p.hold_threshold if ev.hold_threshold is None else ev.hold_threshold
    return "score" if ev.score >= threshold else None


def hold_test(ev: ScoredTransfer, p: Policy, frozen: bool) -> Optional[str]:
    """The first test that holds ``ev``: ``blacklist``, ``frozen`` (its destination),
    ``lookalike``, then the Score step's (``rule``, ``score``, ``expected_loss``; not when
    the friction cap turned it into a warning)."""
    ft = ev.featured
    if ft.blacklist:
        return "blacklist"
    if frozen:
        return "frozen"
    if ft.lookalike_of:
        return "lookalike"
    return None if ev.capped else scored_hold(ev, p)


class Actions(Machine):
    LOGS = (SENT, REFUNDED_IDS, REPORTERS, REPORT_IDS, LATER)

    def __init__(self, policy: Policy):
        self.p = policy

    def new_state(self, key):
        return _Dest()

    # -- lifecycle -----------------------------------------------------------------------
    def is_empty(self, s: _Dest) -> bool:
        return s.last_t is None and not s.soon and not len(s.later) and s.frozen is None

    def _ttl(self) -> int:
        longest = self.p.hold_max_ms if self.p.hold_escalation else self.p.hold_ms
        return max(self.p.lookback_ms, longest)

    def next_deadline(self, s: _Dest) -> Optional[int]:
        ds = [life.next_time() for _h, life in s.soon.values()]
        if s.later_first is not None:
            ds.append(s.later_first)
        if s.last_t is not None:
            ds.append(s.last_t + self._ttl())
        return min(ds) if ds else None

    # -- pending holds: due soon in the head, the others in a log -----------------------
    def _bring_soon(self, s: _Dest, now: int) -> None:
        """Move the holds of the table due by ``now + SOON_MS`` into the head, at most
        SOON_MAX of them beyond those already due (the earliest, and any due at the same
        time as the last): ``edge`` becomes the time up to which the head holds them all.
        The table is looked through at most once per SOON_MAX steps of holds, or per
        SOON_MS of event time."""
        edge = now + SOON_MS
        later = s.later
        near = sorted((later.get(tid)[0], tid) for tid in later
                      if later.get(tid)[0] <= edge)
        take = max(SOON_MAX, sum(1 for at, _tid in near if at <= now))
        if len(near) > take:
            edge = near[take - 1][0]
            while take < len(near) and near[take][0] == edge:
                take += 1
            near = near[:take]
        s.edge = edge
        for _at, tid in near:
            _at, h, life = later.get(tid)
            later.delete(tid)
            s.soon[tid] = (h, life)
        self._later_first(s)

    def _later_first(self, s: _Dest) -> None:
        later = s.later
        s.later_first = min((later.get(tid)[0] for tid in later), default=None)

    def _place(self, s: _Dest, tid: str, h: Hold, life: pyr.Life) -> None:
        """A pending hold into the head when its next step is due by ``edge``, else into
        the log."""
        at = life.next_time()
        if s.edge is not None and at <= s.edge:
            s.soon[tid] = (h, life)
            return
        s.later.set(tid, (at, h, life))
        if s.later_first is None or at < s.later_first:
            s.later_first = at

    def _pending_ids(self, s: _Dest) -> set:
        """Every pending hold's transfer id (reads the table)."""
        ids = set(s.soon)
        ids.update(s.later)
        return ids

    def _is_pending(self, s: _Dest, tid: str) -> bool:
        return tid in s.soon or tid in s.later

    def _take(self, s: _Dest, tid: str) -> Hold:
        """Remove the pending hold of ``tid`` (it must be pending) and return it."""
        got = s.soon.pop(tid, None)
        if got is not None:
            return got[0]
        _at, h, _life = s.later.get(tid)
        s.later.delete(tid)
        if _at == s.later_first:
            self._later_first(s)
        return h

    def advance(self, s: _Dest, now: int) -> list:
        out = []
        if len(s.later) and (s.edge is None or now >= s.edge):
            self._bring_soon(s, now)
        due = [(life.next_time(), tid) for tid, (_h, life) in s.soon.items()]
        due = [x for x in due if x[0] <= now]
        heapq.heapify(due)  # in time order; a hold's next stage re-enters when due too
        while due:
            at, tid = heapq.heappop(due)
            out.extend(self._stage(s, tid, at))
            got = s.soon.get(tid)
            if got is None:
                continue
            nxt = got[1].next_time()
            if nxt <= now:
                heapq.heappush(due, (nxt, tid))
            elif s.edge is None or nxt > s.edge:  # its next step is not due soon
                del s.soon[tid]
                self._place(s, tid, *got)
        if s.last_t is not None and s.last_t + self._ttl() <= now:
            frozen = s.frozen
            s.__init__()
            s.frozen = frozen  # a frozen address stays frozen
        return out

    def _stage(self, s: _Dest, tid: str, at: int) -> list:
        """The hold's next step due at ``at``: a stage contact, the information deadline, or
        its deadline (extended on evidence against the destination, else released)."""
        h, life = s.soon[tid]
        if life.plan and life.plan[0][0] <= life.deadline:
            _, what = life.plan.pop(0)
            if what == "info_due":
                life.unanswered = True
                return [(METRIC, at, ("info_requests_unanswered", 1))]
            req = pyr.stage_request(life, what, h.user_id, at, tid, h.to_address, h.reasons)
            return [(REQUESTS, at, req), (METRIC, at, (f"hold_stage_{what}", 1))]
        why = pyr.grounds(self.p, life, s.evidence) if pyr.can_extend(self.p, life) else []
        if not why:
            return self._resolve(s, tid, "RELEASED", at, pyr.release_reason(life))
        life.deadline = pyr.extend_to(self.p, life, at)
        life.looked = at
        life.extensions += 1
        life.why = why
        return [(REQUESTS, at, pyr.extension_notice(life, h.user_id, at, tid, h.to_address,
                                                    why)),
                (METRIC, at, ("holds_extended", 1))]

    # -- events --------------------------------------------------------------------------
    def on_event(self, s: _Dest, ev, now: int) -> list:
        s.last_t = now
        horizon = now - self.p.lookback_ms
        if (s.oldest is not None and s.oldest < horizon
                and len(s.sent) >= 2 * max(s.kept, TRIM_AT_LEAST)):
            self._trim(s, horizon)
        t = type(ev)
        if t is ScoredTransfer:
            return self._transfer(s, ev, now)
        if t is ScoredReport:
            return self._report(s, ev, now)
        if t is AddressFact:
            return self._fact(s, ev, now)
        if t is BlacklistUpdate:
            return self._list_update(s, ev, now)
        raise TypeError(f"Actions cannot handle {t.__name__}")

    def _transfer(self, s: _Dest, ev: ScoredTransfer, now: int) -> list:
        ft = ev.featured
        tr = ft.transfer
        p = self.p
        if tr.to_user_id and s.owner is None:
            s.owner = tr.to_user_id
        reasons: list = []
        hold = False
        kind = None
        if s.frozen is not None:
            hold, kind = True, "WARNING"  # paying a confirmed scam: refunded, and warned
            reasons.append("destination_frozen")
        if ft.blacklist:
            hold = True
            kind = "WARNING"
            reasons += [f"blacklist:{src}" for src in ft.blacklist]
            reasons.append(f"list_version={ft.list_version}")
        if ft.lookalike_of:
            hold, kind = True, "WARNING"
            reasons.append(lookalike.reason(ft.lookalike_of, lookalike.family(tr.to_address,
                                                                              tr.network)))
        test = hold_test(ev, p, s.frozen is not None)
        if scored_hold(ev, p) and not ev.capped:  # capped: the sender's friction cap
            hold = True
            kind = kind or "HOLD_NOTICE"
        elif ev.capped or ev.score >= p.warn_threshold:
            kind = kind or "WARNING"
        if ev.score >= p.warn_threshold or ev.held_by == "expected_loss":
            reasons += list(ev.reasons) or [f"risk_score={ev.score:.2f}"]
        out = []
        if hold:
            h = Hold(short_id("hold", tr.transfer_id), tr.transfer_id, tr.user_id,
                     tr.to_address, tr.asset, tr.amount, tr.usd_value, now, now + p.hold_ms,
                     ev.score, reasons + [f"{HOLD_TEST}{test}"], ev.model_version)
            out.append((HOLDS, now, h))
            self._sent(s, now, tr)
            life, opened = self._open(s, ev, h, now)
            out.extend(opened)
            if s.frozen is not None:  # refunded at once: never pending
                out.extend(self._resolution(s, h, "REFUNDED", now, "destination frozen"))
                out.append((LOSSES, now, LossConfirmed(tr.user_id, now, tr.transfer_id,
                                                       tr.to_address)))
            else:
                self._place(s, tr.transfer_id, h, life)
        else:
            self._sent(s, now, tr)
        if is_young_dest(ft.features, p):  # unrelated senders into a young address (rule 14)
            pyr.note_fan_in(s.evidence, now, ft.features.get("fan_in_24h", 0.0))
        if kind is not None:
            # A transfer to a frozen address is a confirmed loss: the request says so
            # itself, so Outreach never decides on it before the LossConfirmed arrives.
            losses = (tr.transfer_id,) if s.frozen is not None else ()
            sure = s.frozen is not None or bool(ft.blacklist) or bool(ft.lookalike_of)
            out.append((REQUESTS, now, OutreachRequest(tr.user_id, now, kind, "APP",
                                                       tr.transfer_id, tr.to_address,
                                                       tuple(reasons), losses,
                                                       expected_loss(ev, sure))))
        return out

    def _open(self, s: _Dest, ev: ScoredTransfer, h: Hold, now: int) -> tuple:
        """The stages of a new hold (rule 14), and its outputs: a request for information
        at once to the destination's account, when it is one of ours."""
        ft = ev.featured
        sure = s.frozen is not None or bool(ft.blacklist) or bool(ft.lookalike_of)
        life = pyr.open_hold(self.p, h.transfer_id, now, expected_loss(ev, sure),
                             ft.features.get("fan_in_24h", 0.0), s.owner)
        if not life.escalate:
            held_out = self.p.hold_escalation  # not escalated because held out, not off
            return life, [(METRIC, now, ("escalation_holdout_holds", 1))] if held_out else []
        if life.info_due is None or s.frozen is not None:
            return life, []
        return life, [(REQUESTS, now, pyr.info_request(s.owner, now, h.transfer_id,
                                                       h.to_address, tuple(h.reasons)))]

    def _report(self, s: _Dest, ev: ScoredReport, now: int) -> list:
        rep = ev.featured.report_in.report
        s.reporters.append((rep.reporter_user_id, now))
        pyr.note_report(s.evidence, rep.report_id, now, ev.verdict == "REVIEW")
        s.report_ids.append(rep.report_id)
        if rep.suspect_user_id and s.owner is None:
            s.owner = rep.suspect_user_id
        if ev.verdict != "SCAM":
            return []
        return self._confirm(s, ev.featured.report_in.suspect, now, ev.score,
                             [f"verdict:SCAM report={rep.report_id}"] + list(ev.reasons))

    def _fact(self, s: _Dest, fact: AddressFact, now: int) -> list:
        if not fact.is_scam:
            s.evidence.cleared = now  # cleared: earlier evidence extends no hold (rule 14)
            return []
        out = []
        if fact.subject_type == "TRANSFER" and self._is_pending(s, fact.subject_id):
            out.extend(self._resolve(s, fact.subject_id, "REFUNDED", now,
                                     f"case {fact.case_id}: transfer confirmed scam"))
        out.extend(self._confirm(s, fact.address, now, 1.0,
                                 [f"case:{fact.case_id} {fact.subject_type.lower()} "
                                  f"confirmed scam"]))
        return out

    def _list_update(self, s: _Dest, ev: BlacklistUpdate, now: int) -> list:
        if ev.action == "REMOVE":
            return []
        return self._sweep(s, ev.address, now, f"blacklisted:{ev.source}")

    # -- helpers -------------------------------------------------------------------------
    def _confirm(self, s: _Dest, address: str, now: int, score: float, reasons: list) -> list:
        """A scam confirmed on this address: freeze it (once), refund every pending hold,
        note the losses, sweep for silent sufferers."""
        out = []
        if s.confirmed is None:
            s.confirmed = now
            horizon = now - self.p.lookback_ms
            for t, user, tid in s.sent.items():
                if t < horizon:
                    continue
                out.append((LOSSES, now, LossConfirmed(user, now, tid, address)))
        held = {tid: h for tid, (h, _life) in s.soon.items()}
        for tid in s.later:
            held[tid] = s.later.get(tid)[1]
        s.soon.clear()
        s.later, s.later_first = Table(LATER), None  # a new table: its bag is cleared
        for tid in sorted(held):
            out.extend(self._resolution(s, held[tid], "REFUNDED", now,
                                        "scam confirmed: " + reasons[0]))
        if s.frozen is None:
            fid = short_id("freeze", address, now)
            s.frozen = (fid, now)
            out.append((FREEZES, now, Freeze(fid, address, s.owner, now, score,
                                             sorted(set(s.report_ids.items())), reasons)))
            out.append((METRIC, now, ("freezes", 1)))
        out.extend(self._sweep(s, address, now, "frozen"))
        return out

    def _sweep(self, s: _Dest, address: str, now: int, why: str) -> list:
        """Rule 5: everyone who sent here in the lookback, lost the money and has not
        reported it gets a SILENT_SUFFERER request (Outreach de-duplicates per address)."""
        out: list = []
        if not len(s.sent):
            return out
        horizon = now - self.p.lookback_ms
        seen = {user for user, _t in s.reporters.items()}
        refunded = set(s.refunded.items())
        pending = self._pending_ids(s)
        for t, user, tid in s.sent.items():
            # lost: never held, or held and released (not pending, not refunded)
            if t < horizon or user in seen or tid in pending or tid in refunded:
                continue
            seen.add(user)
            out.append((REQUESTS, now, OutreachRequest(
                user, now, "SILENT_SUFFERER", "CHAT", tid, address,
                (why, f"sent_at={t}"))))
        return out

    def _sent(self, s: _Dest, now: int, tr) -> None:
        s.sent.append((now, tr.user_id, tr.transfer_id))
        if s.oldest is None or now < s.oldest:
            s.oldest = now

    def _trim(self, s: _Dest, horizon: int) -> None:
        """Drop the transfers past the lookback from the sent log (and their refunds):
        a rewrite of the log, once it has doubled, so O(1) per transfer amortised."""
        kept = [x for x in s.sent.items() if x[0] >= horizon]
        s.sent.replace(kept)
        s.kept = len(kept)
        s.oldest = min((x[0] for x in kept), default=None)
        if len(s.refunded):
            live = {x[2] for x in kept}
            s.refunded.replace(tid for tid in s.refunded.items() if tid in live)

    def _resolve(self, s: _Dest, tid: str, resolution: str, at: int, reason: str) -> list:
        return self._resolution(s, self._take(s, tid), resolution, at, reason)

    def _resolution(self, s: _Dest, h: Hold, resolution: str, at: int, reason: str) -> list:
        tid = h.transfer_id
        if resolution == "REFUNDED":
            s.refunded.append(tid)
        r = HoldResolution(h.hold_id, tid, resolution, at, reason, h.user_id, h.to_address,
                           h.usd_value)
        return [(RESOLUTIONS, at, r)]
