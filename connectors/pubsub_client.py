"""Pub/Sub clients outside the job: create topics, publish inputs, collect decisions.

Used by the demo, ``safetynet publish``, the simulator's replay, the tests and the
benchmarks; the job's own reading and writing is :mod:`connectors.pubsub`. Every client
talks to ``PUBSUB_EMULATOR_HOST`` when it is set.

* Names: input and output ``NAME`` have the topic ``projects/P/topics/safetynet-NAME`` and
  the subscription ``projects/P/subscriptions/safetynet-NAME`` (``schemas.streams``);
  ``create_resources`` makes them, ``create_topics`` any topic (both keep existing ones).
* Messages: one record per message, JSON or schemaless Avro (``schemas.codecs``), with the
  attributes ``event_time`` (epoch ms: the record's event or decision time, the watermark's
  clock) and ``record_id`` (the record's id: Dataflow de-duplicates redeliveries on it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

from schemas import codecs
from schemas.streams import (
    ALL_TOPICS,
    INPUT_OF_TYPE,
    OUTPUTS,
    event_time,
    record_id,
    subscription_path,
    topic_path,
)


def encode(row: Any, payload: str = "json") -> bytes:
    return codecs.encode_avro(row) if payload == "avro" else codecs.encode_json(row)


def attributes(row: Any) -> dict:
    return {"event_time": str(event_time(row)), "record_id": record_id(row),
            "record": type(row).__name__}


# -------------------------------------------------------------------------------- clients
def publisher_client():
    """A new ``PublisherClient``."""
    from google.cloud import pubsub

    return pubsub.PublisherClient()


def subscriber_client():
    """A new ``SubscriberClient``."""
    from google.cloud import pubsub

    return pubsub.SubscriberClient()


_publishers: dict = {}


def shared_publisher():
    """One PublisherClient per process (the local runner re-creates DoFns per bundle)."""
    pid = os.getpid()
    c = _publishers.get(pid)
    if c is None:
        c = _publishers[pid] = publisher_client()
    return c


# ------------------------------------------------------------------------------ resources
def create_topics(project: str, topics: Iterable[str], publisher: Any = None) -> list[str]:
    """Create the topics that do not exist yet; each is a full path or a topic id in
    ``project``. Returns their full paths."""
    from google.api_core.exceptions import AlreadyExists

    if publisher is None:
        publisher = publisher_client()
    paths = []
    for topic in topics:
        path = topic if "/" in topic else publisher.topic_path(project, topic)
        try:
            publisher.create_topic(name=path)
        except AlreadyExists:
            pass
        paths.append(path)
    return paths


def create_resources(project: str, names: Iterable[str] = ALL_TOPICS,
                     ack_deadline_s: int = 60) -> dict:
    """Create topic ``safetynet-NAME`` and subscription ``safetynet-NAME`` for each name
    (existing ones are kept). Returns {name: (topic, subscription)}."""
    from google.api_core.exceptions import AlreadyExists

    names = list(names)
    create_topics(project, [topic_path(project, n) for n in names])
    sub = subscriber_client()
    out = {}
    try:
        for n in names:
            t, s = topic_path(project, n), subscription_path(project, n)
            try:
                sub.create_subscription(name=s, topic=t,
                                        ack_deadline_seconds=ack_deadline_s)
            except AlreadyExists:
                pass
            out[n] = (t, s)
    finally:
        sub.close()
    return out


def missing_resources(topics: Iterable[str], subscriptions: Iterable[str],
                      timeout: float = 10.0) -> list[tuple[str, str]]:
    """``[("topic" | "subscription", path), ...]`` of the given full paths that do not
    exist, in the order given (topics first). Other errors (no permission, no network)
    propagate."""
    from google.api_core.exceptions import NotFound

    pub, sub = publisher_client(), subscriber_client()
    missing = []
    try:
        for t in topics:
            try:
                pub.get_topic(topic=t, timeout=timeout)
            except NotFound:
                missing.append(("topic", t))
        for s in subscriptions:
            try:
                sub.get_subscription(subscription=s, timeout=timeout)
            except NotFound:
                missing.append(("subscription", s))
    finally:
        sub.close()
    return missing


def topic_of_subscription(subscription: str) -> str:
    """The topic a missing subscription is created on: the topic of the same id in the
    same project.

    >>> topic_of_subscription("projects/p1/subscriptions/safetynet-transfers")
    'projects/p1/topics/safetynet-transfers'
    """
    parts = subscription.split("/")
    return f"projects/{parts[1]}/topics/{parts[-1]}"


def create_missing(missing: Iterable[tuple[str, str]], ack_deadline_s: int = 60) -> list[str]:
    """Create what :func:`missing_resources` found missing (a subscription on the topic of
    its own id, created too when missing). Returns the paths created."""
    from google.api_core.exceptions import AlreadyExists

    missing = list(missing)
    created = []
    pub = publisher_client()
    topics = [p for k, p in missing if k == "topic"]
    subs = [p for k, p in missing if k == "subscription"]
    for t in topics + [topic_of_subscription(s) for s in subs]:
        try:
            pub.create_topic(name=t)
            created.append(t)
        except AlreadyExists:
            pass
    if subs:
        sub = subscriber_client()
        try:
            for s in subs:
                try:
                    sub.create_subscription(name=s, topic=topic_of_subscription(s),
                                            ack_deadline_seconds=ack_deadline_s)
                    created.append(s)
                except AlreadyExists:
                    pass
        finally:
            sub.close()
    return created


# ------------------------------------------------------------------ publishing, collecting
class Publisher:
    """Publish input rows (or raw bytes) to the input topics, with the attributes the job
    reads. ``publish`` returns a future; ``flush`` waits for all."""

    def __init__(self, project: str, payload: str = "json"):
        self.project, self.payload = project, payload
        self.client = publisher_client()
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
    return INPUT_OF_TYPE[type(row)]


class Collector:
    """Pull decisions from the output subscriptions into ``rows[name]`` (decoded rows).

    ``pull_once`` pulls what is there (acknowledging it); ``wait_for(cond, timeout)`` pulls
    until ``cond(rows)`` holds or the deadline passes (no fixed waits: each pull returns as
    soon as messages arrive or after ``pull_timeout``)."""

    def __init__(self, project: str, names: Iterable[str] = tuple(OUTPUTS),
                 payload: str = "json", pull_timeout: float = 1.0):
        self.project, self.names, self.payload = project, tuple(names), payload
        self.client = subscriber_client()
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


# ------------------------------------------------------------------------------ liveness
PROBE = b"safetynet-probe:"


def wait_until_live(publisher: Publisher, collector: Collector, timeout: float = 90.0,
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
