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
from core.learner import END, MODEL_METRICS, SNAPSHOTS, VERSIONS, Learner, warm_versions
from core.machine import METRIC
from core.models import (
    RIVER_VERSION,
    ModelState,
    Prequential,
    report_x,
    snapshot_order,
    transfer_x,
)
from core.policy import HOUR, Policy
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


# ------------------------------------------------------------ the transfer model's label
FAN_IN = dict(LEGIT, fan_in_24h=40.0, fan_in_1h=30.0, dest_age_days=0.5)  # the rule: 0.8


@pytest.mark.parametrize("use_models", [True, False])
def test_a_transfer_label_is_counted_with_the_decision_in_force_and_its_usd(use_models):
    """Once the model is on, the decision is max(model, rule) (a published version's);
    while it is off, the rule's. A negative of a 1-in-k sample counts k."""
    p = Policy(**dict(ON, use_models=use_models))
    learner = Learner(p)
    _m, s = trained_state(Policy(**ON), TRANSFER_RISK, 300)
    s.metrics = Prequential(p.hold_threshold)
    assert copy.deepcopy(s.model).predict_proba_one(transfer_x(SCAMMY, p))[True] > 0.9
    learner.on_event(s, ex(TRANSFER_RISK, "T:s", at(1), SCAMMY, True), at(1))
    assert (s.metrics.tp, s.metrics.fn) == ((1, 0) if use_models else (0, 1))
    assert s.metrics.usd_pos == pytest.approx(math.expm1(SCAMMY["log_usd"]))
    # no USD feature: no USD; a negative of a 1-in-3 sample counts 3
    no_usd = {k: v for k, v in LEGIT.items() if k != "log_usd"}
    learner.on_event(s, ex(TRANSFER_RISK, "T:n", at(3), no_usd, False, weight=3), at(3))
    assert s.metrics.usd_neg == 0.0 and s.metrics.fp + s.metrics.tn == 3


def test_the_fan_in_rule_is_the_floor_of_the_decision_a_new_model_is_counted_with():
    """A new model scores about 0.5; the fan-in rule's 0.8 is the decision (held: a false
    positive for a legitimate transfer) once the model is on, and alone while it is off."""
    for use_models in (True, False):
        p = Policy(**dict(ON, use_models=use_models))
        learner = Learner(p)
        s = learner.new_state(TRANSFER_RISK)
        learner.on_event(s, ex(TRANSFER_RISK, "T:f", at(2), FAN_IN, False, weight=3), at(2))
        assert (s.metrics.fp, s.metrics.tn) == (3, 0)
        assert s.metrics.usd_neg == pytest.approx(3 * math.expm1(FAN_IN["log_usd"]))
    # the budget keeps the decision score of the legitimate example: the rule's 0.8
    p = Policy(**dict(ON, friction_budget=0.5))
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)
    learner.on_event(s, ex(TRANSFER_RISK, "T:f", at(2), FAN_IN, False, weight=3), at(2))
    assert s.budget.scores == [(0.8, 3.0, pytest.approx(math.expm1(FAN_IN["log_usd"])))]


def test_the_budget_keeps_the_positives_decision_score_and_usd():
    p = Policy(**dict(ON, friction_budget=0.5))
    learner = Learner(p)
    _m, s = trained_state(Policy(**ON), TRANSFER_RISK, 300)
    s.budget = None
    # the regression's score once the scaler has learned the example (River's order)
    twin = copy.deepcopy(s.model)
    x = transfer_x(SCAMMY, p)
    twin.steps["StandardScaler"].learn_one(x)
    xs = twin.steps["StandardScaler"].transform_one(x)
    pm = twin.steps["LogisticRegression"].predict_proba_one(xs)[True]
    learner.on_event(s, ex(TRANSFER_RISK, "T:s", at(1), SCAMMY, True), at(1))
    (row,) = s.budget.pos.ordered()
    assert row == (pytest.approx(round(pm, 6)), pytest.approx(math.expm1(SCAMMY["log_usd"])))


# ---------------------------------------------------------- labels, versions, snapshots
def test_a_positive_due_exactly_now_is_learned_now():
    h = 6 * 3_600_000
    p = Policy(**dict(ON, model_sync_labels=True, label_horizon_ms=h))
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)
    e = Example(TRANSFER_RISK, at(0) + h, "T:p", dict(SCAMMY), True, at(0))
    out = learner.on_event(s, e, e.event_time)
    (v,) = [v for tag, _t, v in out if tag == VERSIONS]
    assert v.event_time == at(0) + h and not s.waiting


def test_a_waiting_positive_learned_at_its_due_is_valid_from_just_before_it():
    """A deadline fires before the events at its time: the version it publishes is valid
    for them (published at due - 1)."""
    h = 6 * 3_600_000
    p = Policy(**dict(ON, model_sync_labels=True, label_horizon_ms=h))
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)
    e = Example(TRANSFER_RISK, at(1), "T:p", dict(SCAMMY), True, at(0))
    assert learner.on_event(s, e, e.event_time) == []
    out = learner.advance(s, at(0) + h)
    (v,) = [v for tag, _t, v in out if tag == VERSIONS]
    assert v.event_time == at(0) + h - 1
    assert [t for tag, t, _v in out if tag == METRIC] == [at(0) + h] * 2


def test_versions_every_n_labels_or_after_the_publish_interval():
    p = Policy(**dict(ON, model_publish_labels=4, model_publish_ms=HOUR))
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)
    published = []
    t0 = at(0)
    times = [t0, t0 + 1, t0 + HOUR - 1, t0 + HOUR, t0 + 2 * HOUR] + [
        t0 + 2 * HOUR + i for i in range(1, 5)]
    for i, t in enumerate(times):
        out = learner.on_event(s, ex(TRANSFER_RISK, f"T:{i}", t, LEGIT, i % 2 == 0), t)
        published += [v.n_labels for tag, _t, v in out if tag == VERSIONS]
    # 1: switched on; 4: three new labels exactly an hour after it; 5: one new label an
    # hour after that; 9: four new labels
    assert published == [1, 4, 5, 9]


def test_the_summary_comes_every_thousand_labels():
    p = Policy(**dict(ON, use_models=False))
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)
    got = []
    for i in range(1001):
        out = learner.on_event(s, ex(TRANSFER_RISK, f"T:{i}", at(0) + i, LEGIT, False), at(0) + i)
        got += [(t, v["labels"], v["final"]) for tag, t, v in out if tag == MODEL_METRICS]
    assert got == [(at(0) + 999, 1000, False)]


def test_snapshots_are_stamped_with_the_time_they_describe(tmp_path):
    p = Policy(**dict(ON, model_snapshot_every=2, model_snapshot_path=str(tmp_path / "m")))
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)
    snaps = []
    for i, t in enumerate((at(1), at(2), at(3))):
        out = learner.on_event(s, ex(TRANSFER_RISK, f"T:{i}", t, LEGIT, False), t)
        snaps += [(t_, snapshot_order(v[1])) for tag, t_, v in out if tag == SNAPSHOTS]
    assert snaps == [(at(2), (at(2), 2))]
    (snap,) = [v for tag, _t, v in learner.advance(s, END) if tag == SNAPSHOTS]
    assert snapshot_order(snap[1]) == (at(3), 3)


def test_a_run_that_learned_nothing_ends_at_time_zero():
    learner = Learner(Policy(**ON))
    s = learner.new_state(TRANSFER_RISK)
    ((tag, t, d),) = learner.advance(s, END)
    assert (tag, t, d["at"], d["final"]) == (MODEL_METRICS, 0, None, True)


def test_a_warm_started_state_keeps_the_model_and_starts_its_run_afresh():
    p = Policy(**ON)
    _m, trained = trained_state(p, SCAM_VERDICT, 50)
    warm = dataclasses.replace(p, model_warm_start="snapshot")
    learner = Learner(warm, {SCAM_VERDICT: trained})
    s = learner.new_state(SCAM_VERDICT)
    assert s is not trained and s.n_labels == 50
    assert (s.last_t, s.published_at, s.published_labels) == (None, None, 0)
    assert s.metrics.threshold == p.scam_threshold and s.metrics.tp + s.metrics.fn == 0
    ((tag, t, d),) = learner.advance(s, END)
    assert (tag, t, d["labels"]) == (MODEL_METRICS, 0, 50)
    out = learner.on_event(s, ex(SCAM_VERDICT, "R:w", at(9), HONEST, True), at(9))
    (v,) = [v for tag, _t, v in out if tag == VERSIONS]
    assert (v.n_labels, v.event_time) == (51, at(9))
    assert Learner(p).new_state(SCAM_VERDICT).metrics.threshold == p.scam_threshold


def test_an_event_that_is_not_a_label_is_refused_by_name():
    learner = Learner(Policy())
    with pytest.raises(TypeError, match="Learner cannot handle ModelState"):
        learner.on_event(learner.new_state(TRANSFER_RISK), ModelState(), at(0))
