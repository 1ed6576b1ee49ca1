"""The edges of every rule, on the pure machines (no pipeline: milliseconds each).

Each expectation is written from the rule in DESIGN.md and the default ``Policy``
(hold at >= 0.75, warn at >= 0.45, 24h holds, 30-day lookback, 24h cool-down, a repeat
victim at two confirmed losses, 30 days of de-duplication), not copied from a run.
"""

from __future__ import annotations

import pytest

from core.actions import FREEZES, HOLDS, LOSSES, REQUESTS, RESOLUTIONS, Actions
from core.events import AddressFact, FeaturedReport, FeaturedTransfer, ReportIn
from core.labels import EXAMPLES, LabelJoin
from core.ledger import REPORTS, TRANSFERS, Ledger
from core.machine import METRIC
from core.models import rules_transfer_score, rules_verdict_score, transfer_x, verdict_of
from core.outreach import OUTREACH, OutreachStep
from core.policy import DAY, HOUR, MINUTE, Policy
from core.profiles import FEATURED, CounterpartyProfile, SenderProfile
from schemas.blacklist import BlacklistSnapshot
from tests.kit import P, feed, loss, request, scored, scored_report, stamped, tagged
from tests.scenario import addr, at, listing, report, transfer

DEST = addr("boundary-dest")
H = P.hold_ms
assert (P.hold_threshold, P.warn_threshold, H, P.lookback_ms, P.cooldown_ms) == (
    0.75, 0.45, 24 * HOUR, 30 * DAY, 24 * HOUR)
assert (P.repeat_victim_losses, P.dedup_ms) == (2, 30 * DAY)


def _decide(score: float) -> tuple:
    _, out = feed(Actions(P), DEST, [scored("t1", at(0), "u1", DEST, score)])
    return ([(h.transfer_id, h.placed_at, h.expires_at) for h in tagged(out, HOLDS)],
            [(r.user_id, r.kind, r.transfer_id) for r in tagged(out, REQUESTS)])


# ------------------------------------------------------------------ rule 2: thresholds
@pytest.mark.parametrize("score, expected", [
    (0.75, ([("t1", at(0), at(0) + H)], [("u1", "HOLD_NOTICE", "t1")])),
    (0.7499, ([], [("u1", "WARNING", "t1")])),
    (0.45, ([], [("u1", "WARNING", "t1")])),
    (0.4499, ([], [])),
])
def test_score_at_and_just_below_the_hold_and_warning_thresholds(score, expected):
    assert _decide(score) == expected


def test_thresholds_are_options_not_constants():
    p = Policy(use_models=False, hold_threshold=0.9, warn_threshold=0.6)
    for score, holds, kinds in ((0.9, 1, ["HOLD_NOTICE"]), (0.89, 0, ["WARNING"]),
                                (0.6, 0, ["WARNING"]), (0.59, 0, [])):
        _, out = feed(Actions(p), DEST, [scored("t1", at(0), "u1", DEST, score)])
        assert (len(tagged(out, HOLDS)), [r.kind for r in tagged(out, REQUESTS)]) == (
            holds, kinds), score


# ------------------------------------------------------------------ rule 3: the deadline
def _held(extra=(), until=None):
    return feed(Actions(P), DEST, [scored("t1", at(0), "u1", DEST, 0.9), *extra], until)


def _resolutions(out):
    return [(r.transfer_id, r.resolution, r.resolved_at) for r in tagged(out, RESOLUTIONS)]


def test_hold_is_not_released_one_ms_before_its_deadline():
    _, out = _held(until=at(0) + H - 1)
    assert _resolutions(out) == []


def test_hold_is_released_exactly_at_its_deadline():
    _, out = _held(until=at(0) + H)
    assert _resolutions(out) == [("t1", "RELEASED", at(0) + H)]
    assert stamped(out, RESOLUTIONS)[0][0] == at(0) + H


def test_confirmation_exactly_at_the_deadline_comes_after_the_release():
    """Deadlines at t fire before events at t: the hold is RELEASED, never REFUNDED, and
    the confirmation still freezes the address; the released sender lost the money."""
    fact = AddressFact(DEST, at(0) + H, True, "c1", "ADDRESS", DEST)
    _, out = _held([fact])
    assert _resolutions(out) == [("t1", "RELEASED", at(0) + H)]
    assert [f.frozen_at for f in tagged(out, FREEZES)] == [at(0) + H]
    assert [(x.user_id, x.transfer_id) for x in tagged(out, LOSSES)] == [("u1", "t1")]
    assert [(r.user_id, r.kind) for r in tagged(out, REQUESTS)][-1] == ("u1", "SILENT_SUFFERER")


def test_confirmation_one_ms_before_the_deadline_refunds():
    fact = AddressFact(DEST, at(0) + H - 1, True, "c1", "ADDRESS", DEST)
    _, out = _held([fact], until=at(0) + 2 * H)
    assert _resolutions(out) == [("t1", "REFUNDED", at(0) + H - 1)]
    assert [r.kind for r in tagged(out, REQUESTS)] == ["HOLD_NOTICE"]  # refunded: no loss


def test_late_confirmation_after_the_watermark_passed_the_deadline():
    """The stream face fired the deadline (watermark past it) before a confirmation stamped
    earlier arrived: the hold keeps its one resolution, RELEASED; the late fact freezes the
    address and the released sender is a silent sufferer."""
    m = Actions(P)
    state, out = feed(m, DEST, [scored("t1", at(0), "u1", DEST, 0.9)], until=at(0) + H + HOUR)
    late = AddressFact(DEST, at(0) + H - HOUR, True, "c1", "TRANSFER", "t1", "u1")
    state, more = feed(m, DEST, [late], state=state)
    out += more
    assert _resolutions(out) == [("t1", "RELEASED", at(0) + H)]
    assert [f.frozen_at for f in tagged(out, FREEZES)] == [at(0) + H - HOUR]
    assert [(r.user_id, r.kind, r.transfer_id) for r in tagged(out, REQUESTS)] == [
        ("u1", "HOLD_NOTICE", "t1"), ("u1", "SILENT_SUFFERER", "t1")]


# ------------------------------------------------------------------ rule 6: cool-down
def _kinds(events, profiles=lambda u: None):
    _, out = feed(OutreachStep(P, profiles), "u1", events)
    return [(o.kind, o.channel, o.created_at) for o in tagged(out, OUTREACH)]


def test_cooldown_suppresses_until_exactly_24h_then_allows():
    c = P.cooldown_ms
    got = _kinds([request("u1", at(0), tid="a"), request("u1", at(0) + c - 1, tid="b"),
                  request("u1", at(0) + c, tid="c")])
    assert got == [("WARNING", "APP", at(0)), ("WARNING", "APP", at(0) + c)]


def test_cooldown_is_per_kind():
    got = _kinds([request("u1", at(0), tid="a"),
                  request("u1", at(1), "HOLD_NOTICE", tid="b")])
    assert got == [("WARNING", "APP", at(0)), ("HOLD_NOTICE", "APP", at(1))]


def test_silent_sufferer_once_per_user_and_address_whatever_the_time():
    x, y = addr("ss-x"), addr("ss-y")
    got = _kinds([request("u1", at(0), "SILENT_SUFFERER", address=x),
                  request("u1", at(days=3), "SILENT_SUFFERER", address=x),
                  request("u1", at(days=3), "SILENT_SUFFERER", address=y)])
    assert got == [("SILENT_SUFFERER", "CHAT", at(0)), ("SILENT_SUFFERER", "CHAT", at(days=3))]


# ------------------------------------------------------------------ rule 1: repeat victims
def test_one_confirmed_loss_warns_two_call():
    got = _kinds([loss("u1", at(0), "a1"), request("u1", at(1), tid="w1"),
                  loss("u1", at(2), "a2"), request("u1", at(3), tid="w2")])
    assert got == [("WARNING", "APP", at(1)), ("INTERVENTION", "CALL", at(3))]


def test_the_same_loss_confirmed_twice_counts_once():
    got = _kinds([loss("u1", at(0), "a1"), loss("u1", at(1), "a1"),
                  request("u1", at(2), tid="w1")])
    assert got == [("WARNING", "APP", at(2))]


def test_loss_carried_by_the_request_itself_counts():
    """A transfer to a frozen address is a loss the request names itself."""
    req = request("u1", at(1), tid="a2")._replace(losses=("a2",))
    assert _kinds([loss("u1", at(0), "a1"), req]) == [("INTERVENTION", "CALL", at(1))]


def test_vulnerable_user_gets_a_call_without_losses():
    from tests.scenario import profile

    vera = profile("u1", at(days=-400), vulnerable=True)
    got = _kinds([request("u1", at(0))], profiles={"u1": vera}.get)
    assert got == [("INTERVENTION", "CALL", at(0))]


# ------------------------------------------------------------------ rule 5: lookback
def test_lookback_keeps_the_sender_29_days_before_a_listing_not_the_one_31_days_before():
    """The address stays busy (a payment every 5 days), so only the lookback's pruning,
    not the idle reset, can forget the early sender."""
    listed_at = at(days=40)
    events = [scored("old", listed_at - 31 * DAY, "early", DEST),
              scored("new", listed_at - 29 * DAY, "recent", DEST)]
    events += [scored(f"b{i}", at(days=5 * i + 2), "busy", DEST, 0.9) for i in range(1, 8)]
    events.sort(key=lambda e: e.event_time)
    events.append(listing(DEST, listed_at))
    _, out = feed(Actions(P), DEST, events, until=listed_at)
    sweep = [(r.user_id, r.transfer_id) for t, r in stamped(out, REQUESTS) if t == listed_at]
    # busy's holds were all released before the listing (RELEASED: the money went): it is
    # a silent sufferer too, named by its oldest transfer inside the lookback (day 12).
    assert sweep == [("recent", "new"), ("busy", "b2")]


def test_lookback_is_an_option():
    p = Policy(use_models=False, lookback_ms=10 * DAY)
    events = [scored("a", at(0), "u9", DEST), scored("b", at(days=9), "u8", DEST),
              listing(DEST, at(days=10) + 1)]
    _, out = feed(Actions(p), DEST, events)
    assert [r.user_id for r in tagged(out, REQUESTS)] == ["u8"]


# ------------------------------------------------------------------ rules 3, 5: who lost
def test_released_then_confirmed_sender_is_a_silent_sufferer_refunded_one_is_not():
    fact = AddressFact(DEST, at(days=3), True, "c1", "ADDRESS", DEST)
    events = [scored("rel", at(0), "released", DEST, 0.9),
              scored("ref", at(days=2, hours=12), "refunded", DEST, 0.9), fact]
    _, out = feed(Actions(P), DEST, events)
    assert _resolutions(out) == [("rel", "RELEASED", at(0) + H),
                                 ("ref", "REFUNDED", at(days=3))]
    ss = [(r.user_id, r.transfer_id) for r in tagged(out, REQUESTS)
          if r.kind == "SILENT_SUFFERER"]
    assert ss == [("released", "rel")]
    assert sorted((x.user_id, x.transfer_id) for x in tagged(out, LOSSES)) == [
        ("refunded", "ref"), ("released", "rel")]


def test_a_sender_who_reported_is_not_a_silent_sufferer():
    events = [scored("t1", at(0), "u1", DEST), scored("t2", at(1), "u2", DEST),
              scored_report("r1", at(2), "u1", DEST), listing(DEST, at(3))]
    _, out = feed(Actions(P), DEST, events)
    assert [(r.user_id, r.kind) for r in tagged(out, REQUESTS)] == [("u2", "SILENT_SUFFERER")]


# ------------------------------------------------------------------ rule 9: look-alikes
GENUINE = "0xabc" + "1" * 33 + "9f3e"


@pytest.mark.parametrize("candidate, imitates", [
    ("0xabc" + "7" * 33 + "9f3e", GENUINE),  # first three and last four match: look-alike
    ("0xabc" + "7" * 33 + "9f3f", None),  # prefix matches, suffix one character off
    ("0xabd" + "7" * 33 + "9f3e", None),  # suffix matches, prefix one character off
    ("0xab" + "7" * 34 + "9f3e", None),  # only two of the three leading digits
    ("0xabc" + "7" * 34 + "f3e", None),  # only three of the four trailing digits
])
def test_lookalike_needs_both_prefix_and_suffix(candidate, imitates):
    _, out = feed(SenderProfile(P, lambda u: None), "u",
                  [transfer("g", at(0), "u", GENUINE), transfer("c", at(1), "u", candidate)])
    assert [v.lookalike_of for v in tagged(out, FEATURED)] == [None, imitates]


def test_known_payee_again_is_not_a_lookalike_and_an_imitation_never_becomes_one():
    fake = "0xabc" + "7" * 33 + "9f3e"
    _, out = feed(SenderProfile(P, lambda u: None), "u",
                  [transfer("g1", at(0), "u", GENUINE), transfer("f1", at(1), "u", fake),
                   transfer("g2", at(2), "u", GENUINE), transfer("f2", at(3), "u", fake)])
    got = [(v.transfer.transfer_id, v.lookalike_of, v.features["new_dest"])
           for v in tagged(out, FEATURED)]
    assert got == [("g1", None, 1.0), ("f1", GENUINE, 1.0), ("g2", None, 0.0),
                   ("f2", GENUINE, 1.0)]


# ------------------------------------------------------------------ rule 8: duplicates
def test_duplicate_after_the_resolution_and_until_the_dedup_window_ends_changes_nothing():
    """A redelivery of the same record, arriving when time has passed its hold's
    resolution (24h) and until 1 ms before the dedup window (30 days) ends, is counted and
    dropped."""
    m = Ledger(P)
    first = transfer("t1", at(0), "u1", DEST)
    state, out = feed(m, "T:t1", [first], until=at(0) + H + 1)
    state, more = feed(m, "T:t1", [first], until=at(0) + P.dedup_ms - 1, state=state)
    state, more2 = feed(m, "T:t1", [first], state=state)
    out += more + more2
    assert [v.transfer_id for v in tagged(out, TRANSFERS)] == ["t1"]
    assert tagged(out, METRIC) == [("duplicate_transfers", 1)] * 2


def test_after_the_dedup_window_the_ledger_has_forgotten_the_id():
    """The memory is bounded: ``dedup_ms`` after the first delivery the id is forgotten
    and a redelivery passes as new (the documented limit of rule 8)."""
    m = Ledger(P)
    first = transfer("t1", at(0), "u1", DEST)
    state, out = feed(m, "T:t1", [first], until=at(0) + P.dedup_ms)
    assert m.is_empty(state)
    _, more = feed(m, "T:t1", [first], state=state)
    assert [v.event_time for v in tagged(out + more, TRANSFERS)] == [at(0), at(0)]


def test_duplicate_report_after_its_verdict_changes_nothing():
    r = report("r1", at(0), "u1", suspect=DEST)
    ri = ReportIn(r, at(0), DEST)
    m = Ledger(P)
    state, out = feed(m, "R:r1", [ri], until=at(days=2))
    _, more = feed(m, "R:r1", [ri], state=state)
    out += more
    assert [v.report.report_id for v in tagged(out, REPORTS)] == ["r1"]
    assert tagged(out, METRIC) == [("duplicate_reports", 1)]


def test_outcome_waiting_for_its_transfer_dead_letters_exactly_at_resolve_wait():
    from tests.scenario import outcome

    o = outcome("c1", at(0), "TRANSFER", "never-seen")
    _, out = feed(Ledger(P), "T:never-seen", [o], until=at(0) + P.resolve_wait_ms - 1)
    assert out == []
    _, out = feed(Ledger(P), "T:never-seen", [o], until=at(0) + P.resolve_wait_ms)
    assert [(d.source, d.at) for d in tagged(out, "dead_letter")] == [
        ("outcomes", at(0) + P.resolve_wait_ms)]


# ------------------------------------------------------------------ labels
def test_a_confirmed_address_stays_confirmed_while_its_payers_keep_coming():
    """Past the label horizon a later payment to a confirmed scam is still a positive; the
    mark lasts the lookback after the last payment it labelled, then lapses."""
    lh, lb = P.label_horizon_ms, P.lookback_ms
    assert lb > lh
    fact = AddressFact(DEST, at(0), True, "c1", "ADDRESS", DEST)
    t1, t2 = at(0) + lh, at(0) + lh + lb - 1  # each within the lookback of the last
    t3 = t2 + lb  # a lookback after the last payment: forgotten

    def ft(tid, t):
        return FeaturedTransfer(transfer(tid, t, "u", DEST), t, {})

    evs = [fact, ft("a", t1), ft("b", t2), ft("c", t3)]
    _, out = feed(LabelJoin(P), DEST, evs, until=t3 + 2 * lh)
    got = [(e.subject_id, e.y, e.event_time) for e in tagged(out, EXAMPLES)]
    assert got == [("T:a", True, t1 + 1), ("T:b", True, t2 + 1), ("T:c", False, t3 + lh)]


def test_a_sender_whose_hold_is_still_pending_is_not_a_silent_sufferer():
    """Another sender's hold is released; this one's money is still held when the address
    is listed: only the released sender lost money (rule 5)."""
    events = [scored("t1", at(0), "u1", DEST, 0.9), scored("t2", at(hours=1), "u2", DEST, 0.9),
              listing(DEST, at(0) + H + MINUTE)]
    _, out = feed(Actions(P), DEST, events)
    assert _resolutions(out) == [("t1", "RELEASED", at(0) + H)]
    assert [(r.user_id, r.kind) for r in tagged(out, REQUESTS)] == [
        ("u1", "HOLD_NOTICE"), ("u2", "HOLD_NOTICE"), ("u1", "SILENT_SUFFERER")]


# ------------------------------------------------------------------ rule 10: the threshold in force
@pytest.mark.parametrize("threshold, score, capped, expected", [
    (0.9, 0.9, False, ([("t1", at(0), at(0) + H)], [("u1", "HOLD_NOTICE", "t1")])),
    (0.9, 0.8, False, ([], [("u1", "WARNING", "t1")])),  # above the policy's 0.75
    (0.6, 0.6, False, ([("t1", at(0), at(0) + H)], [("u1", "HOLD_NOTICE", "t1")])),
    (None, 0.75, True, ([], [("u1", "WARNING", "t1")])),  # past the friction cap
])
def test_hold_at_exactly_the_threshold_in_force_unless_capped(threshold, score, capped,
                                                              expected):
    ev = scored("t1", at(0), "u1", DEST, score)._replace(hold_threshold=threshold,
                                                          capped=capped)
    _, out = feed(Actions(P), DEST, [ev])
    assert ([(h.transfer_id, h.placed_at, h.expires_at) for h in tagged(out, HOLDS)],
            [(r.user_id, r.kind, r.transfer_id) for r in tagged(out, REQUESTS)]) == expected


def test_lookalike_hold_names_the_payee_and_its_family_outside_evm():
    genuine = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
    fake = "TQn9ZZZZZZZZZZZZZZZZZZZZZZZZZZbLSE"
    ev = scored("t1", at(0), "u1", fake, lookalike_of=genuine)
    ev = ev._replace(featured=ev.featured._replace(
        transfer=ev.featured.transfer._replace(network="TRX")))
    _, out = feed(Actions(P), fake, [ev])
    assert [h.reasons for h in tagged(out, HOLDS)] == [[f"lookalike_of={genuine} (TRON)",
                                                        "hold_test=lookalike"]]


# ------------------------------------------------------------------ rule 2: the fan-in rule
def _burst_features(policy: Policy, age_ms: int) -> dict:
    """The features of the 25th distinct sender of a burst (all within the last minute) to
    DEST, first seen ``age_ms`` before that transfer (by one of them)."""
    t = at(0) + age_ms
    events = [FeaturedTransfer(transfer("first", at(0), "s0", DEST), at(0), {})]
    events += [FeaturedTransfer(transfer(f"b{i}", t - 24 + i, f"s{i}", DEST), t - 24 + i, {})
               for i in range(25)]
    _, out = feed(CounterpartyProfile(policy, BlacklistSnapshot({})), DEST, events)
    return tagged(out, FEATURED)[-1].features


@pytest.mark.parametrize("young_dest_ms, age_ms, held", [
    (2 * DAY, 2 * DAY - 1, True),  # the default: younger than 2 days
    (2 * DAY, 2 * DAY, False),
    (12 * HOUR, 12 * HOUR - 1, True),
    (12 * HOUR, 12 * HOUR, False),
    (3 * DAY, 2 * DAY, True),
])
def test_fan_in_rule_needs_a_destination_younger_than_young_dest(young_dest_ms, age_ms, held):
    assert Policy().young_dest_ms == 2 * DAY
    p = Policy(use_models=False, young_dest_ms=young_dest_ms)
    f = _burst_features(p, age_ms)
    assert (f["fan_in_24h"], f["fan_in_1h"]) == (25.0, 25.0)
    assert rules_transfer_score(f, p) == ((0.8, ("fan_in_24h=25",)) if held else (0.05, ()))
    assert transfer_x(f, p)["young_dest"] == (1.0 if held else 0.0)  # the model's feature


# ------------------------------------------------------------------ rule 4: reporters in 24h
def _established_report(rid: str, t: int, reporter: str) -> FeaturedReport:
    ri = ReportIn(report(rid, t, reporter, suspect=DEST), t, DEST)
    return FeaturedReport(ri, t, {"reporter_paid_suspect": 1.0, "reporter_fresh": 0.0})


@pytest.mark.parametrize("window_ms, gap_ms, est24", [
    (24 * HOUR, 24 * HOUR - 1, 2.0),  # the default: the first report is still counted
    (24 * HOUR, 24 * HOUR, 1.0),  # exactly 24h old: out
    (36 * HOUR, 24 * HOUR, 2.0),
    (36 * HOUR, 36 * HOUR, 1.0),
])
def test_reporters_24h_count_within_reporter_short_window(window_ms, gap_ms, est24):
    """Two established reporters within the short window make a SCAM-level rules score;
    further apart, one of them counts only in the 7-day window."""
    assert Policy().reporter_short_window_ms == 24 * HOUR
    p = Policy(use_models=False, reporter_short_window_ms=window_ms)
    events = [_established_report("r1", at(0), "e1"),
              _established_report("r2", at(0) + gap_ms, "e2")]
    _, out = feed(CounterpartyProfile(p, BlacklistSnapshot({})), DEST, events)
    f = tagged(out, FEATURED)[-1].features
    assert (f["established_reporters_24h"], f["reporters_24h"],
            f["established_reporters_7d"]) == (est24, est24, 2.0)
    assert verdict_of(rules_verdict_score(f)[0], p) == ("SCAM" if est24 == 2.0 else "REVIEW")


# ------------------------------------------------------------------ rule 9: the payee sweep
@pytest.mark.parametrize("every, n_transfers, forgotten", [
    (8, 8, True),  # the 8th transfer sweeps out the payee past its memory
    (8, 7, False),
    (64, 8, False),  # the default sweeps at the 64th
])
def test_payees_past_their_memory_are_dropped_every_payee_sweep_every_transfers(
        every, n_transfers, forgotten):
    """A genuine payee paid once, then ``n_transfers - 1`` transfers to another address
    up to just past the payee memory; then a look-alike of the genuine payee."""
    assert Policy().payee_sweep_every == 64
    p = Policy(use_models=False, payee_sweep_every=every)
    mem = p.payee_memory_ms
    fake = "0xabc" + "7" * 33 + "9f3e"
    events = [transfer("g", at(0), "u", GENUINE)]
    events += [transfer(f"o{i}", at(0) + mem - DAY + i, "u", DEST)
               for i in range(n_transfers - 2)]
    events += [transfer("z", at(0) + mem + 1, "u", DEST),  # the n_transfers-th
               transfer("f", at(0) + mem + 2, "u", fake)]
    _, out = feed(SenderProfile(p, lambda u: None), "u", events)
    f = tagged(out, FEATURED)[-1]
    assert f.lookalike_of == (None if forgotten else GENUINE)
    assert f.features["n_payees"] == (1.0 if forgotten else 2.0)
