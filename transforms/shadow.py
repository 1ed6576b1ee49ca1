"""Shadow policy: where a second policy, run on the same stream, decides otherwise.

A shadow (:class:`Shadow`, what both drivers apply) is a second ``SafetyNet(policy, mode)``
on the same input PCollections; its outputs are written apart and never acted on.
:class:`ShadowDiff` joins
the two, keyed by transfer id, in fixed hourly windows of event time: every transfer on
which the live and the shadow policy took a different action becomes a *disagreement*, and
each hour gets a count (what a team watches before promoting a candidate policy).

A policy's action on a transfer (:func:`decide`): ``hold`` when it held the transfer,
otherwise ``warn`` when it warned or called the sender about it (a ``WARNING`` or
``INTERVENTION`` outreach naming the transfer, or a warning withheld by the warning holdout:
the policy did decide to warn), otherwise ``none``. Every record about a transfer carries
the transfer's event time (holds and warnings are decided when the transfer arrives), so all
of them fall in the same hourly window.

The maths is in pure functions (:func:`marks_of`, :func:`decide`, :func:`disagreement`,
:func:`hourly_row`); the composite only routes.

>>> from schemas.rows import Hold, Outreach
>>> h = Hold("h1", "t1", "u1", "0xabc", "USDT", "10", 10.0, 5, 10, 0.9, ["risk"], "m1")
>>> w = Outreach("o1", "u1", "WARNING", "APP", 5, "t1", "0xabc", ["risk"])
>>> def marks(*pairs): return [m for side, src, row in pairs for _, m in marks_of(side, src, row)]
>>> disagreement("t1", marks((LIVE, "holds", h), (SHADOW, "outreach", w)))["pair"]
'hold>warn'
>>> disagreement("t1", marks((LIVE, "holds", h), (SHADOW, "holds", h))) is None
True
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.transforms.window import FixedWindows

from core.policy import HOUR
from schemas.streams import SHADOWED

LIVE, SHADOW = "live", "shadow"
HOLD, WARN, NONE = "hold", "warn", "none"
WARN_KINDS = ("WARNING", "INTERVENTION")
HOUR_MS = HOUR
# The SafetyNet outputs the diff reads, per side.
SOURCES = ("holds", "outreach", "warning_holdout")
# Outputs of a shadow written apart (its dead letters are the live ones: same inputs).
SHADOW_OUTPUTS = SHADOWED


class Mark(NamedTuple):
    """One policy's action on one transfer."""

    side: str  # LIVE or SHADOW
    action: str  # HOLD or WARN
    event_time: int
    user_id: str
    address: Optional[str]
    usd_value: Optional[float]
    reasons: tuple


def marks_of(side: str, source: str, row: Any) -> list[tuple[str, Mark]]:
    """(transfer id, Mark) for a row of ``holds``, ``outreach`` or ``warning_holdout``;
    nothing for outreach that is not about a decision on a transfer (silent sufferer,
    hold notice, risk assessment)."""
    if source == "holds":
        return [(row.transfer_id, Mark(side, HOLD, row.placed_at, row.user_id, row.to_address,
                                       float(row.usd_value), tuple(row.reasons)))]
    if row.kind in WARN_KINDS and row.transfer_id:
        return [(row.transfer_id, Mark(side, WARN, row.created_at, row.user_id, row.address,
                                       None, tuple(row.reasons)))]
    return []


def decide(marks: Iterable[Mark], side: str) -> str:
    """``hold`` > ``warn`` > ``none``: the strongest action ``side`` took."""
    acts = {m.action for m in marks if m.side == side}
    return HOLD if HOLD in acts else WARN if WARN in acts else NONE


def disagreement(transfer_id: str, marks: Iterable[Mark]) -> Optional[dict]:
    """A JSON-ready row when the two sides acted differently on the transfer, else None."""
    marks = sorted(marks, key=lambda m: (m.side, m.action, m.event_time, m.reasons))
    live, shadow = decide(marks, LIVE), decide(marks, SHADOW)
    if live == shadow:
        return None
    first = min(marks, key=lambda m: (m.event_time, m.side, m.action))
    usd = next((m.usd_value for m in marks if m.usd_value is not None), None)

    def reasons(side: str) -> list:
        return sorted({r for m in marks if m.side == side for r in m.reasons})

    return {"transfer_id": transfer_id, "event_time": first.event_time,
            "user_id": first.user_id, "address": first.address, "usd_value": usd,
            "live": live, "shadow": shadow, "pair": f"{live}>{shadow}",
            "live_reasons": reasons(LIVE), "shadow_reasons": reasons(SHADOW)}


def hourly_row(window_start_ms: int, pairs: dict, window_ms: int = HOUR_MS) -> dict:
    """One hour's disagreements, in all and by (live>shadow) pair, from pair counts.

    >>> r = hourly_row(0, {"none>warn": 1, "hold>none": 2})
    >>> r["disagreements"], r["by_pair"]
    (3, {'hold>none': 2, 'none>warn': 1})
    """
    return {"window_start": window_start_ms, "window_end": window_start_ms + window_ms,
            "disagreements": sum(pairs.values()), "by_pair": dict(sorted(pairs.items()))}


# ----------------------------------------------------------------------------- Beam face
class _CountPairs(beam.CombineFn):
    """Disagreements by pair (a dict of counts)."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, row):
        acc[row["pair"]] = acc.get(row["pair"], 0) + 1
        return acc

    def merge_accumulators(self, accs):
        out: dict = {}
        for a in accs:
            for k, v in a.items():
                out[k] = out.get(k, 0) + v
        return out

    def extract_output(self, acc):
        return acc


def hourly_attributes(row: dict) -> dict:
    """An hourly row's Pub/Sub attributes (the streaming job): stamped at the hour's start."""
    return {"event_time": str(row["window_start"]),
            "record_id": f"shadow-hour-{row['window_start']}",
            "record": "ShadowDisagreementsHourly"}


class _HourlyRow(beam.DoFn):
    def process(self, pairs, window=beam.DoFn.WindowParam):
        start = int(window.start.micros // 1000)
        yield hourly_row(start, pairs, int(window.end.micros // 1000) - start)


class ShadowDiff(beam.PTransform):
    """``{"live": outputs, "shadow": outputs}`` (two SafetyNet output dicts) ->
    ``{"disagreements": rows, "hourly": counts}``, both in fixed hourly windows of event
    time (``window_ms``). Works on bounded (backtest) and unbounded (stream) input."""

    def __init__(self, window_ms: int = HOUR_MS, label: Optional[str] = None):
        super().__init__(label)
        self.window_ms = int(window_ms)

    def expand(self, sides: dict):
        marks = []
        for side in (LIVE, SHADOW):
            for src in SOURCES:
                pc = sides[side].get(src)
                if pc is None:
                    continue
                marks.append(pc | f"Marks{side.title()}{src.title().replace('_', '')}"
                             >> beam.FlatMap(lambda r, side=side, src=src: marks_of(side, src, r)))
        rows = (marks
                | "AllMarks" >> beam.Flatten()
                | "Hourly" >> beam.WindowInto(FixedWindows(self.window_ms / 1000.0))
                | "ByTransfer" >> beam.GroupByKey()
                | "Compare" >> beam.FlatMap(lambda kv: [d for d in [disagreement(*kv)] if d]))
        hourly = (rows
                  | "PerHour" >> beam.CombineGlobally(_CountPairs()).without_defaults()
                  | "HourRow" >> beam.ParDo(_HourlyRow()))
        return {"disagreements": rows, "hourly": hourly}


class Shadow(beam.PTransform):
    """``{"inputs": the live inputs, "live": the live SafetyNet's outputs}`` -> ``{"shadow":
    the shadow policy's outputs, "disagreements": rows, "hourly": counts}``: the shadow
    policy run on the live inputs, and where it decides otherwise (:class:`ShadowDiff`,
    hourly windows of ``window_ms``). The drivers only write or publish what it returns."""

    def __init__(self, policy, mode: str, shards: Optional[int] = None,
                 window_ms: int = HOUR_MS, versions_dir: Optional[str] = None,
                 label: Optional[str] = None):
        super().__init__(label)
        self.policy, self.mode, self.shards = policy, mode, shards
        self.window_ms, self.versions_dir = window_ms, versions_dir

    def expand(self, both: dict):
        from transforms.safetynet import SafetyNet

        kw = {"shards": self.shards} if self.shards is not None else {}
        souts = both["inputs"] | "SafetyNet" >> SafetyNet(
            self.policy, self.mode, versions_dir=self.versions_dir, **kw)
        diff = {LIVE: both["live"], SHADOW: souts} | "Diff" >> ShadowDiff(self.window_ms)
        return {"shadow": souts, **diff}
