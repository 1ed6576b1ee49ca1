"""A busy key decides the same in both faces, and its state per event does not grow.

One address receives 240 transfers over 48 days (beyond the 30-day lookback, so its logs
are trimmed), with holds released and refunded, reports, a case outcome that freezes it
(losses, silent sufferers) and transfers after the freeze. Actions, LabelJoin and
CaseBook each run it through the stream face (``RunMachine`` mode "stream": a TestStream
on the BundleBasedDirectRunner, head + bag states) and the batch face (FnApiRunner), and
both must give exactly the outputs of the pure machine (``run_history``).
"""

from __future__ import annotations

import hashlib
import pickle
import tempfile
import uuid
from pathlib import Path

import apache_beam as beam
import pytest

from core.actions import FREEZES, HOLDS, LOSSES, REQUESTS, RESOLUTIONS, Actions
from core.casefiles import CASES, CaseBook, case_key
from core.events import AddressFact
from core.graph import address_of
from core.labels import EXAMPLES, LabelJoin
from core.machine import run_history
from tests.kit import Bag, Cell, P, scored, scored_report
from tests.scenario import addr, at, pipeline
from transforms.faces import KeyStore, RunMachine

BUSY = addr("stream-state-busy")
N = 240
ACTION_TAGS = (RESOLUTIONS, FREEZES, REQUESTS, LOSSES)


def _busy_events() -> list:
    """Actions' inputs for the busy address, in time order."""
    ev = []
    for i in range(N):
        t = at(hours=i * 4.8)
        ev.append(scored(f"t{i:03d}", t, f"u{i % 90:02d}", BUSY, 0.9 if i % 10 == 0 else 0.1))
    ev.append(AddressFact(BUSY, at(hours=40 * 4.8 + 1), True, "c1", "TRANSFER", "t040"))
    ev += [scored_report(f"r{i}", at(hours=i * 4.8 + 2), f"u{i % 90:02d}", BUSY)
           for i in (100, 150, 210)]
    ev.append(AddressFact(BUSY, at(hours=220 * 4.8 + 3), True, "c2", "ADDRESS", BUSY))
    return sorted(ev, key=lambda e: e.event_time)


def _stream(events: list, time_of):
    """The events in time order, in bundles of 20, the watermark following each."""
    from apache_beam.testing.test_stream import TestStream

    ts = TestStream()
    for k in range(0, len(events), 20):
        part = events[k:k + 20]
        ts.add_elements([beam.window.TimestampedValue(e, time_of(e) / 1000.0) for e in part])
        ts.advance_watermark_to(time_of(part[-1]) / 1000.0)
    return ts.advance_watermark_to_infinity()


class _Dump(beam.DoFn):
    def __init__(self, d: str, tag: str):
        self.d, self.tag = d, tag

    def process(self, row):
        with open(Path(self.d) / f"{self.tag}-{uuid.uuid4().hex}", "wb") as f:
            pickle.dump(row, f)


def _run(factory, key_fn, events: list, tags: tuple, mode: str) -> dict:
    """Every output of one machine over ``events`` through one face: tag -> sorted rows."""
    d = tempfile.mkdtemp(prefix="safetynet-state-")
    main, others = tags[0], tags[1:]
    time_of = factory().time_of
    with pipeline(mode) as p:
        if mode == "stream":
            src = p | _stream(events, time_of)
        else:
            src = p | beam.Create(events) | beam.Map(
                lambda e: beam.window.TimestampedValue(e, time_of(e) / 1000.0))
        outs = src | RunMachine(factory, mode, main, others, label="Busy", key_fn=key_fn,
                                ordering="event_time")
        for tag in tags:
            outs[tag] | f"Dump{tag}" >> beam.ParDo(_Dump(d, tag))
    got: dict = {tag: [] for tag in tags}
    for f in Path(d).iterdir():
        got[f.name.split("-")[0]].append(pickle.load(open(f, "rb")))
    return {tag: sorted(rows, key=repr) for tag, rows in got.items()}


def _reference(machine, key, events: list, tags: tuple) -> dict:
    out = run_history(machine, key, events)
    return {tag: sorted((v for tg, _t, v in out if tg == tag), key=repr) for tag in tags}


def _actions():
    return Actions(P)


def _labels():
    return LabelJoin(P)


def _cases():
    return CaseBook(P)


def _label_events(events: list) -> list:
    return [e.featured if type(e).__name__ == "ScoredTransfer" else e for e in events
            if type(e).__name__ in ("ScoredTransfer", "AddressFact")]


def _case_events(events: list) -> list:
    """CaseBook's inputs: the scored transfers and reports, and Actions' own records."""
    out = run_history(Actions(P), BUSY, events)
    recs = [v for tag, _t, v in out if tag in (HOLDS, RESOLUTIONS, FREEZES)]
    mine = [e for e in events if type(e).__name__ in ("ScoredTransfer", "ScoredReport")]
    return sorted(mine + recs, key=CaseBook(P).sort_key)


CASES_ = [
    ("actions", _actions, address_of, lambda ev: ev, (HOLDS,) + ACTION_TAGS),
    ("labels", _labels, address_of, _label_events, (EXAMPLES,)),
    ("cases", _cases, case_key, _case_events, (CASES,)),
]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name, factory, key_fn, inputs, tags", CASES_,
                         ids=[c[0] for c in CASES_])
def test_a_busy_key_decides_the_same_in_both_faces(name, factory, key_fn, inputs, tags):
    events = inputs(_busy_events())
    ref = _reference(factory(), BUSY, events, tags)
    assert all(ref[t] for t in tags)
    if name == "actions":  # the scenario reaches what the logs serve: sweep, losses, refunds
        kinds = {r.kind for r in ref[REQUESTS]}
        assert "SILENT_SUFFERER" in kinds and len(ref[LOSSES]) > 100
        assert {r.resolution for r in ref[RESOLUTIONS]} == {"REFUNDED", "RELEASED"}
    assert _run(factory, key_fn, events, tags, "batch") == ref
    assert _run(factory, key_fn, events, tags, "stream") == ref


def test_the_busy_keys_state_read_and_written_per_event_stays_flat():
    """KeyStore's count of the state bytes the busy address reads and writes per event in
    the stream face (head, and bag items loaded or added): the 200th event costs what the
    50th did, while its history grew fourfold (the logs are not rewritten per event)."""
    events = [e for e in _busy_events() if e.event_time < at(hours=200 * 4.8)]
    tally: dict = {}
    KeyStore.counting, KeyStore.tally = True, tally
    try:
        _run(_actions, address_of, events, (HOLDS,) + ACTION_TAGS, "stream")
    finally:
        KeyStore.counting, KeyStore.tally = False, None
    calls = [r + w for r, w in tally["Busy"][BUSY]]  # bytes per call of the stream face
    assert len(calls) >= 200
    early, late = sorted(calls[40:60]), sorted(calls[-20:])
    assert late[10] < 1.5 * early[10]  # medians: a trim's read now and then is amortised


def test_labels_past_the_cap_per_address_are_dropped_and_counted():
    import dataclasses

    from core.machine import METRIC
    from tests.kit import feed

    capped = dataclasses.replace(P, label_max_waiting=2)
    events = [scored(f"c{i}", at(hours=i), f"u{i}", BUSY).featured for i in range(3)]
    _, out = feed(LabelJoin(capped), BUSY, events, until=at(days=30))
    assert [v for tag, _t, v in out if tag == METRIC] == [("label_records_dropped", 1)]
    assert sorted(v.subject_id for tag, _t, v in out if tag == EXAMPLES) == ["T:c0", "T:c1"]


def test_an_address_with_a_thousand_live_holds_reads_only_the_holds_due_soon():
    """Every transfer to a listed address is held for 24h: one a minute for 30 hours is
    1,440 live holds at once. Through the stream face's cells (the head, a bag per log),
    the head an event reads and writes holds only the holds due within the hour, so it
    does not grow with the live holds; and the decisions are those of the batch face."""
    from core.machine import END_OF_TIME, step
    from transforms.faces import TableCache, _Held

    events = [scored(f"h{i:04d}", at(minutes=i), f"u{i:04d}", BUSY, blacklist=("ofac",))
              for i in range(1800)]
    events.append(AddressFact(BUSY, at(minutes=1500.5), True, "c1", "TRANSFER",
                              "h1000"))
    events.sort(key=lambda e: e.event_time)
    machine, cache = Actions(P), TableCache()
    head, bags = Cell(), tuple(Bag() for _ in machine.LOGS)
    got, head_bytes, moved = [], [], []
    for ev in events:
        cells = KeyStore(machine.LOGS, head, bags, BUSY, cache)
        cells.counting = True
        h = cells.load() or _Held(machine.new_state(BUSY))
        h.state, out = step(machine, BUSY, h.state, ev)
        got.extend(out)
        cells.store(h)
        head_bytes.append(len(head.raw))
        moved.append(cells.bytes_read + cells.bytes_written)
    cells = KeyStore(machine.LOGS, head, bags, BUSY, cache)
    got.extend(machine.advance(cells.load().state, END_OF_TIME))
    assert got == run_history(Actions(P), BUSY, events)
    resolutions = [v for tag, _t, v in got if tag == RESOLUTIONS]
    released = sorted(r.transfer_id for r in resolutions if r.resolution == "RELEASED")
    # released at 24h until the case confirmed the address; every later hold refunded
    assert len(resolutions) == 1800 and released == [f"h{i:04d}" for i in range(61)]
    # 1,440 holds live from the 1,440th event on: the head holds the hour's, never all
    # (the holds themselves, pickled, are some 450 bytes each)
    assert max(head_bytes) < 32 * 1024
    # and all the state an event reads and writes, bags included, is as flat
    assert sum(moved[1600:1700]) < 1.5 * sum(moved[200:300])


def test_a_user_with_two_thousand_payees_reads_one_payee_per_transfer():
    """A bulk payer pays 2,000 addresses, some twice, and one look-alike of an earlier
    payee. Through the stream face's cells, with the worker's table cache, a transfer reads
    the head and the one payee it asks about: the head does not grow with the payees, the
    payee table is read from its bag once (the first event), and the features are the
    batch face's, look-alike included."""
    from core.machine import END_OF_TIME, step
    from core.profiles import SenderProfile
    from tests.scenario import transfer
    from transforms.faces import TableCache, _Held

    def machine():
        return SenderProfile(P, lambda _user: None)

    def payee(i: int) -> str:  # distinct shown heads and tails: no look-alikes among them
        return "0x" + hashlib.sha1(f"payee-{i}".encode()).hexdigest()

    genuine = payee(42)
    imitation = genuine[:5] + "f" * 33 + genuine[-4:]
    events = [transfer(f"p{i:04d}", at(minutes=10 * i), "payer", payee(i % 2000))
              for i in range(2200)]
    events.append(transfer("poison", at(minutes=10 * 2100 + 5), "payer", imitation))
    events.sort(key=lambda e: e.event_time)
    m, cache = machine(), TableCache()
    head, bags = Cell(), tuple(Bag() for _ in m.LOGS)
    got, head_bytes, table_reads = [], [], 0
    for ev in events:
        cells = KeyStore(m.LOGS, head, bags, "payer", cache)
        cells.counting = True
        h = cells.load() or _Held(m.new_state("payer"))
        before = cells.bytes_read
        h.state, out = step(m, "payer", h.state, ev)
        table_reads += cells.bytes_read > before
        got.extend(out)
        cells.store(h)
        head_bytes.append(len(head.raw))
    got.extend(m.advance(KeyStore(m.LOGS, head, bags, "payer", cache).load().state,
                         END_OF_TIME))
    assert got == run_history(machine(), "payer", events)
    feats = {v.transfer.transfer_id: v.features for _tag, _t, v in got}
    assert feats["poison"]["lookalike"] == 1.0 and feats["p2100"]["new_dest"] == 0.0
    assert feats["p1999"]["n_payees"] == 1999.0
    assert table_reads == 0  # the cache always held the tables this worker stored
    assert head_bytes[2000] < 1.5 * head_bytes[200]
