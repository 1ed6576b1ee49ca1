"""The friction budget's arithmetic (core/friction.py) on small windows worked by hand: the
two hold tests at their edges, a USD-only budget, the expected-loss threshold that fits the
room a score threshold leaves, and the joint choice of the two thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from core.friction import NEVER, Budget, _loss_threshold, held_by


# ------------------------------------------------------------------------- the two tests
def test_expected_loss_holds_at_exactly_its_threshold_and_from_any_positive_one():
    assert held_by(0.5, 2000.0, 0.9, 1000.0) == "expected_loss"  # 0.5 x 2000 = 1000
    assert held_by(0.5, 1999.0, 0.9, 1000.0) is None
    assert held_by(0.5, 2.0, 0.9, 0.5) == "expected_loss"  # a threshold of 50 cents is on
    assert held_by(0.5, 2.0, 0.9, 0.0) is None  # 0: off


# ---------------------------------------------------------------------- the score budget
def test_a_budget_without_any_share_is_never_measurable():
    b = Budget(10)
    for s in (0.1, 0.2, 0.3):
        b.add(s, 1, 100.0)
    assert not b.measurable(0.0)
    assert b.measurable(0.0, 0.5) and b.measurable(0.5)


def test_a_usd_budget_over_transfers_worth_nothing_binds_nothing():
    """With only a USD share and legitimate transfers of no USD value every score fits:
    the quantile is the lowest legitimate score, the threshold never below the floor."""
    b = Budget(10)
    for s in (0.2, 0.4, 0.6):
        b.add(s, 1, 0.0)
    assert b.quantile(0.0, 0.5) == 0.2
    assert b.threshold(0.0, floor=0.1, budget_usd=0.5) == 0.2
    assert b.threshold(0.0, floor=0.3, budget_usd=0.5) == 0.3


# ------------------------------------------------------------- the expected-loss threshold
# four legitimate transfers by expected loss, highest first; the first is held by score
E = np.array([900.0, 700.0, 123.456, 10.0])
W = np.array([1.0, 1.0, 1.0, 1.0])
FREE = np.array([False, True, True, True])


def _holds(threshold, e=E):
    """The legitimate transfers not held by score that a threshold holds."""
    return [i for i in range(len(e)) if FREE[i] and e[i] >= threshold]


def test_the_loss_threshold_is_the_lowest_cent_that_fits_the_room_left():
    wu = np.array([1000.0, 1000.0, 2000.0, 50.0])
    # room for one more transfer and $1,000: the second (700) fits exactly, the third not
    got = _loss_threshold(E, W, wu, FREE, 1.0, 1000.0, 100.0)
    assert _holds(got) == [1]
    assert 123.456 < got <= 123.47 and round(got, 2) == got  # to the cent
    # the count binds alone (no USD limit): room for one, the third is the second too many
    got = _loss_threshold(E, W, wu, FREE, 1.0, 1e9, 100.0)
    assert _holds(got) == [1] and 123.456 < got <= 123.47
    # the USD binds alone: $1 over the room is over
    got = _loss_threshold(E, W, np.array([1000.0, 1000.0, 1.0, 50.0]), FREE, 10.0, 1000.0,
                          100.0)
    assert _holds(got) == [1] and 123.456 < got <= 123.47
    # everything fits: the floor; a threshold above the floor is never lowered to it
    assert _loss_threshold(E, W, wu, FREE, 10.0, 1e9, 100.0) == 100.0
    assert _loss_threshold(E, W, wu, FREE, 1.0, 1e9, 500.0) == 500.0


# ------------------------------------------------------------------- the joint choice
def _joint_budget(positives):
    b = Budget(10)
    for s in (0.9, 0.7, 0.3, 0.2):  # $1,000 each: expected losses 900, 700, 300, 200
        b.add(s, 1, 1000.0)
    for s, usd in positives:
        b.add_positive(s, usd)
    return b


def test_the_pair_within_both_budgets_that_holds_the_most_positive_usd():
    """25% of 4 legitimate transfers (one) and 50% of their $4,000 may be held. Candidate
    score thresholds: just above 0.9 and 0.7, the floor 0.5 (holds two: over) and none.
    Above 0.9 or with none, the expected-loss test may hold the 900 (one transfer): from
    700.01; above 0.7 the score test holds the 0.9 and the loss test nothing more: from
    700.01. The positives: 0.95 ($10), 0.8 ($900, loss 720), 0.6 ($1,250, loss 750) and
    0.55 ($100, only a score threshold of 0.5 would hold it)."""
    b = _joint_budget([(0.95, 10.0), (0.8, 900.0), (0.6, 1250.0), (0.55, 100.0)])
    # none: $2,150 (2); above 0.9: $2,160 (3); above 0.7: $2,160 (3), a tie: the higher
    t, loss = b.thresholds(0.25, 0.5, 0.5, 100.0)
    assert t == pytest.approx(0.900001) and loss == pytest.approx(700.01)
    # with no USD share the count alone binds, and gives the same pair
    t, loss = b.thresholds(0.25, 0.0, 0.5, 100.0)
    assert t == pytest.approx(0.900001) and loss == pytest.approx(700.01)


def test_a_positive_at_exactly_a_candidate_threshold_is_held_by_it():
    b = _joint_budget([(0.900001, 10.0), (0.8, 900.0), (0.6, 1250.0)])
    t, loss = b.thresholds(0.25, 0.5, 0.5, 100.0)
    assert t == pytest.approx(0.900001) and loss == pytest.approx(700.01)


def test_without_positives_the_highest_pair_that_fits_is_kept():
    t, loss = _joint_budget([]).thresholds(0.25, 0.5, 0.5, 100.0)
    assert t == NEVER and loss == pytest.approx(700.01)


def _budget(legit, positives=()):
    b = Budget(200)
    for s, usd in legit:
        b.add(s, 1, usd)
    for s, usd in positives:
        b.add_positive(s, usd)
    return b


# a loss floor no legitimate transfer reaches: the pairs differ by their score threshold
NO_LOSS = 1e9


def test_a_legitimate_score_at_the_floor_is_held_by_the_floor_and_its_next_step_is_tried():
    """Candidates: none, just above 0.6, just above 0.5 (a legitimate score at the floor),
    the floor. 1 of 4 and $1 of $4 may be held. Above 0.5 holds the 0.6 ($1: the USD room
    left is exactly 0, which fits) and a positive of 0.55; the floor holds the 0.5 and the
    0.6 (over: skipped), though it would hold the positive of 0.5 too."""
    b = _budget([(0.5, 1.0), (0.6, 1.0), (0.2, 1.0), (0.1, 1.0)], [(0.5, 10.0), (0.55, 5.0)])
    assert b.thresholds(0.25, 0.25, 0.5, NO_LOSS) == (pytest.approx(0.500001), NO_LOSS)


def test_a_score_threshold_whose_holds_overrun_the_usd_share_is_not_a_candidate():
    # the floor would hold the $10,000 transfer at 0.9: over 50% of $10,003
    b = _budget([(0.9, 10000.0), (0.3, 1.0), (0.2, 1.0), (0.1, 1.0)], [(0.6, 10.0)])
    assert b.thresholds(0.25, 0.5, 0.5, NO_LOSS) == (NEVER, NO_LOSS)


def test_a_positive_at_exactly_the_loss_threshold_is_held_by_it_at_every_score_threshold():
    """Every legitimate expected loss is below the $100 floor: the loss threshold is the
    floor for every score threshold, and the positive (0.5 x $200 = $100) is held by it
    at each: a tie, the highest score threshold wins."""
    b = _budget([(0.9, 100.0), (0.7, 100.0), (0.3, 100.0), (0.2, 100.0)], [(0.5, 200.0)])
    assert b.thresholds(0.5, 0.5, 0.5, 100.0) == (NEVER, 100.0)


MANY = [(0.5 + i / 100, 1.0) for i in range(1, 21)] + [(0.1, 1.0)] * 80  # 22 candidates


def test_with_many_candidates_the_floor_is_still_tried():
    # 25% may be held: the floor holds the 20 above it; only it holds the positive of 0.505
    b = _budget(MANY, [(0.505, 10.0)])
    assert b.thresholds(0.25, 0.25, 0.5, NO_LOSS) == (0.5, NO_LOSS)


def test_with_many_candidates_and_no_positive_no_score_threshold_is_kept():
    assert _budget(MANY).thresholds(0.25, 0.25, 0.5, NO_LOSS) == (NEVER, NO_LOSS)


def test_a_window_of_one_keeps_the_last_example():
    b = Budget(1)
    b.add(0.2, 1, 5.0)
    b.add(0.9, 2, 7.0)
    assert b.scores == [(0.9, 2.0, 7.0)]
