"""Drift in view: the score distribution's PSI against the first weeks (days in the
stream), the hold threshold in force, precision and recall once labels are in; a warning
past ``drift_psi_warn``; the streaming job's daily rows in event time (TestStream)."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that

from core.events import FeaturedTransfer, ScoredTransfer
from core.policy import DAY, Policy
from report.drift import WEEK_MS, weekly
from schemas.rows import HoldResolution
from tests.scenario import at, pipeline, transfer
from transforms import drift as dr

LOW = [0.02, 0.05, 0.1, 0.2, 0.3]
HIGH = [0.8, 0.85, 0.9, 0.95, 0.99]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    base = dr.histogram(LOW * 10)
    assert dr.psi(base, dr.histogram(LOW * 3)) == pytest.approx(0.0)
    assert dr.psi(base, dr.histogram(HIGH * 3)) > 0.25
    assert dr.psi(base, []) is None


def test_weekly_drift_flags_the_week_whose_scores_moved_and_judges_its_holds():
    # weeks 0-1 (the baseline) and 2 score low; week 3 scores high; in week 3 the holds
    # (score >= 0.9) are two scams and one honest transfer, and one scam is not held
    scores, kind, held = [], {}, set()
    # week -1: the rules scored (a fixed 0.05): no PSI, and not the baseline
    for i in range(20):
        scores.append((f"r{i}", at(0) - WEEK_MS + i * 1000, "0xd", 10.0, 0.05, "rules",
                       False, None))
    for w, pattern in enumerate((LOW, LOW, LOW, HIGH)):
        for i, s in enumerate(pattern * 4):
            tid = f"w{w}-{i}"
            scores.append((tid, at(0) + w * WEEK_MS + i * 1000, "0xd", 10.0, s, "m", False,
                           None))
            kind[tid] = "legit"
    kind.update({"w3-2": "scam", "w3-3": "scam", "w3-1": "scam"})
    held.update({"w3-2", "w3-3", "w3-4"})
    versions = [{"model": "transfer_risk", "valid_from": at(0) + 3 * WEEK_MS + 5,
                 "hold_threshold": 0.9}]
    d = weekly(scores, kind.get, held, versions, {"hold_threshold": 0.75,
                                                  "drift_baseline_ms": 14 * DAY,
                                                  "drift_psi_warn": 0.25})
    rules, *rows = d["weeks"]
    assert rules["psi"] is None and not rules["drift_warning"]
    assert [r["drift_warning"] for r in rows] == [False, False, False, True]
    assert rows[2]["psi"] == pytest.approx(0.0)
    assert [r["hold_threshold"] for r in rows] == [0.75, 0.75, 0.75, 0.9]
    assert rows[0]["psi"] == pytest.approx(0.0)
    assert rows[3]["precision"] == pytest.approx(2 / 3)
    assert rows[3]["recall"] == pytest.approx(2 / 3)
    assert rows[0]["precision"] is None  # nothing held
    assert d["weeks_past_warning"] == [rows[3]["week"]]


def scored(tid: str, t: int, score: float, held_by=None, threshold=0.75) -> ScoredTransfer:
    ft = FeaturedTransfer(transfer(tid, t, "u", "0x" + "d" * 40), t, {})
    return ScoredTransfer(ft, t, score, "m:1", (), threshold, False, held_by)


def test_the_stream_emits_one_drift_row_per_day_of_event_time():
    p = Policy(drift_baseline_ms=2 * DAY, drift_psi_warn=0.25)
    d0 = at(0) // DAY * DAY
    rules = [scored(f"z{i}", d0 - DAY + i * 1000, 0.05)._replace(model_version="rules")
             for i in range(10)]  # the day before: the rules scored, not the baseline
    day0 = [scored(f"a{i}", d0 + i * 1000, s) for i, s in enumerate(LOW * 2)]
    day1 = [scored(f"b{i}", d0 + DAY + i * 1000, s) for i, s in enumerate(LOW * 2)]
    day2 = [scored(f"c{i}", d0 + 2 * DAY + i * 1000, s, "score" if s >= 0.9 else None,
                   0.9) for i, s in enumerate(HIGH * 2)]
    res = [HoldResolution("h1", "c3", "REFUNDED", d0 + 2 * DAY + 50_000, "scam", "u", "0xd",
                          1.0),
           HoldResolution("h2", "c4", "RELEASED", d0 + 2 * DAY + 60_000, "no scam", "u",
                          "0xd", 1.0)]
    def stamp(e) -> int:
        return e.resolved_at if type(e) is HoldResolution else e.event_time

    ts = TestStream()
    for batch in (rules, day0, day1, day2 + res):
        ts.add_elements([beam.window.TimestampedValue(e, stamp(e) / 1000.0) for e in batch])
        ts.advance_watermark_to((max(map(stamp, batch)) + 1) / 1000.0)
    ts.advance_watermark_to_infinity()

    def check(rows):
        by = {r["start"]: r for r in rows}
        assert sorted(by) == [d0 - DAY, d0, d0 + DAY, d0 + 2 * DAY]
        assert by[d0 - DAY]["psi"] is None
        assert by[d0]["psi"] == pytest.approx(0.0)  # the baseline itself
        assert by[d0 + DAY]["psi"] == pytest.approx(0.0)
        late = by[d0 + 2 * DAY]
        assert late["drift_warning"] and late["psi"] > 0.25
        assert late["held"] == 6 and late["hold_threshold"] == 0.9
        assert late["precision"] == pytest.approx(0.5) and late["recall"] is None
        assert all(r["day_ms"] == DAY for r in rows)

    with pipeline("stream") as pipe:
        pc = pipe | ts
        rows = (pc,) | dr.DailyDrift(p)
        assert_that(rows, check)
