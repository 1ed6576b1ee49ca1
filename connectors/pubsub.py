"""The streaming job's Pub/Sub reading and writing (Beam transforms).

* Reading: ``ReadInput`` is ``beam.io.ReadFromPubSub(subscription, with_attributes=True,
  timestamp_attribute="event_time", id_label="record_id")``. Beam's local runner reads it
  with the resilient evaluator of :mod:`connectors.local_runner` (applied around the local
  run), which does not deduplicate by ``id_label``.
* Writing: ``Publish`` is ``beam.io.WriteToPubSub(with_attributes=True)`` on Dataflow /
  Flink and :class:`ResilientPublishFn` when the pipeline's runner is Beam's local one
  (:func:`connectors.local_runner.runs_locally`): the stock DoFn raises on the first failed
  publish, and a DoFn that retried in place would stall the local runner's only thread,
  every other output with it. This one hands each message to its topic's
  :class:`TopicQueue`, whose own thread publishes, keeps and retries what is refused, warns
  at once, and fails the job once a message has waited ``--publish_timeout`` seconds.
* Messages: one record each, JSON or schemaless Avro, with the ``event_time`` and
  ``record_id`` attributes (:func:`connectors.pubsub_client.attributes`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from typing import Optional

import apache_beam as beam

from connectors import health
from connectors.local_runner import runs_locally
from connectors.monitor import Reporting
from connectors.pubsub_client import attributes, encode, shared_publisher

_LOG = logging.getLogger("safetynet.pubsub")
DEFAULT_PUBLISH_TIMEOUT_S = 300.0


class ReadInput(beam.PTransform):
    """Messages (``PubsubMessage``) from one input subscription, timestamped by their
    ``event_time`` attribute."""

    def __init__(self, subscription: str, label: Optional[str] = None):
        super().__init__(label)
        self.subscription = subscription

    def expand(self, pbegin):
        return pbegin | beam.io.ReadFromPubSub(
            subscription=self.subscription, with_attributes=True,
            timestamp_attribute="event_time", id_label="record_id")


class PublishFailed(RuntimeError):
    """A topic refused every message for longer than the publish timeout."""


_fatal: list = []  # the first PublishFailed of this process


def _default_fatal(e: PublishFailed) -> None:
    _LOG.error("%s", e)


_on_fatal = [_default_fatal]


def on_fatal(handler) -> None:
    """What this process does when a topic stays unpublishable past its timeout (the stream
    driver prints one line and exits non-zero). The default logs the error, and every
    later message for any topic raises it in the runner's thread."""
    _on_fatal[0] = handler


class TopicQueue:
    """One topic's unpublished messages and the thread that publishes them.

    The runner's thread only appends here (it never waits on Pub/Sub), so a topic that
    refuses messages holds back no other output. Refused messages are kept, in order, and
    retried with back-off; a warning names the topic at once and every 10 s after; once the
    oldest of them has waited ``timeout_s`` the process fails (:func:`on_fatal`)."""

    BATCH = 500

    def __init__(self, topic: str, timeout_s: float, registry=health.REGISTRY):
        self.topic, self.timeout_s, self.registry = topic, timeout_s, registry
        self.items: deque = deque()  # (enqueue wall time, (data, attributes))
        self.cv = threading.Condition()
        self.inflight = 0
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"publish-{topic.rsplit('/', 1)[-1]}")
        self.thread.start()

    def put(self, msgs: list) -> None:
        now = time.time()
        with self.cv:
            self.items.extend((now, m) for m in msgs)
            self._note()
            self.cv.notify()

    def _note(self) -> None:
        oldest = self.items[0][0] if self.items else None
        self.registry.set_pending(self.topic, len(self.items) + self.inflight, oldest)

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued is published (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while self.items or self.inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(min(left, 0.2))
        return True

    def _take(self) -> list:
        with self.cv:
            while not self.items:
                self.cv.wait()
            batch = [self.items.popleft() for _ in range(min(self.BATCH, len(self.items)))]
            self.inflight = len(batch)
            return batch

    def _run(self) -> None:
        client = shared_publisher()
        delay, warned = 0.2, None
        while True:
            batch = self._take()
            failed, err = self._publish(client, batch)
            self.registry.published(self.topic, len(batch) - len(failed))
            with self.cv:
                self.items.extendleft(reversed(failed))
                self.inflight = 0
                self._note()
                self.cv.notify_all()
            if not failed:
                if warned is not None:
                    _LOG.warning("publish to %s recovered", self.topic)
                delay, warned = 0.2, None
                continue
            now = time.monotonic()
            waited = time.time() - failed[0][0]
            if waited > self.timeout_s:
                self._fail(waited, len(failed), err)
                return
            if warned is None or now - warned >= 10:
                warned = now
                _LOG.warning("publish to %s failed (%d decisions kept, retrying; the job "
                             "stops if it still fails %.0f s after the first): %s",
                             self.topic, len(self.items), self.timeout_s,
                             str(err).splitlines()[0][:200])
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _publish(self, client, batch: list) -> tuple:
        """(the messages not published, the last error)."""
        failed, err = [], None
        try:
            futures = [(m, client.publish(self.topic, m[1][0], **m[1][1])) for m in batch]
        except Exception as e:  # noqa: BLE001 - kept and retried
            return batch, e
        for m, f in futures:
            try:
                f.result(timeout=60)
            except Exception as e:  # noqa: BLE001 - kept and retried
                failed.append(m)
                err = e
        return failed, err

    def _fail(self, waited: float, n: int, err: Exception) -> None:
        e = PublishFailed(f"cannot publish to {self.topic}: {waited:.0f} s of failures, "
                          f"over --publish_timeout {self.timeout_s:g} s ({len(self.items)} "
                          f"decisions undelivered; {str(err).splitlines()[0][:160]})")
        if not _fatal:
            _fatal.append(e)
            _on_fatal[0](e)


_queues: dict = {}
_queues_lock = threading.Lock()


def topic_queue(topic: str, timeout_s: float) -> TopicQueue:
    """This process's queue of ``topic`` (created, with its thread, on first use)."""
    key = (os.getpid(), topic)
    with _queues_lock:
        q = _queues.get(key)
        if q is None:
            q = _queues[key] = TopicQueue(topic, timeout_s)
        return q


def drain_all(timeout: float) -> bool:
    """Publish what this process still holds, waiting at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    ok = True
    for (pid, _), q in list(_queues.items()):
        if pid == os.getpid():
            ok = q.drain(max(0.0, deadline - time.monotonic())) and ok
    return ok


class ResilientPublishFn(beam.DoFn):
    """Publish (data, attributes) pairs to one topic without ever blocking the runner:
    each message goes to the topic's :class:`TopicQueue` (local runner: the one thread
    that runs every step must not wait on one topic)."""

    def __init__(self, topic: str, timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S):
        self.topic, self.timeout_s = topic, timeout_s

    def setup(self):
        self.queue = topic_queue(self.topic, self.timeout_s)

    def start_bundle(self):
        self.buffer = []

    def process(self, msg):
        if _fatal:
            raise _fatal[0]
        self.buffer.append(msg)

    def finish_bundle(self):
        if self.buffer:
            self.queue.put(self.buffer)
        self.buffer = []


class _CountOut(Reporting):
    """Dataflow / Flink: count what is handed to Beam's Pub/Sub writer (health)."""

    def __init__(self, topic: str, config: health.HealthConfig):
        super().__init__(config)
        self.topic = topic

    def process(self, msg):
        health.REGISTRY.published(self.topic, 1)
        yield msg


class _Publish(beam.PTransform):
    """(data, attributes) pairs -> ``topic``: the resilient queue on Beam's local runner,
    Beam's ``WriteToPubSub`` elsewhere."""

    def __init__(self, topic: str, timeout_s: float, config: health.HealthConfig,
                 label: Optional[str] = None):
        super().__init__(label)
        self.topic, self.timeout_s, self.config = topic, timeout_s, config

    def expand(self, pairs):
        if runs_locally(pairs.pipeline):
            return pairs | "Publish" >> beam.ParDo(ResilientPublishFn(self.topic,
                                                                      self.timeout_s))
        from apache_beam.io.gcp.pubsub import PubsubMessage

        return (pairs
                | "Count" >> beam.ParDo(_CountOut(self.topic, self.config))
                | "Message" >> beam.MapTuple(PubsubMessage).with_output_types(PubsubMessage)
                | "Publish" >> beam.io.WriteToPubSub(self.topic, with_attributes=True))


def record_message(payload: str):
    """An output row's message: the record in ``payload`` (``json`` or ``avro``), with
    ``event_time``, ``record_id`` and ``record`` attributes."""
    return lambda r: (encode(r, payload), attributes(r))


def json_message(attributes_of):
    """A dict row's message: the row as JSON (sorted keys), with ``attributes_of(row)``."""
    return lambda r: (json.dumps(r, sort_keys=True).encode("utf-8"), attributes_of(r))


class Publish(beam.PTransform):
    """Publish rows to ``topic``, each as the (data, attributes) that ``message(row)``
    makes (:func:`record_message`, :func:`json_message`)."""

    def __init__(self, topic: str, message, timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S,
                 config: health.HealthConfig = health.HealthConfig(),
                 label: Optional[str] = None):
        super().__init__(label)
        self.topic, self.message = topic, message
        self.timeout_s, self.config = timeout_s, config

    def expand(self, rows):
        return (rows
                | "Encode" >> beam.Map(self.message)
                | _Publish(self.topic, self.timeout_s, self.config))
