"""The backtest's Beam read of a replay directory (:mod:`connectors.replay`): each file read
by one worker into validated rows and dead letters, stamped with their event time, with a
progress line on long files."""

from __future__ import annotations

import sys
import time
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from connectors.chunks import read_spilled
from connectors.replay import Replay, read_validated
from core.machine import gc_paused
from schemas import codecs
from schemas.rows import DeadLetter
from schemas.streams import INPUTS, REPLAY_FILES
from transforms.faces import stamped


class Progress:
    """A cheap progress line on stderr (``[prefix] label [####  ] share n (rate/s)``):
    every ``every`` records, and at the end."""

    def __init__(self, label: str, total: int, every: int, prefix: str = "backtest"):
        self.label, self.total, self.every = label, max(total, 1), max(every, 1)
        self.prefix = prefix
        self.n, self.next, self.t0 = 0, self.every, time.monotonic()

    def add(self, k: int) -> None:
        self.n += k
        if self.n >= self.next:
            self.next += self.every
            self._print()

    def done(self) -> None:
        """The stage has finished: its last line, at 100% of what it saw (the total was an
        estimate: duplicates and dead letters never reach a later stage)."""
        if self.n:
            self.total = self.n
            self._print()

    def _print(self) -> None:
        frac = min(self.n / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = self.n / max(time.monotonic() - self.t0, 1e-9)
        print(f"[{self.prefix}] {self.label:<18} [{bar:<30}] {frac:6.1%} {self.n:>10,} "
              f"({rate:,.0f}/s)", file=sys.stderr, flush=True)


class ReadReplayFile(beam.DoFn):
    """A replay file -> validated rows stamped with their event time, or DeadLetters
    (tag ``dead_letter``) stamped with the last valid event time before them.

    Faster than ``beam.io.ReadFromAvro`` / ``ReadFromParquet`` followed by ``ingest.Parse``
    (measured on 95,630 simulated transfers, FnApiRunner, read + a keyed count: Avro 19-28 s
    vs 34-38 s, Parquet 15 s vs 25 s on a busy 2-CPU machine): the codecs read in batches
    and Parquet timestamps arrive as ints, not datetimes. A file is read by one worker."""

    def __init__(self, source: str, record_name: str, total: int, progress: bool,
                 window: tuple = (None, None),
                 bounds: tuple = (codecs.MAX_USD_VALUE, codecs.MAX_AMOUNT)):
        self.source, self.record_name = source, record_name
        self.total, self.progress, self.bounds = total, progress, bounds
        self.lo, self.hi = window  # a chunk: lo <= event time < hi (None: unbounded)

    def _inside(self, t: int) -> bool:
        return (self.lo is None or t >= self.lo) and (self.hi is None or t < self.hi)

    def setup(self):
        self.c_read = Metrics.counter("Read", f"{self.source}_read")
        self.c_valid = Metrics.counter("Read", f"{self.source}_valid")
        self.c_dead = Metrics.counter("Read", f"{self.source}_dead_lettered")

    def process(self, path: str):
        show = self.progress and self.total >= 20_000
        bar = Progress(f"read {self.source}", self.total, max(self.total // 10, 1)) \
            if show else None
        for c in (self.c_read, self.c_valid, self.c_dead):
            c.inc(0)  # an empty file still shows in the reconciliation
        with gc_paused():  # rows stay alive downstream until packed: see gc_paused
            whole = self.lo is None and self.hi is None
            inside = self._inside
            for batch in read_validated(path, self.record_name, self.source, *self.bounds):
                dead = n = 0
                for r in batch:
                    if type(r) is DeadLetter:
                        if whole or inside(r.at):  # a chunk takes the dead letters of its time
                            n += 1
                            dead += 1
                            yield beam.pvalue.TaggedOutput("dead_letter", stamped(r, r.at))
                    elif whole or inside(r.event_time):
                        n += 1
                        yield stamped(r, r.event_time)
                self.c_read.inc(n)
                self.c_valid.inc(n - dead)
                self.c_dead.inc(dead)
                if bar is not None:
                    bar.add(len(batch))


class ReadSpilled(beam.DoFn):
    """A spill file of one input (:func:`connectors.chunks.stage_inputs`: rows already
    read, validated and cut to one chunk) -> rows stamped with their event time, or
    DeadLetters (tag ``dead_letter``) stamped with theirs; the same counters as
    :class:`ReadReplayFile`, so a run reads the same whether its inputs were staged."""

    def __init__(self, source: str):
        self.source = source

    setup = ReadReplayFile.setup

    def process(self, path: Optional[str]):
        for c in (self.c_read, self.c_valid, self.c_dead):
            c.inc(0)  # an empty input still shows in the reconciliation
        if path is None:
            return
        with gc_paused():
            for batch in read_spilled(path):
                dead = 0
                for r in batch:
                    if type(r) is DeadLetter:
                        dead += 1
                        yield beam.pvalue.TaggedOutput("dead_letter", stamped(r, r.at))
                    else:
                        yield stamped(r, r.event_time)
                self.c_read.inc(len(batch))
                self.c_valid.inc(len(batch) - dead)
                self.c_dead.inc(dead)


def _spread(kv) -> list:
    return kv[1]


def read_batches(name: str, path, total: int, bounds: tuple, progress: bool) -> Iterator[list]:
    """An input file's batches of validated rows and DeadLetters
    (:func:`connectors.replay.read_validated`), with a progress line on long files."""
    bar = Progress(f"read {name}", total, max(total // 10, 1)) \
        if progress and total >= 20_000 else None
    for batch in read_validated(path, REPLAY_FILES[name], name, *bounds):
        if bar is not None:
            bar.add(len(batch))
        yield batch


class CountProgress(beam.DoFn):
    """Passes elements through, printing a progress line every ``every`` of them."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled

    def start_bundle(self):
        self.bar = Progress(self.label, self.total, max(self.total // 10, 1)) \
            if self.enabled and self.total >= 20_000 else None

    def process(self, x):
        if self.bar is not None:
            self.bar.add(1)
        yield x

    def finish_bundle(self):
        if self.bar is not None:
            self.bar.done()


def read_inputs(pipeline: beam.Pipeline, replay: Replay, progress: bool, window: tuple,
                bounds: tuple, spilled: Optional[dict] = None) -> tuple[dict, list]:
    """The replay's files as ``{input: rows}``, and their parse dead letters. ``spilled``
    (``{input: [spill files]}``, :func:`connectors.chunks.stage_inputs`): read those
    instead, one reader per file, spread over the workers by a shuffle of their names."""
    inputs, dead = {}, []
    for name in INPUTS:
        if name not in replay.files:
            continue
        if spilled is not None:
            paths = list(enumerate(spilled.get(name) or [None]))
            read = (pipeline
                    | f"Spilled{name.title()}" >> beam.Create(paths)
                    | f"Spread{name.title()}" >> beam.GroupByKey()
                    | f"Paths{name.title()}" >> beam.FlatMap(_spread)
                    | f"Read{name.title()}" >> beam.ParDo(ReadSpilled(name))
                    .with_outputs("dead_letter", main="rows"))
            inputs[name] = read.rows
            dead.append(read.dead_letter)
            continue
        read = (pipeline
                | f"Path{name.title()}" >> beam.Create([str(replay.files[name])])
                | f"Read{name.title()}" >> beam.ParDo(ReadReplayFile(
                    name, REPLAY_FILES[name], replay.totals.get(name, 0), progress,
                    window, bounds))
                .with_outputs("dead_letter", main="rows"))
        inputs[name] = read.rows
        dead.append(read.dead_letter)
    return inputs, dead
