"""Event-time behaviour on the streaming face (TestStream on BundleBasedDirectRunner).

The 24h hold is tested in event time: the watermark, not a wall clock, releases it.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream

from core.policy import DAY, Policy
from schemas.codecs import write_records
from tests import scenario
from tests.scenario import addr, at, collect, listing, outcome, transfer

SCAM = addr("scam-collector")


@pytest.fixture
def policy(tmp_path) -> Policy:
    snap = tmp_path / "snapshot.avro"
    write_records(snap, "BlacklistUpdate", [listing(SCAM, at(days=-1), source="ofac_sdn")],
                  "avro")
    return Policy(use_models=False, blacklist_paths=(str(snap),))


def schedule(steps) -> TestStream:
    """A TestStream from ("at", t) watermark moves and lists of events, in arrival order."""
    ts = TestStream()
    for s in steps:
        if isinstance(s, tuple) and s[0] == "at":
            ts.advance_watermark_to(s[1] / 1000.0)
        else:
            ts.add_elements([beam.window.TimestampedValue(e, e.event_time / 1000.0) for e in s])
    return ts.advance_watermark_to_infinity()


def run_stream(steps, policy, monkeypatch):
    monkeypatch.setattr(scenario, "test_stream", lambda events: schedule(steps))
    events = [e for s in steps if not (isinstance(s, tuple) and s[0] == "at") for e in s]
    return collect(events, policy, "stream"), events


@pytest.mark.parametrize("ordering", ["arrival", "event_time"])
def test_holds_resolve_in_event_time_with_late_and_out_of_order_data(policy, monkeypatch,
                                                                     ordering):
    policy = dataclasses.replace(policy, stream_ordering=ordering)
    other = addr("other-scam")
    steps = [
        [transfer("t1", at(0), "alice", SCAM)],  # released at exactly +24h
        [listing(other, at(10)), transfer("t2", at(20), "bob", other)],
        ("at", at(hours=2)),
        # Late: event time +1h arrives after the watermark passed +2h.
        [transfer("t3", at(hours=1), "carol", SCAM)],
        # The case outcome confirming t2 comes before t2's deadline: a refund, no release.
        [outcome("c2", at(hours=5), "TRANSFER", "t2")],
        ("at", at(hours=23, minutes=59)),
        ("at", at(hours=30)),
    ]
    out, events = run_stream(steps, policy, monkeypatch)
    res = {r.transfer_id: (r.resolution, r.resolved_at) for r in out["resolutions"]}
    assert res == {
        "t1": ("RELEASED", at(hours=24)),
        "t2": ("REFUNDED", at(hours=5)),
        "t3": ("RELEASED", at(hours=25)),
    }
    assert len(out["resolutions"]) == 3  # exactly one resolution per hold
    # The batch face decides the same on the same events.
    assert collect(events, policy, "batch") == out


def test_idle_state_is_cleared_by_its_expiry_timer(policy, monkeypatch):
    """A payee is remembered for ``payee_memory``; past it the user's state is cleared,
    so a look-alike of the forgotten payee is no longer recognised (nor held)."""
    p = dataclasses.replace(policy, payee_memory_ms=2 * DAY)
    genuine = "0xabc" + "1" * 33 + "9f3e"
    fake = "0xabc" + "7" * 33 + "9f3e"
    steps = [
        [transfer("g1", at(0), "alice", genuine)],
        ("at", at(hours=1)),
        [transfer("x1", at(days=1), "alice", fake)],  # within memory: held
        ("at", at(days=1, hours=1)),
        ("at", at(days=4)),  # alice idle for 3 days > 2: her state expires
        [transfer("x2", at(days=4, hours=1), "alice", fake)],
    ]
    out, _ = run_stream(steps, p, monkeypatch)
    assert sorted(h.transfer_id for h in out["holds"]) == ["x1"]
