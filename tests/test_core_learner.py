"""The Learner (core/learner.py) at the machine level: what its prequential metrics record
(the model's score before it learns, the decision a published version would make, the USD),
the weights it learns with for any River model, each model's own warm-up, the thresholds a
version carries under a count or USD friction budget, and the summary's fields.

No Beam: the machine is fed directly."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
from river import compose, linear_model, optim, preprocessing

from core.events import Example
from core.friction import Budget
from core.labels import SCAM_VERDICT, TRANSFER_RISK
from core.learner import VERSIONS, Learner, warm_versions
from core.models import RIVER_VERSION, ModelState, Prequential, report_x, transfer_x
from core.policy import Policy
from tests.scenario import at
from tests.test_models import BOMB, HONEST, LEGIT, ON, SCAMMY, trained_state

BINS = Prequential.BINS


def ex(model, sid, t, x, y, weight=1):
    return Example(model, t, sid, dict(x), y, t - 1, weight)


def _bin(p):
    return min(BINS - 1, int(p * BINS))


# ------------------------------------------------------------- what the metrics record
@pytest.mark.parametrize("use_models", [True, False])
def test_a_verdict_label_is_counted_with_the_models_score_and_the_decision_in_force(
        use_models):
    """Test, then train: the histogram gets the model's score of the example before it
    learns it; the confusion counts get the decision a published version would make (the
    model's, guarded, once the model is on; the rules' while it is off)."""
    p = Policy(**dict(ON, use_models=use_models))
    learner = Learner(p)
    _m, s = trained_state(Policy(**ON), SCAM_VERDICT, 300)  # taught: honest reports are scams
    s.metrics = Prequential(p.scam_threshold)
    before = copy.deepcopy(s.model).predict_proba_one(report_x(HONEST))[True]
    assert before >= p.scam_threshold  # the model says SCAM; the rules (0.55) do not
    learner.on_event(s, ex(SCAM_VERDICT, "R:h", at(1), HONEST, True), at(1))
    assert s.metrics.pos[_bin(before)] == 1 and sum(s.metrics.pos) == 1
    assert (s.metrics.tp, s.metrics.fn) == ((1, 0) if use_models else (0, 1))
    # the claimed loss is the USD of a verdict label; none claimed: 0
    assert s.metrics.usd_pos == pytest.approx(math.expm1(HONEST["log_claimed_loss"]))
    no_claim = {k: v for k, v in HONEST.items() if k != "log_claimed_loss"}
    learner.on_event(s, ex(SCAM_VERDICT, "R:h2", at(2), no_claim, True), at(2))
    assert s.metrics.usd_pos == pytest.approx(math.expm1(HONEST["log_claimed_loss"]))


def test_a_verdict_model_learns_each_label_with_its_weight():
    p = Policy(**dict(ON, model_pos_weight=3.0))
    learner = Learner(p)
    s = learner.new_state(SCAM_VERDICT)
    twin = copy.deepcopy(s.model)
    for i, (x, y, w) in enumerate(((BOMB, False, 2), (BOMB, False, 1), (HONEST, True, 1))):
        learner.on_event(s, ex(SCAM_VERDICT, f"R:{i}", at(i), x, y, weight=w), at(i))
        twin.learn_one(report_x(x), y, w=3.0 if y else w)
    for x in (HONEST, BOMB):
        assert s.model.predict_proba_one(report_x(x))[True] == pytest.approx(
            twin.predict_proba_one(report_x(x))[True], rel=1e-12)


def test_any_other_transfer_model_is_scored_then_taught_with_the_labels_weight():
    """A transfer model that is not the plain scaler + regression goes through River's
    own API: scored before it learns, then taught (x, y, weight)."""
    p = Policy(**dict(ON, model_pos_weight=3.0, friction_budget=0.0,
                      friction_budget_usd=0.0))
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)

    def lasso():
        return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression(
            optimizer=optim.SGD(0.05), l1=0.001))

    s.model, twin = lasso(), lasso()
    s.metrics = Prequential(p.hold_threshold)
    pos, neg = [0] * BINS, [0] * BINS
    labels = [(SCAMMY, True, 1), (LEGIT, False, 2), (LEGIT, False, 1), (SCAMMY, True, 1),
              (LEGIT, False, 4)]
    for i, (x, y, w) in enumerate(labels):
        xs = transfer_x(x, p)
        (pos if y else neg)[_bin(twin.predict_proba_one(xs)[True])] += 1 if y else w
        twin.learn_one(xs, y, w=3.0 if y else w)
        learner.on_event(s, ex(TRANSFER_RISK, f"T:{i}", at(i), x, y, weight=w), at(i))
    assert (s.metrics.pos, s.metrics.neg) == (pos, neg)
    for x in (SCAMMY, LEGIT):
        xs = transfer_x(x, p)
        assert s.model.predict_proba_one(xs)[True] == pytest.approx(
            twin.predict_proba_one(xs)[True], rel=1e-12)
    assert s.model.predict_proba_one(transfer_x(SCAMMY, p))[True] > 0.5


def test_a_policy_positive_weight_below_one_is_used_as_given():
    learner = Learner(Policy(model_pos_weight=0.5))
    assert learner.pos_weight(ModelState(TRANSFER_RISK)) == 0.5


# ----------------------------------------------------------------------- warm-up, versions
def test_each_model_switches_on_after_its_own_warm_up():
    """The Scam Verdict Model needs the verdict_* counts, not the transfer model's."""
    p = Policy(model_warmup_labels=1000, model_min_positives=500, model_min_negatives=500,
               verdict_warmup_labels=2, verdict_min_positives=1, verdict_min_negatives=1,
               model_sync_labels=False)
    learner = Learner(p)
    s = learner.new_state(SCAM_VERDICT)
    out = learner.on_event(s, ex(SCAM_VERDICT, "R:0", at(0), BOMB, False), at(0))
    assert not [v for tag, _t, v in out if tag == VERSIONS]
    out = learner.on_event(s, ex(SCAM_VERDICT, "R:1", at(1), HONEST, True), at(1))
    (v,) = [v for tag, _t, v in out if tag == VERSIONS]
    assert (v.model, v.version, v.n_labels, v.event_time) == (
        SCAM_VERDICT, f"{SCAM_VERDICT}:2", 2, at(1))
    # a verdict version carries the scam threshold, and no expected-loss test
    assert (v.hold_threshold, v.hold_expected_loss) == (p.scam_threshold, 0.0)


def _budget_state(scores_usd, positives=()):
    s = ModelState(TRANSFER_RISK)
    s.budget = Budget(100)
    for sc, usd in scores_usd:
        s.budget.add(sc, 1, usd)
    for sc, usd in positives:
        s.budget.add_positive(sc, usd)
    return s


def test_a_budget_is_only_read_while_the_policy_has_one():
    # ten legitimate scores well above the policy's threshold
    s = _budget_state([(0.80 + i / 100, 100.0) for i in range(10)])
    off = Learner(Policy(friction_budget=0.0, friction_budget_usd=0.0, hold_threshold=0.5,
                         hold_expected_loss=0.0))
    assert off.hold_thresholds(s) == (0.5, 0.0)
    on = Learner(Policy(friction_budget=0.1, friction_budget_usd=0.0, hold_threshold=0.5,
                        hold_expected_loss=0.0))
    assert on.hold_thresholds(s) == (pytest.approx(0.880001), 0.0)  # 1 of 10 held: 0.89
    # a state that has not learned anything yet: the policy's
    assert on.hold_thresholds(ModelState(TRANSFER_RISK)) == (0.5, 0.0)


def test_a_usd_budget_alone_sets_the_threshold():
    """friction_budget 0 with a USD share: the window is measured by the USD share and the
    threshold keeps the USD of legitimate holds within it."""
    # ten legitimate transfers of $100 and one of $10,000 scored 0.6
    s = _budget_state([(0.1 + i / 100, 100.0) for i in range(10)] + [(0.6, 10000.0)])
    p = Policy(friction_budget=0.0, friction_budget_usd=0.2, hold_threshold=0.3,
               hold_expected_loss=0.0)
    # $11,000 in all, 20% = $2,200: the $10,000 at 0.6 cannot be held
    assert Learner(p).hold_thresholds(s) == (pytest.approx(0.600001), 0.0)


def test_warm_versions_need_a_warm_start_with_the_models_on():
    p = Policy(**ON)
    _m, s = trained_state(p, TRANSFER_RISK, 10)
    assert warm_versions(dataclasses.replace(p, model_warm_start=None), {TRANSFER_RISK: s}) == []
    warm = dataclasses.replace(p, model_warm_start="snapshot")
    assert warm_versions(dataclasses.replace(warm, use_models=False), {TRANSFER_RISK: s}) == []
    (v,) = warm_versions(warm, {TRANSFER_RISK: s})
    assert (v.model, v.n_labels) == (TRANSFER_RISK, 10)


# -------------------------------------------------------------------------- the summary
def test_the_summary_names_the_model_its_counts_and_where_it_stands():
    p = Policy(**ON)
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)
    d = learner.summary(s)
    assert {k: d[k] for k in ("model", "final", "at", "labels", "positives", "model_version",
                              "published", "river_version", "use_models")} == {
        "model": TRANSFER_RISK, "final": False, "at": None, "labels": 0, "positives": 0,
        "model_version": f"{TRANSFER_RISK}:0", "published": False,
        "river_version": RIVER_VERSION, "use_models": True}
    learner.on_event(s, ex(TRANSFER_RISK, "T:1", at(5), SCAMMY, True), at(5))
    d = learner.summary(s, final=True)
    assert (d["final"], d["at"], d["labels"], d["positives"], d["model_version"],
            d["published"]) == (True, at(5), 1, 1, f"{TRANSFER_RISK}:1", True)
    assert d["threshold"] == p.hold_threshold and d["tp"] + d["fn"] == 1
