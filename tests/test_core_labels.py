"""LabelJoin (core/labels.py) at the edges the graph-level tests do not reach: a record
delivered twice (in the head and in the far log), a case outcome naming a record in the
head, the cap on waiting records, the split between the head and the far log (every
record whose horizon ends by ``edge`` in the head, the later ones in the log) and the
deadline the shell's timer is set to.

Machine-level, no Beam: each test feeds a :class:`LabelJoin` directly."""

from __future__ import annotations

import dataclasses

from core.events import AddressFact, Example, FeaturedTransfer
from core.labels import EXAMPLES, FAR, LabelJoin
from core.machine import METRIC, Log
from core.policy import DAY, HOUR, Policy
from tests.kit import run_checked
from tests.scenario import addr, at, transfer

X = addr("label-core")
P = Policy()
H = P.label_horizon_ms
NEAR = P.label_near_ms


def _ft(tid, t, user="u1"):
    return FeaturedTransfer(transfer(tid, t, user, X), t, {"f": 1.0})


def _fact(t, subject_type, subject_id, is_scam=True, cid="c1"):
    return AddressFact(X, t, is_scam, cid, subject_type, subject_id)


def _check(m, s):
    """The split the docstring states: the head holds the records whose horizon ends by
    ``edge``, the far log the later ones; ``far_first`` / ``far_last_t`` are the far log's
    earliest deadline and latest event time; the timer is set to the earliest deadline."""
    far = s.far.items()
    if s.near:
        assert s.edge is not None
        assert all(w[0] <= s.edge for w in s.near.values())
    if s.edge is not None:
        assert all(r[0] > s.edge for r in far)
    assert s.far_first == min((r[0] for r in far), default=None)
    assert s.far_last_t == max((r[3] for r in far), default=None)
    ds = [w[0] for w in s.near.values()] + [r[0] for r in far]
    if s.confirmed_at is not None:
        ds.append(s.confirmed_at + m.confirmed_ms())
    assert m.next_deadline(s) == min(ds, default=None)
    assert s.far.name in LabelJoin.LOGS


def _run(m, events, until=None, s=None):
    """Events in the order given (as the stream face delivers them), the state checked
    after each; then the timers up to ``until`` (``tests.kit.run_checked``)."""
    return run_checked(m, X, events, lambda s, now: _check(m, s), until, s)


def _examples(out):
    return [(t, e.subject_id, e.y, e.scored_at) for g, t, e in out if g == EXAMPLES]


def test_a_state_names_its_log_as_the_machine_lists_it():
    s = LabelJoin(P).new_state(X)
    assert isinstance(s.far, Log) and s.far.name == FAR and FAR in LabelJoin.LOGS


def test_a_transfer_delivered_twice_while_it_waits_in_the_far_log_leaves_once():
    # rule 8: the second delivery (with the first one's time, the far log's latest) changes
    # nothing: one example, and it takes no second place under the cap
    m = LabelJoin(dataclasses.replace(P, label_max_waiting=2))
    t0 = at(0)
    s, out = _run(m, [_ft("t1", t0), _ft("t1", t0)])
    assert len(s.far) == 1
    s, out2 = _run(m, [_ft("t2", t0 + 5)], until=t0 + 2 * H, s=s)
    assert _examples(out + out2) == [(t0 + H, "T:t1", False, t0),
                                     (t0 + H + 5, "T:t2", False, t0 + 5)]
    assert not [v for g, _t, v in out + out2 if g == METRIC]


def test_a_transfer_delivered_twice_among_others_in_the_far_log_leaves_once():
    m = LabelJoin(dataclasses.replace(P, label_max_waiting=3))
    t0 = at(0)
    events = [_ft("t1", t0), _ft("t2", t0 + 5), _ft("t1", t0), _ft("t2", t0 + 5),
              _ft("t3", t0 + 6)]
    _s, out = _run(m, events, until=t0 + 2 * H)
    assert _examples(out) == [(t0 + H, "T:t1", False, t0), (t0 + H + 5, "T:t2", False, t0 + 5),
                              (t0 + H + 6, "T:t3", False, t0 + 6)]
    assert not [v for g, _t, v in out if g == METRIC]


def test_a_transfer_delivered_twice_while_it_waits_in_the_head_leaves_once():
    m = LabelJoin(P)
    t0 = at(0)
    later = t0 + H - NEAR // 2  # t1's horizon ends within label_near_ms: in the head
    s, out = _run(m, [_ft("t1", t0), _ft("t2", later)])
    assert "T:t1" in s.near
    s, out2 = _run(m, [_ft("t1", t0)], until=t0 + 3 * H, s=s)
    assert _examples(out + out2) == [(t0 + H, "T:t1", False, t0),
                                     (later + H, "T:t2", False, later)]


def test_a_case_outcome_on_a_transfer_waiting_in_the_head_labels_it_at_once():
    m = LabelJoin(P)
    t0 = at(0)
    later = t0 + H - NEAR // 2
    s, _ = _run(m, [_ft("t1", t0), _ft("t2", later)])
    assert "T:t1" in s.near and len(s.far) == 1  # t2 waits in the far log
    # cleared (not a scam): only t1 is labelled, the address's other records wait on
    s, out = _run(m, [_fact(later + 10, "TRANSFER", "t1", is_scam=False)], until=later + 3 * H,
                  s=s)
    assert _examples(out) == [(later + 10, "T:t1", False, t0),
                              (later + H, "T:t2", False, later)]


def test_a_case_outcome_on_a_transfer_in_the_far_log_labels_it_and_keeps_the_others():
    m = LabelJoin(P)
    t0 = at(0)
    events = [_ft("t1", t0), _ft("t2", t0 + HOUR), _ft("t3", t0 + 2 * HOUR),
              _fact(t0 + 3 * HOUR, "TRANSFER", "t3", is_scam=False),
              _ft("t2", t0 + HOUR)]  # t2 re-delivered after the log was rewritten
    _s, out = _run(m, events, until=t0 + 3 * H)
    assert _examples(out) == [(t0 + 3 * HOUR, "T:t3", False, t0 + 2 * HOUR),
                              (t0 + H, "T:t1", False, t0),
                              (t0 + H + HOUR, "T:t2", False, t0 + HOUR)]


def test_the_head_takes_the_records_whose_horizon_ends_exactly_at_its_edge():
    m = LabelJoin(P)
    t0 = at(0)
    look = t0 + H - NEAR  # the edge becomes look + NEAR = t1's deadline exactly
    s, _ = _run(m, [_ft("t1", t0), _ft("t2", look)])
    assert s.edge == t0 + H and "T:t1" in s.near


def test_a_new_record_due_by_the_edge_goes_straight_to_the_head():
    # label_near_ms longer than the horizon: a record arriving after the edge was set is
    # due by it, and waits in the head (even exactly at the edge)
    p = dataclasses.replace(P, label_near_ms=H + DAY)
    m = LabelJoin(p)
    t0 = at(0)
    events = [_ft("t1", t0), _ft("t2", t0 + HOUR), _ft("t3", t0 + DAY)]
    s, out = _run(m, events)
    assert s.edge == t0 + HOUR + H + DAY
    assert sorted(s.near) == ["T:t1", "T:t2", "T:t3"] and not len(s.far)
    # t4's horizon ends exactly at the edge
    s, out2 = _run(m, [_ft("t4", t0 + HOUR + DAY)], s=s)
    assert "T:t4" in s.near and not len(s.far)
    s, out3 = _run(m, [], until=t0 + 3 * H, s=s)
    out2 += out3
    assert _examples(out + out2) == [
        (t0 + H, "T:t1", False, t0), (t0 + H + HOUR, "T:t2", False, t0 + HOUR),
        (t0 + H + DAY, "T:t3", False, t0 + DAY),
        (t0 + H + HOUR + DAY, "T:t4", False, t0 + HOUR + DAY)]


def test_the_cap_on_waiting_records_counts_the_head_and_the_far_log():
    p = dataclasses.replace(P, label_max_waiting=2)
    m = LabelJoin(p)
    t0 = at(0)
    later = t0 + H - NEAR // 2
    events = [_ft("t1", t0), _ft("t2", later), _ft("t3", later + 1)]
    s, out = _run(m, events, until=later + 3 * H)
    assert [(g, t, v) for g, t, v in out if g == METRIC] == [
        (METRIC, later + 1, ("label_records_dropped", 1))]
    assert [e[1] for e in _examples(out)] == ["T:t1", "T:t2"]


def test_the_cap_is_reached_at_exactly_label_max_waiting():
    p = dataclasses.replace(P, label_max_waiting=2)
    m = LabelJoin(p)
    t0 = at(0)
    events = [_ft("t1", t0), _ft("t2", t0 + 1), _ft("t3", t0 + 2)]
    _s, out = _run(m, events, until=t0 + 3 * H)
    assert [v for g, _t, v in out if g == METRIC] == [("label_records_dropped", 1)]
    assert [e[1] for e in _examples(out)] == ["T:t1", "T:t2"]


def test_example_fields_on_a_case_outcome():
    m = LabelJoin(P)
    t0 = at(0)
    _s, out = _run(m, [_ft("t1", t0), _fact(t0 + HOUR, "TRANSFER", "t1")])
    (ex,) = [e for g, _t, e in out if g == EXAMPLES]
    assert ex == Example("transfer_risk", t0 + HOUR, "T:t1", {"f": 1.0}, True, t0, 1)


def test_a_busy_address_labels_each_record_once_at_its_horizon_in_deadline_order():
    """300 payments into one address within a day (a day of them in the head at once),
    20 of them cleared by a case outcome first; the state saved and loaded every 13
    events. Each record leaves once: cleared at its outcome, else negative at its
    horizon, in (time, subject) order, as the definition says."""
    import pickle
    import random

    from core.machine import END_OF_TIME

    rnd = random.Random(5)
    times = sorted(rnd.sample(range(at(0), at(0) + DAY), 300))
    pays = [_ft(f"t{i:03d}", t) for i, t in enumerate(times)]
    cleared = {f"t{i:03d}": times[i] + rnd.randrange(1, H) for i in rnd.sample(range(300), 20)}
    facts = [_fact(t, "TRANSFER", tid, is_scam=False, cid=f"c{tid}")
             for tid, t in cleared.items()]
    events = sorted(pays + facts, key=lambda e: e.event_time)
    want = sorted((cleared.get(p.transfer.transfer_id, p.event_time + H),
                   f"T:{p.transfer.transfer_id}") for p in pays)
    m, s, out = LabelJoin(P), None, []
    for i in range(0, len(events), 13):
        if s is not None:
            s = pickle.loads(pickle.dumps(s))
        s, more = _run(m, events[i:i + 13], s=s)
        out += more
    s, more = _run(m, [], until=END_OF_TIME, s=s)
    out += more
    got = [(t, sid) for t, sid, y, _ in _examples(out)]
    assert got == want
    assert not any(y for _, _, y, _ in _examples(out))
