"""Rule 14: escalation inside the hold, in event time (the Actions machine, then the whole
graph on both faces: the batch face and TestStream on the streaming face)."""

from __future__ import annotations

import dataclasses

import pytest

from core.actions import HOLDS, REQUESTS, RESOLUTIONS, Actions
from core.events import AddressFact, FeaturedTransfer, ScoredTransfer
from core.policy import DAY, HOUR, Policy
from core.pyramid import in_escalation_holdout
from tests import scenario
from tests.kit import feed, scored_report, stamped, tagged
from tests.scenario import addr, at, collect, outcome, report, transfer

DEST = addr("held-destination")
H = 24 * HOUR
# Rules only, no daily assessments; the pyramid with its defaults: a chat at 1h, a call at
# 3h for an expected loss of $2,000 or more, 24h extensions up to 72h
P = Policy(use_models=False, assessments_per_day=0)


def held(tid="t1", t=None, user="u1", usd=100.0, score=0.9, to_user=None, fan_in=0.0,
         dest=DEST):
    t = at(0) if t is None else t
    ft = FeaturedTransfer(transfer(tid, t, user, dest, usd=usd, to_user=to_user), t,
                          {"fan_in_24h": fan_in, "dest_age_days": 0.5})
    return ScoredTransfer(ft, t, score, "rules")


def resolutions(out):
    return [(r.transfer_id, r.resolution, r.resolved_at) for r in tagged(out, RESOLUTIONS)]


def requests(out):
    return [(t, r.user_id, r.kind, r.channel) for t, r in stamped(out, REQUESTS)]


# --------------------------------------------------------------------- the stages
def test_pending_hold_gets_a_chat_then_a_call_when_risky_and_is_released_at_24h():
    _, out = feed(Actions(P), DEST, [held(usd=5000.0)], until=at(0) + 3 * DAY)
    assert requests(out) == [
        (at(0), "u1", "HOLD_NOTICE", "APP"),
        (at(0) + HOUR, "u1", "HOLD_ESCALATION", "CHAT"),
        (at(0) + 3 * HOUR, "u1", "INTERVENTION", "CALL")]
    assert resolutions(out) == [("t1", "RELEASED", at(0) + H)]


def test_a_small_hold_gets_the_chat_but_no_call():
    _, out = feed(Actions(P), DEST, [held(usd=100.0)], until=at(0) + 3 * DAY)
    assert [k for _t, _u, k, _c in requests(out)] == ["HOLD_NOTICE", "HOLD_ESCALATION"]


def test_a_hold_refunded_before_its_stages_gets_no_stage_contact():
    events = [held(usd=5000.0), scored_report("r1", at(0) + 30 * 60_000, "u2", DEST, "SCAM",
                                              0.95)]
    _, out = feed(Actions(P), DEST, events, until=at(0) + 3 * DAY)
    assert [k for _t, _u, k, _c in requests(out)] == ["HOLD_NOTICE"]
    assert resolutions(out) == [("t1", "REFUNDED", at(0) + 30 * 60_000)]


def test_stage_times_are_options():
    p = dataclasses.replace(P, hold_warn_after_ms=2 * HOUR, hold_call_after_ms=5 * HOUR,
                            hold_call_min_loss=50.0)
    _, out = feed(Actions(p), DEST, [held(usd=100.0)], until=at(0) + 3 * DAY)
    assert [(t - at(0), k) for t, _u, k, _c in requests(out)][1:] == [
        (2 * HOUR, "HOLD_ESCALATION"), (5 * HOUR, "INTERVENTION")]


# ------------------------------------------------------------------ extensions
def test_a_new_report_against_the_destination_extends_the_hold_saying_why():
    events = [held(), scored_report("r1", at(0) + 5 * HOUR, "u2", DEST, "NOT_SCAM")]
    _, out = feed(Actions(P), DEST, events, until=at(0) + 5 * DAY)
    (res,) = tagged(out, RESOLUTIONS)
    # evidence once: one extension (24h); a second needs new evidence since the first
    assert (res.resolution, res.resolved_at) == ("RELEASED", at(0) + 2 * H)
    assert "extended 1x: new_report=r1" in res.reason
    notice = [r for r in tagged(out, REQUESTS) if any("hold_extended" in x for x in r.reasons)]
    assert [r.reasons for r in notice] == [("hold_extended_to=48h", "new_report=r1")]


def test_a_scam_confirmed_during_the_extension_refunds_the_hold():
    m = Actions(P)
    s, out = feed(m, DEST, [held(), scored_report("r1", at(0) + 20 * HOUR, "u2", DEST,
                                                  "REVIEW", 0.6)], until=at(0) + 39 * HOUR)
    assert resolutions(out) == []  # extended at 24h
    fact = AddressFact(DEST, at(0) + 40 * HOUR, True, "c1", "ADDRESS", DEST)
    _, more = feed(m, DEST, [fact], until=at(0) + 5 * DAY, state=s)
    assert resolutions(more) == [("t1", "REFUNDED", at(0) + 40 * HOUR)]


def test_growing_evidence_extends_up_to_the_maximum_and_never_beyond():
    reports = [scored_report(f"r{i}", at(0) + (10 + 24 * i) * HOUR, f"x{i}", DEST, "REVIEW",
                             0.6) for i in range(5)]
    _, out = feed(Actions(P), DEST, [held(), *reports], until=at(0) + 10 * DAY)
    assert resolutions(out) == [("t1", "RELEASED", at(0) + 72 * HOUR)]
    (res,) = tagged(out, RESOLUTIONS)
    assert "extended 2x" in res.reason


def test_the_senders_own_risk_alone_never_extends_a_hold():
    """A score of 0.99, a huge amount, the sender's second hold: nothing about the
    destination grew, so the hold is released at 24h."""
    events = [held("t1", score=0.99, usd=90_000.0), held("t2", at(1), score=0.99,
                                                         usd=90_000.0)]
    _, out = feed(Actions(P), DEST, events, until=at(0) + 5 * DAY)
    assert resolutions(out) == [("t1", "RELEASED", at(0) + H), ("t2", "RELEASED", at(1) + H)]


def test_fan_in_from_unrelated_senders_extends_only_when_it_rises_enough():
    rise = [held("t1", fan_in=2.0), held("x1", at(0) + 6 * HOUR, "other", score=0.05,
                                         fan_in=5.0)]
    _, out = feed(Actions(P), DEST, rise, until=at(0) + 5 * DAY)
    assert resolutions(out) == [("t1", "RELEASED", at(0) + 2 * H)]
    small = [held("t1", fan_in=2.0), held("x1", at(0) + 6 * HOUR, "other", score=0.05,
                                          fan_in=4.0)]
    _, out = feed(Actions(P), DEST, small, until=at(0) + 5 * DAY)
    assert resolutions(out) == [("t1", "RELEASED", at(0) + H)]


def test_a_case_outcome_clearing_the_destination_cancels_the_evidence():
    events = [held(), scored_report("r1", at(0) + 5 * HOUR, "u2", DEST, "REVIEW", 0.6),
              AddressFact(DEST, at(0) + 8 * HOUR, False, "c1", "ADDRESS", DEST)]
    _, out = feed(Actions(P), DEST, events, until=at(0) + 5 * DAY)
    assert resolutions(out) == [("t1", "RELEASED", at(0) + H)]


def test_every_hold_ends_in_exactly_one_resolution_with_extensions():
    events = [held(f"t{i}", at(0) + i * HOUR, f"u{i}") for i in range(6)]
    events += [scored_report("r1", at(0) + 3 * HOUR, "z", DEST, "REVIEW", 0.6),
               scored_report("r2", at(0) + 30 * HOUR, "y", DEST, "SCAM", 0.9)]
    _, out = feed(Actions(P), DEST, events, until=at(0) + 10 * DAY)
    got = [r.transfer_id for r in tagged(out, RESOLUTIONS)]
    assert sorted(got) == [f"t{i}" for i in range(6)]
    # t0..t3 were placed before the report at 3h (t3 at 3h exactly: not after it), so only
    # t0-t2 were extended; all pending at 30h are refunded by the SCAM verdict
    assert resolutions(out)[:3] == [("t3", "RELEASED", at(0) + 3 * HOUR + H),
                                    ("t4", "RELEASED", at(0) + 4 * HOUR + H),
                                    ("t5", "RELEASED", at(0) + 5 * HOUR + H)]
    assert [r for r in resolutions(out) if r[1] == "REFUNDED"] == [
        (f"t{i}", "REFUNDED", at(0) + 30 * HOUR) for i in range(3)]


# ------------------------------------------------- the destination is one of our accounts
def test_destination_account_gets_a_request_and_no_answer_extends_once():
    _, out = feed(Actions(P), DEST, [held(to_user="mule1")], until=at(0) + 5 * DAY)
    assert (at(0), "mule1", "INFO_REQUEST", "CHAT") in requests(out)
    (res,) = tagged(out, RESOLUTIONS)
    assert (res.resolved_at, "info_request_unanswered" in res.reason) == (at(0) + 2 * H, True)


def test_an_answer_recorded_as_a_clearing_outcome_keeps_the_24h_hold():
    events = [held(to_user="shop9"),
              AddressFact(DEST, at(0) + 6 * HOUR, False, "c-answer", "ADDRESS", DEST)]
    _, out = feed(Actions(P), DEST, events, until=at(0) + 5 * DAY)
    assert resolutions(out) == [("t1", "RELEASED", at(0) + H)]


# ------------------------------------------------------------------------- holdout
def test_holdout_holds_get_no_stage_contact_and_the_same_extensions():
    p = dataclasses.replace(P, escalation_holdout=0.5)
    ids = [f"t{i}" for i in range(40)]
    out_ids = [t for t in ids if in_escalation_holdout(t, 0.5)]
    assert 0 < len(out_ids) < 40  # a salted hash: some in, some out
    events = [held(t, at(0) + i, f"u{i}", usd=5000.0, to_user="acct") for i, t in
              enumerate(ids)]
    events.append(scored_report("r1", at(0) + 5 * HOUR, "z", DEST, "REVIEW", 0.6))
    _, out = feed(Actions(p), DEST, events, until=at(0) + 10 * DAY)
    stage = {r.transfer_id for r in tagged(out, REQUESTS)
             if r.kind in ("HOLD_ESCALATION", "INTERVENTION", "INFO_REQUEST")}
    assert stage == set(ids) - set(out_ids)
    # the report extends every hold, held out or not (evidence, not a contact)
    assert {r.resolved_at - h.placed_at for r, h in zip(
        sorted(tagged(out, RESOLUTIONS)), sorted(tagged(out, HOLDS)), strict=True)} == {2 * H}


def test_escalation_holdout_is_independent_of_the_warning_holdout():
    from core.holdout import in_holdout
    ids = [f"u{i:05d}" for i in range(4000)]
    both = sum(in_holdout(i, 0.3) and in_escalation_holdout(i, 0.3) for i in ids)
    assert abs(both - 0.09 * 4000) < 4 * (4000 * 0.09 * 0.91) ** 0.5


def test_plain_hold_when_escalation_is_off():
    p = dataclasses.replace(P, hold_escalation=False)
    events = [held(usd=5000.0, to_user="mule"),
              scored_report("r1", at(0) + 5 * HOUR, "u2", DEST, "REVIEW", 0.6)]
    _, out = feed(Actions(p), DEST, events, until=at(0) + 5 * DAY)
    assert [k for _t, _u, k, _c in requests(out)] == ["HOLD_NOTICE"]
    assert resolutions(out) == [("t1", "RELEASED", at(0) + H)]


def test_policy_refuses_a_maximum_shorter_than_the_hold():
    with pytest.raises(ValueError, match="hold_max"):
        dataclasses.replace(P, hold_max_ms=12 * HOUR).validate()


# --------------------------------------------------------- the whole graph, both faces
@pytest.fixture
def policy(tmp_path) -> Policy:
    files = scenario.side_files(tmp_path, DEST, ("alice", "bob", "carol"))
    return Policy(use_models=False, assessments_per_day=0, **files)


def _graph_events():
    # alice pays the listed DEST (held, warned); bob reports DEST 5h later (a report from
    # one established account: REVIEW or less, no freeze): evidence, so the hold is
    # extended at 24h; a case outcome confirms DEST at 40h: refunded then.
    return [transfer("a1", at(0), "alice", DEST, usd=3000.0),
            report("r1", at(0) + 5 * HOUR, "bob", suspect=DEST),
            outcome("c1", at(0) + 40 * HOUR, "ADDRESS", DEST)]


def _summary(out):
    contacts = sorted((o.created_at, o.user_id, o.kind, o.channel) for o in out["outreach"]
                      if o.user_id == "alice")
    res = [(r.transfer_id, r.resolution, r.resolved_at) for r in out["resolutions"]]
    return contacts, res


EXPECTED = (
    [(at(0), "alice", "WARNING", "APP"),
     (at(0) + HOUR, "alice", "HOLD_ESCALATION", "CHAT"),
     (at(0) + 3 * HOUR, "alice", "INTERVENTION", "CALL"),
     (at(0) + H, "alice", "HOLD_NOTICE", "APP")],
    [("a1", "REFUNDED", at(0) + 40 * HOUR)])


def test_graph_escalates_extends_and_refunds_batch(policy):
    assert _summary(collect(_graph_events(), policy)) == EXPECTED


def test_graph_escalates_extends_and_refunds_stream(policy):
    """The streaming face in event time (TestStream): the stage and extension timers fire
    as the watermark passes them."""
    assert _summary(collect(_graph_events(), policy, "stream")) == EXPECTED
