"""The streaming job's Pub/Sub reading and writing (Beam transforms).

* Reading: ``ReadInput`` is ``beam.io.ReadFromPubSub(subscription, with_attributes=True,
  timestamp_attribute="event_time", id_label="record_id")`` on Dataflow / Flink. On Beam's
  local runners ``id_label`` is refused (NotImplementedError), so it is left out there; the
  local runner reads it with the resilient evaluator of :mod:`connectors.local_runner`,
  which the stream driver installs.
* Writing: ``WriteOutput`` is ``beam.io.WriteToPubSub(with_attributes=True)`` on Dataflow /
  Flink and :class:`ResilientPublishFn` locally (the stock DoFn raises on the first failed
  publish; this one keeps the messages and retries until the topic is back).
* Messages: one record each, JSON or schemaless Avro, with the ``event_time`` and
  ``record_id`` attributes (:func:`connectors.pubsub_client.attributes`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Optional

import apache_beam as beam

from connectors.pubsub_client import attributes, encode, shared_publisher

_LOG = logging.getLogger("safetynet.pubsub")


class ReadInput(beam.PTransform):
    """Messages (``PubsubMessage``) from one input subscription, timestamped by their
    ``event_time`` attribute."""

    def __init__(self, subscription: str, local: bool, label: Optional[str] = None):
        super().__init__(label)
        self.subscription, self.local = subscription, local

    def expand(self, pbegin):
        if self.local:
            return pbegin | beam.io.ReadFromPubSub(
                subscription=self.subscription, with_attributes=True,
                timestamp_attribute="event_time")
        return pbegin | beam.io.ReadFromPubSub(
            subscription=self.subscription, with_attributes=True,
            timestamp_attribute="event_time", id_label="record_id")


class ResilientPublishFn(beam.DoFn):
    """Publish (data, attributes) pairs to one topic; on failure keep them and retry with
    back-off until the topic accepts them (the local runner does not retry a failed
    bundle, so giving up would lose the decisions)."""

    def __init__(self, topic: str, max_retry_s: float = 3600.0):
        self.topic, self.max_retry_s = topic, max_retry_s

    def setup(self):
        self.client = shared_publisher()

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
                    | "Publish" >> beam.ParDo(ResilientPublishFn(self.topic)))
        from apache_beam.io.gcp.pubsub import PubsubMessage

        return (rows
                | "Encode" >> beam.Map(
                    lambda r: PubsubMessage(encode(r, payload), attributes(r)))
                .with_output_types(PubsubMessage)
                | "Publish" >> beam.io.WriteToPubSub(self.topic, with_attributes=True))


class PublishJson(beam.PTransform):
    """Publish dict rows as JSON messages (sorted keys) with ``attributes_of(row)``."""

    def __init__(self, topic: str, local: bool, attributes_of, label: Optional[str] = None):
        super().__init__(label)
        self.topic, self.local, self.attributes_of = topic, local, attributes_of

    def expand(self, rows):
        attributes_of = self.attributes_of

        def encode_row(r: dict) -> bytes:
            return json.dumps(r, sort_keys=True).encode("utf-8")

        if self.local:
            return (rows
                    | "Encode" >> beam.Map(lambda r: (encode_row(r), attributes_of(r)))
                    | "Publish" >> beam.ParDo(ResilientPublishFn(self.topic)))
        from apache_beam.io.gcp.pubsub import PubsubMessage

        return (rows
                | "Encode" >> beam.Map(lambda r: PubsubMessage(encode_row(r), attributes_of(r)))
                .with_output_types(PubsubMessage)
                | "Publish" >> beam.io.WriteToPubSub(self.topic, with_attributes=True))
