"""Pub/Sub wiring for the streaming job: names, resources, readers, writers, helpers.

* Names: every input and output has a topic ``projects/P/topics/safetynet-NAME`` and a
  subscription ``projects/P/subscriptions/safetynet-NAME`` (``topic_path`` /
  ``subscription_path``); ``create_resources`` makes them (idempotent) on the emulator or
  a real project.
* Messages: one record per message, JSON or schemaless Avro (``schemas.codecs``), with the
  attributes ``event_time`` (epoch ms: the record's event or decision time, the watermark's
  clock) and ``record_id`` (the record's id: Dataflow de-duplicates redeliveries on it).
* Reading: ``ReadInput`` is ``beam.io.ReadFromPubSub(subscription, with_attributes=True,
  timestamp_attribute="event_time", id_label="record_id")`` on Dataflow / Flink. On Beam's
  local runners ``id_label`` is refused (NotImplementedError), so it is left out there, and
  the local read evaluator is replaced by :class:`_ResilientPubSubReadEvaluator`: the stock
  one raises on any Pub/Sub error (emulator down, subscription gone, a bad ``event_time``
  attribute) and the DirectRunner does not retry, so one outage would kill the job.
* Writing: ``WriteOutput`` is ``beam.io.WriteToPubSub(with_attributes=True)`` on Dataflow /
  Flink and :class:`_ResilientPublishFn` locally (the stock DoFn raises on the first failed
  publish; this one keeps the messages and retries until the topic is back).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

import apache_beam as beam

from schemas import codecs
from schemas.streams import (
    ALL_TOPICS,
    INPUTS,
    OUTPUTS,
    event_time,
    record_id,
    subscription_path,
    topic_path,
)

_LOG = logging.getLogger("safetynet.pubsub")

PULL_MAX_MESSAGES = 500
IDLE_PULL_PAUSE_S = 0.005


def encode(row: Any, payload: str = "json") -> bytes:
    return codecs.encode_avro(row) if payload == "avro" else codecs.encode_json(row)


def attributes(row: Any) -> dict:
    return {"event_time": str(event_time(row)), "record_id": record_id(row),
            "record": type(row).__name__}


# ------------------------------------------------------------------------------ runners
def is_local_runner(runner: Optional[str]) -> bool:
    r = str(runner or "")
    return r == "" or "DirectRunner" in r or r in ("direct", "BundleBased")


# ---------------------------------------------------------------------- resilient reading
_installed = False
_install_lock = threading.Lock()


def install_resilient_local_reader() -> None:
    """Make Beam's local runner read Pub/Sub with :class:`_ResilientPubSubReadEvaluator`.

    Uses the evaluator registry's override table (``_test_evaluators_overrides``); the
    transform itself stays ``beam.io.ReadFromPubSub`` so the graph is the one that runs on
    Dataflow / Flink.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        from apache_beam.runners.direct.direct_runner import _DirectReadFromPubSub
        from apache_beam.runners.direct.transform_evaluator import (
            TransformEvaluatorRegistry,
            _PubSubReadEvaluator,
        )

        class _ResilientPubSubReadEvaluator(_PubSubReadEvaluator):
            """The stock local Pub/Sub read, made to survive outages.

            * a pull error (emulator down, subscription deleted) logs, waits a little and
              returns no messages: the job goes on and pulls again;
            * a missing or unreadable ``event_time`` attribute falls back to the publish
              time (the payload's own event_time re-stamps the row in Parse, and a bad
              payload becomes a dead letter) instead of failing the job;
            * pulls up to ``PULL_MAX_MESSAGES`` per bundle (the stock reader pulls 10).

            Like the stock reader it acknowledges what it pulled at once: Beam's local
            runner keeps everything in memory, so a message in flight when the process
            dies is lost (see bench/STREAMING.md, "Faults").
            """

            _errors: dict = {}

            def _read_from_pubsub(self, timestamp_attribute):
                from apache_beam.io.gcp.pubsub import PubsubMessage
                from apache_beam.utils.timestamp import Timestamp

                def element(message):
                    parsed = PubsubMessage._from_message(message)
                    raw = (parsed.attributes or {}).get(timestamp_attribute) \
                        if timestamp_attribute else None
                    ts = None
                    if raw is not None:
                        try:
                            ts = Timestamp(micros=int(raw) * 1000)
                        except ValueError:
                            try:
                                ts = Timestamp.from_rfc3339(raw)
                            except ValueError:
                                ts = None
                    if ts is None:
                        try:
                            ts = Timestamp.from_utc_datetime(message.publish_time)
                        except Exception:  # no usable publish time either
                            ts = Timestamp.of(time.time())
                    return ts, parsed

                client = self._get_subscriber_client(self._applied_ptransform)
                try:
                    # Beam's local executor runs on ONE thread: a long-polling pull
                    # (the stock reader waits up to 30 s on an empty subscription) stalls
                    # the whole job, so pull without waiting and idle briefly instead.
                    response = client.pull(
                        request={"subscription": self._sub_name,
                                 "max_messages": PULL_MAX_MESSAGES,
                                 "return_immediately": True}, timeout=10)
                    received = list(response.received_messages)
                    if not received:
                        time.sleep(IDLE_PULL_PAUSE_S)
                    if received:
                        client.acknowledge(subscription=self._sub_name,
                                           ack_ids=[rm.ack_id for rm in received])
                except Exception as e:  # noqa: BLE001 — any Pub/Sub failure: retry later
                    self._note_error(e)
                    time.sleep(1.0)
                    return []
                if self._errors.pop(self._sub_name, None) is not None:
                    _LOG.warning("Pub/Sub read of %s recovered", self._sub_name)
                return [element(rm.message) for rm in received]

            def _note_error(self, e):
                first = self._errors.get(self._sub_name)
                now = time.monotonic()
                if first is None or now - first > 10:
                    self._errors[self._sub_name] = now
                    _LOG.warning("Pub/Sub read of %s failed, retrying: %s",
                                 self._sub_name, str(e).splitlines()[0][:200])

        overrides = dict(TransformEvaluatorRegistry._test_evaluators_overrides)
        overrides[_DirectReadFromPubSub] = _ResilientPubSubReadEvaluator
        TransformEvaluatorRegistry._test_evaluators_overrides = overrides
        _installed = True


_speedups = False


def install_local_speedups() -> None:
    """Cache ``userstate.get_dofn_specs`` per DoFn class for Beam's local runner.

    The BundleBasedDirectRunner asks for a DoFn's state and timer specs several times per
    bundle (scheduling, ``start_bundle``, the DoFnRunner), and each call walks every method
    of the DoFn with ``inspect.signature``: measured with py-spy it was two thirds of the
    job's CPU, which made a decision take ~8 s instead of well under a second. Specs are
    declared on the class (``StateParam`` / ``TimerParam`` defaults), so one answer per class
    is exact. Only the local driver installs this.
    """
    global _speedups
    with _install_lock:
        if _speedups:
            return
        from apache_beam.runners.direct import transform_evaluator as te
        from apache_beam.transforms import userstate

        original = userstate.get_dofn_specs
        cache: dict = {}

        def get_dofn_specs(dofn):
            key = type(dofn)
            got = cache.get(key)
            if got is None:
                got = cache[key] = original(dofn)
            return got

        def is_stateful_dofn(dofn):
            states, timers = get_dofn_specs(dofn)
            return bool(states or timers)

        userstate.get_dofn_specs = get_dofn_specs
        userstate.is_stateful_dofn = is_stateful_dofn
        te.get_dofn_specs = get_dofn_specs
        te.is_stateful_dofn = is_stateful_dofn
        _speedups = True


_publishers: dict = {}


def _publisher_client():
    """One PublisherClient per process (the local runner re-creates DoFns per bundle)."""
    import os as _os

    pid = _os.getpid()
    c = _publishers.get(pid)
    if c is None:
        from google.cloud import pubsub

        c = _publishers[pid] = pubsub.PublisherClient()
    return c


class ReadInput(beam.PTransform):
    """Messages (``PubsubMessage``) from one input subscription, timestamped by their
    ``event_time`` attribute."""

    def __init__(self, subscription: str, local: bool, label: Optional[str] = None):
        super().__init__(label)
        self.subscription, self.local = subscription, local

    def expand(self, pbegin):
        if self.local:
            install_resilient_local_reader()
            install_local_speedups()
            return pbegin | beam.io.ReadFromPubSub(
                subscription=self.subscription, with_attributes=True,
                timestamp_attribute="event_time")
        return pbegin | beam.io.ReadFromPubSub(
            subscription=self.subscription, with_attributes=True,
            timestamp_attribute="event_time", id_label="record_id")


# ---------------------------------------------------------------------- resilient writing
class _ResilientPublishFn(beam.DoFn):
    """Publish (data, attributes) pairs to one topic; on failure keep them and retry with
    back-off until the topic accepts them (the local runner does not retry a failed
    bundle, so giving up would lose the decisions)."""

    def __init__(self, topic: str, max_retry_s: float = 3600.0):
        self.topic, self.max_retry_s = topic, max_retry_s

    def setup(self):
        self.client = _publisher_client()

    def start_bundle(self):
        self.buffer = []

    def process(self, msg):
        self.buffer.append(msg)
        if len(self.buffer) >= 500:
            self._flush()

    def finish_bundle(self):
        self._flush()

    def _flush(self):
        pending, start, delay, warned = self.buffer, time.monotonic(), 0.2, 0.0
        self.buffer = []
        while pending:
            futures = [(m, self.client.publish(self.topic, m[0], **m[1])) for m in pending]
            failed = []
            for m, f in futures:
                try:
                    f.result(timeout=60)
                except Exception as e:  # noqa: BLE001 — keep and retry
                    failed.append(m)
                    err = e
            pending = failed
            if not pending:
                break
            waited = time.monotonic() - start
            if waited > self.max_retry_s:
                raise RuntimeError(f"publishing to {self.topic} failed for {waited:.0f}s: "
                                   f"{err}")
            if waited - warned >= 10 or warned == 0.0:
                warned = waited or 1e-9
                _LOG.warning("publish to %s failed (%d messages kept, retrying): %s",
                             self.topic, len(pending), str(err).splitlines()[0][:200])
            time.sleep(delay)
            delay = min(delay * 2, 2.0)



class WriteOutput(beam.PTransform):
    """Encode output rows (JSON or Avro) and publish them with ``event_time`` and
    ``record_id`` attributes."""

    def __init__(self, topic: str, payload: str, local: bool, label: Optional[str] = None):
        super().__init__(label)
        self.topic, self.payload, self.local = topic, payload, local

    def expand(self, rows):
        payload = self.payload
        if self.local:
            return (rows
                    | "Encode" >> beam.Map(lambda r: (encode(r, payload), attributes(r)))
                    | "Publish" >> beam.ParDo(_ResilientPublishFn(self.topic)))
        from apache_beam.io.gcp.pubsub import PubsubMessage

        return (rows
                | "Encode" >> beam.Map(
                    lambda r: PubsubMessage(encode(r, payload), attributes(r)))
                .with_output_types(PubsubMessage)
                | "Publish" >> beam.io.WriteToPubSub(self.topic, with_attributes=True))


# -------------------------------------------------------------------------- admin helpers
def create_resources(project: str, names: Iterable[str] = ALL_TOPICS,
                     ack_deadline_s: int = 60) -> dict:
    """Create topic ``safetynet-NAME`` and subscription ``safetynet-NAME`` for each name
    (existing ones are kept). Returns {name: (topic, subscription)}. Talks to
    ``PUBSUB_EMULATOR_HOST`` when set."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub

    pub, sub = pubsub.PublisherClient(), pubsub.SubscriberClient()
    out = {}
    try:
        for n in names:
            t, s = topic_path(project, n), subscription_path(project, n)
            try:
                pub.create_topic(name=t)
            except gexc.AlreadyExists:
                pass
            try:
                sub.create_subscription(name=s, topic=t,
                                        ack_deadline_seconds=ack_deadline_s)
            except gexc.AlreadyExists:
                pass
            out[n] = (t, s)
    finally:
        sub.close()
    return out


def require_emulator() -> str:
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        raise RuntimeError("PUBSUB_EMULATOR_HOST is not set")
    return host


class Publisher:
    """Publish input rows (or raw bytes) to the input topics, with the attributes the job
    reads. ``publish`` returns a future; ``flush`` waits for all."""

    def __init__(self, project: str, payload: str = "json"):
        from google.cloud import pubsub

        self.project, self.payload = project, payload
        self.client = pubsub.PublisherClient()
        self.futures: list = []

    def publish(self, name: str, row: Any):
        f = self.client.publish(topic_path(self.project, name), encode(row, self.payload),
                                **attributes(row))
        self.futures.append(f)
        return f

    def publish_raw(self, name: str, data: bytes, **attrs):
        f = self.client.publish(topic_path(self.project, name), data, **attrs)
        self.futures.append(f)
        return f

    def flush(self, timeout: float = 60):
        for f in self.futures:
            f.result(timeout=timeout)
        self.futures = []

    def close(self):
        self.flush()
        self.client.stop()


def input_name(row: Any) -> str:
    return {v: k for k, v in INPUTS.items()}[type(row).__name__]


class Collector:
    """Pull decisions from the output subscriptions into ``rows[name]`` (decoded rows).

    ``pull_once`` pulls what is there (acknowledging it); ``wait_for(cond, timeout)`` pulls
    until ``cond(rows)`` holds or the deadline passes (no fixed waits: each pull returns as
    soon as messages arrive or after ``pull_timeout``)."""

    def __init__(self, project: str, names: Iterable[str] = tuple(OUTPUTS),
                 payload: str = "json", pull_timeout: float = 1.0):
        from google.cloud import pubsub

        self.project, self.names, self.payload = project, tuple(names), payload
        self.client = pubsub.SubscriberClient()
        self.rows: dict = {n: [] for n in self.names}
        self.received_at: dict = {n: [] for n in self.names}  # wall-clock seconds per row
        self.pull_timeout = pull_timeout
        self.errors = 0

    def pull_once(self, name: Optional[str] = None, max_messages: int = 1000) -> int:
        from google.api_core import retry as gretry

        got = 0
        for n in ([name] if name else self.names):
            try:
                resp = self.client.pull(subscription=subscription_path(self.project, n),
                                        max_messages=max_messages,
                                        timeout=self.pull_timeout,
                                        retry=gretry.Retry(timeout=self.pull_timeout))
            except Exception:  # noqa: BLE001 — deadline / emulator restarting
                self.errors += 1
                continue
            msgs = list(resp.received_messages)
            if not msgs:
                continue
            now = time.time()
            record = OUTPUTS[n]
            for rm in msgs:
                data = rm.message.data
                row = (codecs.decode_avro(record, data, n) if self.payload == "avro"
                       else codecs.decode_json(record, data, n))
                self.rows[n].append(row)
                self.received_at[n].append(now)
            try:
                self.client.acknowledge(subscription=subscription_path(self.project, n),
                                        ack_ids=[rm.ack_id for rm in msgs])
            except Exception:  # noqa: BLE001
                self.errors += 1
            got += len(msgs)
        return got

    def wait_for(self, cond: Callable[[dict], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if cond(self.rows):
                return True
            if time.monotonic() >= deadline:
                return False
            self.pull_once()

    def close(self):
        self.client.close()


PROBE = b"safetynet-probe:"


def wait_until_live(publisher: "Publisher", collector: "Collector", timeout: float = 90.0,
                    is_alive: Optional[Callable[[], bool]] = None) -> float:
    """Publish an unparseable probe on the transfers topic until its dead letter comes
    back: the job is then reading and publishing. Returns the seconds it took."""
    import uuid

    start = time.monotonic()
    token = PROBE + uuid.uuid4().hex.encode()
    deadline = start + timeout
    publisher.publish_raw("transfers", token)
    publisher.flush()
    while time.monotonic() < deadline:
        if any(token.decode() in d.payload for d in collector.rows.get("dead_letter", [])):
            return time.monotonic() - start
        if is_alive is not None and not is_alive():
            raise RuntimeError("the streaming job exited before it was live")
        collector.pull_once("dead_letter")
    raise TimeoutError(f"the streaming job did not answer a probe within {timeout:.0f}s")


def is_probe(dead_letter: Any) -> bool:
    return PROBE.decode() in dead_letter.payload
