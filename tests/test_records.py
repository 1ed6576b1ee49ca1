"""Whole output records of the pure machines, every field written down: what a person
reviewing a hold, a refund, a freeze or an outreach reads (the reasons), what downstream
systems join on (stable ids), and what the dashboards count (metric names).

Ids are a stable function of what they identify (``sha1("kind|part|...")[:16]``): a
re-run of the same history gives the same ids, so consumers can de-duplicate.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from core.actions import FREEZES, HOLDS, LOSSES, REQUESTS, RESOLUTIONS, Actions
from core.events import (
    AddressFact,
    FeaturedTransfer,
    LossConfirmed,
    OutreachRequest,
    ReportIn,
    ScoredTransfer,
)
from core.labels import EXAMPLES, LabelJoin
from core.ledger import DEAD, FACTS, REPORTS, TRANSFERS, Ledger
from core.machine import METRIC
from core.outreach import OUTREACH, OutreachStep
from core.policy import DAY, HOUR, Policy
from schemas.rows import Freeze, Hold, HoldResolution, Outreach
from tests.kit import P, feed, loss, request, scored, scored_report, tagged
from tests.scenario import addr, at, listing, outcome, profile, report, transfer

D, E = addr("records-d"), addr("records-e")
H = 24 * HOUR


def sid(*parts) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _to_account(tid, t, user, dest, score, to_user, reasons=(), blacklist=None):
    ft = FeaturedTransfer(transfer(tid, t, user, dest, 100.0, to_user=to_user), t, {},
                          blacklist=blacklist, list_version="snap-1" if blacklist else None)
    return ScoredTransfer(ft, t, score, "m-7", reasons)


# ------------------------------------------------------------------ Actions
def test_hold_refund_freeze_and_frozen_destination_records():
    events = [
        _to_account("t1", at(0), "u1", D, 0.8, "acct9", ("fan_in_24h=30",), ("ofac_sdn",)),
        _to_account("t0", at(0, hours=0) + 1, "u0", D, 0.05, "acct7"),  # owner stays acct9
        scored_report("r1", at(1), "u2", D, "NOT_SCAM"),
        scored_report("r2", at(2), "u3", D, "SCAM", 0.9)._replace(
            reasons=("reporter_paid_suspect",)),
        scored("t2", at(3), "u4", D),
        scored("t3", at(4), "u5", D, 0.5),
    ]
    _, out = feed(Actions(P), D, events)
    why = ["verdict:SCAM report=r2", "reporter_paid_suspect"]
    assert tagged(out, HOLDS) == [
        Hold(sid("hold", "t1"), "t1", "u1", D, "ETH", "0.050000", 100.0, at(0), at(0) + H, 0.8,
             ["blacklist:ofac_sdn", "list_version=snap-1", "fan_in_24h=30",
              "hold_test=blacklist"], "m-7"),
        Hold(sid("hold", "t2"), "t2", "u4", D, "ETH", "0.050000", 100.0, at(3), at(3) + H,
             0.05, ["destination_frozen", "hold_test=frozen"], "rules"),
        Hold(sid("hold", "t3"), "t3", "u5", D, "ETH", "0.050000", 100.0, at(4), at(4) + H,
             0.5, ["destination_frozen", "risk_score=0.50", "hold_test=frozen"], "rules"),
    ]
    assert tagged(out, RESOLUTIONS) == [
        HoldResolution(sid("hold", "t1"), "t1", "REFUNDED", at(2),
                       "scam confirmed: verdict:SCAM report=r2", "u1", D, 100.0),
        HoldResolution(sid("hold", "t2"), "t2", "REFUNDED", at(3), "destination frozen",
                       "u4", D, 100.0),
        HoldResolution(sid("hold", "t3"), "t3", "REFUNDED", at(4), "destination frozen",
                       "u5", D, 100.0),
    ]
    assert tagged(out, FREEZES) == [
        Freeze(sid("freeze", D, at(2)), D, "acct9", at(2), 0.9, ["r1", "r2"], why)]
    assert tagged(out, METRIC) == [("freezes", 1)]
    assert tagged(out, LOSSES) == [
        LossConfirmed("u1", at(2), "t1", D), LossConfirmed("u0", at(2), "t0", D),
        LossConfirmed("u4", at(3), "t2", D), LossConfirmed("u5", at(4), "t3", D)]
    assert tagged(out, REQUESTS) == [
        # expected loss (rule 12's ranking): a listed or frozen destination makes the loss
        # certain, so the transfer's whole USD
        OutreachRequest("u1", at(0), "WARNING", "APP", "t1", D,
                        ("blacklist:ofac_sdn", "list_version=snap-1", "fan_in_24h=30"), (),
                        100.0),
        # t0 was lost (not held) and u0 never reported: a silent sufferer at the freeze
        OutreachRequest("u0", at(2), "SILENT_SUFFERER", "CHAT", "t0", D,
                        ("frozen", f"sent_at={at(0) + 1}")),
        OutreachRequest("u4", at(3), "WARNING", "APP", "t2", D, ("destination_frozen",),
                        ("t2",), 100.0),
        OutreachRequest("u5", at(4), "WARNING", "APP", "t3", D,
                        ("destination_frozen", "risk_score=0.50"), ("t3",), 100.0),
    ]


def test_transfer_case_outcome_refunds_its_hold_and_freezes():
    fact = AddressFact(E, at(5), True, "c7", "TRANSFER", "t5", "u1")
    _, out = feed(Actions(P), E, [scored("t5", at(0), "u1", E, 0.9), fact])
    assert [r.reason for r in tagged(out, RESOLUTIONS)] == ["case c7: transfer confirmed scam"]
    assert tagged(out, FREEZES) == [Freeze(sid("freeze", E, at(5)), E, None, at(5), 1.0, [],
                                           ["case:c7 transfer confirmed scam"])]
    assert [g for g, _, _ in out] == [HOLDS, REQUESTS, RESOLUTIONS, LOSSES, FREEZES, METRIC]


def test_owner_comes_from_the_first_report_naming_an_account():
    rep = scored_report("r1", at(0), "u2", E)
    rep = rep._replace(featured=rep.featured._replace(report_in=rep.featured.report_in._replace(
        report=rep.featured.report_in.report._replace(suspect_user_id="acct5"))))
    later = scored_report("r2", at(1), "u3", E)
    fact = AddressFact(E, at(2), True, "c1", "ADDRESS", E)
    _, out = feed(Actions(P), E, [rep, later, _to_account("t", at(1), "u", E, 0.05, "x"), fact])
    assert [(f.user_id, f.report_ids) for f in tagged(out, FREEZES)] == [("acct5", ["r1", "r2"])]


def test_not_scam_outcome_and_remove_change_nothing_add_sweeps_with_its_source():
    events = [scored("t1", at(0), "u1", E), scored("t2", at(1), "u1", E),
              AddressFact(E, at(2), False, "c1", "ADDRESS", E),
              listing(E, at(3), "REMOVE", "ops"), listing(E, at(4), "ADD", "vendor_q")]
    _, out = feed(Actions(P), E, events)
    assert tagged(out, REQUESTS) == [OutreachRequest(
        "u1", at(4), "SILENT_SUFFERER", "CHAT", "t1", E, ("blacklisted:vendor_q",
                                                         f"sent_at={at(0)}"))]
    assert tagged(out, FREEZES) == [] and tagged(out, LOSSES) == []


def test_released_resolution_record_and_unknown_events_rejected():
    _, out = feed(Actions(P), E, [scored("t1", at(0), "u1", E, 0.9)], until=at(0) + H)
    assert tagged(out, RESOLUTIONS) == [HoldResolution(
        sid("hold", "t1"), "t1", "RELEASED", at(0) + H, "no scam confirmed within the hold",
        "u1", E, 100.0)]
    with pytest.raises(TypeError, match="Actions cannot handle str"):
        Actions(P).on_event(Actions(P).new_state(E), "nonsense", at(0))


def test_actions_state_lives_through_the_lookback_and_holds():
    m = Actions(P)
    state, _ = feed(m, E, [scored("t1", at(0), "u1", E)])
    assert m.next_deadline(state) == at(0) + P.lookback_ms
    state, _ = feed(m, E, [scored("t2", at(1), "u1", E, 0.9)], state=state)
    assert m.next_deadline(state) == at(1) + H
    short = Policy(use_models=False, lookback_ms=HOUR, hold_escalation=False)
    m2 = Actions(short)
    s2, _ = feed(m2, E, [scored("t1", at(0), "u1", E, 0.9)])
    assert m2.next_deadline(s2) == at(0) + H  # the hold outlasts the lookback
    s2, out = feed(m2, E, [], until=at(0) + H, state=s2)
    assert m2.is_empty(s2) and len(tagged(out, RESOLUTIONS)) == 1


def test_a_sender_exactly_at_the_lookback_edge_of_a_busy_address_is_still_in_it():
    """Everyone who sent "in the lookback window" (30 days): the window includes its far
    edge while the address is busy. (An address idle for exactly the lookback has been
    forgotten by then: the idle reset fires at ``last_t + lookback``.)"""
    events = [scored("t1", at(0), "u1", E), scored("t2", at(days=10), "u2", E),
              listing(E, at(0) + P.lookback_ms)]
    _, out = feed(Actions(P), E, events)
    assert [r.user_id for r in tagged(out, REQUESTS)] == ["u1", "u2"]


def test_a_reporter_is_remembered_at_its_reports_time():
    events = [scored("t1", at(0), "u1", E), scored_report("r1", at(1), "u1", E),
              AddressFact(E, at(2), True, "c1", "ADDRESS", E)]
    state, out = feed(Actions(P), E, events)
    assert dict(state.reporters.items()) == {"u1": at(1)} and state.confirmed == at(2)
    assert [r.kind for r in tagged(out, REQUESTS)] == []


# ------------------------------------------------------------------ Outreach
def _outreach(events, profiles=lambda u: None, policy=P):
    return feed(OutreachStep(policy, profiles), "u1", events)


def test_outreach_records_reasons_and_metrics():
    vera = profile("u1", at(days=-400), vulnerable=True)
    req = OutreachRequest("u1", at(0), "WARNING", "APP", "t1", D, ("blacklist:x",))
    _, out = _outreach([req, req._replace(event_time=at(1))], {"u1": vera}.get)
    assert out == [
        (OUTREACH, at(0), Outreach(sid("outreach", "u1", "INTERVENTION", at(0), "t1", D), "u1",
                                   "INTERVENTION", "CALL", at(0), "t1", D,
                                   ["blacklist:x", "vulnerable_user"])),
        (METRIC, at(1), ("outreach_cooldown_suppressed", 1)),
    ]
    ss = request("u1", at(0), "SILENT_SUFFERER", tid="t9", address=E)
    _, out = _outreach([ss, ss._replace(event_time=at(1))])
    assert out == [(OUTREACH, at(0), Outreach(sid("outreach", "u1", "SILENT_SUFFERER", at(0),
                                                  "t9", E), "u1", "SILENT_SUFFERER", "CHAT",
                                              at(0), "t9", E, [])),
                   (METRIC, at(1), ("outreach_deduplicated", 1))]


def test_losses_kept_at_the_reset_are_the_earliest_and_carry_their_time():
    req = request("u1", at(2), tid="a2")._replace(losses=("a2",))
    state, _ = _outreach([loss("u1", at(0), "a3"), loss("u1", at(1), "a1"), req],
                         )
    assert state.losses == {"a3": at(0), "a1": at(1), "a2": at(2)}
    m = OutreachStep(P, lambda u: None)
    m.advance(state, at(2) + 200 * DAY)
    assert state.losses == {"a3": at(0), "a1": at(1)}


def test_outreach_state_outlives_each_of_its_windows():
    """The cool-down, the silent-sufferer memory (the lookback) and the losses (payee
    memory) each hold for their full length, whichever is the longest."""
    long_cool = Policy(use_models=False, cooldown_ms=300 * DAY)
    _, out = _outreach([request("u1", at(0), tid="a"), request("u1", at(days=250), tid="b")],
                       policy=long_cool)
    assert [o.created_at for o in tagged(out, OUTREACH)] == [at(0)]
    long_look = Policy(use_models=False, lookback_ms=300 * DAY)
    ss = request("u1", at(0), "SILENT_SUFFERER", address=E)
    _, out = _outreach([ss, ss._replace(event_time=at(days=250))], policy=long_look)
    assert [o.created_at for o in tagged(out, OUTREACH)] == [at(0)]
    _, out = _outreach([ss, ss._replace(event_time=at(days=179))])  # payee memory: 180d
    assert [o.created_at for o in tagged(out, OUTREACH)] == [at(0)]
    m = OutreachStep(P, lambda u: None)
    assert m.next_deadline(m.new_state("u1")) is None


# ------------------------------------------------------------------ Ledger
def test_outcome_on_a_seen_transfer_becomes_a_fact_about_its_destination():
    tr = transfer("t1", at(0), "u1", D)
    o = outcome("c1", at(5), "TRANSFER", "t1", is_scam=False)
    _, out = feed(Ledger(P), "T:t1", [tr, o])
    assert out == [(TRANSFERS, at(0), tr),
                   (FACTS, at(5), AddressFact(D, at(5), False, "c1", "TRANSFER", "t1", "u1"))]


def test_outcome_waiting_for_its_transfer_resolves_when_it_arrives():
    tr = transfer("t1", at(3), "u1", D)
    o = outcome("c1", at(1), "TRANSFER", "t1")
    m = Ledger(P)
    state, out = feed(m, "T:t1", [o])
    assert out == [] and m.next_deadline(state) == at(1) + P.resolve_wait_ms
    state, out = feed(m, "T:t1", [tr], state=state)
    assert out == [(TRANSFERS, at(3), tr),
                   (FACTS, at(3), AddressFact(D, at(1), True, "c1", "TRANSFER", "t1", "u1"))]
    assert m.next_deadline(state) == at(3) + P.dedup_ms
    assert state.waiting == []


def test_report_naming_a_transfer_gets_its_suspect_and_whether_the_reporter_paid():
    tr = transfer("t1", at(0), "u1", D, 250.0)
    mine = report("r1", at(5), "u1", transfer_id="t1")
    theirs = report("r2", at(6), "u2", transfer_id="t1")
    named = report("r3", at(7), "u1", transfer_id="t1", suspect=E)
    _, out = feed(Ledger(P), "T:t1", [tr, mine, theirs, named])
    assert out[1:] == [
        (REPORTS, at(5), ReportIn(mine, at(5), D, at(0), 250.0)),
        (REPORTS, at(6), ReportIn(theirs, at(6), D, None, None)),
        (REPORTS, at(7), ReportIn(named, at(7), E, at(0), 250.0)),
    ]


def test_report_outcome_becomes_a_fact_about_its_suspect():
    ri = ReportIn(report("r1", at(0), "u7", suspect=E), at(0), E)
    o = outcome("c2", at(9), "REPORT", "r1")
    _, out = feed(Ledger(P), "R:r1", [ri, o])
    assert out == [(REPORTS, at(0), ri),
                   (FACTS, at(9), AddressFact(E, at(9), True, "c2", "REPORT", "r1", "u7"))]


def test_report_with_its_own_suspect_does_not_wait_for_its_transfer():
    r = report("r1", at(0), "u1", transfer_id="t-unseen", suspect=E)
    state, out = feed(Ledger(P), "T:t-unseen", [r])
    assert out == [(REPORTS, at(0), ReportIn(r, at(0), E))]
    assert Ledger(P).is_empty(state)


def test_unresolved_records_dead_letter_with_reason_and_payload():
    o_t = outcome("c1", at(0), "TRANSFER", "tx9")
    o_r = outcome("c2", at(0), "REPORT", "rx9")
    rep = report("r5", at(1), "u1", transfer_id="tx9")
    _, out = feed(Ledger(P), "T:tx9", [o_t, rep, o_r], until=at(days=3))
    dead = tagged(out, DEAD)
    assert [(d.source, d.error, d.at) for d in dead] == [
        ("outcomes", "case outcome names transfer 'tx9', which was not seen within 24h",
         at(0) + H),
        ("outcomes", "case outcome names report 'rx9', which was not seen within 24h",
         at(0) + H),
        ("reports", "report names no suspect and its transfer 'tx9' was not seen within 24h",
         at(1) + H),
    ]
    first = json.loads(dead[0].payload)
    assert (first["case_id"], first["subject_id"], first["event_time"]) == ("c1", "tx9", at(0))
    assert list(first) == sorted(first)


def test_waiting_records_fire_one_by_one_in_deadline_order():
    o1 = outcome("c1", at(5), "TRANSFER", "tx")
    o2 = outcome("c2", at(1), "TRANSFER", "tx")
    m = Ledger(P)
    state, _ = feed(m, "T:tx", [o1, o2])
    assert m.next_deadline(state) == at(1) + H
    out = m.advance(state, at(1) + H)
    assert [(d.at, json.loads(d.payload)["case_id"]) for _, _, d in out] == [(at(1) + H, "c2")]
    assert m.next_deadline(state) == at(5) + H and not m.is_empty(state)
    out = m.advance(state, at(9) + H)
    assert [json.loads(d.payload)["case_id"] for _, _, d in out] == ["c1"]
    assert m.is_empty(state) and m.next_deadline(state) is None


def test_ledger_keys():
    from core.ledger import report_key, transfer_key

    assert (transfer_key("x"), report_key("x")) == ("T:x", "R:x")


# ------------------------------------------------------------------ LabelJoin
def _ft(tid, t):
    return FeaturedTransfer(transfer(tid, t, "u", D), t, {"f": 1.0})


def test_labels_for_transfer_and_report_outcomes():
    from core.events import Example, FeaturedReport

    fr = FeaturedReport(ReportIn(report("r1", at(1), "u2", suspect=D), at(1), D), at(1),
                        {"g": 2.0})
    events = [_ft("t1", at(0)), _ft("t2", at(0)), fr,
              AddressFact(D, at(3), False, "c1", "TRANSFER", "t1"),
              AddressFact(D, at(4), False, "c2", "REPORT", "r1")]
    state, out = feed(LabelJoin(P), D, events)
    assert tagged(out, EXAMPLES) == [
        Example("transfer_risk", at(3), "T:t1", {"f": 1.0}, False, at(0)),
        Example("scam_verdict", at(4), "R:r1", {"g": 2.0}, False, at(1))]
    assert list(state.pending) == ["T:t2"] and state.confirmed_at is None
    state, out = feed(LabelJoin(P), D, [AddressFact(D, at(5), True, "c3", "TRANSFER", "t2")],
                      state=state)
    assert tagged(out, EXAMPLES) == [
        Example("transfer_risk", at(5), "T:t2", {"f": 1.0}, True, at(0))]
    assert state.confirmed_at == at(5)
    assert LabelJoin(P).next_deadline(state) == at(5) + max(P.lookback_ms,
                                                            P.label_horizon_ms)
    state, out = feed(LabelJoin(P), D, [_ft("t3", at(6))], state=state)
    assert out == [(EXAMPLES, at(6) + 1,
                    Example("transfer_risk", at(6) + 1, "T:t3", {"f": 1.0}, True, at(6)))]


def test_a_label_is_never_stamped_before_the_event_it_labels():
    from core.events import Example

    fact = AddressFact(D, at(0), True, "c1", "TRANSFER", "t1")
    _, out = feed(LabelJoin(P), D, [_ft("t1", at(1)), fact])
    assert out == [(EXAMPLES, at(1) + 1,
                    Example("transfer_risk", at(1) + 1, "T:t1", {"f": 1.0}, True, at(1)))]
    state, _ = feed(LabelJoin(P), D, [_ft("t1", at(0))])
    state.put_near("T:t1", (at(9), *state.pending["T:t1"][1:]))  # a record due at at(9)
    state.far.replace([])
    state.far_first = None
    assert LabelJoin(P).next_deadline(state) == at(9)


def test_reasons_accumulate_frozen_then_list_then_score_and_the_warning_band_names_its_score():
    fact = AddressFact(E, at(0), True, "c1", "ADDRESS", E)
    listed = scored("t1", at(1), "u1", E, 0.45, blacklist=("ofac_sdn",))
    _, out = feed(Actions(P), E, [fact, listed])
    (h,) = tagged(out, HOLDS)
    assert h.reasons == ["destination_frozen", "blacklist:ofac_sdn", "list_version=snap-1",
                         "risk_score=0.45", "hold_test=blacklist"]
    _, out = feed(Actions(P), D, [scored("t2", at(0), "u2", D, 0.45)])
    assert [r.reasons for r in tagged(out, REQUESTS)] == [("risk_score=0.45",)]


def test_transfer_outcome_refund_is_stamped_at_the_outcome():
    fact = AddressFact(E, at(5), True, "c7", "TRANSFER", "t5", "u1")
    _, out = feed(Actions(P), E, [scored("t5", at(0), "u1", E, 0.9), fact])
    assert [(r.resolved_at, t) for t, r in
            ((t, v) for g, t, v in out if g == RESOLUTIONS)] == [(at(5), at(5))]


def test_the_first_account_named_stays_the_owner():
    rep = scored_report("r1", at(1), "u2", E)
    rep = rep._replace(featured=rep.featured._replace(report_in=rep.featured.report_in._replace(
        report=rep.featured.report_in.report._replace(suspect_user_id="acct5"))))
    fact = AddressFact(E, at(2), True, "c1", "ADDRESS", E)
    _, out = feed(Actions(P), E, [_to_account("t", at(0), "u", E, 0.05, "acct9"), rep, fact])
    assert [f.user_id for f in tagged(out, FREEZES)] == ["acct9"]


def test_lookback_pruning_keeps_the_edge_and_drops_what_is_older():
    events = [scored("t0", at(0) - 1, "u0", E), scored("t1", at(0), "u1", E),
              scored("t2", at(days=10), "u2", E), listing(E, at(0) + P.lookback_ms)]
    _, out = feed(Actions(P), E, events)
    assert [r.user_id for r in tagged(out, REQUESTS)] == ["u1", "u2"]


def test_new_states_have_no_deadline():
    assert Actions(P).next_deadline(Actions(P).new_state(E)) is None
    assert LabelJoin(P).next_deadline(LabelJoin(P).new_state(E)) is None
    assert Ledger(P).next_deadline(Ledger(P).new_state("T:x")) is None


def test_waiting_records_with_one_deadline_fire_in_arrival_order():
    o = outcome("zzz", at(0), "TRANSFER", "tx")
    r = report("aaa", at(0), "u1", transfer_id="tx")
    o2 = outcome("c0", at(-1), "TRANSFER", "tx")
    m = Ledger(P)
    state, _ = feed(m, "T:tx", [o, r, o2])
    out = m.advance(state, at(days=2))
    assert [d.source for _, _, d in out] == ["outcomes", "outcomes", "reports"]
    assert [json.loads(d.payload).get("case_id") for _, _, d in out] == ["c0", "zzz", None]


def test_losses_kept_at_the_reset_break_ties_by_transfer_id():
    state, _ = _outreach([loss("u1", at(0), "c"), loss("u1", at(0), "b"),
                          loss("u1", at(0), "a")])
    OutreachStep(P, lambda u: None).advance(state, at(0) + 200 * DAY)
    assert state.losses == {"a": at(0), "b": at(0)}


def test_address_cleared_labels_every_waiting_example_negative_and_confirms_nothing():
    from core.events import Example

    events = [_ft("t1", at(0)), _ft("t2", at(1)),
              AddressFact(D, at(2), False, "c1", "TRANSFER", "unknown"),
              AddressFact(D, at(3), False, "c2", "ADDRESS", D), _ft("t3", at(4))]
    state, out = feed(LabelJoin(P), D, events)
    assert tagged(out, EXAMPLES) == [
        Example("transfer_risk", at(3), "T:t1", {"f": 1.0}, False, at(0)),
        Example("transfer_risk", at(3), "T:t2", {"f": 1.0}, False, at(1))]
    assert state.confirmed_at is None and list(state.pending) == ["T:t3"]
    _, out = feed(LabelJoin(P), D, [], until=at(4) + P.label_horizon_ms, state=state)
    assert tagged(out, EXAMPLES) == [Example("transfer_risk", at(4) + P.label_horizon_ms,
                                             "T:t3", {"f": 1.0}, False, at(4))]


def test_negative_sampling_keeps_the_same_one_in_k_each_weighing_k_and_every_positive():
    """``model_negative_sample`` k: 1 in k negatives leave, chosen by a hash of the subject
    id (CRC-32, so every runner keeps the same ones), each weighing k; positives are never
    sampled."""
    import zlib

    from core.events import Example

    ids = [f"t{i:02d}" for i in range(40)]
    for k in (2, 4):
        p = Policy(use_models=False, model_negative_sample=k)
        want = {"T:" + i for i in ids if zlib.crc32(("T:" + i).encode()) % k == 0}
        assert 0 < len(want) < len(ids)
        _, by_horizon = feed(LabelJoin(p), D, [_ft(i, at(0)) for i in ids],
                             until=at(0) + p.label_horizon_ms)
        cleared = [_ft(i, at(0)) for i in ids] + [AddressFact(D, at(1), False, "c", "ADDRESS",
                                                              D)]
        _, by_outcome = feed(LabelJoin(p), D, cleared)
        for out in (by_horizon, by_outcome):
            ex = tagged(out, EXAMPLES)
            assert {e.subject_id for e in ex} == want
            assert {(e.y, e.weight) for e in ex} == {(False, k)}
        _, pos = feed(LabelJoin(p), D, [_ft(i, at(0)) for i in ids]
                      + [AddressFact(D, at(1), True, "c", "ADDRESS", D)])
        assert len(tagged(pos, EXAMPLES)) == len(ids)
        assert {(e.y, e.weight) for e in tagged(pos, EXAMPLES)} == {(True, 1)}
    _, out = feed(LabelJoin(P), D, [_ft("t1", at(0))], until=at(0) + P.label_horizon_ms)
    assert tagged(out, EXAMPLES) == [Example("transfer_risk", at(0) + P.label_horizon_ms,
                                             "T:t1", {"f": 1.0}, False, at(0), 1)]


def test_a_redelivery_with_other_content_is_a_conflict_dead_letter_and_the_first_stands():
    first = transfer("t1", at(0), "u1", D, 100.0)
    other = transfer("t1", at(0), "u1", E, 250.0)
    o = outcome("c1", at(5), "TRANSFER", "t1")
    _, out = feed(Ledger(P), "T:t1", [first, other, o])
    assert [(g, t) for g, t, _ in out] == [(TRANSFERS, at(0)), (METRIC, at(0)), (DEAD, at(0)),
                                          (FACTS, at(5))]
    assert tagged(out, METRIC) == [("conflicting_transfers", 1)]
    (d,) = tagged(out, DEAD)
    assert (d.source, d.at, json.loads(d.payload)["to_address"]) == ("transfers", at(0), E)
    assert d.error.startswith("conflicting delivery of transfer_id 't1': differs from the "
                              "first delivery in to_address, amount, usd_value; first: {")
    assert d.error.endswith("; this one (payload) was not used")
    shown = d.error.split("first: ", 1)[1].rsplit("; this one", 1)[0]
    assert list(json.loads(shown)) == sorted(json.loads(shown))  # stable text: keys sorted
    assert list(json.loads(d.payload)) == sorted(json.loads(d.payload))
    assert json.loads(d.error.split("first: ", 1)[1].rsplit("; this one", 1)[0]) == \
        json.loads(json.dumps(dict(first._asdict())))
    assert tagged(out, FACTS)[0].address == D  # the first delivery stands


def test_a_report_redelivered_with_other_content_is_a_conflict():
    r = report("r1", at(0), "u1", suspect=D)
    ri, other = ReportIn(r, at(0), D), ReportIn(r._replace(category="ROMANCE"), at(0), D)
    _, out = feed(Ledger(P), "R:r1", [ri, other])
    assert tagged(out, METRIC) == [("conflicting_reports", 1)]
    (d,) = tagged(out, DEAD)
    assert (d.source, json.loads(d.payload)["category"]) == ("reports", "ROMANCE")
    assert d.error.startswith("conflicting delivery of report_id 'r1': differs from the "
                              "first delivery in category; first: {")


def test_warning_holdout_diverts_warnings_only():
    from core.outreach import HOLDOUT

    everyone = Policy(use_models=False, warning_holdout=1.0)
    req = request("u1", at(0), tid="t1", address=D)
    _, out = _outreach([req, request("u1", at(1), "HOLD_NOTICE", tid="t2", address=D)],
                       policy=everyone)
    assert out == [
        (HOLDOUT, at(0), Outreach(sid("outreach", "u1", "WARNING", at(0), "t1", D), "u1",
                                  "WARNING", "APP", at(0), "t1", D, ["warning_holdout"])),
        (METRIC, at(0), ("warning_holdout_suppressed", 1)),
        (OUTREACH, at(1), Outreach(sid("outreach", "u1", "HOLD_NOTICE", at(1), "t2", D), "u1",
                                   "HOLD_NOTICE", "APP", at(1), "t2", D, [])),
    ]
    _, out = _outreach([req])
    assert [g for g, _, _ in out] == [OUTREACH]
