"""LabelJoin (keyed by destination / suspect): delayed labels for the models.

A featured transfer or report waits here until its label is known, then leaves as an
:class:`Example` stamped with the label's event time:

* positive when a case outcome confirms it — the transfer itself, the report itself, or the
  address (which confirms every example waiting for it, and every later one at once, for
  as long as payers keep coming within ``lookback_ms`` of each other: an address confirmed
  a scam stays one while Actions' lookback still keeps its payers, so a later payment to it
  never becomes a negative just because the label horizon passed since the confirmation);
* negative when a case outcome clears it, or when ``label_horizon_ms`` passes without one.

With ``Policy.model_negative_sample`` k > 1 only 1 in k negatives leave (chosen by a hash
of the subject id, so every runner keeps the same ones), each weighing k.

Labels come from inputs (case outcomes) only, never from the graph's own verdicts or
freezes, so a model never learns from its own decisions. An example is stamped at least
1 ms after the event it describes: it can never reach the model before that event's score.
"""

from __future__ import annotations

import zlib
from typing import Optional

from transforms.events import AddressFact, Example, FeaturedTransfer
from transforms.ledger import report_key, transfer_key
from transforms.machine import Machine
from transforms.policy import Policy

EXAMPLES = "examples"
TRANSFER_RISK, SCAM_VERDICT = "transfer_risk", "scam_verdict"


class _Labels:
    __slots__ = ("pending", "confirmed_at")

    def __init__(self):
        self.pending: dict = {}  # subject id -> (deadline, model, t, x)
        # a confirmed scam address: the time of its confirmation or of the latest example it
        # labelled since (the mark lasts LabelJoin.confirmed_ms after it)
        self.confirmed_at: Optional[int] = None


class LabelJoin(Machine):
    def __init__(self, policy: Policy):
        self.p = policy

    def new_state(self, key):
        return _Labels()

    def is_empty(self, s: _Labels) -> bool:
        return not s.pending and s.confirmed_at is None

    def next_deadline(self, s: _Labels) -> Optional[int]:
        ds = [w[0] for w in s.pending.values()]
        if s.confirmed_at is not None:
            ds.append(s.confirmed_at + self.confirmed_ms())
        return min(ds) if ds else None

    def confirmed_ms(self) -> int:
        """How long a confirmed address stays confirmed after its last example: the
        lookback (Actions keeps its payers that long), at least the label horizon."""
        return max(self.p.lookback_ms, self.p.label_horizon_ms)

    def negative(self, sid: str) -> Optional[int]:
        """The weight of a negative example about ``sid``, or None when the 1-in-k sample
        (``Policy.model_negative_sample``) leaves it out."""
        k = self.p.model_negative_sample
        if k <= 1:
            return 1
        return k if zlib.crc32(sid.encode()) % k == 0 else None

    def advance(self, s: _Labels, now: int) -> list:
        out = []
        if s.pending:
            due = sorted((w[0], sid) for sid, w in s.pending.items() if w[0] <= now)
            for deadline, sid in due:
                _, model, t, x = s.pending.pop(sid)
                w = self.negative(sid)
                if w is not None:
                    out.append((EXAMPLES, deadline,
                                Example(model, deadline, sid, x, False, t, w)))
        if s.confirmed_at is not None and s.confirmed_at + self.confirmed_ms() <= now:
            s.confirmed_at = None
        return out

    def on_event(self, s: _Labels, ev, now: int) -> list:
        t = type(ev)
        if t is AddressFact:
            return self._fact(s, ev, now)
        if t is FeaturedTransfer:
            sid, model = transfer_key(ev.transfer.transfer_id), TRANSFER_RISK
        else:
            sid, model = report_key(ev.report_in.report.report_id), SCAM_VERDICT
        if sid in s.pending:
            return []
        if s.confirmed_at is not None:
            s.confirmed_at = max(s.confirmed_at, now)  # its payers are still coming
            return [(EXAMPLES, now + 1, Example(model, now + 1, sid, ev.features, True, now))]
        s.pending[sid] = (now + self.p.label_horizon_ms, model, now, ev.features)
        return []

    def _fact(self, s: _Labels, fact: AddressFact, now: int) -> list:
        out = []
        whole_address = fact.subject_type == "ADDRESS" or fact.is_scam
        if fact.subject_type != "ADDRESS":
            sid = (transfer_key if fact.subject_type == "TRANSFER" else report_key)(fact.subject_id)
            w = s.pending.pop(sid, None)
            if w is not None:
                out.extend(self._example(w, sid, fact.is_scam, now))
        if whole_address:
            for sid in sorted(s.pending):
                out.extend(self._example(s.pending[sid], sid, fact.is_scam, now))
            s.pending.clear()
            s.confirmed_at = now if fact.is_scam else None
        return out

    def _example(self, w, sid, y, now) -> list:
        _, model, t, x = w
        at = max(now, t + 1)
        weight = 1 if y else self.negative(sid)
        if weight is None:
            return []
        return [(EXAMPLES, at, Example(model, at, sid, x, y, t, weight))]
