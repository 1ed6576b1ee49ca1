"""Score (keyed by user: the sender of a transfer, the author of a report): risk scores and
verdicts from published model versions, and the per-user friction cap (rule 10).

Every featured transfer and report is scored here, in a step with one key per user, from
the latest :class:`~core.events.ModelVersion` published *before* its event time
(the versions reach this step as side data: :class:`VersionBook`). Before any version, or
in the rules-only baseline, the documented rules score it (``model_version`` ``"rules"``).

The hold test (rules 2, 10): a transfer is held by ``"score"`` when its score reaches the
hold threshold (``"rule"`` when the fan-in rule set that score), or by ``"expected_loss"``
when its score × USD reaches the expected-loss threshold; both thresholds are the model
version's (under a friction budget) or the policy's. The expected-loss test needs a model's
score (a probability): while the rules score (before the first version, or with
``use_models`` off) it is off, as the rules' fixed scores would make it a plain USD limit.
``ScoredTransfer.held_by`` names the test.

Friction cap (rule 10): at most ``Policy.friction_cap`` model-driven holds (score, rule or
expected loss) per user per ``friction_window_ms`` of event time, and at most
``Policy.friction_cap_long`` per ``friction_long_window_ms`` (a bulk payer held a few times
every day stays within a daily cap for months). A transfer held by one of
these tests past the cap is marked ``capped``: Actions warns instead of holding, with the
reason.
Blacklist, frozen and look-alike holds are decided by Actions whatever the cap; a transfer
to a listed or look-alike destination does not use up the cap.
"""

from __future__ import annotations

import bisect
import pickle
from collections import deque
from typing import Any, Iterable, Optional

from core.events import (
    FeaturedReport,
    FeaturedTransfer,
    ModelVersion,
    ScoredReport,
    ScoredTransfer,
)
from core.friction import held_by
from core.labels import SCAM_VERDICT, TRANSFER_RISK
from core.machine import METRIC, Machine
from core.models import rules_transfer_score, score_report, score_transfer
from core.policy import Policy

SCORED_TRANSFERS, SCORED_REPORTS = "scored_transfers", "scored_reports"


class VersionBook:
    """The model versions a scorer knows, by model and time. ``latest(model, t)`` is the
    newest version valid for an event at ``t`` (published strictly before it).

    ``keep``: how many versions per model to keep (streaming: the side input brings only
    the newest versions, which are merged in); None keeps all it is given (a backtest's
    chunk). Unpickled models are cached by version id.

    >>> book = VersionBook()
    >>> book.update([ModelVersion("m", 10, "m:1", 1, pickle.dumps(1), 0.75),
    ...              ModelVersion("m", 20, "m:2", 2, pickle.dumps(2), 0.75)])
    >>> [book.latest("m", t) and book.latest("m", t).version for t in (10, 11, 20, 21)]
    [None, 'm:1', 'm:1', 'm:2']
    """

    def __init__(self, keep: Optional[int] = None):
        self.keep = keep
        self.by_model: dict[str, list] = {}
        self.times: dict[str, list] = {}
        self.ids: set = set()
        self._models: dict[str, Any] = {}

    def update(self, side: Iterable) -> None:
        """Merge versions (or iterables of versions, as a streaming pane brings them)."""
        changed = set()
        for item in side or ():
            for v in (item,) if type(item) is ModelVersion else item:
                if v.version in self.ids:
                    continue
                self.ids.add(v.version)
                self.by_model.setdefault(v.model, []).append(v)
                changed.add(v.model)
        for m in changed:
            vs = sorted(self.by_model[m], key=lambda v: (v.event_time, v.n_labels))
            if self.keep is not None and len(vs) > self.keep:
                for old in vs[:-self.keep]:
                    self.ids.discard(old.version)
                    self._models.pop(old.version, None)
                vs = vs[-self.keep:]
            self.by_model[m] = vs
            self.times[m] = [v.event_time for v in vs]

    def latest(self, model: str, t: int) -> Optional[ModelVersion]:
        times = self.times.get(model)
        if not times:
            return None
        i = bisect.bisect_left(times, t)
        return self.by_model[model][i - 1] if i else None

    def model(self, v: ModelVersion):
        m = self._models.get(v.version)
        if m is None:
            m = self._models[v.version] = pickle.loads(v.params)
        return m


class _Friction:
    __slots__ = ("holds",)

    def __init__(self):
        self.holds: deque = deque()  # event times of this user's model-driven holds


class Score(Machine):
    """Keyed by user; see the module docstring. ``keep``: see :class:`VersionBook`."""

    def __init__(self, policy: Policy, keep: Optional[int] = None):
        self.p = policy
        self.book = VersionBook(keep)

    def bind(self, side) -> None:
        self.book.update(side)

    def new_state(self, key):
        return _Friction()

    def is_empty(self, s: _Friction) -> bool:
        return not s.holds

    def _kept_ms(self) -> int:
        """How long a hold counts: the longer of the two caps' windows in use."""
        p = self.p
        return max(p.friction_window_ms, p.friction_long_window_ms if p.friction_cap_long
                   else 0)

    def next_deadline(self, s: _Friction) -> Optional[int]:
        return s.holds[0] + self._kept_ms() if s.holds else None

    def advance(self, s: _Friction, now: int) -> list:
        window = self._kept_ms()
        while s.holds and s.holds[0] + window <= now:
            s.holds.popleft()
        return []

    def _cap(self, s: _Friction, now: int) -> Optional[str]:
        """The reason a new model-driven hold of this user is capped, or None (the hold
        counts then). Both caps count the same holds: ``friction_cap`` within the last
        ``friction_window``, ``friction_cap_long`` within ``friction_long_window``."""
        p = self.p
        if p.friction_cap:
            recent = len(s.holds) - bisect.bisect_right(s.holds, now - p.friction_window_ms)
            if recent >= p.friction_cap:
                return f"friction_cap={p.friction_cap}"
        if p.friction_cap_long:
            recent = len(s.holds) - bisect.bisect_right(s.holds,
                                                        now - p.friction_long_window_ms)
            if recent >= p.friction_cap_long:
                return f"friction_cap_long={p.friction_cap_long}"
        return None

    def _version(self, model: str, now: int):
        if not self.p.use_models:
            return None, "rules", None
        v = self.book.latest(model, now)
        if v is None:
            return None, "rules", None
        return self.book.model(v), v.version, v

    def on_event(self, s: _Friction, ev, now: int) -> list:
        t = type(ev)
        if t is FeaturedTransfer:
            return self._transfer(s, ev, now)
        if t is FeaturedReport:
            model, version, _ = self._version(SCAM_VERDICT, now)
            p, verdict, version, reasons = score_report(model, version, ev.features, self.p)
            return [(SCORED_REPORTS, now, ScoredReport(ev, now, round(p, 6), verdict,
                                                       version, reasons))]
        raise TypeError(f"Score cannot handle {t.__name__}")

    def _transfer(self, s: _Friction, ev: FeaturedTransfer, now: int) -> list:
        p = self.p
        model, version, v = self._version(TRANSFER_RISK, now)
        score, version, reasons = score_transfer(model, version, ev.features, p)
        score = round(score, 6)
        threshold = v.hold_threshold if v is not None else p.hold_threshold
        loss = 0.0  # the rules' scores are no probability: expected loss needs a model's
        if v is not None:
            loss = p.hold_expected_loss if v.hold_expected_loss is None \
                else v.hold_expected_loss
        test = held_by(score, float(ev.transfer.usd_value or 0.0), threshold, loss)
        if test == "score" and rules_transfer_score(ev.features, p)[0] >= score:
            test = "rule"  # the fan-in rule set the score
        elif test == "expected_loss":
            reasons += (f"expected_loss_usd={score * ev.transfer.usd_value:.0f}",)
        capped = False
        out = []
        if test and (p.friction_cap or p.friction_cap_long) and not ev.blacklist \
                and not ev.lookalike_of:
            why = self._cap(s, now)
            if why:
                capped = True
                reasons += (why,)
                out.append((METRIC, now, ("friction_capped", 1)))
            else:
                s.holds.append(now)
        out.append((SCORED_TRANSFERS, now, ScoredTransfer(ev, now, score, version, reasons,
                                                         threshold, capped, test)))
        return out
