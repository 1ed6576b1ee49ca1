"""The streaming job's health: counts kept by each worker process, and one line plus one
JSON record on a health topic every ``every_s`` seconds of wall time.

What a line and a record say (README, "Reading the health line"):

* ``in``: messages read per input stream since the previous line (before parsing: dead
  letters included);
* ``out``: decisions published per output topic since the previous line (on the local
  runner: acknowledged by Pub/Sub; on Dataflow / Flink: handed to Beam's Pub/Sub writer);
* ``unpublished``: decisions waiting to be published, and the age of the oldest (local
  runner; a topic that refuses them shows here first);
* ``watermark lag``: how far the job's event-time watermark was behind the wall clock, last
  measured (an event-time timer set at the wall clock's time fires when the watermark
  reaches it: lag = the wall time then minus the timer's time); ``n/a`` before the first
  transfer;
* ``models``: the newest model version in use per model (restored, or published since).

Every worker process keeps its own counts and reports them (the local runner has one
process; on Dataflow or Flink each worker publishes its own record, ``worker`` tells them
apart: sum them). No Beam import at module level: the counts are plain Python.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

_LOG = logging.getLogger("safetynet.health")


@dataclass(frozen=True)
class HealthConfig:
    """Where and how often a worker reports: ``topic`` (a full path; None: no record) and
    ``every_s`` (0: no health reporting)."""

    every_s: float = 60.0
    topic: Optional[str] = None


class Registry:
    """One process's counts since the last report (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events_in: dict = {}
        self.out: dict = {}
        self.pending: dict = {}  # topic -> (count, oldest enqueue wall time or None)
        self.watermark_lag_s: Optional[float] = None
        self.models: dict = {}  # model -> (event_time, n_labels, version)

    def read(self, stream: str, n: int = 1) -> None:
        with self.lock:
            self.events_in[stream] = self.events_in.get(stream, 0) + n

    def published(self, topic: str, n: int) -> None:
        if n <= 0:
            return
        with self.lock:
            self.out[topic] = self.out.get(topic, 0) + n

    def set_pending(self, topic: str, count: int, oldest: Optional[float]) -> None:
        with self.lock:
            self.pending[topic] = (count, oldest)

    def watermark(self, lag_s: float) -> None:
        with self.lock:
            self.watermark_lag_s = lag_s

    def model(self, name: str, event_time: int, n_labels: int, version: str) -> None:
        with self.lock:
            old = self.models.get(name)
            if old is None or (event_time, n_labels) >= old[:2]:
                self.models[name] = (event_time, n_labels, version)

    def take(self, now: float, every_s: float) -> dict:
        """The record of the interval ending ``now`` (wall seconds); resets the counts."""
        with self.lock:
            waiting = {t: c for t, (c, _) in self.pending.items() if c}
            oldest = [(o, t) for t, (c, o) in self.pending.items() if c and o is not None]
            o_at, o_topic = min(oldest) if oldest else (None, None)
            rec = {"at": int(now * 1000), "interval_s": every_s,
                   "worker": f"{socket.gethostname()}:{os.getpid()}",
                   "events_in": dict(sorted(self.events_in.items())),
                   "decisions_out": {_short(t): n for t, n in sorted(self.out.items())},
                   "unpublished": {_short(t): c for t, c in sorted(waiting.items())},
                   "oldest_unpublished_s": (round(now - o_at, 1) if o_at is not None
                                            else None),
                   "oldest_unpublished_topic": o_topic,
                   "watermark_lag_s": (round(self.watermark_lag_s, 1)
                                       if self.watermark_lag_s is not None else None),
                   "models": {m: v for m, (_, _, v) in sorted(self.models.items())}}
            self.events_in, self.out = {}, {}
        return rec


REGISTRY = Registry()


def _short(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


def line(rec: dict) -> str:
    """A record as the job's one health line."""
    def counts(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "0"

    waiting = sum(rec["unpublished"].values())
    oldest = (f" (oldest {rec['oldest_unpublished_s']:.0f} s, "
              f"{_short(rec['oldest_unpublished_topic'])})" if waiting
              and rec["oldest_unpublished_s"] is not None else "")
    lag = rec["watermark_lag_s"]
    models = ", ".join(f"{m} {v}" for m, v in rec["models"].items()) or "none yet"
    stamp = time.strftime("%H:%M:%S", time.gmtime(rec["at"] / 1000))
    return (f"[health] {stamp}Z last {rec['interval_s']:g}s | in: {counts(rec['events_in'])}"
            f" | out: {counts(rec['decisions_out'])} | unpublished {waiting}{oldest}"
            f" | watermark lag {'n/a' if lag is None else f'{lag:.1f} s'}"
            f" | models: {models}")


class Reporter:
    """Every ``every_s`` seconds: the interval's record printed as one line on stdout and
    published as JSON on the health topic; ``extra()`` (optional) adds warnings."""

    def __init__(self, config: HealthConfig, registry: Registry = REGISTRY,
                 extra: Optional[Callable[[], None]] = None, out: Any = None):
        self.config, self.registry, self.extra = config, registry, extra
        self.out = out
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="safetynet-health",
                                       daemon=True)

    def start(self) -> "Reporter":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        every = self.config.every_s
        next_at = time.monotonic() + every
        while not self.stopped.wait(max(0.0, min(1.0, next_at - time.monotonic()))):
            if self.extra is not None:
                try:
                    self.extra()
                except Exception as e:  # noqa: BLE001 - a report must never stop the job
                    _LOG.warning("health: %s", e)
            if time.monotonic() < next_at:
                continue
            next_at += every
            self.report()

    def report(self) -> dict:
        rec = self.registry.take(time.time(), self.config.every_s)
        print(line(rec), file=self.out or sys.stdout, flush=True)
        if self.config.topic:
            self._publish(rec)
        return rec

    def _publish(self, rec: dict) -> None:
        from connectors.pubsub_client import shared_publisher

        topic = self.config.topic
        try:
            f = shared_publisher().publish(topic, json.dumps(rec, sort_keys=True).encode(),
                                           event_time=str(rec["at"]),
                                           record_id=f"health-{rec['worker']}-{rec['at']}",
                                           record="Health")
        except Exception as e:  # noqa: BLE001
            _LOG.warning("health record not published to %s: %s", topic, e)
            return

        def done(fut):
            try:
                fut.result()
            except Exception as e:  # noqa: BLE001
                _LOG.warning("health record not published to %s: %s", topic,
                             str(e).splitlines()[0][:200])

        f.add_done_callback(done)


_reporter: Optional[Reporter] = None
_reporter_lock = threading.Lock()


def ensure_reporter(config: HealthConfig, extra: Optional[Callable[[], None]] = None
                    ) -> Optional[Reporter]:
    """This process's reporter, started once (the first caller's configuration wins)."""
    global _reporter
    if config.every_s <= 0:
        return None
    with _reporter_lock:
        if _reporter is None:
            _reporter = Reporter(config, extra=extra).start()
        elif extra is not None:
            _reporter.extra = extra
        return _reporter
