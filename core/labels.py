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

import heapq
import zlib
from typing import Optional

from core.events import AddressFact, Example, FeaturedTransfer
from core.ledger import report_key, transfer_key
from core.machine import METRIC, Derived, Log, Machine
from core.policy import Policy

EXAMPLES = "examples"
TRANSFER_RISK, SCAM_VERDICT = "transfer_risk", "scam_verdict"


FAR = "labels.far"


class _Labels(Derived):
    """An address's waiting records, split so that an event reads only a small part: those
    whose horizon ends by ``edge`` in ``near`` (the head, read by every event), the later
    ones in the log ``far``, read when ``edge`` moves on (once per ``label_near_ms`` of event
    time) or when a case outcome names one."""

    __slots__ = ("near", "far", "edge", "far_first", "far_last_t", "confirmed_at", "queue")
    SAVED = ("near", "far", "edge", "far_first", "far_last_t", "confirmed_at")  # pickled

    def __init__(self):
        self.near: dict = {}  # subject id -> (deadline, model, t, x), deadline <= edge
        self.far = Log(FAR)  # (deadline, sid, model, t, x), deadline > edge
        self.edge: Optional[int] = None
        self.far_first: Optional[int] = None  # earliest deadline in far
        self.far_last_t: Optional[int] = None  # latest event time in far
        # labelled since (the mark lasts LabelJoin.confirmed_ms after it)
        self.confirmed_at: Optional[int] = None
        # near's (deadline, sid) as a heap, so that an event finds what is due without
        # reading every near record (a busy address holds a day of its payments there);
        # derived from near, never pickled; an entry whose record has left is skipped
        self.queue: Optional[list] = None

    def forget(self) -> None:
        self.queue = None

    def due_queue(self) -> list:
        if self.queue is None:
            self.queue = [(w[0], sid) for sid, w in self.near.items()]
            heapq.heapify(self.queue)
        return self.queue

    def put_near(self, sid: str, record: tuple) -> None:
        self.near[sid] = record
        if self.queue is not None:
            heapq.heappush(self.queue, (record[0], sid))

    def pop_due(self, now: int) -> Optional[tuple]:
        """The near record due first, if due by ``now``: ``(deadline, sid, record)``
        (removed from near), else None."""
        q, near = self.due_queue(), self.near
        while q and q[0][0] <= now:
            d, sid = heapq.heappop(q)
            w = near.get(sid)
            if w is not None and w[0] == d:
                del near[sid]
                return d, sid, w
        return None

    def first_near(self) -> Optional[int]:
        """The earliest deadline in near (None: near is empty)."""
        q, near = self.due_queue(), self.near
        while q:
            d, sid = q[0]
            w = near.get(sid)
            if w is not None and w[0] == d:
                return d
            heapq.heappop(q)
        return None

    def clear_near(self) -> None:
        self.near.clear()
        self.queue = None

    def waiting(self) -> int:
        return len(self.near) + len(self.far)

    @property
    def pending(self) -> dict:
        """Every waiting record: subject id -> (deadline, model, t, x) (reads the log)."""
        out = dict(self.near)
        for r in self.far.items():
            out[r[1]] = (r[0], r[2], r[3], r[4])
        return out


class LabelJoin(Machine):
    LOGS = (FAR,)

    def __init__(self, policy: Policy):
        self.p = policy

    def new_state(self, key):
        return _Labels()

    def is_empty(self, s: _Labels) -> bool:
        return not s.near and not len(s.far) and s.confirmed_at is None

    def next_deadline(self, s: _Labels) -> Optional[int]:
        first = s.first_near()
        ds = [] if first is None else [first]
        if s.far_first is not None:
            ds.append(s.far_first)
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

    def _bring_near(self, s: _Labels, edge: int) -> None:
        """Move the far records whose horizon ends by ``edge`` into ``near``."""
        s.edge = edge
        if not len(s.far):
            return
        later = []
        for rec in s.far.items():
            if rec[0] <= edge:
                s.put_near(rec[1], (rec[0], rec[2], rec[3], rec[4]))
            else:
                later.append(rec)
        self._set_far(s, later)

    def _set_far(self, s: _Labels, recs: list) -> None:
        if len(recs) != len(s.far):
            s.far.replace(recs)
        s.far_first = min((r[0] for r in recs), default=None)
        s.far_last_t = max((r[3] for r in recs), default=None)

    def advance(self, s: _Labels, now: int) -> list:
        out = []
        if len(s.far) and (s.edge is None or now >= s.edge):
            self._bring_near(s, now + self.p.label_near_ms)
        if s.near:  # in (deadline, sid) order
            while (got := s.pop_due(now)) is not None:
                deadline, sid, (_, model, t, x) = got
                w = self.negative(sid)
                if w is not None:
                    out.append((EXAMPLES, deadline,
                                Example(model, deadline, sid, x, False, t, w)))
        if s.confirmed_at is not None and s.confirmed_at + self.confirmed_ms() <= now:
            s.confirmed_at = None
        return out

    def _waits(self, s: _Labels, sid: str, now: int) -> bool:
        """Is a record about ``sid`` waiting? The far log is read only when a record of
        the same time or later is in it (a re-delivery has its first delivery's time)."""
        if sid in s.near:
            return True
        if not len(s.far) or s.far_last_t is None or now > s.far_last_t:
            return False
        return any(rec[1] == sid for rec in s.far.items())

    def on_event(self, s: _Labels, ev, now: int) -> list:
        t = type(ev)
        if t is AddressFact:
            return self._fact(s, ev, now)
        if t is FeaturedTransfer:
            sid, model = transfer_key(ev.transfer.transfer_id), TRANSFER_RISK
        else:
            sid, model = report_key(ev.report_in.report.report_id), SCAM_VERDICT
        if self._waits(s, sid, now):
            return []
        if s.confirmed_at is not None:
            s.confirmed_at = max(s.confirmed_at, now)  # its payers are still coming
            return [(EXAMPLES, now + 1, Example(model, now + 1, sid, ev.features, True, now))]
        if s.waiting() >= self.p.label_max_waiting:
            return [(METRIC, now, ("label_records_dropped", 1))]
        deadline = now + self.p.label_horizon_ms
        if s.edge is not None and deadline <= s.edge:
            s.put_near(sid, (deadline, model, now, ev.features))
        else:
            s.far.append((deadline, sid, model, now, ev.features))
            if s.far_first is None or deadline < s.far_first:
                s.far_first = deadline
            if s.far_last_t is None or now > s.far_last_t:
                s.far_last_t = now
        return []

    def _take(self, s: _Labels, sid: str):
        """Remove and return the waiting record about ``sid`` (None: none waits)."""
        w = s.near.pop(sid, None)
        if w is not None or not len(s.far):
            return w
        recs = s.far.items()
        hit = next((r for r in recs if r[1] == sid), None)
        if hit is None:
            return None
        self._set_far(s, [r for r in recs if r[1] != sid])
        return (hit[0], hit[2], hit[3], hit[4])

    def _fact(self, s: _Labels, fact: AddressFact, now: int) -> list:
        out = []
        whole_address = fact.subject_type == "ADDRESS" or fact.is_scam
        if fact.subject_type != "ADDRESS":
            sid = (transfer_key if fact.subject_type == "TRANSFER" else report_key)(fact.subject_id)
            w = self._take(s, sid)
            if w is not None:
                out.extend(self._example(w, sid, fact.is_scam, now))
        if whole_address:
            waiting = s.pending
            for sid in sorted(waiting):
                out.extend(self._example(waiting[sid], sid, fact.is_scam, now))
            s.clear_near()
            if len(s.far):
                self._set_far(s, [])
            s.confirmed_at = now if fact.is_scam else None
        return out

    def _example(self, w, sid, y, now) -> list:
        _, model, t, x = w
        at = max(now, t + 1)
        weight = 1 if y else self.negative(sid)
        if weight is None:
            return []
        return [(EXAMPLES, at, Example(model, at, sid, x, y, t, weight))]
