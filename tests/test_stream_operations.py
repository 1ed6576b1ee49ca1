"""The streaming job as an operator meets it, on the real Pub/Sub emulator: what it checks
before it starts, what it creates when asked, its health line and topic, and an output
topic deleted while it runs (the other outputs keep flowing; the job says what is wrong,
then stops with one line). No fixed waits: each wait is on a condition, with a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.emulator import start_process, stop_process
from connectors.pubsub_client import (
    Collector,
    Publisher,
    create_resources,
    publisher_client,
    subscriber_client,
    wait_until_live,
)
from schemas.streams import ALL_TOPICS, subscription_path, topic_path
from tests.scenario import addr, listing, transfer

pytestmark = pytest.mark.skipif(
    not os.environ.get("PUBSUB_EMULATOR_HOST"),
    reason="PUBSUB_EMULATOR_HOST is not set (run ./run_local.sh test, which starts "
           "gcloud's Pub/Sub emulator)")

ROOT = Path(__file__).resolve().parent.parent
SCAM = addr("ops-scam")


def _stream(project: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pipelines.stream", "--project", project,
                           *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_missing_output_topic_stops_the_job_before_it_starts():
    project = "safetynet-it-ops-missing"
    create_resources(project, [n for n in ALL_TOPICS if n != "cases"])
    got = _stream(project, "--use_models", "false")
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    assert f"topic {topic_path(project, 'cases')}" in lines[0]
    assert "--create_missing" in lines[0]
    assert "safetynet-holds" not in lines[0]  # only what is missing is named


def _health_records(sub: str, client, records: list) -> None:
    from google.api_core import retry as gretry

    try:
        resp = client.pull(subscription=sub, max_messages=100, timeout=1.0,
                           retry=gretry.Retry(timeout=1.0))
    except Exception:  # noqa: BLE001 - deadline: nothing this time
        return
    msgs = list(resp.received_messages)
    if msgs:
        records.extend(json.loads(m.message.data) for m in msgs)
        client.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in msgs])


def _total(records: list, field: str, name: str) -> int:
    return sum(r[field].get(name, 0) for r in records)


def test_created_topics_health_and_a_topic_deleted_while_running(tmp_path):
    project = "safetynet-it-ops-run"
    create_resources(project, [n for n in ALL_TOPICS if n != "cases"])
    log = tmp_path / "job.log"
    proc = start_process(project, ["--use_models", "false", "--time_scale", "4320",
                                   "--create_missing", "--health_every", "3",
                                   "--publish_timeout", "25"], log_path=str(log))
    pub, col = Publisher(project), Collector(project)
    sub, records = subscriber_client(), []
    try:
        wait_until_live(pub, col, timeout=90, is_alive=lambda: proc.poll() is None)
        assert f"created {topic_path(project, 'cases')}" in log.read_text()
        create_resources(project, ["cases"])  # a subscription on the topic the job made
        now = int(time.time() * 1000)
        pub.publish("blacklist", listing(SCAM, now))
        pub.flush()
        t1 = int(time.time() * 1000) + 2000
        pub.publish("transfers", transfer("OPS1", t1, "dora", SCAM, 700.0))
        pub.flush()
        assert col.wait_for(lambda r: any(h.transfer_id == "OPS1" for h in r["holds"])
                            and any(c.address == SCAM for c in r["cases"]), timeout=60), \
            f"no hold / case for OPS1: {col.rows}"

        hsub = subscription_path(project, "health")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                _total(records, "events_in", "transfers") >= 2
                and _total(records, "decisions_out", "safetynet-holds") >= 1
                and any(r["watermark_lag_s"] is not None for r in records)):
            _health_records(hsub, sub, records)
        assert _total(records, "events_in", "transfers") >= 2, records  # probe + OPS1
        assert _total(records, "events_in", "blacklist") == 1, records
        assert _total(records, "decisions_out", "safetynet-holds") == 1, records
        lags = [r["watermark_lag_s"] for r in records if r["watermark_lag_s"] is not None]
        assert lags and all(0 <= x < 60 for x in lags), records
        assert "[health]" in log.read_text()

        # The outreach topic disappears: holds keep coming, the job says what is wrong.
        publisher_client().delete_topic(topic=topic_path(project, "outreach"))
        t2 = int(time.time() * 1000) + 2000
        pub.publish("transfers", transfer("OPS2", t2, "erin", SCAM, 800.0))
        pub.flush()
        assert col.wait_for(lambda r: any(h.transfer_id == "OPS2" for h in r["holds"]),
                            timeout=60), f"the other outputs stopped: {col.rows}"
        failed = f"publish to {topic_path(project, 'outreach')} failed"
        assert col.wait_for(lambda r: failed in log.read_text(), timeout=60), \
            log.read_text()[-2000:]  # said at once, not after the timeout
        # decided after the outreach topic began to fail: its hold still comes out
        t3 = int(time.time() * 1000) + 1000
        pub.publish("transfers", transfer("OPS3", t3, "fred", SCAM, 900.0))
        pub.flush()
        assert col.wait_for(lambda r: any(h.transfer_id == "OPS3" for h in r["holds"]),
                            timeout=60), f"the other outputs stopped: {col.rows}"
        assert not any(o.transfer_id in ("OPS2", "OPS3") for o in col.rows["outreach"])
        code = proc.wait(timeout=120)  # --publish_timeout 25: the job stops, loudly
        text = log.read_text()
        assert code == 1
        last = [x for x in text.splitlines() if x.startswith("stream: error:")]
        assert len(last) == 1 and topic_path(project, "outreach") in last[0], text[-2000:]

        def stuck(r):  # the health records said which topic held decisions back
            return (r["oldest_unpublished_topic"] == topic_path(project, "outreach")
                    and r["unpublished"].get("safetynet-outreach", 0) >= 1
                    and r["oldest_unpublished_s"] >= 0)

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(stuck(r) for r in records):
            _health_records(hsub, sub, records)
        assert any(stuck(r) for r in records), records[-3:]
    finally:
        stop_process(proc)
        col.close()
        sub.close()
