"""The streaming job with a shadow policy, against the real Pub/Sub emulator.

Same method as tests/test_stream_emulator.py: a small scenario re-timed to the present,
every duration scaled by ``--time_scale 720`` (the hour of the disagreement counts lasts
5 s of event time: long enough that the shadow's decisions, on the longer path, reach it
before the local runner's watermark closes it), the job as a child process, outputs read
from the topics.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from connectors.emulator import start_process, stop_process
from connectors.pubsub_client import Collector, Publisher, create_resources, wait_until_live
from schemas import codecs
from schemas.streams import SHADOW_TOPICS, subscription_path
from tests.scenario import addr, listing, transfer
from tests.test_stream_emulator import publish_paced

pytestmark = pytest.mark.skipif(
    not os.environ.get("PUBSUB_EMULATOR_HOST"),
    reason="PUBSUB_EMULATOR_HOST is not set (run ./run_local.sh test, which starts "
           "gcloud's Pub/Sub emulator)")

PROJECT = "safetynet-it-shadow"
SCALE = "720"
SCAM = addr("shadow-stream-scam")
PLAIN = addr("shadow-stream-plain")
SHADOW_NAMES = ("shadow-holds", "shadow-outreach", "shadow-disagreements")


class RawCollector:
    """Pulls raw message payloads from the shadow subscriptions."""

    def __init__(self, project: str, names: tuple):
        from google.cloud import pubsub

        self.client = pubsub.SubscriberClient()
        self.project, self.names = project, names
        self.data: dict = {n: [] for n in names}

    def pull_once(self) -> None:
        from google.api_core import retry as gretry

        for n in self.names:
            sub = subscription_path(self.project, n)
            try:
                resp = self.client.pull(subscription=sub, max_messages=500, timeout=1.0,
                                        retry=gretry.Retry(timeout=1.0))
            except Exception:  # noqa: BLE001 — deadline: nothing there yet
                continue
            msgs = list(resp.received_messages)
            if msgs:
                self.data[n] += [m.message.data for m in msgs]
                self.client.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in msgs])

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    create_resources(PROJECT)
    create_resources(PROJECT, SHADOW_TOPICS)
    d = tmp_path_factory.mktemp("shadow-stream")
    (d / "shadow.json").write_text(json.dumps({"warn_threshold": 0.01}))
    proc = start_process(PROJECT, ["--use_models", "false", "--time_scale", SCALE,
                                   "--shadow_policy", str(d / "shadow.json")],
                         log_path=str(d / "job.log"))
    pub, col, raw = Publisher(PROJECT), Collector(PROJECT), RawCollector(PROJECT, SHADOW_NAMES)
    try:
        wait_until_live(pub, col, timeout=90, is_alive=lambda: proc.poll() is None)
        yield proc, pub, col, raw
    finally:
        stop_process(proc, kill=True)  # nothing here pins a graceful stop; SIGINT waits 15 s
        col.close()
        raw.close()


def test_shadow_decisions_and_hourly_disagreements_on_pubsub(job):
    proc, pub, col, raw = job
    base = int(time.time() * 1000) + 500
    # The candidate warns from a rules score of 0.01: on alice's plain payment too.
    publish_paced(pub, col, [listing(SCAM, base), transfer("S1", base + 2000, "bob", SCAM),
                             transfer("S2", base + 4000, "alice", PLAIN)])

    def counts() -> int:
        return sum(json.loads(m)["disagreements"] for m in raw.data["shadow-disagreements"])

    # (a day lasts 2 min at this time scale: a day's risk assessments may follow; rule 11's
    # own tests pin those, this one pins the warnings)
    def shadow_warnings() -> list:
        return sorted((o.kind, o.user_id, o.transfer_id) for o in (
            codecs.decode_json("Outreach", m, "shadow-outreach")
            for m in raw.data["shadow-outreach"]) if o.kind == "WARNING")

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            counts() >= 1 and len(shadow_warnings()) >= 2
            and raw.data["shadow-holds"] and col.rows["outreach"]):
        raw.pull_once()
        col.pull_once()
    assert proc.poll() is None, "the job died"
    shadow_holds = [codecs.decode_json("Hold", m, "shadow-holds")
                    for m in raw.data["shadow-holds"]]
    assert [h.transfer_id for h in shadow_holds] == ["S1"]
    assert shadow_warnings() == [("WARNING", "alice", "S2"), ("WARNING", "bob", "S1")]
    hourly = [json.loads(m) for m in raw.data["shadow-disagreements"]]
    assert sum(h["disagreements"] for h in hourly) == 1
    (h,) = hourly
    assert h["by_pair"] == {"none>warn": 1}
    assert h["window_start"] <= base + 4000 < h["window_end"]
    assert h["window_end"] - h["window_start"] == 3_600_000 // int(SCALE)
    # The live policy acted as without a shadow: bob held and warned, alice untouched.
    assert [x.transfer_id for x in col.rows["holds"]] == ["S1"]
    assert [(o.kind, o.user_id) for o in col.rows["outreach"]
            if o.kind == "WARNING"] == [("WARNING", "bob")]
