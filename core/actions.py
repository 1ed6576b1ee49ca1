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
from core.machine import METRIC, Log, Machine
from core.models import is_young_dest
from core.policy import Policy
from schemas.rows import BlacklistUpdate, Freeze, Hold, HoldResolution

HOLDS, RESOLUTIONS, FREEZES, REQUESTS, LOSSES = (
    "holds", "resolutions", "freezes", "outreach_requests", "losses")


def short_id(*parts) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


SENT, REFUNDED_IDS, REPORTERS, REPORT_IDS = (
    "actions.sent", "actions.refunded", "actions.reporters", "actions.report_ids")
TRIM_AT_LEAST = 64  # the sent log is trimmed when it has doubled since its last trim


class _Dest:
    """An address's state: a small head, and logs (``core.machine.Log``) that only
    grow between trims and are read only by a sweep, a freeze or a trim, so that a
    transfer to a busy address costs the same however many came before."""
    __slots__ = ("pending", "sent", "refunded", "reporters", "report_ids", "frozen",
                 "confirmed", "owner", "last_t", "oldest", "kept", "life", "evidence")

    def __init__(self):
        self.pending: dict = {}  # transfer_id -> Hold
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
        self.life: dict = {}  # transfer_id -> pyramid.Life of its pending hold (rule 14)
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
    LOGS = (SENT, REFUNDED_IDS, REPORTERS, REPORT_IDS)

    def __init__(self, policy: Policy):
        self.p = policy

    def new_state(self, key):
        return _Dest()

    # -- lifecycle -----------------------------------------------------------------------
    def is_empty(self, s: _Dest) -> bool:
        return s.last_t is None and not s.pending and s.frozen is None

    def _ttl(self) -> int:
        longest = self.p.hold_max_ms if self.p.hold_escalation else self.p.hold_ms
        return max(self.p.lookback_ms, longest)

    def next_deadline(self, s: _Dest) -> Optional[int]:
        ds = [life.next_time() for life in s.life.values()]
        if s.last_t is not None:
            ds.append(s.last_t + self._ttl())
        return min(ds) if ds else None

    def advance(self, s: _Dest, now: int) -> list:
        out = []
        due = [(life.next_time(), tid) for tid, life in s.life.items()]
        due = [x for x in due if x[0] <= now]
        heapq.heapify(due)  # in time order; a hold's next stage re-enters when due too
        while due:
            at, tid = heapq.heappop(due)
            out.extend(self._stage(s, tid, at))
            life = s.life.get(tid)
            if life is not None and life.next_time() <= now:
                heapq.heappush(due, (life.next_time(), tid))
        if s.last_t is not None and s.last_t + self._ttl() <= now:
            frozen = s.frozen
            s.__init__()
            s.frozen = frozen  # a frozen address stays frozen
        return out

    def _stage(self, s: _Dest, tid: str, at: int) -> list:
        """The hold's next step due at ``at``: a stage contact, the information deadline, or
        its deadline (extended on evidence against the destination, else released)."""
        life, h = s.life[tid], s.pending[tid]
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
            s.pending[tr.transfer_id] = h
            self._sent(s, now, tr)
            out.extend(self._open(s, ev, h, now))
            if s.frozen is not None:
                out.extend(self._resolve(s, tr.transfer_id, "REFUNDED", now,
                                         "destination frozen"))
                out.append((LOSSES, now, LossConfirmed(tr.user_id, now, tr.transfer_id,
                                                       tr.to_address)))
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

    def _open(self, s: _Dest, ev: ScoredTransfer, h: Hold, now: int) -> list:
        """The stages of a new hold (rule 14); a request for information at once to the
        destination's account, when it is one of ours."""
        ft = ev.featured
        sure = s.frozen is not None or bool(ft.blacklist) or bool(ft.lookalike_of)
        life = pyr.open_hold(self.p, h.transfer_id, now, expected_loss(ev, sure),
                             ft.features.get("fan_in_24h", 0.0), s.owner)
        s.life[h.transfer_id] = life
        if not life.escalate:
            held_out = self.p.hold_escalation  # not escalated because held out, not off
            return [(METRIC, now, ("escalation_holdout_holds", 1))] if held_out else []
        if life.info_due is None or s.frozen is not None:
            return []
        return [(REQUESTS, now, pyr.info_request(s.owner, now, h.transfer_id, h.to_address,
                                                 tuple(h.reasons)))]

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
        if fact.subject_type == "TRANSFER" and fact.subject_id in s.pending:
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
        for tid in sorted(s.pending):
            out.extend(self._resolve(s, tid, "REFUNDED", now, "scam confirmed: " + reasons[0]))
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
        pending = s.pending
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
        h = s.pending.pop(tid)
        s.life.pop(tid, None)
        if resolution == "REFUNDED":
            s.refunded.append(tid)
        r = HoldResolution(h.hold_id, tid, resolution, at, reason, h.user_id, h.to_address,
                           h.usd_value)
        return [(RESOLUTIONS, at, r)]
