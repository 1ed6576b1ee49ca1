"""The keyed steps as pure state machines, without a pipeline: expiry and ordering."""

from __future__ import annotations

from core.actions import Actions
from core.events import (
    AddressFact,
    FeaturedReport,
    FeaturedTransfer,
    OutreachRequest,
    ReportIn,
    ScoredTransfer,
)
from core.labels import LabelJoin
from core.ledger import Ledger
from core.machine import run_history, step
from core.outreach import OutreachStep
from core.policy import DAY, Policy
from core.profiles import CounterpartyProfile, SenderProfile
from schemas.blacklist import BlacklistSnapshot
from tests.scenario import addr, at, listing, outcome, report, transfer

P = Policy(use_models=False)
DEST = addr("somewhere")


def _expires(machine, key, events):
    """Feed events, then jump past every deadline: the state must end empty. A deadline
    that does not move after it fired is a bug, not a reason to wait forever: at most 50
    deadlines, and each must be later than the one before."""
    state = machine.new_state(key)
    for ev in events:
        state, _ = step(machine, key, state, ev)
    assert not machine.is_empty(state)
    d = machine.next_deadline(state)
    for _ in range(50):
        if d is None:
            break
        machine.advance(state, d)
        if machine.is_empty(state):
            break
        nxt = machine.next_deadline(state)
        assert nxt is None or nxt > d, f"deadline {d} fired and is still due"
        d = nxt
    return machine.is_empty(state)


def _featured(tid, t, user="u1"):
    return FeaturedTransfer(transfer(tid, t, user, DEST), t, {"x": 1.0})


def test_every_keyed_state_expires_when_idle():
    tr = transfer("t1", at(0), "u1", DEST)
    ft = _featured("t1", at(0))
    rep = ReportIn(report("r1", at(1), "u1", suspect=DEST), at(1), DEST)
    assert _expires(Ledger(P), "T:t1", [tr])
    assert _expires(SenderProfile(P, lambda u: None), "u1", [tr, rep])
    assert _expires(CounterpartyProfile(P, BlacklistSnapshot({})), DEST, [ft])
    assert _expires(LabelJoin(P), DEST, [ft])
    assert _expires(Actions(P), DEST, [ScoredTransfer(ft, at(0), 0.99, "rules")])
    req = OutreachRequest("u1", at(0), "WARNING", "APP", "t1", DEST)
    assert _expires(OutreachStep(P, lambda u: None), "u1", [req])


def test_deadlines_fire_before_events_at_the_same_time():
    """A hold expiring at t is released before a confirmation at t can refund it."""
    ft = _featured("t1", at(0))
    events = [ScoredTransfer(ft, at(0), 0.99, "rules"),
              AddressFact(DEST, at(0) + P.hold_ms, True, "c1", "ADDRESS", DEST)]
    out = run_history(Actions(P), DEST, events)
    res = [v for tag, _, v in out if tag == "resolutions"]
    assert [(r.resolution, r.resolved_at) for r in res] == [("RELEASED", at(0) + P.hold_ms)]


def test_label_horizon_makes_unconfirmed_examples_negative():
    out = run_history(LabelJoin(P), DEST, [_featured("t1", at(0))])
    (ex,) = [v for tag, _, v in out if tag == "examples"]
    assert (ex.y, ex.event_time) == (False, at(0) + P.label_horizon_ms)


def test_each_horizon_negative_fires_at_its_own_deadline_whatever_the_arrival_order():
    """The stream face feeds events in arrival order: a later transfer may come first, and
    an outcome may take the earliest waiting one away. Every other example still leaves
    as a negative exactly at its own horizon, not before and not late."""
    h = P.label_horizon_ms
    lj, state = LabelJoin(P), LabelJoin(P).new_state(DEST)
    arrivals = [_featured("late", at(30)), _featured("early", at(10)),
                _featured("gone", at(5)), _featured("mid", at(20))]
    for ev in arrivals:
        state, _ = step(lj, DEST, state, ev)
    cleared = AddressFact(DEST, at(25), False, "c9", "TRANSFER", "gone")
    state, out = step(lj, DEST, state, cleared)
    assert [(v.subject_id, v.y) for _, _, v in out] == [("T:gone", False)]
    fired = []
    for t in (at(10) + h - 1, at(10) + h, at(20) + h, at(30) + h - 1, at(30) + h):
        fired.append((t, [(v.subject_id, v.event_time) for _, _, v in lj.advance(state, t)]))
    assert fired == [
        (at(10) + h - 1, []),
        (at(10) + h, [("T:early", at(10) + h)]),
        (at(20) + h, [("T:mid", at(20) + h)]),
        (at(30) + h - 1, []),
        (at(30) + h, [("T:late", at(30) + h)]),
    ]
    assert lj.is_empty(state)


def test_confirmed_address_labels_waiting_examples_positive_at_confirmation():
    fr = FeaturedReport(ReportIn(report("r1", at(1), "u2", suspect=DEST), at(1), DEST),
                        at(1), {"y": 1.0})
    events = [_featured("t1", at(0)), fr,
              AddressFact(DEST, at(hours=5), True, "c1", "ADDRESS", DEST)]
    out = run_history(LabelJoin(P), DEST, events)
    ex = sorted((v.subject_id, v.y, v.event_time) for tag, _, v in out if tag == "examples")
    assert ex == [("R:r1", True, at(hours=5)), ("T:t1", True, at(hours=5))]


def test_kind_order_at_equal_time_is_list_outcome_report_transfer():
    events = [transfer("t", at(0), "u", DEST), report("r", at(0), "u", suspect=DEST),
              outcome("c", at(0), "ADDRESS", DEST), listing(DEST, at(0))]
    from core.events import sort_key

    kinds = [type(e).__name__ for e in sorted(events, key=sort_key)]
    assert kinds == ["BlacklistUpdate", "CaseOutcome", "ScamReport", "Transfer"]


def test_sender_forgets_payees_after_payee_memory():
    m = SenderProfile(P, lambda u: None)
    genuine = "0xabc" + "1" * 33 + "9f3e"
    fake = "0xabc" + "7" * 33 + "9f3e"
    out = run_history(m, "u", [transfer("g", at(0), "u", genuine),
                               transfer("x", at(0) + P.payee_memory_ms + DAY, "u", fake)])
    assert [v.lookalike_of for _, _, v in out] == [None, None]


# ------------------------------------------------------------------ the core and the shell
KEYED_STEPS = ("machine", "events", "ledger", "profiles", "labels", "learner", "scorer",
               "actions", "outreach", "casefiles", "assessments", "capacity", "lookalike",
               "models", "policy", "graph", "reference")


def test_the_machines_run_without_beam():
    # the core, every step's logic, the graph and the reference import no Beam: they run
    # (and are tested) in plain Python; only transforms.faces and the composites know Beam
    import subprocess
    import sys

    code = ("import sys\n"
            + "".join(f"import core.{m}\n" for m in KEYED_STEPS)
            + "print(sorted({k.split('.')[0] for k in sys.modules} & {'apache_beam'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_a_machine_must_say_how_a_key_starts_and_takes_an_event():
    import pytest

    from core.machine import Machine

    class NoHooks(Machine):
        pass

    with pytest.raises(TypeError, match="new_state"):
        NoHooks()
