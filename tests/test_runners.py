"""The same graph on every runner we can run here gives the same decisions.

FnApiRunner (one process) is the reference; the portable path (PortableRunner, embedded
job server, LOOPBACK workers) is the one Flink, Spark and Dataflow Runner v2 take. The
stream face decides in arrival order, so it is compared with the batch face on a
TestStream that delivers events in event-time order (test_event_time.py); the embedded
portable job server runs no TestStream. Multi-processing is in test_reference.py.
"""

from __future__ import annotations

import glob
import os

import pytest

from core.policy import Policy
from schemas.codecs import write_records
from tests.scenario import addr, at, collect, listing, outcome, report, transfer

SCAM, OTHER, FAKE_OF = addr("listed"), addr("reported"), "0xabc" + "1" * 33 + "9f3e"


@pytest.fixture(scope="module")
def scenario_and_policy(tmp_path_factory):
    d = tmp_path_factory.mktemp("runners")
    write_records(d / "snap.avro", "BlacklistUpdate", [listing(SCAM, at(-60), source="ofac_sdn")],
                  "avro")
    policy = Policy(use_models=False, blacklist_paths=(str(d / "snap.avro"),))
    events = [
        transfer("t1", at(0), "alice", SCAM),
        transfer("t2", at(1), "bob", OTHER, usd=700), transfer("t3", at(2), "carol", OTHER),
        report("r2", at(30), "bob", transfer_id="t2"), report("r3", at(31), "carol",
                                                             transfer_id="t3"),
        transfer("g1", at(3), "dave", FAKE_OF), transfer("x1", at(hours=2), "dave",
                                                         "0xabc" + "7" * 33 + "9f3e"),
        outcome("c1", at(hours=3), "ADDRESS", SCAM),
        transfer("t1", at(0), "alice", SCAM),  # a duplicate delivery
    ]
    return events, policy


@pytest.fixture(scope="module")
def reference(scenario_and_policy):
    events, policy = scenario_and_policy
    out = collect(events, policy, "batch")
    assert out["holds"] and out["freezes"] and out["resolutions"]  # a scenario worth comparing
    return out


PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]


def test_portable_runner_gives_the_same_decisions(scenario_and_policy, reference):
    events, policy = scenario_and_policy
    assert collect(events, policy, "batch", extra=PORTABLE) == reference


def _staged_jar(pattern: str):
    home = os.path.expanduser("~/.apache_beam/cache/jars")
    found = glob.glob(os.path.join(home, pattern))
    return found[0] if found else None


@pytest.mark.parametrize("runner,jar", [("FlinkRunner", "beam-runners-flink-*-job-server-*.jar"),
                                        ("SparkRunner", "beam-runners-spark-*-job-server-*.jar")])
def test_flink_and_spark_runners_where_their_job_server_is_staged(scenario_and_policy,
                                                                  reference, runner, jar):
    path = _staged_jar(jar)
    if path is None:
        pytest.skip(f"{runner} needs its job-server jar, which is not staged here and cannot "
                    "be downloaded on this machine")
    events, policy = scenario_and_policy
    flag = "--flink_job_server_jar" if runner == "FlinkRunner" else "--spark_job_server_jar"
    out = collect(events, policy, "batch", extra=[f"--runner={runner}", f"{flag}={path}",
                                                  "--environment_type=LOOPBACK"])
    assert out == reference
