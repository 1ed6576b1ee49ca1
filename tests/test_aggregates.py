"""Windowed aggregates: hourly decision metrics and fan-in per destination."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.rows import Hold
from tests.scenario import addr, at, transfer
from transforms.aggregates import FanIn, HourlyMetrics

DEST = addr("collector")


def _stamped(rows, t_of):
    return beam.Create(rows) | beam.Map(lambda r: beam.window.TimestampedValue(r, t_of(r) / 1e3))


@pytest.mark.parametrize("mode", ["stream", "batch"])
def test_fan_in_counts_distinct_senders_per_destination_per_hour(mode):
    rows = [transfer(f"t{i}", at(i), f"u{i % 12}", DEST) for i in range(30)]  # 12 senders
    rows += [transfer("late", at(61), "u0", DEST)]  # next hour: 1 sender, below the cut
    with TestPipeline(runner="FnApiRunner") as p:
        got = p | "In" >> _stamped(rows, lambda r: r.event_time) | FanIn(min_senders=10, mode=mode)
        assert_that(got, equal_to([{"window_start": at(0), "address": DEST, "senders": 12}]))


@pytest.mark.parametrize("mode", ["stream", "batch"])
def test_hourly_metrics_sum_holds_and_dollars_per_hour(mode):
    def hold(i, t, usd):
        return Hold(f"h{i}", f"t{i}", "u", DEST, "ETH", "1", usd, t, t + 1, 0.9, [])

    holds = [hold(1, at(1), 100.0), hold(2, at(2), 50.0), hold(3, at(70), 5.0)]
    with TestPipeline(runner="FnApiRunner") as p:
        hs = p | "In" >> _stamped(holds, lambda r: r.placed_at)
        got = {"holds": hs} | HourlyMetrics(mode=mode)
        assert_that(got, equal_to([
            {"window_start": at(0), "metric": "holds", "value": 2.0},
            {"window_start": at(0), "metric": "held_usd", "value": 150.0},
            {"window_start": at(60), "metric": "holds", "value": 1.0},
            {"window_start": at(60), "metric": "held_usd", "value": 5.0},
        ]))
