"""Parse: raw input records (file dicts, Pub/Sub payloads) into validated rows.

One composite per input. A record that fails validation leaves on the ``dead_letter``
output with the reason (rule 7) and is counted; a valid row is stamped with its
``event_time`` as the Beam timestamp.
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import codecs
from schemas.rows import DeadLetter

DEAD = "dead_letter"


class _ParseFn(beam.DoFn):
    def __init__(self, record_name: str, source: str, payload: str,
                 bounds: tuple = (codecs.MAX_USD_VALUE, codecs.MAX_AMOUNT)):
        self.record_name, self.source, self.payload = record_name, source, payload
        self.bounds = bounds

    def setup(self):
        self.ok = Metrics.counter("Parse", f"{self.source}_valid")
        self.bad = Metrics.counter("Parse", f"{self.source}_dead_lettered")

    def process(self, element, ts=beam.DoFn.TimestampParam):
        at = 0
        try:
            at = int(ts.micros // 1000)
        except (AttributeError, OverflowError):
            pass
        at = max(at, 0)
        if self.payload == "dict":
            row = codecs.validate(self.record_name, element, self.source, at=at)
        else:
            data = element
            if hasattr(element, "data"):  # PubsubMessage
                data = element.data
            if self.payload == "avro":
                row = codecs.decode_avro(self.record_name, data, self.source, at=at)
            else:
                row = codecs.decode_json(self.record_name, data, self.source, at=at)
        if type(row) is not DeadLetter:
            row = codecs.check_bounds(row, self.source, *self.bounds)
        if type(row) is DeadLetter:
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(DEAD, row)
        else:
            self.ok.inc()
            yield beam.window.TimestampedValue(row, row.event_time / 1000.0)


class Parse(beam.PTransform):
    """``payload`` is "dict" (records read from Avro / Parquet), "json" or "avro" (Pub/Sub
    messages or their bytes). Returns ``DoOutputsTuple`` with ``main`` and ``dead_letter``."""

    def __init__(self, record_name: str, source: str, payload: str = "dict",
                 label: Optional[str] = None,
                 bounds: tuple = (codecs.MAX_USD_VALUE, codecs.MAX_AMOUNT)):
        super().__init__(label)
        if payload not in ("dict", "json", "avro"):
            raise ValueError(f"payload must be dict, json or avro, not {payload!r}")
        self.record_name, self.source, self.payload = record_name, source, payload
        self.bounds = bounds

    def expand(self, pcoll):
        return pcoll | "Validate" >> beam.ParDo(
            _ParseFn(self.record_name, self.source, self.payload, self.bounds)).with_outputs(
                DEAD, main="main")
