"""Case files (core/casefiles.py) at the edges the graph-level tests do not reach: a transfer
delivered twice (the plain reading of the logs), the lookback's edge, a file issued again
after the case changed (the digest kept between files), a busy case's log trimming, the
capped lists, an emptied state that a shell keeps, and the JSON form of the items.

Machine-level, no Beam: each test feeds a :class:`CaseBook` directly."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.casefiles import CaseBook, _Capped, about_an_address, case_key
from core.events import FeaturedTransfer, ScoredTransfer
from core.machine import step
from core.policy import HOUR, MINUTE, Policy
from schemas.rows import BlacklistUpdate, Freeze, Hold, HoldResolution, Outreach
from tests.scenario import addr, at, transfer

X = addr("collector-core")
P = Policy()
L = P.lookback_ms


def _st(tid, t, user, usd, network="ETH", to_user=None):
    tr = transfer(tid, t, user, X, usd=usd, to_user=to_user)._replace(network=network)
    return ScoredTransfer(FeaturedTransfer(tr, t, {}), t, 0.3, "rules")


def _hold(tid, t, user, usd):
    return Hold(f"h-{tid}", tid, user, X, "ETH", f"{usd / 2000:.6f}", usd, t, t + 24 * HOUR,
                0.8, ["risk_score=0.80"])


def _res(tid, t, user, usd, resolution):
    return HoldResolution(f"h-{tid}", tid, resolution, t, "why", user, X, usd)


def _listing(t):
    return BlacklistUpdate(X, "ETH", "ADD", t, "vendor_q", None)


def _feed(m, events, s=None):
    """Events in the order given, as the stream face delivers them."""
    s = m.new_state(X) if s is None else s
    for ev in events:
        s, _ = step(m, X, s, ev)
    return s


def _fates(c):
    return [(x["transfer_id"], x["sender"], x["usd_value"], x["fate"])
            for x in map(json.loads, c.transfers)]


def _totals(c):
    return (c.victims, c.usd_sent, c.usd_lost, c.usd_refunded, c.usd_held)


# t0 falls out of the lookback; tE is exactly a lookback older than the case's last event
# (in it: the lookback includes its first instant, as the digest and the plain reading
# both say); t2's resolution is delivered before its hold (a resolution is final whatever
# the arrival order)
T_END = at(hours=3) + L


def _history():
    return [
        _st("t0", at(0), "old", 10.0),
        _st("tE", at(hours=3), "edge", 20.0),
        _listing(at(0) + L // 2),
        _st("t1", at(hours=1) + L, "alice", 100.0),
        _st("t2", at(hours=2) + L, "bob", 200.0),
        _res("t2", at(hours=2, minutes=30) + L, "bob", 200.0, "REFUNDED"),
        _hold("t2", at(hours=2) + L, "bob", 200.0),
        _st("t3", T_END, "alice", 50.0),
        _hold("t3", T_END, "alice", 50.0),
    ]


EXPECTED = [("tE", "edge", 20.0, "LOST"), ("t1", "alice", 100.0, "LOST"),
            ("t2", "bob", 200.0, "REFUNDED"), ("t3", "alice", 50.0, "HELD")]
# victims: edge, alice, bob; lost = LOST + RELEASED; refunded; still held
EXPECTED_TOTALS = (3, 370.0, 120.0, 200.0, 50.0)


@pytest.mark.parametrize("twice", [None, "t1", "t3"])
def test_the_file_of_the_lookback_with_a_transfer_delivered_twice_or_not(twice):
    """A transfer delivered twice is listed and counted once (rule 8): the file is the same,
    item for item and total for total, as with one delivery."""
    m = CaseBook(P)
    events = _history()
    if twice:
        events.append(next(e for e in events if type(e) is ScoredTransfer
                           and e.featured.transfer.transfer_id == twice))
    s = _feed(m, events)
    c = m.case_file(s)
    assert _fates(c) == EXPECTED
    assert _totals(c) == EXPECTED_TOTALS
    assert c.transfers_omitted == 0


@pytest.mark.parametrize("twice", [False, True])
def test_a_capped_transfer_list_keeps_the_earliest_and_counts_the_rest(twice):
    m = CaseBook(dataclasses.replace(P, case_max_items=2))
    events = _history() + ([_st("t2", at(hours=2) + L, "bob", 200.0)] if twice else [])
    c = m.case_file(_feed(m, events))
    assert _fates(c) == EXPECTED[:2]
    assert c.transfers_omitted == 2  # t2 and t3; t0 is out of the lookback, not omitted
    assert _totals(c) == EXPECTED_TOTALS  # the totals count every transfer of the lookback


def test_a_file_issued_again_reads_what_changed_since_the_last_one():
    """The same case, its file issued after every event: each file is the lookback as it
    is then (the digest kept between files must follow the logs)."""
    m = CaseBook(P)
    s = m.new_state(X)
    files = []
    for ev in _history():
        s, _ = step(m, X, s, ev)
        files.append(m.case_file(s))
    assert _fates(files[1]) == [("t0", "old", 10.0, "LOST"), ("tE", "edge", 20.0, "LOST")]
    # t1 moves the lookback past t0
    assert _fates(files[3]) == [("tE", "edge", 20.0, "LOST"), ("t1", "alice", 100.0, "LOST")]
    assert files[3].victims == 2
    # t2 refunded (delivered before its hold); the hold does not take it back
    assert _fates(files[5])[-1] == ("t2", "bob", 200.0, "REFUNDED")
    assert _fates(files[6])[-1] == ("t2", "bob", 200.0, "REFUNDED")
    assert _fates(files[-1]) == EXPECTED and _totals(files[-1]) == EXPECTED_TOTALS
    # the lookback moves on twice, one transfer out each time
    s, _ = step(m, X, s, _st("t4", at(hours=4) + L, "carol", 1.0))  # tE out
    c = m.case_file(s)
    assert [x[0] for x in _fates(c)] == ["t1", "t2", "t3", "t4"]
    assert _totals(c) == (3, 351.0, 101.0, 200.0, 50.0)
    s, _ = step(m, X, s, _st("t5", at(hours=1, minutes=30) + 2 * L, "dan", 2.0))  # t1 out
    c = m.case_file(s)
    assert [x[0] for x in _fates(c)] == ["t2", "t3", "t4", "t5"]
    assert _totals(c) == (4, 253.0, 3.0, 200.0, 50.0)
    assert c.transfers_omitted == 0


def test_late_deliveries_after_a_file_count_by_their_own_time():
    """After a file was issued: a hold on the transfer exactly a lookback old is counted
    as held; a transfer older than the lookback is neither listed nor counted."""
    m = CaseBook(P)
    s = _feed(m, _history())
    assert _totals(m.case_file(s)) == EXPECTED_TOTALS
    s, _ = step(m, X, s, _hold("tE", at(hours=3), "edge", 20.0))
    c = m.case_file(s)
    assert _fates(c)[0] == ("tE", "edge", 20.0, "HELD")
    assert _totals(c) == (3, 370.0, 100.0, 200.0, 70.0)
    s, _ = step(m, X, s, _st("t-late", at(hours=1), "late", 5.0))
    c = m.case_file(s)
    assert [x[0] for x in _fates(c)] == ["tE", "t1", "t2", "t3"]
    assert _totals(c) == (3, 370.0, 100.0, 200.0, 70.0)
    assert c.transfers_omitted == 0


def test_a_state_the_shell_keeps_after_it_emptied_starts_a_new_case():
    """``is_empty`` lets a shell clear an idle key's state; a shell that keeps the same
    object instead gets a new case from it, with nothing of the old one."""
    m = CaseBook(P)
    s = _feed(m, [_listing(at(0)), _st("a1", at(1), "ann", 10.0)])
    assert _fates(m.case_file(s)) == [("a1", "ann", 10.0, "LOST")]
    m.advance(s, at(1) + L)
    assert m.is_empty(s)
    for ev in (_listing(at(2) + L), _st("b1", at(3) + L, "ben", 30.0),
               _st("b2", at(4) + L, "cat", 40.0)):
        m.on_event(s, ev, ev.event_time)
    c = m.case_file(s)
    assert _fates(c) == [("b1", "ben", 30.0, "LOST"), ("b2", "cat", 40.0, "LOST")]
    assert _totals(c) == (2, 70.0, 70.0, 0.0, 0.0)


# ------------------------------------------------------------------------ the trimming
def test_a_busy_case_trims_its_logs_when_they_double_and_keeps_the_lookback():
    """The transfer log is cut to the lookback's transfers (and the fates log to theirs)
    when it holds at least twice what it kept at its last trim (at least 64), by the
    event that finds it so: memory follows the lookback, at O(1) per event amortised."""
    p = dataclasses.replace(P, lookback_ms=10 * HOUR)
    m = CaseBook(p)
    s = _feed(m, [_listing(at(0))])
    hours = [at(hours=h) for h in range(129)]  # one held transfer an hour (hold first)
    for i, t in enumerate(hours[:128]):
        s = _feed(m, [_hold(f"h{i}", t, f"u{i % 7}", 1.0), _st(f"h{i}", t, f"u{i % 7}", 1.0)],
                  s)
    assert len(s.sent) == 128 and len(s.fates) == 128  # not trimmed yet
    c = m.case_file(s)
    assert [x[0] for x in _fates(c)] == [f"h{i}" for i in range(117, 128)]
    # the next event finds 128 logged: both logs cut to the lookback of its time (hour 118)
    s = _feed(m, [_hold("h128", hours[128], "u2", 1.0)], s)
    assert [x[1] for x in s.sent.items()] == [f"h{i}" for i in range(118, 128)]
    assert [f[0] for f in s.fates.items()] == [f"h{i}" for i in range(118, 129)]
    s = _feed(m, [_st("h128", hours[128], "u2", 1.0)], s)
    c = m.case_file(s)
    assert _fates(c) == [(f"h{i}", f"u{i % 7}", 1.0, "HELD") for i in range(118, 129)]
    # then 117 transfers a minute apart: the 118th finds 128 logged again (2 x 64), the
    # oldest kept (hour 118) now older than the lookback (from hour 119 + 58 minutes): cut
    base = hours[128]
    for j in range(1, 118):
        s = _feed(m, [_st(f"m{j}", base + j * MINUTE, "v", 1.0)], s)
    assert len(s.sent) == 128
    s = _feed(m, [_st("m118", base + 118 * MINUTE, "v", 1.0)], s)
    kept = [f"h{i}" for i in range(120, 129)] + [f"m{j}" for j in range(1, 119)]
    assert [x[1] for x in s.sent.items()] == kept
    assert [f[0] for f in s.fates.items()] == [f"h{i}" for i in range(120, 129)]
    c = m.case_file(s)
    # senders: u0..u6 (hours 120-128) and v; all 127 kept are in the lookback
    assert (c.victims, c.usd_sent, c.usd_held, c.usd_lost) == (8, 127.0, 9.0, 118.0)
    assert c.transfers_omitted == 127 - P.case_max_items


def test_a_trim_that_keeps_nothing_leaves_an_empty_log():
    p = dataclasses.replace(P, lookback_ms=10 * HOUR)
    m = CaseBook(p)
    s = _feed(m, [_listing(at(0))] + [_st(f"h{i}", at(minutes=i), "u", 1.0)
                                      for i in range(128)])
    # hour 9: 128 logged but none older than the lookback; 12:30: all of them are
    s = _feed(m, [_listing(at(hours=9))], s)
    assert len(s.sent) == 128
    s = _feed(m, [_listing(at(minutes=30, hours=12))], s)
    assert len(s.sent) == 0 and s.oldest is None
    c = m.case_file(s)
    assert (c.transfers, c.victims, c.usd_sent) == ([], 0, 0.0)
    s = _feed(m, [_st("n1", at(hours=13), "w", 4.0)], s)
    assert _fates(m.case_file(s)) == [("n1", "w", 4.0, "LOST")]


# --------------------------------------------------------------------- the capped lists
@pytest.mark.parametrize("cap", [2, 3])
def test_a_capped_list_keeps_the_earliest_keys_in_any_arrival_order_and_counts_the_rest(cap):
    made = []

    def item(k):
        def make():
            made.append(k)
            return {"k": k}
        return make

    for order in ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [3, 5, 1, 4, 2], [4, 2, 5, 1, 3]):
        c = _Capped()
        for k in order:
            c.add((k,), item(k), cap)
        assert [json.loads(x)["k"] for x in c.texts()] == list(range(1, cap + 1)), order
        assert c.omitted == len(order) - cap, order
    # an item that sorts after a full list is never built; one that sorts before is
    made.clear()
    c = _Capped()
    for k in list(range(1, cap + 1)) + [cap + 5, cap + 1, 0]:
        c.add((k,), item(k), cap)
    assert made == list(range(1, cap + 1)) + [0]
    assert c.omitted == 3
    # an equal key arriving at a full list is left out, unbuilt
    made.clear()
    c = _Capped()
    for k in range(1, cap + 1):
        c.add((k,), item(k), cap)
    c.add((cap,), item("again"), cap)
    assert made == list(range(1, cap + 1)) and c.omitted == 1
    # a cap of 0 keeps nothing and counts everything
    c = _Capped()
    for k in (3, 1):
        c.add((k,), item(k), 0)
    assert c.texts() == [] and c.omitted == 2


def test_items_are_compact_json_with_sorted_keys():
    """Two files with the same content are the same text (the faces and the reference are
    compared as records): compact JSON, keys in order."""
    m = CaseBook(P)
    s = _feed(m, [_listing(at(0)), _st("a1", at(1), "ann", 10.0)])
    c = m.case_file(s)
    assert c.blacklist == ['{"action":"ADD","at":%d,"reason":null,"source":"vendor_q"}'
                           % at(0)]
    assert c.transfers == ['{"amount":"0.005000","asset":"ETH","at":%d,"fate":"LOST",'
                           '"sender":"ann","transfer_id":"a1","usd_value":10.0}' % at(1)]


# ------------------------------------------------------------------ keys and the header
def test_events_without_an_address_have_the_empty_key_and_outreach_without_one_is_ignored():
    assess = Outreach("o1", "amy", "RISK_ASSESSMENT", "APP", at(0), None, None, [], None)
    res = HoldResolution("h1", "t1", "RELEASED", at(0), "deadline", "amy", None, 5.0)
    fr = Freeze("fz", None, None, at(0), 0.9, [], [])
    assert case_key(assess) == case_key(res) == case_key(fr) == ""
    assert not about_an_address(assess)
    assert about_an_address(res) and about_an_address(fr)
    m = CaseBook(P)
    s = m.new_state("")
    assert m.on_event(s, assess, at(0)) == [] and m.is_empty(s)
    assert s.timeline.texts() == [] and s.n_events == 0


def test_the_network_and_owner_come_from_the_first_transfer_that_names_them():
    m = CaseBook(P)
    s = _feed(m, [_listing(at(0))._replace(network=None),
                  _st("a1", at(1), "ann", 1.0, network="TRX", to_user="mallory"),
                  _st("a2", at(2), "ben", 1.0, network="ETH", to_user="someone")])
    c = m.case_file(s)
    assert (c.network, c.user_id) == ("TRX", "mallory")


def test_a_case_no_event_names_a_network_or_owner_of_has_none():
    m = CaseBook(P)
    s = _feed(m, [Freeze("fz", X, None, at(0), 0.9, ["r1"], ["verdict=SCAM"])])
    c = m.case_file(s)
    assert (c.network, c.user_id) == (None, None)
    s = _feed(m, [_listing(at(0))])  # a list entry names no one behind the address
    assert m.case_file(s).user_id is None


def test_the_logs_are_named_as_the_step_declares_them():
    """The stream face keeps each log in the state named in ``CaseBook.LOGS``."""
    s = CaseBook(P).new_state(X)
    assert (s.sent.name, s.fates.name) == CaseBook.LOGS


def test_a_trim_rewrites_the_logs_under_a_file_already_issued():
    """A file issued early, then the log trimmed and grown back past what the file had
    read: the next file reads the trimmed log afresh. And a case never issued trims too."""
    p = dataclasses.replace(P, lookback_ms=10 * HOUR)
    m = CaseBook(p)
    s = _feed(m, [_st(f"h{i}", at(hours=i), "u", 1.0) for i in range(5)])
    assert len(m.case_file(s).transfers) == 5
    s = _feed(m, [_st(f"h{i}", at(hours=i), "u", 1.0) for i in range(5, 129)], s)
    assert len(s.sent) == 11  # cut at the 129th transfer to hours 118-127, then 128
    assert [x[0] for x in _fates(m.case_file(s))] == [f"h{i}" for i in range(118, 129)]
    fresh = CaseBook(p)
    s = _feed(fresh, [_st(f"h{i}", at(hours=i), "u", 1.0) for i in range(129)])
    assert [x[1] for x in s.sent.items()] == [f"h{i}" for i in range(118, 129)]


def test_a_late_delivery_does_not_move_the_case_expiry_back():
    """The stream face may deliver a hold after a later transfer. The case lives a lookback
    after its latest event whatever the arrival order: a transfer a lookback after the
    first one (but within a lookback of the second) still finds the second in the file."""
    t2, t3 = at(days=1), at(days=3)
    a, b = _st("a", t2, "u1", 100.0), _st("b", t3, "u2", 200.0)
    c = _st("c", t2 + L + HOUR, "u3", 300.0)
    in_order = _feed(CaseBook(P), [a, _hold("a", t2, "u1", 100.0), b, c])
    late_hold = _feed(CaseBook(P), [a, b, _hold("a", t2, "u1", 100.0), c])
    ids = [{x[0] for x in _fates(CaseBook(P).case_file(s))} for s in (in_order, late_hold)]
    assert "b" in ids[0] and "c" in ids[0]
    assert ids[1] == ids[0]
