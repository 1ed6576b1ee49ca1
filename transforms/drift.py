"""Drift in view: how the transfer scores, the hold threshold and the decisions' precision
and recall move over event time, so a risk team sees a model drifting before the
friction does.

Per period (a week in the backtest's report, a day in the streaming job):

* ``psi``: the population stability index of the period's score distribution against the
  first periods a model scored in (``Policy.drift_baseline_ms`` from the first; the rules'
  fixed scores before it are no distribution to compare with):
  ``sum((p - q) * ln(p / q))`` over :data:`BINS` equal score bins, with empty bins floored
  at :data:`EPS`. Under 0.1 is usually read as stable, 0.1–0.25 as a shift, over 0.25 as a
  large one; ``Policy.drift_psi_warn`` (default 0.25) raises a warning;
* ``hold_threshold``: the hold threshold in force (the last transfer's of the period) and
  the share of the period's transfers the score tests held;
* ``precision`` / ``recall`` once labels are in: of the transfers held by the score tests,
  the scam share; of the scam transfers, the share held (the backtest judges them by the
  ground truth, the streaming job by the labels LabelJoin emitted in the period).

>>> base = histogram([0.01, 0.02, 0.5, 0.9])
>>> round(psi(base, base), 6)
0.0
>>> psi(base, histogram([0.9, 0.95, 0.99, 0.97])) > 0.25
True
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import FixedWindows, GlobalWindows

BINS = 20
EPS = 1e-4


def bin_of(score: float) -> int:
    return min(BINS - 1, max(0, int(score * BINS)))


def histogram(scores: Iterable[float]) -> list:
    h = [0] * BINS
    for s in scores:
        h[bin_of(s)] += 1
    return h


def psi(base: list, cur: list) -> Optional[float]:
    """Population stability index of ``cur`` against ``base`` (bin counts); None when
    either is empty."""
    nb, nc = sum(base), sum(cur)
    if not nb or not nc:
        return None
    total = 0.0
    for b, c in zip(base, cur, strict=True):
        p, q = max(c / nc, EPS), max(b / nb, EPS)
        total += (p - q) * math.log(p / q)
    return total


def new_acc() -> dict:
    """A period's running figures (all sums: two accumulators merge by adding)."""
    return {"hist": [0] * BINS, "n": 0, "held": 0, "threshold": None, "threshold_at": -1,
            "tp": 0, "fp": 0, "fn": 0, "model": 0}


def add_score(acc: dict, t: int, score: float, held: bool, threshold: float,
              model: bool = True) -> dict:
    """A scored transfer; ``model``: a model version scored it (not the rules)."""
    acc["hist"][bin_of(score)] += 1
    acc["n"] += 1
    acc["model"] += bool(model)
    acc["held"] += bool(held)
    if t >= acc["threshold_at"]:
        acc["threshold"], acc["threshold_at"] = threshold, t
    return acc


def add_label(acc: dict, held: bool, scam: bool) -> dict:
    """A labelled transfer of the period: was it held by the score tests, was it a scam."""
    if held and scam:
        acc["tp"] += 1
    elif held:
        acc["fp"] += 1
    elif scam:
        acc["fn"] += 1
    return acc


def merge(accs: Iterable[dict]) -> dict:
    out = new_acc()
    for a in accs:
        out["hist"] = [x + y for x, y in zip(out["hist"], a["hist"], strict=True)]
        for k in ("n", "held", "tp", "fp", "fn", "model"):
            out[k] += a[k]
        if a["threshold_at"] >= out["threshold_at"]:
            out["threshold"], out["threshold_at"] = a["threshold"], a["threshold_at"]
    return out


def period_row(start: int, acc: dict, base_hist: Optional[list], warn_at: float) -> dict:
    """The figures of one period (``start``: its first event-time ms)."""
    tp, fp, fn = acc["tp"], acc["fp"], acc["fn"]
    p = psi(base_hist, acc["hist"]) if base_hist is not None else None
    return {"start": start, "transfers": acc["n"], "held": acc["held"],
            "held_share": acc["held"] / acc["n"] if acc["n"] else None,
            "hold_threshold": acc["threshold"],
            "psi": None if p is None else round(p, 6),
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "labelled": tp + fp + fn, "drift_warning": p is not None and p > warn_at}


def drift_rows(periods: dict, baseline_ms: int, warn_at: float) -> list:
    """Rows for ``periods`` (period start -> accumulator), in time order. The baseline is
    the periods from the first one a model scored in, for ``baseline_ms``: the rules' fixed
    scores before it are no distribution to compare a model's with (their rows have no
    PSI)."""
    modelled = [s for s in sorted(periods) if periods[s]["model"]]
    if not modelled:
        return [period_row(s, periods[s], None, warn_at) for s in sorted(periods)]
    first = modelled[0]
    base = merge(a for s, a in periods.items() if first <= s < first + baseline_ms)["hist"]
    return [period_row(s, periods[s], base if s >= first else None, warn_at)
            for s in sorted(periods)]


# ------------------------------------------------------------------ the streaming job's face
class _PerDay(beam.CombineFn):
    """ScoredTransfers and Examples of one day window -> that day's accumulator."""

    def create_accumulator(self):
        return new_acc()

    def add_input(self, acc, x):
        kind, t, a, b, c = x
        return add_score(acc, t, a, b, *c) if kind == "score" else add_label(acc, a, b)

    def merge_accumulators(self, accs):
        return merge(accs)

    def extract_output(self, acc):
        return acc


class _Rows(beam.DoFn):
    """One key: keeps the baseline histogram (the days before the first day's start plus
    the baseline) and turns each day's accumulator into its row."""

    STATE = ReadModifyWriteStateSpec("drift", PickleCoder())

    def __init__(self, baseline_ms: int, warn_at: float):
        self.baseline_ms, self.warn_at = baseline_ms, warn_at

    def process(self, kv, state=beam.DoFn.StateParam(STATE)):
        start, acc = kv[1]
        first, base = state.read() or (None, new_acc())
        if first is None and acc["model"]:
            first = start  # the first day a model scored: the baseline starts here
        if first is not None and start < first + self.baseline_ms:
            base = merge([base, acc])
        state.write((first, base))
        hist = base["hist"] if base["n"] and first is not None else None
        yield period_row(start, acc, hist, self.warn_at)


def _marks(x, hold_threshold_default: float):
    from core.events import ScoredTransfer
    from schemas.rows import HoldResolution

    if type(x) is ScoredTransfer:
        thr = x.hold_threshold if x.hold_threshold is not None else hold_threshold_default
        held = x.held_by is not None and not x.capped
        return [("score", x.event_time, x.score, held, (thr, x.model_version != "rules"))]
    if type(x) is HoldResolution:  # a label the job knows: scam confirmed within the hold
        return [("label", x.resolved_at, True, x.resolution == "REFUNDED", 0.0)]
    return []


class DailyDrift(beam.PTransform):
    """Streaming: ``(scored transfers, hold resolutions)`` -> one drift row per day of
    event time (dicts of :func:`period_row`, plus ``day_ms``), in fixed day windows; the
    baseline is the first ``Policy.drift_baseline_ms`` of days seen. The job has no ground
    truth: a day's ``precision`` is the share of the holds resolved that day that were
    refunded (a scam confirmed within the hold), and ``recall`` is left out (None): the
    scams nobody held are only known later, from the backtest's truth."""

    def __init__(self, policy, label: Optional[str] = None):
        super().__init__(label)
        self.day_ms = policy.day_ms
        self.baseline_ms = policy.drift_baseline_ms
        self.warn_at = policy.drift_psi_warn
        self.threshold = policy.hold_threshold

    def expand(self, pcolls):
        day_ms, thr = self.day_ms, self.threshold
        marks = (pcolls | "Flatten" >> beam.Flatten()
                 | "Marks" >> beam.FlatMap(_marks, thr))
        return (marks
                | "Days" >> beam.WindowInto(FixedWindows(day_ms / 1000.0))
                | "PerDay" >> beam.CombineGlobally(_PerDay()).without_defaults()
                | "Start" >> beam.ParDo(_StampDay())
                | "Global" >> beam.WindowInto(GlobalWindows())
                | "OneKey" >> beam.Map(lambda x: ("drift", x))
                | "Rows" >> beam.ParDo(_Rows(self.baseline_ms, self.warn_at))
                | "DayLength" >> beam.Map(lambda r: dict(r, day_ms=day_ms, recall=None)))


def drift_attributes(row: dict) -> dict:
    """A daily drift row's Pub/Sub attributes: stamped at the day's start."""
    return {"event_time": str(row["start"]), "record_id": f"drift-day-{row['start']}",
            "record": "DriftDaily"}


class _StampDay(beam.DoFn):
    def process(self, acc, window=beam.DoFn.WindowParam):
        yield int(window.start.micros // 1000), acc


def wire_drift(outs: dict, policy, topic: str, **publish_kw):
    """The streaming job's drift stream: :class:`DailyDrift` of its scored transfers and
    hold resolutions, published as JSON rows to ``topic`` (``safetynet-drift``)."""
    from connectors.pubsub import Publish, json_message

    return ((outs["scored"], outs["resolutions"]) | "DailyDrift" >> DailyDrift(policy)
            | "WriteDrift" >> Publish(topic, json_message(drift_attributes), **publish_kw))
