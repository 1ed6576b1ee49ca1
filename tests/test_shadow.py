"""The shadow policy: the pure diff, the policy file, and live + shadow on one stream
(TestStream, event time) and on one bounded history, with hourly disagreement counts."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from core.policy import HOUR, Policy
from pipelines.options import policy_with, shadow_policy
from schemas.codecs import write_records
from schemas.rows import Hold, Outreach
from tests import scenario
from tests.scenario import addr, at, listing, transfer
from transforms.safetynet import SafetyNet
from transforms.shadow import (
    HOLD,
    LIVE,
    NONE,
    SHADOW,
    WARN,
    ShadowDiff,
    decide,
    disagreement,
    hourly_row,
    marks_of,
)


def _hold(tid, user="u1", t=0, usd=10.0):
    return Hold(f"h-{tid}", tid, user, "0xabc", "USDT", "10", usd, t, t + 24 * HOUR, 0.9,
                ["r"], "m")


def _out(tid, kind, user="u1", t=0):
    return Outreach(f"o-{tid}-{kind}", user, kind, "APP", t, tid, "0xabc", ["r"])


def _marks(*items):
    return [m for side, src, row in items for _, m in marks_of(side, src, row)]


# ----------------------------------------------------------------------------- pure diff
def test_action_is_the_strongest_of_hold_warning_nothing():
    ms = _marks((LIVE, "outreach", _out("t", "WARNING")), (LIVE, "holds", _hold("t")))
    assert decide(ms, LIVE) == HOLD
    assert decide(ms, SHADOW) == NONE
    assert decide(_marks((SHADOW, "outreach", _out("t", "INTERVENTION"))), SHADOW) == WARN


def test_outreach_that_is_no_decision_on_the_transfer_is_ignored():
    for kind in ("SILENT_SUFFERER", "HOLD_NOTICE", "RECOVERY"):
        assert marks_of(LIVE, "outreach", _out("t", kind)) == []


def test_a_warning_the_holdout_withheld_still_counts_as_the_policy_warning():
    ms = _marks((LIVE, "warning_holdout", _out("t", "WARNING")),
                (SHADOW, "outreach", _out("t", "WARNING")))
    assert disagreement("t", ms) is None


def test_disagreement_row_names_both_actions_and_the_transfer():
    d = disagreement("t9", _marks((SHADOW, "holds", _hold("t9", "bob", t=5, usd=42.0)),
                                  (LIVE, "outreach", _out("t9", "WARNING", "bob", t=5))))
    assert (d["transfer_id"], d["user_id"], d["event_time"], d["usd_value"]) == \
        ("t9", "bob", 5, 42.0)
    assert (d["live"], d["shadow"], d["pair"]) == (WARN, HOLD, "warn>hold")


def test_hourly_row_counts_by_pair():
    assert hourly_row(7 * HOUR, {"none>hold": 2, "hold>warn": 1}) == {
        "window_start": 7 * HOUR, "window_end": 8 * HOUR, "disagreements": 3,
        "by_pair": {"hold>warn": 1, "none>hold": 2}}


# ---------------------------------------------------------------------- the policy file
def test_policy_file_json_and_yaml_change_only_what_they_name(tmp_path):
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"hold_threshold": 0.6, "hold": "12h", "use_models": False}))
    y = tmp_path / "p.yaml"
    y.write_text("hold_threshold: 0.6\nhold: 12h\nuse_models: false\n")
    live = Policy(warn_threshold=0.3, profiles_path="/x/profiles.avro")
    for f in (j, y):
        p = shadow_policy(f, live)
        assert (p.hold_threshold, p.hold_ms, p.use_models) == (0.6, 12 * HOUR, False)
        assert (p.warn_threshold, p.profiles_path) == (0.3, "/x/profiles.avro")


def test_policy_file_durations_follow_the_live_time_scale():
    p = policy_with(Policy().scaled(24), {"hold": "12h"}, time_scale=24)
    assert p.hold_ms == HOUR // 2
    assert p.cooldown_ms == HOUR  # not named: the live (scaled) value


@pytest.mark.parametrize("content, message", [
    ('{"hold_treshold": 0.6}', "unknown option 'hold_treshold'"),
    ('{"hold": "soon"}', "bad value for hold"),
    ('[1, 2]', "expected a mapping"),
    ('{"warn_threshold": 0.9}', "warn_threshold <= hold_threshold"),
])
def test_bad_policy_files_fail_with_a_message(tmp_path, content, message):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(ValueError, match=message):
        shadow_policy(f, Policy())


def test_missing_policy_file_fails(tmp_path):
    with pytest.raises(ValueError, match="--shadow_policy .*none.json: no such file"):
        shadow_policy(tmp_path / "none.json", Policy())


def test_a_backtests_metrics_json_is_a_shadow_policy(tmp_path):
    # the policy a backtest ran with, recorded in its metrics.json, can be shadowed as is
    f = tmp_path / "metrics.json"
    f.write_text(json.dumps({"run": {"policy_options": {"hold_threshold": 0.55,
                                                        "hold": "6h"}}}))
    p = shadow_policy(f, Policy())
    assert (p.hold_threshold, p.hold_ms) == (0.55, 6 * HOUR)


# -------------------------------------------------------- live and shadow on one graph
LISTED = addr("listed-by-both")
CANDIDATE = addr("listed-by-shadow")


@pytest.fixture
def policies(tmp_path) -> tuple[Policy, Policy]:
    a, ab = tmp_path / "a.avro", tmp_path / "ab.avro"
    write_records(a, "BlacklistUpdate", [listing(LISTED, at(days=-1))], "avro")
    write_records(ab, "BlacklistUpdate", [listing(LISTED, at(days=-1)),
                                          listing(CANDIDATE, at(days=-1))], "avro")
    live = Policy(use_models=False, blacklist_paths=(str(a),))
    # The candidate lists one more address and warns from a rules score of 0.05 (rules
    # score every plain transfer 0.05): it holds what it lists, warns on the rest.
    shadow = Policy(use_models=False, blacklist_paths=(str(ab),), warn_threshold=0.05)
    return live, shadow


EVENTS = [
    transfer("t1", at(5), "alice", LISTED),  # both hold
    transfer("t2", at(10), "bob", CANDIDATE),  # none > hold
    transfer("t3", at(20), "carol", addr("plain-1")),  # none > warn
    transfer("t4", at(80), "dave", CANDIDATE),  # none > hold
    transfer("t5", at(100), "erin", addr("plain-2")),  # none > warn
    transfer("t6", at(110), "frank", CANDIDATE),  # none > hold
    transfer("t7", at(185), "gina", LISTED),  # both hold
]
T0_HOUR = at(0)
EXPECTED_HOURLY = [
    {"window_start": T0_HOUR, "window_end": T0_HOUR + HOUR, "disagreements": 2,
     "by_pair": {"none>hold": 1, "none>warn": 1}},
    {"window_start": T0_HOUR + HOUR, "window_end": T0_HOUR + 2 * HOUR, "disagreements": 3,
     "by_pair": {"none>hold": 2, "none>warn": 1}},
]


@pytest.mark.parametrize("mode", ["stream", "batch"])
def test_live_and_shadow_disagree_per_transfer_and_per_hour_of_event_time(policies, mode):
    live, shadow = policies
    with scenario.pipeline(mode) as p:
        if mode == "stream":
            parts = (p | "Events" >> scenario.test_stream(EVENTS)
                     | "Split" >> beam.Partition(lambda e, n: 0, 4))
            inputs = {"transfers": parts[0]}
        else:
            inputs = {"transfers": p | beam.Create(EVENTS) | beam.Map(
                lambda r: beam.window.TimestampedValue(r, r.event_time / 1e3))}
        outs = inputs | "SafetyNet" >> SafetyNet(live, mode)
        souts = inputs | "Shadow" >> SafetyNet(shadow, mode, label="Shadow")
        diff = {"live": outs, "shadow": souts} | "ShadowDiff" >> ShadowDiff()
        assert_that(diff["hourly"], equal_to(EXPECTED_HOURLY), label="Hourly")
        assert_that(diff["disagreements"] | beam.Map(lambda d: (d["transfer_id"], d["pair"])),
                    equal_to([("t2", "none>hold"), ("t3", "none>warn"), ("t4", "none>hold"),
                              ("t5", "none>warn"), ("t6", "none>hold")]), label="Rows")
        # The live policy decides as it would alone: it holds only what it lists (rule 1).
        assert_that(outs["holds"] | "LiveHolds" >> beam.Map(lambda h: h.transfer_id),
                    equal_to(["t1", "t7"]), label="LiveHoldsOnly")
        assert_that(souts["holds"] | "ShadowHolds" >> beam.Map(lambda h: h.transfer_id),
                    equal_to(["t1", "t2", "t4", "t6", "t7"]), label="ShadowHoldsOnly")
