"""Rule 11: daily risk assessments. Once per event-time day, users whose day shows risk get
one RISK_ASSESSMENT on APP naming its top reasons, at most ``assessments_per_day`` a day,
highest expected loss first; the Outreach step's cool-down applies. Pure functions first,
then the whole graph on the batch face and on the streaming face (TestStream, event time).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from core.assessments import (
    PAST_LOSSES,
    DaySignals,
    DayTop,
    LossMemory,
    PastLosses,
    add_signals,
    assess,
    daily_assessments,
    top_assessments,
    transfer_signals,
)
from core.events import FeaturedTransfer, LossConfirmed, OutreachRequest, ScoredTransfer
from core.machine import run_history
from core.policy import DAY, HOUR, Policy
from schemas.rows import Transfer
from tests import scenario
from tests.scenario import addr, at, collect, outcome, profile, scheduled_stream, transfer

SCAM = addr("scam-collector")
FRIEND = addr("friend")
END0 = at(days=1) - 1  # the last millisecond of day 0 (T0 is a UTC midnight)
# rule 11 alone: every candidate counts (no share of active users, no floor), and the
# day-long cool-down of rule 6 only (rule 15: tests/test_contacts.py)
RULE_11_ALONE = {"assessment_share": 1.0, "assessment_min_loss": 0.0,
                 "assessment_cooldown_ms": DAY}


def scored(user, t, usd, score=0.05, features=None, blacklist=None, lookalike=None):
    tr = Transfer(f"{user}-{t}", t, user, FRIEND, None, "ETH", "ETH", "1", usd, "WITHDRAWAL")
    return ScoredTransfer(FeaturedTransfer(tr, t, features or {}, (), blacklist, None,
                                           lookalike), t, score, "rules")


# ------------------------------------------------------------------------------- pure
def test_signals_of_one_transfer():
    p = Policy()
    s = transfer_signals(scored("u", at(0), 200.0, score=0.5, features={
        "new_dest": 1.0, "amount_z": 4.0, "fan_in_24h": 12.0, "dest_age_days": 0.2,
        "log_dest_transfers": 1.0}), p)
    assert s == DaySignals(transfers=1, warnings=1, young_destinations=1, high_fan_in=1,
                           amount_rises=1, new_payees=1, loss_cents=10000)
    listed = transfer_signals(scored("u", at(0), 200.0, blacklist=("ofac",)), p)
    assert (listed.warnings, listed.loss_cents) == (1, 20000)  # listed: all of it at risk


def test_day_without_risk_or_without_transfers_gets_no_assessment():
    p = Policy()
    assert assess("u", DaySignals(transfers=4, new_payees=2, loss_cents=500), None, p,
                  END0) is None
    assert assess("u", DaySignals(past_losses=1), None, p, END0) is None  # no activity


def test_assessment_names_its_top_reasons_and_expected_loss():
    p = Policy(**RULE_11_ALONE)
    s = add_signals([DaySignals(transfers=1, warnings=1, loss_cents=12345),
                     DaySignals(transfers=1, lookalikes=1, warnings=1, new_payees=1),
                     DaySignals(past_losses=1), DaySignals(transfers=1, new_payees=2)])
    r = assess("u", s, profile("u", at(days=-400), vulnerable=True), p, END0)
    assert (r.user_id, r.kind, r.channel, r.event_time, r.expected_loss) == (
        "u", "RISK_ASSESSMENT", "APP", END0, 123.45)
    assert r.reasons == ("past_scam_losses=1", "lookalike_payments=1", "warnings=2",
                         "expected_loss_usd=123.45")


def test_vulnerable_profile_alone_is_a_signal():
    r = assess("v", DaySignals(transfers=1, loss_cents=100), profile("v", 0, True),
               Policy(**RULE_11_ALONE), END0)
    assert r.reasons == ("vulnerable_user", "expected_loss_usd=1.00")


def test_top_k_by_expected_loss_ties_by_user():
    p = Policy(**RULE_11_ALONE)
    cands = [assess(u, DaySignals(transfers=1, warnings=1, loss_cents=c), None, p, END0)
             for u, c in (("d", 100), ("b", 500), ("a", 300), ("c", 500))]
    assert [r.user_id for r in top_assessments(cands, 3)] == ["b", "c", "a"]


def test_a_loss_counts_on_its_day_and_the_days_of_the_lookback_after_it():
    p = Policy(lookback_ms=3 * DAY)
    t = at(hours=10)
    out = run_history(LossMemory(p), "u", [LossConfirmed("u", t, "x", SCAM)])
    assert [(tag, when, m) for tag, when, m in out] == [
        (PAST_LOSSES, when, PastLosses("u", when, 1))
        for when in (t, at(days=1), at(days=2), at(days=3))]


def test_loss_memory_counts_every_loss_still_within_the_lookback():
    p = Policy(lookback_ms=2 * DAY)
    out = run_history(LossMemory(p), "u", [LossConfirmed("u", at(hours=1), "x", SCAM),
                                          LossConfirmed("u", at(days=1, hours=1), "y", SCAM)])
    assert [(when, m.n) for _tag, when, m in out] == [
        (at(hours=1), 1), (at(days=1), 1), (at(days=1, hours=1), 1), (at(days=2), 2),
        (at(days=3), 1)]


def test_daily_cap_holds_per_day():
    p = Policy(assessments_per_day=2, **RULE_11_ALONE)
    rows = [scored(f"u{i}", at(days=d, hours=i), 100.0 * (i + 1), score=0.5)
            for d in range(3) for i in range(5)]
    got = daily_assessments(rows, [], p, lambda u: None)
    per_day = Counter(r.event_time for r in got)
    assert per_day == {at(days=1) - 1: 2, at(days=2) - 1: 2, at(days=3) - 1: 2}
    assert {r.user_id for r in got} == {"u4", "u3"}  # the two largest each day


def test_loss_memory_speaks_at_the_first_ms_of_each_day_not_after_it():
    p = Policy(lookback_ms=3 * DAY)
    m = LossMemory(p)
    s = m.new_state("u")
    assert m.next_deadline(s) is None
    m.on_event(s, LossConfirmed("u", at(hours=10), "x", SCAM), at(hours=10))
    assert m.next_deadline(s) == at(days=1)
    assert m.advance(s, at(days=1) - 1) == []
    assert m.advance(s, at(days=1)) == [(PAST_LOSSES, at(days=1), PastLosses("u", at(days=1), 1))]
    assert m.next_deadline(s) == at(days=2)
    assert [t for _tag, t, _x in m.advance(s, at(days=4))] == [at(days=2), at(days=3)]
    assert m.is_empty(s) and m.next_deadline(s) is None  # the loss left the lookback


def test_a_loss_leaves_the_memory_exactly_a_lookback_after_it():
    """A loss at midnight with a 2-day lookback counts on its day and the next; at the
    start of the day after, it is exactly a lookback old: gone."""
    out = run_history(LossMemory(Policy(lookback_ms=2 * DAY)), "u",
                      [LossConfirmed("u", at(0), "x", SCAM)])
    assert [(when, m.n) for _tag, when, m in out] == [(at(0), 1), (at(days=1), 1)]


def _cand(user, loss):
    return OutreachRequest(user, at(days=1) - 1, "RISK_ASSESSMENT", "APP", None, None, (), (),
                           loss)


def test_a_candidate_without_an_expected_loss_ranks_as_zero():
    assert [c.user_id for c in top_assessments([_cand("a", None), _cand("b", 0.01),
                                                _cand("c", 0.0)], 3)] == ["b", "a", "c"]


def test_expected_losses_equal_to_the_cent_rank_by_user_id():
    assert [c.user_id for c in top_assessments([_cand("b", 0.504), _cand("a", 0.5)], 2)] == [
        "a", "b"]


def test_the_day_top_merges_partial_selections_as_if_added_in_one():
    """The combiner's merge (the Beam face splits a day over bundles): active users add up,
    the candidates are the capacity's highest expected losses of all parts."""
    p = Policy(assessments_per_day=2, assessment_share=1.0)
    top = DayTop(p)
    parts = [[(1, _cand("a", 10.0)), (1, None)], [(1, _cand("b", 30.0))],
             [(1, _cand("c", 20.0)), (1, _cand("d", 5.0))]]
    accs = []
    for items in parts:
        acc = top.create()
        for it in items:
            acc = top.add(acc, it)
        accs.append(acc)
    merged = top.merge(accs)
    assert merged[0] == 5
    assert [c.user_id for c in merged[1]] == ["b", "c"]
    assert [c.user_id for c in top.extract(merged)] == ["b", "c"]
    assert top.merge([]) == [0, []]


# ------------------------------------------------------------------------------ graph
# Rule 11's selection alone: rule 15's share of active users, floor and own cool-down are
# pinned in tests/test_contacts.py
@pytest.fixture
def policy(tmp_path) -> Policy:
    files = scenario.side_files(tmp_path, SCAM, ("alice", "bob", "carol", "dave", "vera"),
                                vulnerable=("vera",))
    return Policy(use_models=False, assessments_per_day=2, **RULE_11_ALONE, **files)


def _events():
    scam2 = "0x" + "5" * 40  # no look-alike of SCAM
    return [
        # day 0: three users pay a listed address (warned); the cap is 2: alice ($300)
        # and carol ($200) are assessed, bob ($100) is not; dave's ordinary payment shows
        # no risk.
        transfer("a0", at(hours=1), "alice", SCAM, usd=300.0),
        transfer("b0", at(hours=2), "bob", SCAM, usd=100.0),
        transfer("c0", at(hours=3), "carol", SCAM, usd=200.0),
        transfer("d0", at(hours=4), "dave", FRIEND, usd=50.0),
        # day 1: bob's payment to scam2 is confirmed a scam the same day: a past loss
        # (and bob's only assessment candidate of the day)
        transfer("b1", at(days=1, hours=1), "bob", scam2, usd=70.0),
        outcome("c-b1", at(days=1, hours=2), "ADDRESS", scam2),
        # day 2: bob pays a friend: assessed for his past loss; vera (vulnerable) too.
        transfer("b2", at(days=2, hours=5), "bob", FRIEND, usd=10.0),
        transfer("v2", at(days=2, hours=6), "vera", FRIEND, usd=40.0),
        # day 40: bob's loss is older than the lookback: no assessment.
        transfer("b40", at(days=40), "bob", FRIEND, usd=10.0),
    ]


def _assessments(out) -> list:
    return sorted((o.created_at, o.user_id, o.channel, tuple(o.reasons))
                  for o in out["outreach"] if o.kind == "RISK_ASSESSMENT")


EXPECTED = [
    (at(days=1) - 1, "alice", "APP", ("warnings=1", "expected_loss_usd=300.00")),
    # SCAM was first seen an hour before carol paid it, and already paid: young
    (at(days=1) - 1, "carol", "APP", ("warnings=1", "young_destinations=1",
                                      "expected_loss_usd=200.00")),
    (at(days=2) - 1, "bob", "APP", ("past_scam_losses=1", "expected_loss_usd=3.50")),
    (at(days=3) - 1, "bob", "APP", ("past_scam_losses=1", "expected_loss_usd=0.50")),
    (at(days=3) - 1, "vera", "APP", ("vulnerable_user", "expected_loss_usd=2.00")),
]


def test_graph_assesses_risky_days_within_the_cap_batch(policy):
    assert _assessments(collect(_events(), policy)) == EXPECTED


def test_graph_assesses_risky_days_within_the_cap_stream(policy):
    """The streaming face in event time (TestStream on BundleBasedDirectRunner)."""
    assert _assessments(collect(_events(), policy, "stream")) == EXPECTED


def test_stream_cap_holds_when_the_day_arrives_in_pieces(policy, monkeypatch):
    """Out-of-order arrival inside the day and the watermark moving in steps: the day is
    ranked once, at its end, so the cap holds."""
    users = [f"p{i}" for i in range(6)]
    evs = [transfer(f"x{i}", at(hours=20 - 3 * i), u, SCAM, usd=10.0 * (i + 1))
           for i, u in enumerate(users)]
    steps = [evs[:3], ("at", at(hours=12)), evs[3:], ("at", at(days=1, hours=1))]
    monkeypatch.setattr(scenario, "test_stream", lambda events: scheduled_stream(steps))
    out = collect(evs, policy, "stream")
    assert [(u, r[-1]) for _t, u, _c, r in _assessments(out)] == [
        ("p4", "expected_loss_usd=50.00"), ("p5", "expected_loss_usd=60.00")]


def test_outreach_cooldown_applies_to_assessments(policy):
    """Assessments go through the Outreach step: with a 48h cool-down the next day's
    assessment of the same user is suppressed."""
    p = dataclasses.replace(policy, cooldown_ms=48 * HOUR)
    events = [transfer("a0", at(hours=1), "alice", SCAM, usd=300.0),
              transfer("a1", at(days=1, hours=1), "alice", SCAM, usd=300.0),
              transfer("a2", at(days=2, hours=1), "alice", SCAM, usd=300.0)]
    got = [t for t, u, _c, _r in _assessments(collect(events, p))]
    assert got == [at(days=1) - 1, at(days=3) - 1]

