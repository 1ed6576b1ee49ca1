"""Aggregates people look at, in Beam windows (decisions never wait for a window).

* ``HourlyMetrics``: per fixed hour of event time, counts and dollars of holds, refunds,
  releases, freezes, outreach by kind and dead letters — the dashboard series.
* ``FanIn``: distinct senders into each destination per fixed hour, kept when at least
  ``min_senders`` (the collectors worth a look).

Both emit plain dicts: ``{"window_start": ms, "metric": name, "value": x}`` and
``{"window_start": ms, "address": a, "senders": n}``.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms import window

HOUR_S = 3600


def _metric_items(name: str):
    def items(row):
        if name == "holds":
            return [("holds", 1.0), ("held_usd", float(row.usd_value))]
        if name == "resolutions":
            tag = row.resolution.lower()
            return [(tag, 1.0), (f"{tag}_usd", float(row.usd_value or 0.0))]
        if name == "outreach":
            return [(f"outreach_{row.kind.lower()}", 1.0)]
        return [(name, 1.0)]

    return items


class _Stamp(beam.DoFn):
    def process(self, kv, w=beam.DoFn.WindowParam):
        (name, value) = kv
        yield {"window_start": int(w.start.micros // 1000), "metric": name, "value": value}


class HourlyMetrics(beam.PTransform):
    def expand(self, outputs: dict):
        parts = []
        for name in ("holds", "resolutions", "freezes", "outreach", "dead_letter"):
            if name in outputs:
                parts.append(outputs[name] | f"Items{name}" >> beam.FlatMap(_metric_items(name)))
        return (parts | "All" >> beam.Flatten()
                | "Hourly" >> beam.WindowInto(window.FixedWindows(HOUR_S))
                | "Sum" >> beam.CombinePerKey(sum)
                | "Rows" >> beam.ParDo(_Stamp()))


class _FanInRows(beam.DoFn):
    def __init__(self, min_senders: int):
        self.min_senders = min_senders

    def process(self, kv, w=beam.DoFn.WindowParam):
        address, n = kv
        if n >= self.min_senders:
            yield {"window_start": int(w.start.micros // 1000), "address": address,
                   "senders": n}


class FanIn(beam.PTransform):
    def __init__(self, min_senders: int = 10):
        super().__init__()
        self.min_senders = min_senders

    def expand(self, transfers):
        return (transfers
                | "Pairs" >> beam.Map(lambda t: ((t.to_address, t.user_id), None))
                | "Hourly" >> beam.WindowInto(window.FixedWindows(HOUR_S))
                | "Distinct" >> beam.CombinePerKey(lambda _: None)
                | "ByAddress" >> beam.Map(lambda kv: (kv[0][0], 1))
                | "Count" >> beam.CombinePerKey(sum)
                | "Keep" >> beam.ParDo(_FanInRows(self.min_senders)))
