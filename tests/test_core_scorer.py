"""The Score step (core/scorer.py) at the machine level: which model version scores an event
(the version book a streaming side input keeps merging), the rounding of scores, the
expected-loss test with a version's or the policy's threshold, and the per-user friction
cap (rule 10): what it counts, what it never caps, what a capped transfer says.

No Beam: the machine is fed directly. Models are River's prior classifiers, whose score is
the share of positives they saw (1 of 3: 0.333…), so every expected score is known."""

from __future__ import annotations

import pickle

import pytest
from river import dummy

from core.events import FeaturedReport, FeaturedTransfer, ModelVersion, ReportIn
from core.labels import SCAM_VERDICT, TRANSFER_RISK
from core.machine import METRIC
from core.policy import HOUR, Policy
from core.scorer import SCORED_REPORTS, SCORED_TRANSFERS, Score, VersionBook
from tests.scenario import at, report, transfer

P = Policy()


def prior(pos: int, n: int):
    m = dummy.PriorClassifier()
    for i in range(n):
        m.learn_one({}, i < pos)
    return m


def version(model, t, vid, n_labels=1, threshold=0.75, loss=None, name=TRANSFER_RISK):
    return ModelVersion(name, t, vid, n_labels, pickle.dumps(model), threshold, loss)


def mv(t, vid, n_labels=1):
    return version(prior(1, 2), t, vid, n_labels)


def ft(tid, t, usd=100.0, user="amy", blacklist=None, lookalike_of=None):
    return FeaturedTransfer(transfer(tid, t, user, "0x" + "d" * 40, usd=usd), t, {},
                            blacklist=blacklist, lookalike_of=lookalike_of)


def scored(out):
    return [v for tag, _t, v in out if tag == SCORED_TRANSFERS]


# ----------------------------------------------------------------------- the version book
def test_a_pane_of_versions_merges_lists_and_single_versions_and_skips_known_ones():
    book = VersionBook()
    book.update([[mv(10, "m:1"), mv(20, "m:2")], mv(30, "m:3")])
    assert [book.latest(TRANSFER_RISK, t).version for t in (11, 21, 31)] == [
        "m:1", "m:2", "m:3"]
    # a later pane repeats a known version before a new one: the new one is merged too
    book.update([[mv(20, "m:2"), mv(40, "m:4")]])
    assert book.latest(TRANSFER_RISK, 41).version == "m:4"
    assert [v.version for v in book.by_model[TRANSFER_RISK]] == ["m:1", "m:2", "m:3", "m:4"]


def test_no_version_is_valid_before_the_first_one_is_published():
    book = VersionBook()
    book.update([mv(10, "m:1"), mv(20, "m:2")])
    assert book.latest(TRANSFER_RISK, 5) is None
    assert book.latest(TRANSFER_RISK, 10) is None  # published at 10: valid after it
    assert book.latest(SCAM_VERDICT, 50) is None  # no version of that model


def test_at_equal_time_the_version_that_learned_more_labels_is_the_newer():
    book = VersionBook()
    book.update([mv(10, "m:10", n_labels=10), mv(10, "m:9", n_labels=9)])
    assert book.latest(TRANSFER_RISK, 11).version == "m:10"


def test_a_bounded_book_keeps_the_newest_versions_as_panes_repeat_them():
    """Streaming: each pane brings the newest versions again; ``keep`` of them stay."""
    book = VersionBook(keep=3)
    v = [mv(10 * i, f"m:{i}", n_labels=i) for i in range(1, 6)]
    book.update([v[0], v[1], v[2], v[3]])  # m:1 leaves
    assert [x.version for x in book.by_model[TRANSFER_RISK]] == ["m:2", "m:3", "m:4"]
    assert book.latest(TRANSFER_RISK, 15) is None  # before m:2 nothing is known now
    assert book.latest(TRANSFER_RISK, 25).version == "m:2"
    book.update([[v[2], v[3]]])  # the newest again: nothing changes
    assert [x.version for x in book.by_model[TRANSFER_RISK]] == ["m:2", "m:3", "m:4"]
    assert book.latest(TRANSFER_RISK, 25).version == "m:2"
    book.model(v[3])  # m:4's model unpickled (and cached)
    book.update([[v[3], v[4]]])
    assert [x.version for x in book.by_model[TRANSFER_RISK]] == ["m:3", "m:4", "m:5"]
    assert book.latest(TRANSFER_RISK, 35).version == "m:3"
    assert book.model(v[3]).predict_proba_one({})[True] == pytest.approx(0.5)


# ---------------------------------------------------------------------------- rounding
def test_transfer_and_report_scores_are_rounded_to_six_digits():
    """The step rounds every score to 6 digits (the friction budget's levels are the same
    rounded scores: core/friction.py)."""
    sc = Score(Policy(friction_cap=0))
    third = prior(1, 3)  # scores 1/3
    sc.bind([version(third, at(0), "tr:1"), version(third, at(0), "sv:1", name=SCAM_VERDICT)])
    (st,) = scored(sc.on_event(sc.new_state("amy"), ft("t1", at(1)), at(1)))
    assert st.score == 0.333333 and st.model_version == "tr:1"
    rep = report("r1", at(1), "amy", suspect="0x" + "d" * 40)
    fr = FeaturedReport(ReportIn(rep, at(1), rep.suspect_address), at(1),
                        {"established_reporters_7d": 1.0})
    ((tag, _t, sr),) = sc.on_event(sc.new_state("amy"), fr, at(1))
    assert tag == SCORED_REPORTS
    assert sr.score == 0.333333 and sr.model_version == "sv:1"


def test_an_event_of_another_kind_is_refused_by_name():
    sc = Score(P)
    with pytest.raises(TypeError, match="Score cannot handle ReportIn"):
        sc.on_event(sc.new_state("amy"), ReportIn(report("r1", at(0), "amy"), at(0), "x"),
                    at(0))


# ----------------------------------------------------------------------- expected loss
def test_a_version_without_its_own_expected_loss_threshold_uses_the_policys():
    sc = Score(Policy(hold_expected_loss=1000.0, friction_cap=0, friction_cap_long=0))
    sc.bind([version(prior(3, 10), at(0), "tr:1", loss=None)])  # scores 0.3
    s = sc.new_state("amy")
    big, small = (scored(sc.on_event(s, ft(tid, at(1), usd), at(1)))[0]
                  for tid, usd in (("big", 4000.0), ("small", 3000.0)))
    assert (big.held_by, small.held_by) == ("expected_loss", None)  # $1,200 / $900
    # the model's reason stays, and the expected loss is added to it
    assert big.reasons[0].startswith(f"model:{TRANSFER_RISK}=")
    assert big.reasons[-1] == "expected_loss_usd=1200"


def test_a_transfer_of_no_usd_value_is_never_held_by_expected_loss():
    sc = Score(Policy(friction_cap=0, friction_cap_long=0))
    sc.bind([version(prior(6, 10), at(0), "tr:1", threshold=0.9, loss=0.5)])  # 0.6 x $0
    (st,) = scored(sc.on_event(sc.new_state("amy"), ft("t0", at(1), usd=0.0), at(1)))
    assert st.held_by is None


# ------------------------------------------------------------------------ friction cap
def _capped_policy():
    return Policy(friction_cap=1, friction_window_ms=24 * HOUR, friction_cap_long=0)


def test_a_transfer_that_no_test_holds_does_not_use_up_the_cap():
    sc = Score(_capped_policy())
    # scores 0.8: below the version's 0.9, held by expected loss from $625
    sc.bind([version(prior(8, 10), at(0), "tr:1", threshold=0.9, loss=500.0)])
    s = sc.new_state("amy")
    for i in range(3):  # $80 of expected loss: not held, nothing counted
        (st,) = scored(sc.on_event(s, ft(f"n{i}", at(1 + i), usd=100.0), at(1 + i)))
        assert st.held_by is None and not st.capped
    assert not s.holds
    (st,) = scored(sc.on_event(s, ft("big", at(5), usd=1000.0), at(5)))
    assert st.held_by == "expected_loss" and not st.capped  # the one hold the cap allows
    (st,) = scored(sc.on_event(s, ft("big2", at(6), usd=1000.0), at(6)))
    assert st.held_by == "expected_loss" and st.capped


def test_listed_and_lookalike_transfers_are_never_capped_nor_counted():
    sc = Score(_capped_policy())
    sc.bind([version(prior(8, 10), at(0), "tr:1", threshold=0.75, loss=0.0)])  # 0.8
    s = sc.new_state("amy")
    for i, kw in enumerate(({"blacklist": ("vendor_q",)}, {"lookalike_of": "0x" + "a" * 40},
                            {"blacklist": ("vendor_q",)})):
        (st,) = scored(sc.on_event(s, ft(f"x{i}", at(1 + i), **kw), at(1 + i)))
        assert st.held_by == "score" and not st.capped
    assert not s.holds
    # the cap is still whole for a model-only hold
    (st,) = scored(sc.on_event(s, ft("m1", at(5)), at(5)))
    assert not st.capped and list(s.holds) == [at(5)]


def test_a_capped_transfer_keeps_its_reasons_adds_the_caps_and_is_counted():
    sc = Score(_capped_policy())
    sc.bind([version(prior(8, 10), at(0), "tr:1", threshold=0.75, loss=0.0)])  # 0.8
    s = sc.new_state("amy")
    first = sc.on_event(s, ft("a", at(1)), at(1))
    assert [tag for tag, _t, _v in first] == [SCORED_TRANSFERS]
    out = sc.on_event(s, ft("b", at(2)), at(2))
    assert [(tag, t, v) for tag, t, v in out if tag == METRIC] == [
        (METRIC, at(2), ("friction_capped", 1))]
    (st,) = scored(out)
    assert st.capped and st.held_by == "score"
    assert st.reasons[0].startswith(f"model:{TRANSFER_RISK}=")
    assert st.reasons[-1] == "friction_cap=1"
