"""Warm start: a streaming job started from a backtest's final state (``--restore_state``)
knows what the replayed history built. Real Pub/Sub emulator, real state checkpoint, and
the checkpoint on ``gs://``: written by the backtest and read by the job through Beam's
``FileSystems`` (its GCS file system, against a Cloud Storage emulator), manifest checked.

Observable through a decision: a payment to a look-alike of a payee the sender paid only
in the replayed history is held (rule 9) — which needs the sender's payees from the
checkpoint, since the stream itself never saw the genuine payment."""

from __future__ import annotations

import json
import os
import time

import pytest

from connectors import statefs
from connectors.emulator import start_process, start_storage, stop_process
from connectors.pubsub_client import Collector, Publisher, create_resources, wait_until_live
from pipelines import backtest
from schemas.codecs import write_records
from tests.scenario import transfer
from transforms.checkpoint import check

pytestmark = pytest.mark.skipif(
    not os.environ.get("PUBSUB_EMULATOR_HOST"),
    reason="PUBSUB_EMULATOR_HOST is not set (run ./run_local.sh test, which starts "
           "gcloud's Pub/Sub emulator)")

PROJECT = "safetynet-it-warm"
BUCKET = "safetynet-it-warm-state"
PAYEE = "0xabc" + "1" * 33 + "1234"  # paid by carol in the replayed history only
LOOK = "0xabc" + "2" * 33 + "1234"  # same first three hex digits and last four


@pytest.fixture
def gcs(monkeypatch):
    emu = start_storage(BUCKET)
    if emu is None:
        pytest.skip("gcp-storage-emulator is not installed (requirements.lock)")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emu.host)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata-server probe for credentials
    yield emu
    emu.stop()


def test_a_stream_started_from_a_replay_on_gcs_knows_the_payees_it_built(tmp_path, gcs):
    now = int(time.time() * 1000)
    hist = tmp_path / "history"
    hist.mkdir()
    write_records(hist / "transfers.avro", "Transfer",
                  [transfer(f"H{i}", now - 3_600_000 + i * 60_000, "carol", PAYEE, 50.0)
                   for i in range(3)])
    state = f"gs://{BUCKET}/checkpoints/warm"
    assert backtest.run(["--input", str(hist), "--output", str(tmp_path / "bt"),
                         "--no_progress", "--use_models", "false",
                         "--write_state", state]) == 0
    manifest = json.loads(statefs.read_text(f"{state}/manifest.json"))
    assert any(n.startswith("state-") for n in manifest["files"])
    assert check(state)["end_time"] == manifest["end_time"]
    assert not (tmp_path / "gs:").exists()  # not written to a local look-alike path

    create_resources(PROJECT)
    proc = start_process(PROJECT, ["--use_models", "false", "--restore_state", state],
                         log_path=str(tmp_path / "job.log"))
    pub, col = Publisher(PROJECT), Collector(PROJECT)
    try:
        wait_until_live(pub, col, timeout=150, is_alive=lambda: proc.poll() is None)
        t = int(time.time() * 1000)
        pub.publish("transfers", transfer("W1", t, "carol", LOOK, 40.0))
        pub.flush()
        got = col.wait_for(lambda r: any(h.transfer_id == "W1" for h in r["holds"]),
                           timeout=60)
        assert got, f"no hold for W1: {col.rows}"
        hold = next(h for h in col.rows["holds"] if h.transfer_id == "W1")
        assert f"lookalike_of={PAYEE}" in hold.reasons
        assert proc.poll() is None, "the job died"
    finally:
        stop_process(proc, kill=True)  # nothing here pins a graceful stop; SIGINT waits 15 s
        col.close()
