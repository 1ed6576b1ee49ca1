"""The Learner (keyed by model name): learns from delayed labels, off the transfer path,
and publishes immutable model versions.

It sees only labelled :class:`~core.events.Example` records (from LabelJoin): never a
transfer or a report. After each label it may publish a :class:`ModelVersion` — the River
pipeline pickled, an id, and the event time after which it is valid — every
``Policy.model_publish_labels`` labels, or at the first label once
``Policy.model_publish_ms`` of event time has passed since the last version. The scorers
(:mod:`core.scorer`, keyed by user: many keys) score each event with the latest
version published before its event time. So global learning never sits on the transfer
path, and in a backtest the choice of version is exact in every runner mode.

Nothing is published until a model has learned enough of both classes
(``model_warmup_labels``, ``model_min_positives``, ``model_min_negatives``; per model:
``verdict_*`` for the Scam Verdict Model), or while ``use_models`` is false (the rules-only
baseline: the model still learns, for its metrics). Until then the scorers use the rules.

Friction budget (``Policy.friction_budget``, rule 10): the state keeps the decision scores
of recent legitimate examples (:class:`~core.friction.Budget`) and each version of
``transfer_risk`` carries the hold threshold that keeps them within the budget.

Prequential metrics (test, then train, at label time) and snapshots are as described in
:mod:`core.models`; snapshots leave the machine as bytes (``SNAPSHOTS`` output) and
the shell writes them: a machine does no I/O.
"""

from __future__ import annotations

import heapq
import math
import pickle
from typing import Optional

from core.events import Example, ModelVersion
from core.friction import Budget
from core.labels import SCAM_VERDICT, TRANSFER_RISK
from core.machine import END_OF_TIME, METRIC, Machine
from core.models import (
    METRICS_EVERY,
    RIVER_VERSION,
    ModelState,
    Prequential,
    linear_parts,
    pos_weight,
    report_x,
    rules_transfer_score,
    score_report,
    snapshot_bytes,
    transfer_x,
)
from core.policy import Policy

VERSIONS = "versions"  # ModelVersion records
MODEL_METRICS = "model_metrics"  # summary dicts
SNAPSHOTS = "snapshots"  # (model name, snapshot bytes): the shell writes them
END = END_OF_TIME // 1000  # a time at or past which a bounded run is over (both faces)


def learner_key(ex: Example) -> str:
    return ex.model


class Learner(Machine):
    """Keyed by model name; see the module docstring."""

    def __init__(self, policy: Policy, warm: Optional[dict] = None):
        """``warm``: ``{model name: ModelState}`` of the warm-start snapshot
        (``Policy.model_warm_start``, loaded by the shell: :func:`transforms.side.load_warm`)."""
        self.p = policy
        self._warm = warm or {}

    # -- state ---------------------------------------------------------------------------
    def threshold(self, name: str) -> float:
        return self.p.scam_threshold if name == SCAM_VERDICT else self.p.hold_threshold

    def new_state(self, key):
        if self.p.model_warm_start:
            if key in self._warm:
                s = pickle.loads(pickle.dumps(self._warm[key]))  # a private copy per key
                s.metrics = Prequential(self.threshold(key))
                s.last_t = None
                s.published_at = None
                s.published_labels = 0
                return s
        return ModelState(key, self.threshold(key))

    def is_empty(self, s) -> bool:
        return False  # one key per model, kept for the life of the job

    def next_deadline(self, s: ModelState) -> Optional[int]:
        if s.waiting:
            return s.waiting[0][0]  # a positive becomes due
        return None if s.finished else END  # the end of a bounded run (stream face)

    def advance(self, s: ModelState, now: int) -> list:
        out = []
        waiting = s.waiting
        while waiting and waiting[0][0] <= now:
            due, _, _, ex = heapq.heappop(waiting)
            # a deadline fires before the events at its time: what it learns is valid for
            # them too (a version valid after due - 1)
            out.extend(self._learn_now(s, ex, due, valid_after=due - 1))
        if now < END or s.finished:
            return out
        s.finished = True  # a bounded run is over: last snapshot, final metrics
        at = s.last_t if s.last_t is not None else 0
        if self.p.model_snapshot_path:
            out.append((SNAPSHOTS, at, (s.name, snapshot_bytes({s.name: s}, at))))
        out.append((MODEL_METRICS, at, self.summary(s, final=True)))
        return out

    def summary(self, s: ModelState, final: bool = False) -> dict:
        d = {"model": s.name, "final": final, "at": s.last_t, "labels": s.n_labels,
             "positives": s.n_pos, "model_version": s.version(),
             "published": s.published_at is not None,
             "river_version": RIVER_VERSION, "use_models": self.p.use_models}
        d.update(s.metrics.summary())
        return d

    def model_on(self, s: ModelState) -> bool:
        """Rules decide until the model has seen enough labels *of both classes*: positives
        arrive within hours (a case outcome), negatives only when the label horizon expires,
        so a count of labels alone switches a model on having seen almost only scams."""
        return self.p.use_models and self.p.warmed_up(s.name, s.n_labels, s.n_pos,
                                                      s.n_labels - s.n_pos)

    # -- events --------------------------------------------------------------------------
    def on_event(self, s: ModelState, ev, now: int) -> list:
        if type(ev) is not Example:
            raise TypeError(f"Learner cannot handle {type(ev).__name__}")
        s.last_t = now
        s.finished = False
        return self._learn(s, ev, now)

    def pos_weight(self, s: ModelState) -> float:
        """A positive example's weight: ``Policy.model_pos_weight`` when positive, else
        :func:`~core.models.pos_weight` (from the label counts so far)."""
        w = self.p.model_pos_weight
        return w if w > 0 else pos_weight(s)

    def _learn(self, s: ModelState, ex: Example, now: int) -> list:
        """A label: learned now, or for a positive with ``Policy.model_sync_labels`` once its
        event is ``label_horizon_ms`` old — the age at which the negatives of its time are
        learned. Positives are confirmed within hours, negatives only at the horizon: learned
        as they come, the positives of day d meet the negatives of day d - 7, and every
        feature that drifts with time (a destination's age, a sender's payee count, above
        all at the start of a replay) looks like a sign of scam."""
        if ex.y and self.p.model_sync_labels:
            due = ex.scored_at + self.p.label_horizon_ms
            if due > now:
                heapq.heappush(s.waiting, (due, ex.subject_id, s.n_labels + len(s.waiting),
                                           ex))
                return []
        return self._learn_now(s, ex, now)

    def _learn_now(self, s: ModelState, ex: Example, now: int,
                   valid_after: Optional[int] = None) -> list:
        """Test, then train: score the example as the scorers would now, record it, learn,
        then perhaps publish a version.

        For the plain scaler + regression the learner drives River's two steps itself, in
        the order ``Pipeline.learn_one`` uses: the scaler (unsupervised: it never sees the
        label) learns the example's features, the example is scaled once, the regression
        scores it (the prequential test) and only then learns from it."""
        f = ex.x
        y = bool(ex.y)
        w = self.pos_weight(s) if y else ex.weight
        on = self.model_on(s)
        if s.name == SCAM_VERDICT:
            x = report_x(f)
            pm = s.model.predict_proba_one(x).get(True, 0.0)
            decision = score_report(s.model if on else None, "", f, self.p)[0]
            usd = math.expm1(f.get("log_claimed_loss", 0.0))
            s.model.learn_one(x, y, w=w)
        else:
            x = transfer_x(f, self.p)
            parts = linear_parts(s.model)
            rule = rules_transfer_score(f, self.p)[0]
            if parts is None:
                pm = s.model.predict_proba_one(x).get(True, 0.0)
                s.model.learn_one(x, y, w=w)
            else:
                sc, lr = parts
                sc.learn_one(x)
                xs = sc.transform_one(x)
                pm = lr.predict_proba_one(xs)[True]
                lr.learn_one(xs, y, w=w)
            candidate = pm if pm > rule else rule  # what a published version decides
            decision = candidate if on else rule
            usd = math.expm1(f.get("log_usd", 0.0))
            if self.budget_on():
                if s.budget is None:
                    s.budget = Budget(self.p.friction_budget_window)
                if y:
                    s.budget.add_positive(candidate, usd)
                else:
                    s.budget.add(candidate, ex.weight, usd)
        cell = s.metrics.update(pm, decision, y, usd, 1 if y else ex.weight)
        s.n_labels += 1
        s.n_pos += y
        if not y:
            s.w_neg += ex.weight
        out = [(METRIC, now, ("labels_" + s.name, 1)), (METRIC, now, (f"{s.name}_{cell}", 1))]
        p = self.p
        if p.model_snapshot_every and s.n_labels % p.model_snapshot_every == 0 \
                and p.model_snapshot_path:
            out.append((SNAPSHOTS, now, (s.name, snapshot_bytes({s.name: s}, now))))
        if s.n_labels % METRICS_EVERY == 0:
            out.append((MODEL_METRICS, now, self.summary(s)))
        if self._due(s, now):
            at = now if valid_after is None else valid_after
            out.append((VERSIONS, now, self.publish(s, at)))
        return out

    def _due(self, s: ModelState, now: int) -> bool:
        if not self.model_on(s):
            return False
        if s.published_at is None:
            return True  # the model has just switched on
        new = s.n_labels - s.published_labels
        return new >= self.p.model_publish_labels or (
            new > 0 and now - s.published_at >= self.p.model_publish_ms)

    def publish(self, s: ModelState, now: int) -> ModelVersion:
        """A version of ``s``'s model as it is now, valid for events after ``now``."""
        s.published_at, s.published_labels = max(now, s.published_at or now), s.n_labels
        params = pickle.dumps(s.model, pickle.HIGHEST_PROTOCOL)
        threshold, loss = self.hold_thresholds(s)
        return ModelVersion(s.name, now, s.version(), s.n_labels, params, threshold, loss)

    def budget_on(self) -> bool:
        return bool(self.p.friction_budget or self.p.friction_budget_usd)

    def hold_threshold(self, s: ModelState) -> float:
        """The score threshold a version of ``s`` is published with (see
        :meth:`hold_thresholds`)."""
        return self.hold_thresholds(s)[0]

    def hold_thresholds(self, s: ModelState) -> tuple:
        """(score threshold, expected-loss threshold in USD) a version of ``s`` is
        published with: the policy's, or under a friction budget (``transfer_risk`` only)
        the budget's choice from the recent labelled scores, never below the policy's
        (:mod:`core.friction`). Until the window holds enough legitimate examples to
        measure the budget's share (one held transfer within it), the policy's."""
        floor = self.threshold(s.name)
        p = self.p
        if s.name != TRANSFER_RISK:
            return floor, 0.0
        if not self.budget_on() or s.budget is None or not s.budget.measurable(
                p.friction_budget, p.friction_budget_usd):
            return floor, p.hold_expected_loss
        return s.budget.thresholds(p.friction_budget, p.friction_budget_usd, floor,
                                   p.hold_expected_loss)


def warm_versions(policy: Policy, warm: dict) -> list:
    """The versions a warm start (``Policy.model_warm_start``, its snapshot's states
    ``warm``) gives the scorers from the start of a run: one per warmed-up model in the
    snapshot, valid from the beginning of time. Nothing without a warm start or with the
    models off."""
    if not policy.model_warm_start or not policy.use_models:
        return []
    learner = Learner(policy, warm)
    out = []
    for name in sorted(warm):
        s = learner.new_state(name)
        if learner.model_on(s):
            out.append(learner.publish(s, -END_OF_TIME))
    return out
