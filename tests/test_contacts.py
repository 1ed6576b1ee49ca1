"""Rule 15: risk assessments users keep — a daily number that follows the active users, a
floor of expected loss, a cool-down of their own broken only by a new signal; and the
report's contacts per 1,000 active users per week."""

from __future__ import annotations

import pytest

from core.assessments import daily_assessments, daily_number
from core.events import FeaturedTransfer, OutreachRequest, ScoredTransfer
from core.outreach import OUTREACH, OutreachStep
from core.policy import DAY, Policy
from report.contacts import measure
from schemas.rows import Outreach, Transfer
from tests import scenario
from tests.kit import feed, tagged
from tests.scenario import addr, at, collect, transfer

SCAM = addr("scam-collector")
FRIEND = addr("friend")


def scored(user, t, usd, score=0.6):
    tr = Transfer(f"{user}-{t}", t, user, FRIEND, None, "ETH", "ETH", "1", usd, "WITHDRAWAL")
    return ScoredTransfer(FeaturedTransfer(tr, t, {}), t, score, "rules")


def test_daily_number_is_a_share_of_active_users_within_the_capacity():
    p = Policy(assessment_share=0.01, assessments_per_day=5)
    assert [daily_number(p, n) for n in (0, 1, 100, 101, 400, 10_000)] == [0, 1, 1, 2, 4, 5]


def test_a_day_assesses_its_share_of_active_users_highest_loss_first():
    """100 active users on day 0 (2 of them risky), 300 on day 1 (all risky): 1% of active
    users is 1 then 3, whatever the candidates."""
    p = Policy(assessment_share=0.01, assessments_per_day=50, assessment_min_loss=0.0)
    day0 = [scored(f"a{i}", at(hours=1), 10.0, score=0.6 if i < 2 else 0.01)
            for i in range(100)]
    day1 = [scored(f"b{i:03d}", at(days=1, hours=1), 1000.0 + i) for i in range(300)]
    got = daily_assessments(day0 + day1, [], p, lambda u: None)
    assert [(r.event_time, r.user_id) for r in got] == [
        (at(days=1) - 1, "a0"), (at(days=2) - 1, "b299"), (at(days=2) - 1, "b298"),
        (at(days=2) - 1, "b297")]


def test_no_assessment_below_the_minimum_expected_loss():
    p = Policy(assessment_share=1.0, assessment_min_loss=250.0)
    got = daily_assessments([scored("small", at(hours=1), 400.0),  # 0.6 x 400 = 240
                             scored("big", at(hours=2), 500.0)], [], p, lambda u: None)
    assert [r.user_id for r in got] == ["big"]


def _assessment(t, *signals, loss=500.0):
    return OutreachRequest("u", t, "RISK_ASSESSMENT", "APP", None, None,
                           tuple(signals) + (f"expected_loss_usd={loss:.2f}",), (), loss)


def _sent(events, p=None):
    _, out = feed(OutreachStep(p or Policy(), lambda u: None), "u", events)
    return [(o.created_at, o.reasons[-1]) for o in tagged(out, OUTREACH)]


def test_a_user_is_assessed_again_only_after_their_cooldown():
    days = [_assessment(at(days=d) - 1, "warnings=1") for d in range(1, 10)]
    # day 0, then nothing until 7 days later (day 7), then day 8 is within that cool-down
    assert [t for t, _ in _sent(days)] == [at(days=1) - 1, at(days=8) - 1]


def test_a_new_signal_brings_one_early_assessment_saying_so():
    events = [_assessment(at(days=1) - 1, "warnings=1"),
              _assessment(at(days=2) - 1, "warnings=2"),  # the same signal: not new
              _assessment(at(days=3) - 1, "warnings=1", "past_scam_losses=1"),  # new
              _assessment(at(days=4) - 1, "lookalike_payments=1")]  # new, but one early only
    assert _sent(events) == [(at(days=1) - 1, "expected_loss_usd=500.00"),
                             (at(days=3) - 1, "new_signal=past_scam_losses")]


def test_the_assessment_cooldown_is_an_option():
    p = Policy(assessment_cooldown_ms=2 * DAY)
    days = [_assessment(at(days=d) - 1, "warnings=1") for d in range(1, 6)]
    assert [t for t, _ in _sent(days, p)] == [at(days=1) - 1, at(days=3) - 1, at(days=5) - 1]


def test_no_user_is_assessed_on_more_than_two_days_of_any_seven():
    """Whatever the signals (a new one every day), at most two assessments in 7 days."""
    names = ["warnings", "lookalike_payments", "past_scam_losses", "young_destinations",
             "amount_rises", "high_fan_in_destinations", "new_payees", "vulnerable_user"]
    events = [_assessment(at(days=d) - 1, f"{names[d % len(names)]}=1") for d in range(1, 29)]
    sent = sorted(t // DAY for t, _ in _sent(events))
    assert all(sum(1 for d in sent if s <= d < s + 7) <= 2 for s in range(0, 29))


# ------------------------------------------------------------- the graph, both faces
@pytest.fixture
def policy(tmp_path) -> Policy:
    users = [f"p{i}" for i in range(20)]
    files = scenario.side_files(tmp_path, SCAM, users)
    return Policy(use_models=False, assessment_share=0.1, assessments_per_day=50,
                  assessment_min_loss=250.0, hold_escalation=False, **files)


def _events():
    # day 0: 20 active users, 6 pay the listed SCAM (warnings, risk 1): 10% of 20 = 2
    # assessments, the two largest of the four above $250; day 1: the same two pay again:
    # cooling down, not assessed (and nobody takes their place). The 14 users who only pay
    # a friend do so at one time each day: on the streaming face every distinct event
    # time is a watermark step through the whole graph (about a CPU-second each).
    evs = [transfer(f"f{i}", at(hours=1), f"p{i}", FRIEND, usd=20.0) for i in range(6, 20)]
    evs += [transfer(f"s{i}", at(hours=2 + i), f"p{i}", SCAM, usd=100.0 * (i + 1))
            for i in range(6)]
    evs += [transfer(f"t{i}", at(days=1, hours=2 + i), f"p{i}", SCAM, usd=100.0 * (i + 1))
            for i in (4, 5)]
    evs += [transfer(f"g{i}", at(days=1, hours=1), f"p{i}", FRIEND, usd=20.0)
            for i in range(6, 20)]
    return evs


def _assessed(out):
    return sorted((o.created_at, o.user_id) for o in out["outreach"]
                  if o.kind == "RISK_ASSESSMENT")


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_graph_assesses_a_share_of_active_users_with_their_cooldown(policy, mode):
    assert _assessed(collect(_events(), policy, mode)) == [
        (at(days=1) - 1, "p4"), (at(days=1) - 1, "p5")]


# ----------------------------------------------------------------- the report
def test_report_counts_contacts_per_1000_active_users_and_repeated_assessments():
    transfers = {f"x{i}": Transfer(f"x{i}", at(days=d), f"u{i}", FRIEND, None, "ETH", "ETH",
                                   "1", 1.0, "WITHDRAWAL")
                 for i, d in enumerate([0] * 500 + [7] * 250)}

    def o(i, user, kind, day):
        return Outreach(f"o{i}", user, kind, "APP", at(days=day, hours=1), None, None, [])
    rows = [o(1, "u1", "RISK_ASSESSMENT", 0), o(2, "u1", "RISK_ASSESSMENT", 2),
            o(3, "u1", "RISK_ASSESSMENT", 6), o(4, "u2", "WARNING", 1),
            o(5, "u3", "RISK_ASSESSMENT", 8)]
    fig = measure(transfers, rows)
    assert [(w["active_users"], w["per_1000_active"]) for w in fig["weeks"]] == [
        (500, {"RISK_ASSESSMENT": 6.0, "WARNING": 2.0}), (250, {"RISK_ASSESSMENT": 4.0})]
    assert fig["assessments"]["max_days_of_any_7"] == 3
    assert fig["assessments"]["users_on_more_than_2_days_of_any_7"] == 1
    assert fig["repeated"] == {"users_3_or_more_in_a_week": 1, "max_contacts_in_a_week": 3}
