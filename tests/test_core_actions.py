"""Actions (core/actions.py) at the edges the graph-level tests do not reach: the split of
the pending holds between the head and the table (every hold whose next step is due by
``edge`` in the head, at most SOON_MAX beyond those already due), the sent log's trims (when
it has doubled, keeping the lookback and its refunds), the lookback's first instant, rule
14's stage outputs field by field, expected losses, and a state's expiry under extended
holds.

Machine-level, no Beam: each test feeds an :class:`Actions` directly."""

from __future__ import annotations

import dataclasses

import pytest

from core.actions import (
    HOLD_TEST,
    HOLDS,
    LOSSES,
    REQUESTS,
    RESOLUTIONS,
    SOON_MAX,
    SOON_MS,
    Actions,
    expected_loss,
    hold_test,
)
from core.events import FeaturedTransfer, ScoredTransfer
from core.machine import METRIC, Log, Table
from core.policy import DAY, HOUR, MINUTE, Policy
from schemas.rows import BlacklistUpdate
from tests.kit import run_checked, scored_report
from tests.scenario import addr, at, transfer

D = addr("actions-core")
# rules only, no daily assessments; rule 14 with its defaults
P = Policy(use_models=False, assessments_per_day=0)
PLAIN = dataclasses.replace(P, hold_escalation=False)  # rules 1-10 alone
L = P.lookback_ms
LOW = 0.05


def _st(tid, t, user="u1", usd=100.0, score=0.9, blacklist=None, lookalike_of=None,
        features=None, to_user=None):
    ft = FeaturedTransfer(transfer(tid, t, user, D, usd=usd, to_user=to_user), t,
                          {} if features is None else features, blacklist=blacklist,
                          list_version="snap-1" if blacklist else None,
                          lookalike_of=lookalike_of)
    return ScoredTransfer(ft, t, score, "rules")


def _listing(t):
    return BlacklistUpdate(D, "ETH", "ADD", t, "vendor_q", None)


def _check(m, s, now):
    """The head/table split as ``_Dest`` and ``_bring_soon`` state it, and ``advance``'s
    contract: after time ``now`` no pending step due at or before it is left unfired."""
    soon = {tid: life.next_time() for tid, (_h, life) in s.soon.items()}
    later = {}
    for tid in s.later:
        at_, _h, life = s.later.get(tid)
        assert at_ == life.next_time()
        later[tid] = at_
    if soon:
        assert s.edge is not None and max(soon.values()) <= s.edge
    if s.edge is not None:
        assert all(a > s.edge for a in later.values())
    assert s.later_first == min(later.values(), default=None)
    assert all(a > now for a in list(soon.values()) + list(later.values()))
    names = [getattr(s, f).name for f in type(s).__slots__
             if isinstance(getattr(s, f), (Log, Table))]
    assert sorted(names) == sorted(Actions.LOGS)


def _run(m, events, until=None, s=None):
    """Events in the order given (as the stream face delivers them), the state checked
    after each; then the timers up to ``until`` (``tests.kit.run_checked``)."""
    return run_checked(m, D, events, lambda s, now: _check(m, s, now), until, s)


def _tagged(out, tag):
    return [(t, v) for g, t, v in out if g == tag]


def _res(out):
    return [(r.transfer_id, r.resolution, t, r.reason) for t, r in _tagged(out, RESOLUTIONS)]


# ------------------------------------------------------------------- small functions
def test_expected_loss_is_score_times_usd_unless_certain_to_the_cent():
    st = _st("t1", at(0), usd=100.0, score=0.3333)
    assert expected_loss(st) == 33.33
    assert expected_loss(st, certain=True) == 100.0
    assert expected_loss(_st("t2", at(0), usd=1234.5678, score=1.0)) == 1234.57


def test_the_hold_test_of_a_score_hold_is_named_and_a_capped_one_has_none():
    _s, out = _run(Actions(PLAIN), [_st("t1", at(0), score=0.9)])
    ((_t, h),) = _tagged(out, HOLDS)
    assert h.reasons[-1] == f"{HOLD_TEST}score"
    capped = _st("t2", at(0), score=0.9)._replace(capped=True)
    assert hold_test(capped, PLAIN, frozen=False) is None


def test_a_state_names_its_logs_and_tables_as_the_machine_lists_them():
    m = Actions(P)
    _run(m, [_st("t1", at(0)), scored_report("r1", at(0) + 1, "u2", D, "SCAM", 0.95),
             _st("t2", at(0) + 2)])  # _check compares the names after each event


# ------------------------------------------------------------- the lookback's edges
def test_a_confirmation_counts_the_losses_of_the_whole_lookback_and_no_older():
    t0 = at(0)
    events = [_st("old", t0, "u_old", score=LOW), _st("edge", t0 + DAY, "u_edge", score=LOW),
              _st("new", t0 + 2 * DAY, "u_new", score=LOW),
              scored_report("r1", t0 + DAY + L, "u9", D, "SCAM", 0.95)]
    _s, out = _run(Actions(PLAIN), events)
    assert [(t, x.user_id, x.transfer_id) for t, x in _tagged(out, LOSSES)] == [
        (t0 + DAY + L, "u_edge", "edge"), (t0 + DAY + L, "u_new", "new")]


# ------------------------------------------------------------------ the sent log's trim
def test_the_sent_log_is_trimmed_when_it_has_doubled_and_keeps_the_lookback():
    m = Actions(PLAIN)
    t0 = at(0)
    s, _ = _run(m, [_st(f"a{i}", t0 + i, f"u{i}", score=LOW) for i in range(127)])
    assert len(s.sent) == 127
    # old entries, but the log has not doubled (127 < 2 x 64): kept
    s, _ = _run(m, [_st("v0", t0 + L + 10, "v0", score=LOW)], s=s)
    assert len(s.sent) == 128
    # doubled: trimmed to the lookback (t0 + 11 is its first instant: kept), then appended
    s, _ = _run(m, [_st("v1", t0 + L + 11, "v1", score=LOW)], s=s)
    assert len(s.sent) == 116 + 1 + 1
    s, out = _run(m, [_listing(t0 + L + 12)], s=s)
    assert len(s.sent) == 118
    assert sorted(r.user_id for _t, r in _tagged(out, REQUESTS)) == sorted(
        [f"u{i}" for i in range(12, 127)] + ["v0", "v1"])
    # the next trim once the log has doubled since this one (2 x 117 entries)
    s, _ = _run(m, [_st(f"w{j}", t0 + L + 13 + j, f"w{j}", score=LOW) for j in range(116)],
                s=s)
    assert len(s.sent) == 234
    s, _ = _run(m, [_st("x0", t0 + L + 200, "x0", score=LOW)], s=s)
    assert len(s.sent) == 2 + 116 + 1


def test_a_trim_at_the_listing_keeps_the_sender_at_the_lookbacks_first_instant():
    m = Actions(PLAIN)
    t0 = at(0)
    events = [_st(f"a{i}", t0 + i, f"u{i}", score=LOW) for i in range(128)]
    events.append(_listing(t0 + L + 100))  # trims first, then sweeps
    s, out = _run(m, events)
    assert len(s.sent) == 28
    assert sorted(r.user_id for _t, r in _tagged(out, REQUESTS)) == sorted(
        f"u{i}" for i in range(100, 128))


def test_a_trim_keeps_the_refunds_of_the_transfers_it_keeps():
    m = Actions(PLAIN)
    t0 = at(0)
    events = [scored_report("r1", t0, "rep", D, "SCAM", 0.95)]  # frozen: every later
    events += [_st(f"a{i}", t0 + 1 + i, f"u{i}", score=LOW)  # transfer is refunded at once
               for i in range(127)]
    events += [_st("v0", t0 + L + 10, "v0", score=LOW), _st("v1", t0 + L + 11, "v1", score=LOW)]
    s, out = _run(m, events)
    assert len(s.sent) == 117 + 1 + 1  # a10..a126 (t0 + 11 on), v0, v1
    assert sorted(s.refunded.items()) == sorted(tid for _t, _u, tid in s.sent.items())
    s, out = _run(m, [_listing(t0 + L + 12)], s=s)
    assert not [r for _t, r in _tagged(out, REQUESTS) if r.kind == "SILENT_SUFFERER"]


def test_a_trim_that_keeps_nothing_leaves_an_empty_log():
    m = Actions(PLAIN)
    t0 = at(0)
    events = [_st(f"a{i}", t0 + i, f"u{i}", score=LOW) for i in range(128)]
    # a report keeps the address alive (its state does not expire) while every transfer
    # leaves the lookback: the listing's trim keeps none of them
    events += [scored_report("r1", t0 + L, "rep", D), _listing(t0 + 128 + L)]
    s, out = _run(m, events)
    assert len(s.sent) == 0 and s.oldest is None
    assert not _tagged(out, REQUESTS)


# ------------------------------------------------------------- head and table of holds
def _six_then(layout):
    """Hold a0 at t0; hold b0 at t0 + 1 (the head is looked through: edge = t0 + 1 + 1h);
    then holds placed at t0 + 2 + k for each k of ``layout`` (into the table)."""
    t0 = at(0)
    ev = [_st("a0", t0, "ua"), _st("b0", t0 + 1, "ub")]
    ev += [_st(f"h{j:02d}", t0 + 2 + k, f"u{j}") for j, k in enumerate(layout)]
    return t0, ev


@pytest.mark.parametrize("layout", [
    list(range(12)),  # distinct times
    list(range(7)) + [7] * 5,  # the 8th and the rest due at once
    list(range(7)) + [7, 7] + [8, 9, 10],  # the 8th and 9th due at once
])
def test_the_head_takes_the_earliest_holds_due_soon_up_to_soon_max_and_their_ties(layout):
    m = Actions(P)
    t0, events = _six_then(layout)
    s, out = _run(m, events)
    assert set(s.soon) == {"a0", "b0"} and s.edge == t0 + 1 + SOON_MS  # b0 due at the edge
    # the timers: a0's, then b0's stage brings the table's holds due within SOON_MS
    s, out = _run(m, [], until=t0 + HOUR + 1, s=s)
    times = sorted(t0 + 2 + k + HOUR for k in layout)
    edge = times[SOON_MAX - 1]
    assert s.edge == edge
    assert sorted(s.soon) == sorted(f"h{j:02d}" for j, k in enumerate(layout)
                                    if t0 + 2 + k + HOUR <= edge)
    s, out = _run(m, [], until=t0 + 2 * HOUR, s=s)
    warned = sorted((t, r.transfer_id) for t, r in _tagged(out, REQUESTS))
    assert warned == sorted((t0 + 2 + k + HOUR, f"h{j:02d}") for j, k in enumerate(layout))


def test_the_head_covers_soon_ms_when_the_holds_due_in_it_fit():
    m = Actions(P)
    t0, events = _six_then(range(SOON_MAX))
    s, _ = _run(m, events)
    s, _ = _run(m, [], until=t0 + HOUR + 1, s=s)  # b0's stage at t0 + 1 + 1h brings them
    assert s.edge == t0 + 1 + HOUR + SOON_MS
    assert len(s.soon) == SOON_MAX and not any(k.startswith("h") for k in s.later)


def test_holds_already_due_all_come_into_the_head_and_at_most_soon_max_more():
    m = Actions(P)
    t0 = at(0)
    events = [_st("a0", t0, "ua"), _st("b0", t0 + 1, "ub")]
    events += [_st(f"m{j:02d}", t0 + 30 * MINUTE + j, f"m{j}") for j in range(10)]
    events += [_st(f"p{j}", t0 + 2, f"p{j}") for j in range(9)]
    events += [_st(f"q{j}", t0 + 3, f"q{j}") for j in range(3)]
    s, _ = _run(m, events)
    # a jump: 12 of the table's holds are due at once, 10 more within SOON_MS
    now = t0 + 3 + HOUR
    s, out = _run(m, [_st("late", now, "ul", score=LOW)], s=s)
    fired = sorted(r.transfer_id for _t, r in _tagged(out, REQUESTS)
                   if r.kind == "HOLD_ESCALATION")
    assert fired == sorted(["a0", "b0"] + [f"p{j}" for j in range(9)]
                           + [f"q{j}" for j in range(3)])
    not_due = [tid for tid, (_h, life) in s.soon.items() if life.next_time() > now]
    assert len(not_due) <= SOON_MAX


@pytest.mark.parametrize("call_after", [90 * MINUTE, 2 * HOUR])
def test_a_hold_whose_next_stage_is_due_by_the_edge_stays_in_the_head(call_after):
    p = dataclasses.replace(P, hold_call_after_ms=call_after, hold_call_min_loss=0.0)
    m = Actions(p)
    t0 = at(0)
    events = [_st("a0", t0, "ua"), _st("b0", t0, "ub"), _st("c0", t0 + 10 * MINUTE, "uc")]
    s, _ = _run(m, events)
    s, out = _run(m, [], until=t0 + HOUR, s=s)  # a0's and b0's chats; c0 is brought
    assert s.edge == t0 + 2 * HOUR and {"a0", "b0", "c0"} <= set(s.soon)
    s, out = _run(m, [], until=t0 + DAY + 2 * HOUR, s=s)
    calls = [(t, r.transfer_id) for t, r in _tagged(out, REQUESTS) if r.kind == "INTERVENTION"]
    assert calls == [(t0 + call_after, "a0"), (t0 + call_after, "b0"),
                     (t0 + 10 * MINUTE + call_after, "c0")]


# ------------------------------------------------------------- rule 14, field by field
def test_a_held_transfer_to_one_of_our_accounts_every_output_of_its_life():
    m = Actions(P)
    t0 = at(0)
    _s, out = _run(m, [_st("t1", t0, "u1", usd=100.0, score=0.9, to_user="acct9")],
                   until=t0 + 5 * DAY)
    reqs = [(t, r.user_id, r.kind, r.channel, r.transfer_id, r.address, r.reasons[0])
            for t, r in _tagged(out, REQUESTS)]
    assert all(r.event_time == t for t, r in _tagged(out, REQUESTS))
    assert reqs == [
        (t0, "acct9", "INFO_REQUEST", "CHAT", "t1", D, "held_transfer_to_your_account"),
        (t0, "u1", "HOLD_NOTICE", "APP", "t1", D, "risk_score=0.90"),
        (t0 + HOUR, "u1", "HOLD_ESCALATION", "CHAT", "t1", D, "hold_stage=warning"),
        (t0 + DAY, "u1", "HOLD_NOTICE", "APP", "t1", D, "hold_extended_to=48h")]
    assert _tagged(out, METRIC) == [(t0 + HOUR, ("hold_stage_warn", 1)),
                                    (t0 + 12 * HOUR, ("info_requests_unanswered", 1)),
                                    (t0 + DAY, ("holds_extended", 1))]
    assert _res(out) == [("t1", "RELEASED", t0 + 2 * DAY, "no scam confirmed within the hold "
                          "(extended 1x: info_request_unanswered)")]


def test_an_information_deadline_at_the_hold_deadline_still_counts():
    p = dataclasses.replace(P, info_answer_ms=P.hold_ms)
    _s, out = _run(Actions(p), [_st("t1", at(0), to_user="acct9")], until=at(0) + 5 * DAY)
    assert [r[3] for r in _res(out)] == [
        "no scam confirmed within the hold (extended 1x: info_request_unanswered)"]


def test_a_review_verdict_extends_the_hold_naming_it():
    t0 = at(0)
    events = [_st("t1", t0), scored_report("r1", t0 + 5 * HOUR, "u2", D, "REVIEW", 0.6)]
    _s, out = _run(Actions(P), events, until=t0 + 5 * DAY)
    assert _res(out) == [("t1", "RELEASED", t0 + 2 * DAY, "no scam confirmed within the hold "
                          "(extended 1x: new_report=r1, verdict_review=r1)")]


def test_holds_held_out_of_escalation_are_counted():
    p = dataclasses.replace(P, escalation_holdout=1.0)
    _s, out = _run(Actions(p), [_st("t1", at(0)), _st("t2", at(0) + 1)])
    assert _tagged(out, METRIC) == [(at(0), ("escalation_holdout_holds", 1)),
                                    (at(0) + 1, ("escalation_holdout_holds", 1))]


@pytest.mark.parametrize("kind", ["blacklist", "lookalike"])
def test_a_certain_hold_is_ranked_by_its_whole_usd(kind):
    # a list hit or a look-alike makes the hold certain: its expected loss is the USD, so
    # a low score still gets the call of a risky hold ($3,000 >= $2,000)
    extra = ({"blacklist": ("vendor_q",)} if kind == "blacklist"
             else {"lookalike_of": addr("genuine-payee")})
    _s, out = _run(Actions(P), [_st("t1", at(0), usd=3000.0, score=LOW, **extra)],
                   until=at(0) + 5 * DAY)
    reqs = [(t, r.kind, r.expected_loss) for t, r in _tagged(out, REQUESTS)]
    assert reqs == [(at(0), "WARNING", 3000.0), (at(0) + HOUR, "HOLD_ESCALATION", 3000.0),
                    (at(0) + 3 * HOUR, "INTERVENTION", 3000.0)]


def test_a_score_hold_is_ranked_by_score_times_usd():
    _s, out = _run(Actions(P), [_st("t1", at(0), usd=2200.0, score=0.8)], until=at(0) + 5 * DAY)
    assert [(r.kind, r.expected_loss) for _t, r in _tagged(out, REQUESTS)] == [
        ("HOLD_NOTICE", 1760.0), ("HOLD_ESCALATION", 1760.0)]


def test_fan_in_missing_from_the_held_transfer_counts_as_none():
    t0 = at(0)
    young = {"dest_age_days": 0.5}
    events = [_st("t1", t0, features=young),
              _st("t2", t0 + HOUR, "u2", score=LOW, features={**young, "fan_in_24h": 3.0})]
    _s, out = _run(Actions(P), events, until=t0 + 5 * DAY)
    assert [r[3] for r in _res(out)] == [
        "no scam confirmed within the hold (extended 1x: fan_in_rise=0->3)"]


def test_a_later_transfer_without_fan_in_is_no_fan_in_evidence():
    p = dataclasses.replace(P, extension_fan_in_rise=1)
    t0 = at(0)
    young = {"dest_age_days": 0.5}
    events = [_st("t1", t0, features={**young, "fan_in_24h": 0.0}),
              _st("t2", t0 + HOUR, "u2", score=LOW, features=young)]
    _s, out = _run(Actions(p), events, until=t0 + 5 * DAY)
    assert _res(out) == [("t1", "RELEASED", t0 + DAY, "no scam confirmed within the hold")]


def test_a_state_outlives_its_longest_hold_when_the_lookback_is_shorter():
    # the idle expiry is the longer of the lookback and the longest hold (hold_max with
    # rule 14): an extended hold still ends in exactly one resolution
    p = dataclasses.replace(P, lookback_ms=DAY)
    t0 = at(0)
    events = [_st("t1", t0), scored_report("r1", t0 + 5 * HOUR, "u2", D, "NOT_SCAM")]
    _s, out = _run(Actions(p), events, until=t0 + 10 * DAY)
    assert [(r[0], r[1], r[2]) for r in _res(out)] == [("t1", "RELEASED", t0 + 2 * DAY)]
