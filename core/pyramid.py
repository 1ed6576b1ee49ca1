"""Escalation inside the hold (decision rule 14): the pyramid, a pure part of Actions.

A pending hold is not left alone for 24 hours. It moves through stages in event time,
each a policy option (durations from the hold's placement):

1. **notice** at placement (the ``HOLD_NOTICE`` or ``WARNING`` of rules 1-3, unchanged);
2. **warning** at ``hold_warn_after``: a ``HOLD_ESCALATION`` on ``CHAT`` to the sender,
   naming the hold and its reasons (the chat a person answers: "is this someone you met
   online? did they promise returns?");
3. **call** at ``hold_call_after``, for the riskiest holds only (expected loss at least
   ``hold_call_min_loss`` USD): an ``INTERVENTION`` on ``CALL``, within the team's call
   capacity (rule 12 downgrades the calls past it to ``CHAT``);
4. **request for information**, when the destination is an account of our exchange: at
   placement an ``INFO_REQUEST`` on ``CHAT`` to that account. An answer is recorded as a
   case outcome clearing the address (``is_scam`` false); none by ``info_answer`` after
   the request counts as evidence against the destination (``info_request_evidence``).

At the deadline a hold is **extended** instead of released when the evidence against its
destination grew since it was placed, or for a further extension since the last one (and
was not cleared by a case outcome since):

* a new report against the destination (``new_report=<id>``);
* a ``REVIEW`` verdict on it (``verdict_review=<id>``);
* fan-in from unrelated senders: ``fan_in_24h`` of a later transfer into the (young)
  destination reached the hold's own value plus ``extension_fan_in_rise``
  (``fan_in_rise=a->b``);
* the destination account's request for information went unanswered (first extension
  only: it does not grow).

Each extension adds ``hold_extension`` up to ``hold_max`` after placement; the sender is
told why (a ``HOLD_NOTICE`` naming the reasons), and the resolution names them. The
sender's own risk (score, profile, history) never extends a hold: every piece of evidence
is about the destination and comes from someone else. Every hold still ends in exactly one
resolution: refunded when a scam is confirmed, released at its (possibly extended) deadline.

Escalation holdout (``escalation_holdout``): a salted hash of the transfer id puts a fixed
share of holds in a control group that gets no stage contacts (no warning, call or request
for information; the notice at placement and extensions on reports, verdicts and fan-in
stay), so the report can measure what the contacts change.

>>> from core.policy import HOUR, Policy
>>> p = Policy()
>>> life = open_hold(p, "t1", 0, 1000.0, 1.0, owner=None)
>>> [(t // HOUR, what) for t, what in life.plan]
[(1, 'warn')]
>>> ev = Evidence()
>>> note_report(ev, "r9", 5 * HOUR, review=False)
>>> grounds(p, life, ev)
['new_report=r9']
>>> extend_to(p, life, 24 * HOUR) // HOUR
48
"""

from __future__ import annotations

from typing import Optional

from core.events import OutreachRequest
from core.holdout import in_holdout
from core.policy import Policy

ESCALATION_SALT = b"safetynet-escalation-holdout-v1|"
STAGE_KIND = "HOLD_ESCALATION"  # the stage warning to the sender (CHAT)
INFO_KIND = "INFO_REQUEST"  # the request for information to the destination account (CHAT)
ESCALATION_HOLDOUT_REASON = "escalation_holdout"


def in_escalation_holdout(transfer_id: str, share: float) -> bool:
    """Is this hold in the control group that gets no stage contacts? (a hash of the
    transfer id, salted apart from the warning holdout's user hash; the simulator calls it
    too, to model who is contacted)."""
    return in_holdout(transfer_id, share, ESCALATION_SALT)


class Life:
    """One pending hold's stages: its current deadline, the stage contacts still to come
    (``plan``: (time, what), earliest first), and its extensions."""

    __slots__ = ("placed", "deadline", "plan", "escalate", "loss", "fan_in0", "info_due",
                 "unanswered", "extensions", "why", "looked")

    def __init__(self, placed: int, deadline: int, escalate: bool, loss: float,
                 fan_in0: float):
        self.placed, self.deadline = placed, deadline
        self.plan: list = []
        self.escalate, self.loss, self.fan_in0 = escalate, loss, fan_in0
        self.info_due: Optional[int] = None
        self.unanswered = False
        self.extensions = 0
        self.why: list = []
        self.looked = placed  # evidence must be newer than this (placement, last extension)

    def next_time(self) -> int:
        return min(self.deadline, self.plan[0][0]) if self.plan else self.deadline


class Evidence:
    """What grew against a destination: the latest report, REVIEW verdict and fan-in (of a
    young destination), and the last time a case outcome cleared it. O(1) per event."""

    __slots__ = ("report", "review", "fan_in", "cleared")

    def __init__(self):
        self.report: Optional[tuple] = None  # (t, report id)
        self.review: Optional[tuple] = None  # (t, report id)
        self.fan_in: Optional[tuple] = None  # (t, distinct senders in 24h)
        self.cleared: Optional[int] = None


def open_hold(p: Policy, tid: str, now: int, loss: float, fan_in0: float,
              owner: Optional[str]) -> Life:
    """The stages of a hold placed at ``now`` (``loss``: its expected loss)."""
    escalate = p.hold_escalation and not in_escalation_holdout(tid, p.escalation_holdout)
    life = Life(now, now + p.hold_ms, escalate, loss, fan_in0)
    if escalate:
        life.plan.append((now + p.hold_warn_after_ms, "warn"))
        if loss >= p.hold_call_min_loss:
            life.plan.append((now + p.hold_call_after_ms, "call"))
        if owner is not None and p.info_request_evidence:
            life.info_due = now + p.info_answer_ms
            life.plan.append((life.info_due, "info_due"))
        life.plan.sort()
    return life


def info_request(owner: str, now: int, tid: str, address: str, reasons: tuple
                 ) -> OutreachRequest:
    """The request for information sent at placement to the destination's account."""
    return OutreachRequest(owner, now, INFO_KIND, "CHAT", tid, address,
                           ("held_transfer_to_your_account",) + tuple(reasons[:2]))


def stage_request(life: Life, what: str, user: str, now: int, tid: str, address: str,
                  reasons: list) -> Optional[OutreachRequest]:
    """The contact of stage ``what`` (None for the information deadline: no contact)."""
    why = tuple(reasons[:3])
    if what == "warn":
        return OutreachRequest(user, now, STAGE_KIND, "CHAT", tid, address,
                               ("hold_stage=warning",) + why, (), life.loss)
    if what == "call":
        return OutreachRequest(user, now, "INTERVENTION", "CALL", tid, address,
                               ("hold_stage=call", f"expected_loss_usd={life.loss:.2f}")
                               + why, (), life.loss)
    return None


def note_report(ev: Evidence, report_id: str, now: int, review: bool) -> None:
    """A report against the destination (and its verdict, when REVIEW)."""
    ev.report = (now, report_id)
    if review:
        ev.review = (now, report_id)


def note_fan_in(ev: Evidence, now: int, fan_in: float) -> None:
    ev.fan_in = (now, fan_in)


def grounds(p: Policy, life: Life, ev: Evidence) -> list:
    """Why the hold should be extended now (empty: release it): evidence against the
    destination newer than the placement (or the last extension) and its last clearing."""
    since = max(life.looked, ev.cleared if ev.cleared is not None else life.looked)
    out = []
    if ev.report is not None and ev.report[0] > since:
        out.append(f"new_report={ev.report[1]}")
    if ev.review is not None and ev.review[0] > since:
        out.append(f"verdict_review={ev.review[1]}")
    if (ev.fan_in is not None and ev.fan_in[0] > since
            and ev.fan_in[1] >= life.fan_in0 + p.extension_fan_in_rise):
        out.append(f"fan_in_rise={life.fan_in0:g}->{ev.fan_in[1]:g}")
    if (life.unanswered and not life.extensions
            and (ev.cleared is None or ev.cleared <= life.placed)):
        out.append("info_request_unanswered")
    return out


def extend_to(p: Policy, life: Life, now: int) -> int:
    """The hold's next deadline after an extension at ``now`` (at most ``hold_max``)."""
    return min(now + p.hold_extension_ms, life.placed + p.hold_max_ms)


def can_extend(p: Policy, life: Life) -> bool:
    return p.hold_escalation and life.deadline < life.placed + p.hold_max_ms


def extension_notice(life: Life, user: str, now: int, tid: str, address: str,
                     why: list) -> OutreachRequest:
    hours = (life.deadline - life.placed) / 3_600_000
    return OutreachRequest(user, now, "HOLD_NOTICE", "APP", tid, address,
                           (f"hold_extended_to={hours:g}h",) + tuple(why), (), life.loss)


def release_reason(life: Life) -> str:
    base = "no scam confirmed within the hold"
    if not life.extensions:
        return base
    return f"{base} (extended {life.extensions}x: {', '.join(life.why)})"
