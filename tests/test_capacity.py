"""Rule 12: call capacity. CALL interventions are limited by ``calls_per_day``; past it the
highest expected losses are called first and the rest are downgraded to CHAT with the
reason, never dropped. Pure selection first, then the whole graph on both faces (the
streaming face in event time with TestStream)."""

from __future__ import annotations

import dataclasses

import pytest

from core.capacity import apply_capacity, select_calls, slot_capacity, window_capacity
from core.policy import HOUR, Policy
from schemas.rows import Outreach
from tests import scenario
from tests.scenario import addr, at, collect, scheduled_stream, transfer

SCAM = addr("scam-collector")


def call(oid: str, t: int, loss: float) -> Outreach:
    return Outreach(oid, "u-" + oid, "INTERVENTION", "CALL", t, "t-" + oid, SCAM,
                    ["vulnerable_user"], loss)


# ------------------------------------------------------------------------------- pure
def test_highest_expected_losses_are_called_and_the_rest_downgraded_with_reason():
    calls = [call("a", 1, 100.0), call("b", 2, 500.0), call("c", 3, 300.0),
             call("d", 4, 50.0), call("e", 5, 500.0)]
    called, down = select_calls(calls, 2)
    assert [o.outreach_id for o in called] == ["b", "e"]  # 500, 500 (earlier first)
    assert all(o.channel == "CALL" for o in called)
    assert [(o.outreach_id, o.channel, o.kind) for o in down] == [
        ("c", "CHAT", "INTERVENTION"), ("a", "CHAT", "INTERVENTION"),
        ("d", "CHAT", "INTERVENTION")]
    assert [o.reasons for o in down] == [
        ["vulnerable_user", "call_capacity:rank=3>2"],
        ["vulnerable_user", "call_capacity:rank=4>2"],
        ["vulnerable_user", "call_capacity:rank=5>2"]]


def test_a_call_without_an_expected_loss_ranks_as_zero():
    called, down = select_calls([call("a", 1, None), call("b", 2, 0.5)], 1)
    assert [o.outreach_id for o in called] == ["b"]
    assert [o.outreach_id for o in down] == ["a"]


def test_each_call_window_has_its_slots_share_of_the_day():
    """10 calls a day in 6-hour slots: 3, 3, 2, 2; a window is in the slot of its start."""
    p = Policy(calls_per_day=10, call_slot_ms=6 * HOUR)
    assert [window_capacity(p, at(days=2, hours=h)) for h in (0, 6, 12, 18)] == [3, 3, 2, 2]


def test_under_capacity_every_call_is_made():
    calls = [call("a", 1, 10.0), call("b", 2, 20.0)]
    called, down = select_calls(calls, 5)
    assert sorted(o.outreach_id for o in called) == ["a", "b"] and down == []


def test_zero_capacity_downgrades_every_call():
    called, down = select_calls([call("a", 1, 10.0)], 0)
    assert called == [] and [o.channel for o in down] == ["CHAT"]


def test_slots_share_the_day_capacity_and_never_exceed_it():
    assert [slot_capacity(10, 24, i) for i in range(24)] == [1] * 10 + [0] * 14
    assert [slot_capacity(50, 4, i) for i in range(4)] == [13, 13, 12, 12]
    for cap in range(0, 30):
        assert sum(slot_capacity(cap, 6, i) for i in range(6)) == cap


def test_capacity_counts_per_event_time_day_and_other_kinds_pass_through():
    p = Policy(calls_per_day=1)
    day0 = [call("a", at(hours=1), 10.0), call("b", at(hours=23), 20.0)]
    day1 = [call("c", at(days=1, hours=1), 5.0)]
    chat = Outreach("w", "u-w", "WARNING", "APP", at(hours=2), None, None, [])
    out = {o.outreach_id: o for o in apply_capacity(day0 + day1 + [chat], p)}
    assert {k: o.channel for k, o in out.items()} == {
        "a": "CHAT", "b": "CALL", "c": "CALL", "w": "APP"}


def test_slots_rank_within_each_slot():
    p = Policy(calls_per_day=2, call_slot_ms=12 * HOUR)  # one call per half day
    calls = [call("a", at(hours=1), 10.0), call("b", at(hours=2), 30.0),
             call("c", at(hours=13), 1.0)]
    out = {o.outreach_id: o.channel for o in apply_capacity(calls, p)}
    assert out == {"a": "CHAT", "b": "CALL", "c": "CALL"}


def test_call_slot_must_divide_the_day():
    with pytest.raises(ValueError, match="call_slot"):
        Policy(call_slot_ms=7 * HOUR).validate()


# ------------------------------------------------------------------------------ graph
@pytest.fixture
def policy(tmp_path) -> Policy:
    """Rules only, SCAM listed, three vulnerable users (their warnings are CALLs)."""
    files = scenario.side_files(tmp_path, SCAM, ("vera", "vic", "val", "alice"),
                                vulnerable=("vera", "vic", "val"))
    return Policy(use_models=False, assessments_per_day=0, calls_per_day=1,
                  hold_escalation=False, **files)


def _events():
    return [
        # day 0: two calls asked for, one can be made: vic's $900 beats vera's $300.
        transfer("t-vera", at(hours=2), "vera", SCAM, usd=300.0),
        transfer("t-vic", at(hours=5), "vic", SCAM, usd=900.0),
        transfer("t-alice", at(hours=6), "alice", SCAM, usd=5000.0),  # a WARNING, no call
        # day 1: a new day, a new capacity.
        transfer("t-val", at(days=1, hours=3), "val", SCAM, usd=50.0),
    ]


def _calls(out) -> dict:
    return {o.transfer_id: (o.kind, o.channel, o.reasons[-1]) for o in out["outreach"]}


def test_graph_calls_the_highest_expected_loss_and_downgrades_the_rest(policy):
    out = collect(_events(), policy)
    got = _calls(out)
    assert got.pop("t-alice")[:2] == ("WARNING", "APP")
    assert got == {
        "t-vic": ("INTERVENTION", "CALL", "vulnerable_user"),
        "t-vera": ("INTERVENTION", "CHAT", "call_capacity:rank=2>1"),
        "t-val": ("INTERVENTION", "CALL", "vulnerable_user"),
    }
    by_tid = {o.transfer_id: o for o in out["outreach"]}
    assert by_tid["t-vic"].expected_loss_usd == 900.0  # listed: the whole amount at risk
    assert by_tid["t-vera"].expected_loss_usd == 300.0


def test_stream_face_in_event_time_gives_the_same_calls(policy):
    events = _events()
    assert collect(events, policy, "stream") == collect(events, policy, "batch")


def test_late_call_after_the_day_was_ranked_is_downgraded_not_dropped(policy, monkeypatch):
    steps = [
        [transfer("t-vera", at(hours=2), "vera", SCAM, usd=300.0)],
        ("at", at(days=1, hours=1)),  # day 0's calls are ranked: vera is called
        [transfer("t-vic", at(hours=5), "vic", SCAM, usd=900.0)],  # late, for day 0
        ("at", at(days=2)),
    ]
    monkeypatch.setattr(scenario, "test_stream", lambda events: scheduled_stream(steps))
    events = [e for s in steps if not isinstance(s, tuple) for e in s]
    out = collect(events, dataclasses.replace(policy, stream_ordering="arrival"), "stream")
    assert _calls(out) == {
        "t-vera": ("INTERVENTION", "CALL", "vulnerable_user"),
        "t-vic": ("INTERVENTION", "CHAT", "call_capacity:late"),
    }

