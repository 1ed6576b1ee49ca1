"""Rule 10: the friction budget (a hold threshold adapted to recent legitimate scores, set by
the Learner and carried by each model version) and the per-user friction cap (Score step),
which never caps blacklist, frozen-destination or look-alike holds."""

from __future__ import annotations

import dataclasses
import random

import pytest

from core.events import ScoredTransfer
from core.friction import Budget
from core.labels import TRANSFER_RISK
from core.learner import VERSIONS, Learner
from core.machine import run_history
from core.models import (
    new_transfer_model,
    rules_transfer_score,
    transfer_x,
)
from core.policy import DAY, HOUR, Policy
from core.scorer import SCORED_TRANSFERS, Score
from tests.kit import snapshot_models
from tests.scenario import at, collect, listing, outcome, transfer
from tests.test_models import LEGIT, ON, SCAMMY, example, ftransfer
from transforms.side import load_warm
from transforms.snapshots import load_snapshot


def share_at_or_above(scored: list, thr: float) -> float:
    total = sum(w for _, w in scored)
    return sum(w for s, w in scored if s >= thr) / total


# ------------------------------------------------------------------- the quantile itself
def test_budget_threshold_is_the_lowest_score_keeping_legitimate_holds_within_budget():
    b = Budget(100)
    scores = [i / 100 for i in range(100)]  # 0.00 .. 0.99, each once
    for s in scores:
        b.add(s)
    # 2% of 100 = 2 may be held: 0.99 and 0.98; the threshold is just above 0.97
    assert b.threshold(0.02, floor=0.1) == pytest.approx(0.970001)
    assert b.threshold(0.02, floor=0.99) == 0.99  # the policy's floor wins
    assert b.threshold(0.5, floor=0.0) == pytest.approx(0.490001)


def test_budget_counts_weights_and_holds_ties_together():
    b = Budget(10)
    b.add(0.9, 3)  # a kept negative of a 1-in-3 sample stands for 3
    for s in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        b.add(s, 1)
    # total weight 10; 20% = 2 may be held, but 0.9 alone weighs 3: the threshold is above it
    assert b.threshold(0.2, floor=0.0) == pytest.approx(0.900001)
    # 40% = 4: 0.9 (3) and 0.7 (1) are held, 0.6 is not
    assert b.threshold(0.4, floor=0.0) == pytest.approx(0.600001)
    t = Budget(10)
    for s in (0.8, 0.8, 0.1, 0.1):
        t.add(s)
    # 25% = 1 may be held: the two equal 0.8s cannot be split, so neither is
    assert t.threshold(0.25, floor=0.0) == pytest.approx(0.800001)


def test_budget_keeps_only_the_most_recent_window():
    b = Budget(3)
    for s in (0.99, 0.98, 0.1, 0.2, 0.3):
        b.add(s)
    assert len(b.scores) == 3
    # the two high scores left the window: 1 of 3 may be held at 34%
    assert b.threshold(0.34, floor=0.0) == pytest.approx(0.200001)


def test_with_fewer_legitimate_examples_than_one_over_budget_nothing_fits():
    b = Budget(1000)
    for s in (0.2, 0.4, 0.6):
        b.add(s)
    assert b.threshold(0.005, floor=0.5) == pytest.approx(0.600001)


# ---------------------------------------------------------------- the Learner publishes it
# the count budget alone (the USD budget and the expected-loss test: tests/test_expected_loss.py)
COUNT_ONLY = {"friction_budget_usd": 0.0, "hold_expected_loss": 0.0}

def labelled(n: int, seed: int = 3, weight_every: int = 0) -> list:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = rng.random() < 0.2
        x = {k: v + rng.gauss(0, 0.3) for k, v in (SCAMMY if y else LEGIT).items()}
        ex = example(TRANSFER_RISK, f"T:e{i}", at(0) + 10 * i, x, y)
        if not y and weight_every and i % weight_every == 0:
            ex = ex._replace(weight=5)
        out.append(ex)
    return out


def replica_candidates(exs: list, p: Policy) -> list:
    """The decision scores max(model, rule) of the negatives, from an independent replica
    of the learner's River steps (scaler learns, scale, score, then the regression learns)."""
    model = new_transfer_model()
    sc, lr = model.steps["StandardScaler"], model.steps["LogisticRegression"]
    out = []
    for ex in exs:
        x = transfer_x(ex.x, p)
        sc.learn_one(x)
        xs = sc.transform_one(x)
        pm = lr.predict_proba_one(xs)[True]
        if not ex.y:
            out.append((round(max(pm, rules_transfer_score(ex.x, p)[0]), 6), ex.weight))
        lr.learn_one(xs, ex.y, w=p.model_pos_weight if ex.y else ex.weight)
    return out


@pytest.mark.parametrize("weight_every", [0, 4])
def test_each_version_carries_the_budget_threshold_of_the_legitimate_scores_so_far(
        weight_every):
    p = Policy(**dict(ON, **COUNT_ONLY, model_pos_weight=2.0, model_publish_labels=50,
                      friction_budget=0.05, hold_threshold=0.05, warn_threshold=0.05))
    exs = labelled(400, weight_every=weight_every)
    out = run_history(Learner(p), TRANSFER_RISK, exs)
    versions = [v for tag, _, v in out if tag == VERSIONS]
    assert len(versions) >= 8
    cands = replica_candidates(exs, p)
    for v in versions[1:]:
        seen = [c for c, ex in zip(cands, [e for e in exs if not e.y], strict=True)
                if ex.event_time <= v.event_time]
        thr = v.hold_threshold
        # within the budget, and the lowest such score (one step lower overruns it)
        assert share_at_or_above(seen, thr) <= 0.05 + 1e-12
        assert thr == pytest.approx(0.05) or share_at_or_above(seen, round(thr - 1e-6, 6)) > 0.05


def test_without_a_budget_or_below_the_floor_versions_carry_the_policy_threshold():
    p = Policy(**dict(ON, **COUNT_ONLY, model_publish_labels=50, friction_budget=0.0))
    out = run_history(Learner(p), TRANSFER_RISK, labelled(200))
    assert {v.hold_threshold for tag, _, v in out if tag == VERSIONS} == {0.75}
    # a generous budget (50%) whose quantile is below the floor: the floor
    p = dataclasses.replace(p, friction_budget=0.5, hold_threshold=0.99)
    out = run_history(Learner(p), TRANSFER_RISK, labelled(200))
    assert {v.hold_threshold for tag, _, v in out if tag == VERSIONS} == {0.99}


def test_the_budget_state_checkpoints_with_the_model(tmp_path):
    p = Policy(**dict(ON, **COUNT_ONLY, friction_budget=0.05, hold_threshold=0.05,
                      warn_threshold=0.05))
    learner = Learner(p)
    s = learner.new_state(TRANSFER_RISK)
    run = run_history(learner, TRANSFER_RISK, labelled(300))
    assert run
    for ex in labelled(300):
        learner.on_event(s, ex, ex.event_time)
    path = snapshot_models({TRANSFER_RISK: s}, str(tmp_path / "m.pkl"))
    pw = dataclasses.replace(p, model_warm_start=path)
    warm = Learner(pw, load_warm(pw)).new_state(TRANSFER_RISK)
    assert list(warm.budget.scores) == list(s.budget.scores)
    assert learner.hold_threshold(warm) == learner.hold_threshold(s) > 0.05
    assert load_snapshot(path)[TRANSFER_RISK].budget is not None


def test_the_score_step_holds_by_the_versions_threshold_not_the_policys():
    p = Policy(**dict(ON, **COUNT_ONLY, friction_budget=0.05, hold_threshold=0.05,
                      warn_threshold=0.05, model_publish_labels=50))
    exs = labelled(300)
    versions = [v for tag, _, v in run_history(Learner(p), TRANSFER_RISK, exs)
                if tag == VERSIONS]
    sc = Score(p)
    sc.bind(versions)
    late = exs[-1].event_time + 1
    (o,) = [o for o in sc.on_event(sc.new_state("u"), ftransfer("z", late, LEGIT), late)
            if o[0] == SCORED_TRANSFERS]
    st: ScoredTransfer = o[2]
    assert st.hold_threshold == versions[-1].hold_threshold > p.hold_threshold


# ------------------------------------------------------------------------ the friction cap
PAYEE = "0xabc" + "1" * 33 + "9f3e"
LOOK = "0xabc" + "7" * 33 + "9f3e"  # a look-alike of PAYEE
LISTED = "0x" + "b" * 40
FROZEN = "0x" + "f" * 40


def test_cap_turns_score_holds_into_warnings_but_never_caps_list_frozen_or_lookalike():
    # every transfer scores 0.05 (the rules' base score), at the hold threshold: each one is
    # a score-driven hold, at most one per user per 24h
    p = Policy(use_models=False, hold_threshold=0.05, warn_threshold=0.05, friction_cap=1)
    ev = [listing(LISTED, at(0)), outcome("c1", at(0), "ADDRESS", FROZEN),
          transfer("t1", at(1), "alice", PAYEE),
          transfer("t2", at(2), "alice", "0x" + "2" * 40),  # capped
          transfer("t3", at(3), "alice", LISTED),  # blacklist: held whatever the cap
          transfer("t4", at(4), "alice", LOOK),  # look-alike of PAYEE: held
          transfer("t5", at(5), "alice", FROZEN),  # frozen destination: held, refunded
          transfer("t6", at(6), "alice", "0x" + "3" * 40),  # still capped
          transfer("b1", at(7), "bob", "0x" + "2" * 40),  # another user: own cap
          transfer("t7", at(hours=25), "alice", "0x" + "4" * 40)]  # window passed
    out = collect(ev, p)
    held = {h.transfer_id for h in out["holds"]}
    assert held == {"t1", "t3", "t4", "t5", "b1", "t7"}
    refunded = {r.transfer_id for r in out["resolutions"] if r.resolution == "REFUNDED"}
    assert refunded == {"t5"}
    (warn,) = [o for o in out["outreach"] if o.transfer_id == "t2"]
    assert warn.kind == "WARNING" and "friction_cap=1" in warn.reasons


def test_cap_window_is_rolling_event_time():
    p = Policy(**dict(ON, **COUNT_ONLY, friction_cap=2, hold_threshold=0.05,
                      warn_threshold=0.05))
    sc = Score(p)
    s = sc.new_state("u")
    capped = {}
    for i, t in enumerate((0, HOUR, 2 * HOUR, DAY - 1, DAY, DAY + HOUR, DAY + 2 * HOUR)):
        now = at(0) + t
        sc.advance(s, now)
        (o,) = [o for o in sc.on_event(s, ftransfer(f"x{i}", now, LEGIT), now)
                if o[0] == SCORED_TRANSFERS]
        capped[i] = o[2].capped
    # holds at 0 and 1h; 2h and 24h-1ms capped; at 24h the first hold left the window,
    # at 25h the second; at 26h the two holds of 24h and 25h fill it again
    assert capped == {0: False, 1: False, 2: True, 3: True, 4: False, 5: False, 6: True}
    # a hold counts for the longer window in use (the long cap's, 30 days by default): the
    # user's state lasts until the last hold leaves it, one hold after the other
    kept = p.friction_long_window_ms
    assert p.friction_cap_long and kept == 30 * DAY
    for t in (0, HOUR, DAY, DAY + HOUR):
        assert sc.next_deadline(s) == at(0) + t + kept
        sc.advance(s, at(0) + t + kept)
    assert sc.is_empty(s) and sc.next_deadline(s) is None


def test_the_long_cap_keeps_holds_for_its_own_window():
    short = Policy(**dict(ON, **COUNT_ONLY, friction_cap=5, friction_cap_long=0,
                          hold_threshold=0.05, warn_threshold=0.05))
    for p, kept in ((short, DAY), (dataclasses.replace(short, friction_cap_long=9,
                                                       friction_long_window_ms=7 * DAY),
                                   7 * DAY)):
        sc = Score(p)
        s = sc.new_state("u")
        sc.on_event(s, ftransfer("x", at(0), LEGIT), at(0))
        assert sc.next_deadline(s) == at(0) + kept
        sc.advance(s, at(0) + kept - 1)
        assert not sc.is_empty(s)
        sc.advance(s, at(0) + kept)
        assert sc.is_empty(s)


# ------------------------------------------------------------- friction where people see it
def test_friction_figures_name_reasons_users_and_why_scam_money_was_lost():
    from report.friction import friction_figures
    from schemas.rows import Hold, HoldResolution

    trs = [transfer("l1", at(1), "bulk", "0x" + "1" * 40, 10.0),
           transfer("l2", at(2), "bulk", "0x" + "2" * 40, 30.0),
           transfer("l3", at(3), "amy", "0x" + "3" * 40, 60.0),
           transfer("l4", at(4), "amy", "0x" + "4" * 40, 100.0),  # legit, not held
           transfer("s1", at(5), "vic", "0x" + "5" * 40, 1000.0),  # held, refunded
           transfer("s2", at(6), "vic", "0x" + "6" * 40, 200.0),  # held, released
           transfer("s3", at(7), "vic", "0x" + "6" * 40, 300.0),  # after a hold there
           transfer("s4", at(8), "vic", "0x" + "7" * 40, 400.0)]  # never held

    def hold(t, reasons):
        return Hold("h" + t.transfer_id, t.transfer_id, t.user_id, t.to_address, "ETH",
                    t.amount, t.usd_value, t.event_time, t.event_time + DAY, 0.9, reasons)

    by = {t.transfer_id: t for t in trs}
    holds = [hold(by["l1"], ["model:transfer_risk=0.91"]),
             hold(by["l2"], ["blacklist:vendor_x", "list_version=1"]),
             hold(by["l3"], ["lookalike_of=0xabc"]),
             hold(by["s1"], ["destination_frozen"]),
             hold(by["s2"], ["model:transfer_risk=0.30", "fan_in_24h=30"])]
    res = [HoldResolution("hs1", "s1", "REFUNDED", at(5), "destination frozen"),
           HoldResolution("hs2", "s2", "RELEASED", at(6) + DAY, "no scam confirmed")]
    f = friction_figures(trs, lambda tid: "scam" if tid[0] == "s" else "legit", holds, res)
    assert {r: c.get("holds", 0) for r, c in f["holds_by_reason"].items()} == {
        "blacklist": 1, "frozen": 1, "lookalike": 1, "model": 1, "rule": 1,
        "expected_loss": 0}
    assert f["legit_held"] == 3 and f["legit_held_share"] == 3 / 4
    assert f["legit_held_usd_share"] == pytest.approx(100.0 / 200.0)
    assert [(u["user_id"], u["legit_holds"]) for u in f["top_users_by_legit_holds"]] == [
        ("bulk", 2), ("amy", 1)]
    assert f["max_user_share_of_legit_holds"] == pytest.approx(2 / 3)
    assert f["scam_lost_by_cause"] == {
        "never_held": {"n": 1, "usd": 400.0}, "sent_after_a_hold": {"n": 1, "usd": 300.0},
        "held_then_released": {"n": 1, "usd": 200.0}}
    assert [r["transfer_id"] for r in f["legit_held_table"]] == ["l3", "l2", "l1"]


def test_the_window_lists_its_rows_oldest_first_before_and_after_it_wraps():
    b = Budget(3)
    for i, sc in enumerate((0.1, 0.2)):
        b.add(sc, 1.0 + i, 10.0 * i)
    assert b.scores == [(0.1, 1.0, 0.0), (0.2, 2.0, 10.0)]
    b.add(0.3)
    b.add(0.4)  # overwrites the oldest
    assert b.scores == [(0.2, 2.0, 10.0), (0.3, 1.0, 0.0), (0.4, 1.0, 0.0)]


def test_a_budget_pickled_before_usd_was_kept_loads_into_the_new_window():
    """An older checkpoint holds ``scores``, a deque of (score, weight) with its maxlen; as
    pickle hands it over (slots in a tuple) or as a plain dict."""
    import collections
    import pickle

    old = collections.deque([(0.1, 1.0), (0.7, 2.0)], maxlen=5)
    for state in ((None, {"scores": old}), {"scores": old}):
        b = Budget.__new__(Budget)
        b.__setstate__(state)
        assert b.scores == [(0.1, 1.0, 0.0), (0.7, 2.0, 0.0)]
        assert len(b.legit.a) == 5 and b.pos.n == 0
    b = Budget(4)
    b.add(0.5, 2.0, 30.0)
    b.add_positive(0.9, 100.0)
    back = pickle.loads(pickle.dumps(b))
    assert back.scores == [(0.5, 2.0, 30.0)] and back.pos.ordered() == [(0.9, 100.0)]


def test_the_usd_budget_is_kept_to_the_cent_not_to_the_dollar():
    """A USD budget of 25% of $400: a legitimate $100.50 above the threshold is over it."""
    b = Budget(10)
    b.add(0.9, 1.0, 100.5)
    b.add(0.1, 1.0, 299.5)
    assert b.quantile(1.0, 0.25) == pytest.approx(0.900001)
    c = Budget(10)
    c.add(0.9, 1.0, 100.0)  # exactly the share: held
    c.add(0.1, 1.0, 300.0)
    assert c.quantile(1.0, 0.25) == pytest.approx(0.100001)


def test_a_window_pickled_without_a_length_keeps_every_row():
    import collections

    b = Budget.__new__(Budget)
    b.__setstate__({"scores": collections.deque([(0.1, 1.0), (0.7, 2.0)])})
    assert len(b.legit.a) == 2 and b.scores == [(0.1, 1.0, 0.0), (0.7, 2.0, 0.0)]
