"""Outreach (keyed by user), downstream of Actions: cool-down, de-duplication and
escalation (rules 1 and 6).

* At most one outreach of a kind per user per ``cooldown_ms``; SILENT_SUFFERER outreach
  instead at most once per user and address.
* A WARNING to a vulnerable user (profile) or a repeat victim (``repeat_victim_losses`` or
  more of their transfers went to confirmed scams, seen in Actions' LossConfirmed facts)
  becomes an INTERVENTION on CALL.
* A RISK_ASSESSMENT has a cool-down of its own (rule 15): a user assessed is assessed
  again only after ``assessment_cooldown_ms``, or earlier on a *new signal* (one the last
  assessment did not name: ``warnings``, ``lookalike_payments``, ...), once per cool-down and
  never within the day-long ``cooldown_ms``.
* Warning holdout (``policy.warning_holdout``, :mod:`core.holdout`): a WARNING that
  would be sent (after escalation and the cool-down, so both groups are chosen alike) to a
  user of the holdout is not sent; it goes to the ``warning_holdout`` output instead, with
  the reason ``warning_holdout``, and is counted. Interventions are never held out.
"""

from __future__ import annotations

from typing import Callable, Optional

from core.actions import short_id
from core.assessments import KIND as ASSESSMENT
from core.events import LossConfirmed, OutreachRequest
from core.holdout import in_holdout
from core.machine import METRIC, Machine
from core.policy import Policy
from schemas.rows import Outreach, UserProfile

OUTREACH = "outreach"
HOLDOUT = "warning_holdout"  # WARNINGs not sent because the user is in the holdout


class _User:
    __slots__ = ("last_sent", "silent_for", "losses", "last_t", "assessed")

    def __init__(self):
        self.last_sent: dict = {}  # kind -> time of the last outreach of that kind
        self.silent_for: dict = {}  # address -> time of its SILENT_SUFFERER outreach
        self.losses: dict = {}  # transfer_id -> time confirmed lost to a scam
        self.last_t: Optional[int] = None
        # the signals the last risk assessment named, and whether a new signal already
        # brought one within its cool-down (rule 15)
        self.assessed: Optional[tuple] = None  # (frozenset of signal names, early)


class OutreachStep(Machine):
    def __init__(self, policy: Policy, profiles: Callable[[str], Optional[UserProfile]]):
        self.p = policy
        self.profiles = profiles

    def new_state(self, key):
        return _User()

    def _ttl(self) -> int:
        return max(self.p.lookback_ms, self.p.cooldown_ms, self.p.payee_memory_ms,
                   self.p.assessment_cooldown_ms)

    def is_empty(self, s: _User) -> bool:
        return s.last_t is None and not s.losses

    def next_deadline(self, s: _User) -> Optional[int]:
        return None if s.last_t is None else s.last_t + self._ttl()

    def advance(self, s: _User, now: int) -> list:
        if s.last_t is not None and s.last_t + self._ttl() <= now:
            # Confirmed losses outlive the idle reset (a repeat victim stays one, rule 1);
            # only the first ``repeat_victim_losses`` are kept: all the rule can ask for.
            kept = sorted(s.losses.items(), key=lambda kv: (kv[1], kv[0]))
            s.__init__()
            s.losses = dict(kept[:self.p.repeat_victim_losses])
        return []

    def on_event(self, s: _User, ev, now: int) -> list:
        s.last_t = now
        if type(ev) is LossConfirmed:
            s.losses[ev.transfer_id] = now
            return []
        req: OutreachRequest = ev
        for tid in req.losses:
            s.losses[tid] = now
        kind, channel, reasons = req.kind, req.channel, list(req.reasons)
        if kind == "SILENT_SUFFERER":
            if req.address in s.silent_for:
                return [(METRIC, now, ("outreach_deduplicated", 1))]
            s.silent_for[req.address] = now
        else:
            if kind == "WARNING":
                prof = self.profiles(req.user_id)
                if prof is not None and prof.vulnerable:
                    kind, channel = "INTERVENTION", "CALL"
                    reasons.append("vulnerable_user")
                elif len(s.losses) >= self.p.repeat_victim_losses:
                    kind, channel = "INTERVENTION", "CALL"
                    reasons.append(f"repeat_victim:losses={len(s.losses)}")
            last = s.last_sent.get(kind)
            if last is not None and now - last < self.p.cooldown_ms:
                return [(METRIC, now, ("outreach_cooldown_suppressed", 1))]
            if kind == ASSESSMENT:
                new = self._assessment_allowed(s, last, reasons, now)
                if new is None:
                    return [(METRIC, now, ("assessment_cooldown_suppressed", 1))]
                reasons += new
            s.last_sent[kind] = now
        return self._send(req, kind, channel, reasons, now)

    def _assessment_allowed(self, s: _User, last: Optional[int], reasons: list,
                            now: int) -> Optional[list]:
        """Rule 15: None when a risk assessment is still cooling down; else the reasons to
        add (``new_signal=...`` when a new signal brings it early)."""
        names = frozenset(r.split("=")[0] for r in reasons if not r.startswith("expected_"))
        if last is None or now - last >= self.p.assessment_cooldown_ms:
            s.assessed = (names, False)
            return []
        seen, early = s.assessed or (frozenset(), False)
        new = sorted(names - seen)
        if early or not new:
            return None
        s.assessed = (seen | names, True)
        return [f"new_signal={'+'.join(new)}"]

    def _send(self, req: OutreachRequest, kind: str, channel: str, reasons: list,
              now: int) -> list:
        o = Outreach(short_id("outreach", req.user_id, kind, now, req.transfer_id, req.address),
                     req.user_id, kind, channel, now, req.transfer_id, req.address, reasons,
                     req.expected_loss)
        if kind == "WARNING" and in_holdout(req.user_id, self.p.warning_holdout):
            return [(HOLDOUT, now, o._replace(reasons=reasons + ["warning_holdout"])),
                    (METRIC, now, ("warning_holdout_suppressed", 1))]
        return [(OUTREACH, now, o)]
