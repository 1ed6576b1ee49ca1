"""Aggregates people look at, per fixed hour of event time (decisions never wait for them).

* ``HourlyMetrics``: per hour, counts and dollars of holds, refunds, releases, freezes,
  outreach by kind and dead letters — the dashboard series.
* ``FanIn``: distinct senders into each destination per hour, kept when at least
  ``min_senders`` (the collectors worth a look).

Both emit plain dicts: ``{"window_start": ms, "metric": name, "value": x}`` and
``{"window_start": ms, "address": a, "senders": n}``.

``mode`` picks how the hour is formed, with identical rows either way:

* ``"stream"``: Beam fixed windows, so each hour's state is released when the watermark
  passes the hour's end;
* ``"batch"``: the hour is part of the key, in the global window. A bounded replay needs no
  window to close, and Beam's batch runners group global-window data with a plain
  pass-through, where fixed windows go through the general trigger machinery (on the
  FnApiRunner that was a third of a backtest's time).
"""

from __future__ import annotations

from fractions import Fraction

import apache_beam as beam
from apache_beam.transforms import window
from apache_beam.transforms.window import GlobalWindows

from schemas.streams import ACTIONS
from transforms.packed import Combiner, PackedCombine

HOUR_S = 3600
HOUR_MS = HOUR_S * 1000
MODES = ("stream", "batch")


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


def _hour_of(ts) -> int:
    """Start (ms) of the fixed hour holding a Beam timestamp: FixedWindows(HOUR_S)'s."""
    ms = ts.micros // 1000
    return ms - ms % HOUR_MS


class _HourKey(beam.DoFn):
    """Batch: ``(key, value)`` -> ``((hour, key), value)``, the hour from the timestamp."""

    def process(self, kv, ts=beam.DoFn.TimestampParam):
        yield (_hour_of(ts), kv[0]), kv[1]


class _Hourly(beam.PTransform):
    """``(key, value)`` -> ``((hour start ms, key), combined)``: ``combine`` per key and
    fixed hour of event time, in windows (stream) or with the hour in the key (batch)."""

    def __init__(self, combine, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.combine, self.mode = combine, mode

    def expand(self, pairs):
        if self.mode == "batch":
            return (pairs | "HourKey" >> beam.ParDo(_HourKey())
                    | "Combine" >> beam.CombinePerKey(self.combine))
        return (pairs | "Hourly" >> beam.WindowInto(window.FixedWindows(HOUR_S))
                | "Combine" >> beam.CombinePerKey(self.combine)
                | "HourKey" >> beam.ParDo(_WindowKey()))


class _WindowKey(beam.DoFn):
    """Stream: ``(key, value)`` in an hour's window -> ``((hour start ms, key), value)``."""

    def process(self, kv, w=beam.DoFn.WindowParam):
        yield (int(w.start.micros // 1000), kv[0]), kv[1]


class HourlyMetrics(beam.PTransform):
    def __init__(self, mode: str = "stream"):
        super().__init__()
        self.mode = mode

    def expand(self, outputs: dict):
        parts = []
        for name in (*ACTIONS, "dead_letter"):
            if name in outputs:
                parts.append(outputs[name] | f"Items{name}" >> beam.FlatMap(_metric_items(name)))
        return (parts | "All" >> beam.Flatten()
                | "Sum" >> _Hourly(ExactSum(), self.mode)
                | "Rows" >> beam.Map(lambda kv: {"window_start": kv[0][0],
                                                 "metric": kv[0][1], "value": kv[1]}))


class ExactSum(beam.CombineFn):
    """A sum of floats that does not depend on the order the runner combines them in: the
    exact rational sum, rounded once at the end (as ``math.fsum`` rounds), so a chunked or
    multi-worker replay writes the same figures as one run. The accumulator is one number,
    whatever the traffic of the hour.

    >>> fn = ExactSum()
    >>> acc = fn.create_accumulator()
    >>> for v in [0.1] * 10:
    ...     acc = fn.add_input(acc, v)
    >>> fn.extract_output(acc), sum([0.1] * 10)
    (1.0, 0.9999999999999999)
    """

    def create_accumulator(self):
        return Fraction(0)

    def add_input(self, acc, value):
        return acc + Fraction(value)

    def merge_accumulators(self, accs):
        return sum(accs, Fraction(0))

    def extract_output(self, acc):
        return float(acc)


class _FanInRows(beam.DoFn):
    def __init__(self, min_senders: int):
        self.min_senders = min_senders

    def process(self, kv):
        (start, address), n = kv
        if n >= self.min_senders:
            yield {"window_start": start, "address": address, "senders": n}


class _DistinctCount(beam.CombineFn):
    """How many distinct values (a set per accumulator; merged by union)."""

    def create_accumulator(self):
        return set()

    def add_input(self, acc, value):
        acc.add(value)
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        out = next(accs)
        for a in accs:
            out |= a
        return out

    def extract_output(self, acc):
        return len(acc)


class FanIn(beam.PTransform):
    def __init__(self, min_senders: int = 10, mode: str = "stream"):
        super().__init__()
        self.min_senders, self.mode = min_senders, mode

    def expand(self, transfers):
        if self.mode == "batch":  # a few packed dicts cross the shuffle, not every pair
            return transfers | "Senders" >> PackedCombine(
                (_sender_of,), Combiner(set, _add_to_set, _union),
                _FanInShard(self.min_senders))
        return (transfers
                | "Pairs" >> beam.Map(lambda t: (t.to_address, t.user_id))
                | "Senders" >> _Hourly(_DistinctCount(), self.mode)
                | "Keep" >> beam.ParDo(_FanInRows(self.min_senders)))

class _FanInShard:
    """Batch: a shard's ``{(hour start ms, address): senders}`` -> its rows."""

    def __init__(self, min_senders: int):
        self.min_senders = min_senders

    def __call__(self, _shard: int, senders: dict):
        for (start, address), users in senders.items():
            if len(users) >= self.min_senders:
                yield GlobalWindows.windowed_value(
                    {"window_start": start, "address": address, "senders": len(users)})


def _sender_of(t, t_ms: int):
    """Batch: a transfer's ``((hour start ms, destination), sender)``."""
    yield (t_ms - t_ms % HOUR_MS, t.to_address), t.user_id


def _add_to_set(acc: set, value) -> set:
    acc.add(value)
    return acc


def _union(acc: set, other: set) -> set:
    acc |= other
    return acc
