"""The Beam steps that feed the job's health counts (:mod:`connectors.health`).

* :class:`CountRead` counts the messages read per input stream (before parsing);
* :class:`NoteVersions` records the newest model version per model;
* :class:`CounterWarnings` (the local runner's driver) warns when a counter of dropped or
  set-aside events grows;
* :class:`WatermarkProbe` measures the watermark's lag behind the wall clock: at most once a
  second (per worker process) one transfer arms an event-time timer at the wall clock's
  time; when the watermark reaches it, the lag is the wall time then minus the timer's.
  The probe is a side branch on one key fed about one element a second: the transfers'
  own path is untouched.

Each step's ``setup`` starts the worker process's health reporter (once per process).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

import apache_beam as beam
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Timestamp

from connectors import health


class Reporting(beam.DoFn):
    """A DoFn that feeds the health counts: its ``setup`` starts the worker process's
    health reporter (once per process)."""

    def __init__(self, config: health.HealthConfig):
        self.config = config

    def setup(self):
        health.ensure_reporter(self.config)


class _Count(Reporting):
    def __init__(self, stream: str, config: health.HealthConfig):
        super().__init__(config)
        self.stream = stream

    def process(self, msg):
        health.REGISTRY.read(self.stream)
        yield msg


class CountRead(beam.PTransform):
    """Messages of one input stream, unchanged, counted."""

    def __init__(self, stream: str, config: health.HealthConfig, label: Optional[str] = None):
        super().__init__(label)
        self.stream, self.config = stream, config

    def expand(self, msgs):
        return msgs | "Count" >> beam.ParDo(_Count(self.stream, self.config))


class _NoteVersion(Reporting):
    def process(self, v):
        health.REGISTRY.model(v.model, v.event_time, v.n_labels, v.version)


class NoteVersions(beam.PTransform):
    """Published model versions -> the health record's ``models``."""

    def __init__(self, config: health.HealthConfig, label: Optional[str] = None):
        super().__init__(label)
        self.config = config

    def expand(self, versions):
        return versions | "Note" >> beam.ParDo(_NoteVersion(self.config))


class _Sample(beam.DoFn):
    """At most one element a second per process, as ``(0, None)``."""

    def __init__(self, every_s: float = 1.0):
        self.every_s = every_s
        self.next = 0.0

    def process(self, _):
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.every_s
            yield 0, None


class _Probe(Reporting):
    ARMED = ReadModifyWriteStateSpec("armed", beam.coders.VarIntCoder())
    TIMER = TimerSpec("watermark", TimeDomain.WATERMARK)

    def process(self, _kv, armed=beam.DoFn.StateParam(ARMED),
                timer=beam.DoFn.TimerParam(TIMER)):
        if armed.read() is None:  # one timer at a time: re-arming would push it away
            at = Timestamp.of(time.time())
            armed.write(at.micros)
            timer.set(at)

    @on_timer(TIMER)
    def fired(self, armed=beam.DoFn.StateParam(ARMED)):
        at = armed.read()
        armed.clear()
        if at is not None:
            health.REGISTRY.watermark(max(0.0, time.time() - at / 1e6))


class WatermarkProbe(beam.PTransform):
    """Any PCollection of the job (the parsed transfers) -> the watermark lag."""

    def __init__(self, config: health.HealthConfig, label: Optional[str] = None):
        super().__init__(label)
        self.config = config

    def expand(self, pcoll):
        return (pcoll
                | "Sample" >> beam.ParDo(_Sample())
                | "Probe" >> beam.ParDo(_Probe(self.config)))


_LOG = logging.getLogger("safetynet.stream")
# Counters of the job whose growth is printed as a warning: events the job dropped or set
# aside (dead-lettered inputs, late events) and saved states refused (``seeds_too_late``).
WARN_COUNTERS = ("dead_lettered", "late", "dropped")


class CounterWarnings:
    """Every ``every_s`` seconds (local runner, its own thread: reading the runner's
    counters can wait on the runner): a warning line for each warning counter that grew."""

    def __init__(self, result, every_s: float = 10.0):
        self.result, self.every_s = result, every_s
        self.seen: dict = {}

    def start(self) -> None:
        threading.Thread(target=self._loop, name="safetynet-warnings", daemon=True).start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.every_s)  # a period of the warnings, not a wait for the job
            try:
                self()
            except Exception as e:  # noqa: BLE001 - warnings must never stop the job
                _LOG.warning("reading the job's counters failed: %s", e)

    def __call__(self) -> None:
        for c in self.result.metrics().query()["counters"]:
            name = c.key.metric.name
            if not any(w in name for w in WARN_COUNTERS):
                continue
            key = (c.key.step, name)
            got, before = c.committed or 0, self.seen.get(key, 0)
            if got > before:
                self.seen[key] = got
                _LOG.warning("%s: %s +%d (%d in all)", c.key.step, name, got - before, got)
