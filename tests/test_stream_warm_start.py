"""Warm start: a streaming job started from a backtest's final state (``--restore_state``)
knows what the replayed history built. Real Pub/Sub emulator, real state checkpoint.

Observable through a decision: a payment to a look-alike of a payee the sender paid only
in the replayed history is held (rule 9) — which needs the sender's payees from the
checkpoint, since the stream itself never saw the genuine payment."""

from __future__ import annotations

import os
import time

import pytest

from connectors.emulator import start_process, stop_process
from connectors.pubsub_client import Collector, Publisher, create_resources, wait_until_live
from pipelines import backtest
from schemas.codecs import write_records
from tests.scenario import transfer

pytestmark = pytest.mark.skipif(
    not os.environ.get("PUBSUB_EMULATOR_HOST"),
    reason="PUBSUB_EMULATOR_HOST is not set (run ./run_local.sh test, which starts "
           "gcloud's Pub/Sub emulator)")

PROJECT = "safetynet-it-warm"
PAYEE = "0xabc" + "1" * 33 + "1234"  # paid by carol in the replayed history only
LOOK = "0xabc" + "2" * 33 + "1234"  # same first three hex digits and last four


def test_a_stream_started_from_a_replay_knows_the_payees_it_built(tmp_path):
    now = int(time.time() * 1000)
    hist = tmp_path / "history"
    hist.mkdir()
    write_records(hist / "transfers.avro", "Transfer",
                  [transfer(f"H{i}", now - 3_600_000 + i * 60_000, "carol", PAYEE, 50.0)
                   for i in range(3)])
    state = tmp_path / "state"
    assert backtest.run(["--input", str(hist), "--output", str(tmp_path / "bt"),
                         "--no_progress", "--use_models", "false",
                         "--write_state", str(state)]) == 0

    create_resources(PROJECT)
    proc = start_process(PROJECT, ["--use_models", "false", "--restore_state", str(state)],
                         log_path=str(tmp_path / "job.log"))
    pub, col = Publisher(PROJECT), Collector(PROJECT)
    try:
        wait_until_live(pub, col, timeout=90, is_alive=lambda: proc.poll() is None)
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
