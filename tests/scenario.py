"""Small hand-built scenarios for the graph's tests: rows in, a helper to run them.

Times are minutes after ``T0`` unless said otherwise; addresses are EVM-shaped.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream

from core.events import sort_key
from core.policy import DAY, HOUR, MINUTE
from pipelines.options import CachedViews
from schemas.rows import BlacklistUpdate, CaseOutcome, ScamReport, Transfer, UserProfile
from transforms.safetynet import INPUTS, SafetyNet

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def at(minutes: float = 0, hours: float = 0, days: float = 0) -> int:
    return T0 + int(minutes * MINUTE + hours * HOUR + days * DAY)


def addr(tag: str) -> str:
    """A distinct EVM address for a short tag: 0x + 40 hex digits."""
    h = tag.encode().hex()
    return "0x" + (h + "0" * 40)[:40] if len(h) <= 40 else "0x" + h[:40]


def transfer(tid, t, user, to, usd=100.0, to_user=None, channel="WITHDRAWAL") -> Transfer:
    return Transfer(tid, t, user, to, to_user, "ETH", "ETH", f"{usd / 2000:.6f}", usd, channel)


def report(rid, t, reporter, suspect=None, transfer_id=None, category="INVESTMENT",
           text="they took my money and stopped answering", loss=None) -> ScamReport:
    return ScamReport(rid, t, reporter, transfer_id, suspect, None, category, text, loss)


def outcome(cid, t, subject_type, subject_id, is_scam=True) -> CaseOutcome:
    return CaseOutcome(cid, t, subject_type, subject_id, is_scam)


def listing(address, t, action="ADD", source="vendor_x") -> BlacklistUpdate:
    return BlacklistUpdate(address, "ETH", action, t, source, None)


def profile(user, created, vulnerable=False) -> UserProfile:
    return UserProfile(user, created, "DE", 1980, vulnerable)


def side_files(directory, listed: str, users, vulnerable=()) -> dict:
    """A blacklist snapshot listing ``listed`` (OFAC, a day before ``at()``) and the
    profiles of ``users`` (old accounts; ``vulnerable`` ones flagged), written as Avro into
    ``directory``: the Policy fields that point at them."""
    from schemas.codecs import write_records

    snap, profs = directory / "snapshot.avro", directory / "profiles.avro"
    write_records(snap, "BlacklistUpdate", [listing(listed, at(days=-1), source="ofac_sdn")],
                  "avro")
    write_records(profs, "UserProfile",
                  [profile(u, at(days=-400), vulnerable=u in vulnerable) for u in users], "avro")
    return {"blacklist_paths": (str(snap),), "profiles_path": str(profs)}


def split_inputs(events) -> dict:
    out = {n: [] for n in INPUTS}
    for e in events:
        name = {Transfer: "transfers", ScamReport: "reports", CaseOutcome: "outcomes",
                BlacklistUpdate: "blacklist"}[type(e)]
        out[name].append(e)
    return out


def test_stream(events) -> TestStream:
    """One TestStream with every event in event-time order, the watermark following: the
    events of one time arrive together, as one delivery (one ``add_elements``), as a pull
    from Pub/Sub brings several. Each delivery is a round of bundles through every step of
    the graph on the direct runner: one per event instead made the 36 events of
    test_contacts' stream face cost 24 CPU-s instead of 8."""
    ts = TestStream()
    batch: list = []
    for e in sorted(events, key=sort_key):
        if batch and e.event_time != batch[0].event_time:
            _add_at_its_time(ts, batch)
            batch = []
        batch.append(e)
    if batch:
        _add_at_its_time(ts, batch)
    return ts.advance_watermark_to_infinity()


def _add_at_its_time(ts: TestStream, batch: list) -> None:
    """The watermark to just before the batch's time, then the batch (events of one time,
    in ``sort_key`` order) as one delivery."""
    ts.advance_watermark_to((batch[0].event_time - 1) / 1000.0)
    ts.add_elements([beam.window.TimestampedValue(e, e.event_time / 1000.0) for e in batch])


def scheduled_stream(steps) -> TestStream:
    """A TestStream from ``steps``: a list of events is added (each stamped with its
    event time), a ``("watermark", ms)`` tuple advances the watermark; then to infinity."""
    ts = TestStream()
    for s in steps:
        if isinstance(s, tuple):
            ts.advance_watermark_to(s[1] / 1000.0)
        else:
            ts.add_elements([beam.window.TimestampedValue(e, e.event_time / 1000.0) for e in s])
    return ts.advance_watermark_to_infinity()


def build(p, events, policy, mode: str, face: Optional[str] = None) -> dict:
    """Wire the events into SafetyNet the way a driver does. ``mode`` picks the input
    (stream: a TestStream; batch: bounded rows) and, unless ``face`` says otherwise, the
    face of the keyed steps."""
    if mode == "stream":
        stream = p | "Events" >> test_stream(events)
        parts = stream | "Split" >> beam.Partition(
            lambda e, n: INPUTS.index(_input_of(e)), len(INPUTS))
        inputs = {n: parts[i] for i, n in enumerate(INPUTS)}
    else:
        inputs = {}
        for name, rows in split_inputs(events).items():
            inputs[name] = (p | f"Read{name}" >> beam.Create(rows)
                            | f"Stamp{name}" >> beam.Map(
                                lambda r: beam.window.TimestampedValue(r, r.event_time / 1e3)))
    return inputs | SafetyNet(policy, face or mode)


def _input_of(e) -> str:
    return {Transfer: "transfers", ScamReport: "reports", CaseOutcome: "outcomes",
            BlacklistUpdate: "blacklist"}[type(e)]


# PipelineOptions that make each view once (the drivers' own, pipelines.options): about
# half a CPU-second per pipeline
Options = CachedViews


def options(mode: str, extra: Optional[list] = None) -> PipelineOptions:
    if extra and any(a.startswith("--runner") for a in extra):
        o = Options(extra)
        o.view_as(StandardOptions).streaming = mode == "stream"
        return o
    if mode == "stream":
        o = Options(["--runner=BundleBasedDirectRunner"] + (extra or []))
        o.view_as(StandardOptions).streaming = True
        return o
    return Options(["--runner=FnApiRunner"] + (extra or []))


@contextlib.contextmanager
def pipeline(mode: str, extra: Optional[list] = None) -> Iterator[beam.Pipeline]:
    """A pipeline with ``options(mode, extra)``, run when the block ends; a streaming one on
    Beam's local runner runs with the runner's patches, as the local streaming job does; a
    batch one with the one of them that reads each function's signature once."""
    from connectors import local_runner

    o = options(mode, extra)
    local = mode == "stream" and local_runner.is_local_runner(
        o.view_as(StandardOptions).runner)
    with local_runner.patched() if local else local_runner.remembered_signatures():
        with beam.Pipeline(options=o) as p:
            yield p


def run(events, policy, mode: str = "batch", check=None, extra: Optional[list] = None,
        face: Optional[str] = None):
    """Run the graph on the events; ``check(outputs)`` adds assert_that's."""
    with pipeline(mode, extra) as p:
        outs = build(p, events, policy, mode, face)
        if check is not None:
            check(outs)


def decide(events, policy) -> dict:
    """What ``collect(events, policy)`` returns, decided by the graph's machines in plain
    Python (``core.reference``: the same steps, keys and order as the batch face, no
    Beam) in milliseconds instead of seconds: for the tests of a rule's logic. That both
    faces decide exactly as the reference is pinned once, on a data set that takes every
    decision path, by tests/test_reference.py (and per step by tests/test_batch_face.py)."""
    from core.casefiles import latest_cases
    from core.reference import run_reference
    from transforms.side import load_side

    out = run_reference(split_inputs(events), policy, side=load_side(policy))
    got = {n: [] for n in ("holds", "resolutions", "freezes", "outreach", "verdicts",
                           "dead_letter", "scored")}
    for name, rows in out.items():
        if name != "model_metrics" and rows:  # collect() leaves out the summaries too
            got[name] = sorted(rows, key=repr)
    got["scored"] = sorted(((s.featured.transfer.transfer_id, s.score)
                            for s in out.get("scored", ())), key=repr)
    if "cases" in got:
        got["cases"] = latest_cases(got["cases"])
    return got


class _Dump(beam.DoFn):
    """Each element to its own file in ``directory``: works alike on bounded and unbounded
    input. (At module level, so that the direct runner, which copies a DoFn by pickling it
    for every bundle, pickles it by name.)"""

    def __init__(self, directory: str):
        self.directory = directory

    def process(self, row):
        import os
        import pickle
        import uuid

        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, uuid.uuid4().hex), "wb") as f:
            pickle.dump(row, f)


def _unscore(s) -> tuple:
    return s.featured.transfer.transfer_id, s.score


def collect(events, policy, mode: str = "batch", extra: Optional[list] = None,
            face: Optional[str] = None) -> dict:
    """Run and return every output as a sorted list (through a real file sink)."""
    import pickle
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="safetynet-test-"))

    def check(outs):
        for name, pc in outs.items():
            if name == "model_metrics":
                continue  # summaries, not decisions (tests/test_models.py checks them)
            if name == "scored":
                pc = pc | f"Unscore{name}" >> beam.Map(_unscore)
            pc | f"Dump{name}" >> beam.ParDo(_Dump(str(d / name)))

    run(events, policy, mode, check, extra, face)
    got = {n: [] for n in ("holds", "resolutions", "freezes", "outreach", "verdicts",
                           "dead_letter", "scored")}
    for sub in d.iterdir():
        got[sub.name] = sorted((pickle.load(open(f, "rb")) for f in sub.iterdir()), key=repr)
    if "cases" in got:  # every version of each case file: compare the latest (issue 12)
        from core.casefiles import latest_cases

        got["cases"] = latest_cases(got["cases"])
    return got



