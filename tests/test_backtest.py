"""The backtest end to end: a small simulated history in Avro and in Parquet, real files,
the real runner (FnApiRunner); reruns, reconciliation, one-line CLI errors, the report."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import fastavro
import pyarrow.parquet as pq
import pytest

from connectors.replay import count_records
from pipelines import backtest, cli
from pipelines import simulate as simulate_cli
from schemas import codecs
from schemas.streams import OUTPUTS

DECISIONS = tuple(OUTPUTS)
EVIL = "<script>alert('pwned')</script>"
EVIL_USER = "<img src=x onerror=alert(1)>"


def _simulate(d: Path, fmt: str) -> Path:
    assert simulate_cli.main(["--output", str(d), "--users", "300", "--days", "5",
                              "--seed", "11", "--format", fmt]) == 0
    return d


def _plant_evil_report(d: Path) -> None:
    """Add the earliest report of the history, with markup in its text and reporter id.
    The file's records are copied as they are (malformed ones included)."""
    path = d / "reports.avro"
    with open(path, "rb") as f:
        rdr = fastavro.reader(f)
        schema, recs = rdr.writer_schema, list(rdr)
    t = min(r["event_time"] for r in recs if isinstance(r["event_time"], datetime)
            and r["event_time"].year < 2100) - timedelta(minutes=1)
    evil = {"report_id": "r-evil", "event_time": t, "reporter_user_id": EVIL_USER,
            "transfer_id": None, "suspect_address": "0x" + "ab" * 20, "suspect_user_id": None,
            "category": "OTHER", "description": EVIL, "claimed_loss_usd": 1.0}
    with open(path, "wb") as f:
        fastavro.writer(f, schema, [evil] + recs, codec="deflate")


@pytest.fixture(scope="module")
def avro_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("avro")
    inp = _simulate(base / "in", "avro")
    _plant_evil_report(inp)
    out = base / "out"
    assert backtest.run(["--input", str(inp), "--output", str(out), "--no_progress"]) == 0
    return inp, out


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("parquet")
    inp = _simulate(base / "in", "parquet")
    out = base / "out"
    assert backtest.run(["--input", str(inp), "--output", str(out), "--no_progress"]) == 0
    return inp, out


def test_avro_outputs_read_back_with_plain_fastavro(avro_run):
    _, out = avro_run
    for name in DECISIONS:
        with open(out / f"{name}.avro", "rb") as f:
            recs = list(fastavro.reader(f))
        names = {fld[0] for fld in codecs_fields(OUTPUTS[name])}
        assert all(set(r) >= names for r in recs), name
    holds = list(fastavro.reader(open(out / "holds.avro", "rb")))
    res = list(fastavro.reader(open(out / "resolutions.avro", "rb")))
    assert holds, "the simulated history has scams to hold"
    # rule 3: every hold ends in exactly one resolution
    assert sorted(h["hold_id"] for h in holds) == sorted(r["hold_id"] for r in res)
    assert (out / "metrics.json").exists() and (out / "report.html").exists()
    assert pq.read_table(out / "scores.parquet").num_rows > 0


def codecs_fields(record):
    from schemas.rows import FIELDS

    return FIELDS[record]


def test_parquet_outputs_read_back_with_plain_pyarrow(parquet_run):
    _, out = parquet_run
    for name in DECISIONS:
        t = pq.read_table(out / f"{name}.parquet")
        assert t.schema.names[:3] == [f[0] for f in codecs_fields(OUTPUTS[name])][:3]
    m = json.loads((out / "metrics.json").read_text())
    assert m["summary"]["holds"] == pq.read_table(out / "holds.parquet").num_rows
    assert m["run"]["runner"] == "FnApiRunner"


def test_rerun_gives_identical_decision_files(avro_run, tmp_path):
    """Again, with the key space cut into 3 shards instead of 64: the same bytes (how the
    batch face shards a step never changes what it decides)."""
    inp, out = avro_run
    again = tmp_path / "again"
    assert backtest.run(["--input", str(inp), "--output", str(again), "--no_progress",
                         "--no_report", "--batch_shards", "3"]) == 0
    for name in DECISIONS:
        assert (out / f"{name}.avro").read_bytes() == (again / f"{name}.avro").read_bytes(), name
    assert (out / "scores.parquet").read_bytes() == (again / "scores.parquet").read_bytes()


def _two_workers_same_decisions(inp, out, mp):
    """Backtest ``inp`` into ``mp`` with two worker processes; every decision file equals
    the one-process run's in ``out``, byte for byte. Returns ``mp``."""
    assert backtest.run(["--input", str(inp), "--output", str(mp), "--no_progress",
                         "--no_report", "--direct_num_workers", "2",
                         "--direct_running_mode", "multi_processing"]) == 0
    for name in DECISIONS:
        assert (out / f"{name}.avro").read_bytes() == (mp / f"{name}.avro").read_bytes(), name
    return mp


@pytest.mark.slow
def test_multi_processing_gives_the_same_decisions(avro_run, tmp_path):
    """Two worker processes (separate interpreters): the same files, byte for byte."""
    inp, out = avro_run
    mp = _two_workers_same_decisions(inp, out, tmp_path / "mp")
    m = json.loads((mp / "metrics.json").read_text())
    assert m["reconciliation"]["all_reconcile"] is True


def test_timed_flush_loses_no_bytes_written_meanwhile():
    """Beam's data-plane stream flushed on a timer (what the FnApiRunner uses towards gRPC
    workers), with a send queue slow to take what is flushed: every byte written arrives
    once the backtest's guard is on (without it, what is written while a flush hands its
    bytes over is cleared unsent)."""
    import threading

    from apache_beam.runners.worker.data_plane import TimeBasedBufferingClosableOutputStream

    from connectors.chunks import no_timed_flushes

    no_timed_flushes()
    sent: list = []
    writer = threading.current_thread()
    handing_over, written = threading.Event(), threading.Event()

    def send(data: bytes) -> None:
        sent.append(data)
        if threading.current_thread() is not writer:  # a flush on the timer's thread
            handing_over.set()
            written.wait(timeout=5)  # held up until the writer has written meanwhile

    out = TimeBasedBufferingClosableOutputStream(send, flush_callback=send,
                                                 time_flush_threshold_ms=1)
    out.write(b"x" * 100)
    handing_over.wait(timeout=0.5)  # a timed flush would start within a millisecond
    for _ in range(99):
        out.write(b"x" * 100)
        written.set()
    out.close()
    assert sum(map(len, sent)) == 100 * 100


@pytest.mark.timeout(600)
def test_two_worker_processes_on_a_slow_data_plane_lose_nothing(avro_run, tmp_path,
                                                                monkeypatch):
    """Two worker processes while the runner's data plane is slow (as on a loaded machine:
    the inputs it sends a worker written a chunk at a time, the send queue slow to take
    each flush, flushes every millisecond): the same decision files as one process, byte
    for byte. Before the guard, a flush cleared chunks written meanwhile and a step lost
    part of its input (with two workers on 200k transfers: every scored report missing
    from Actions)."""
    import threading

    from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
    from apache_beam.runners.worker import data_plane

    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1)
    enqueue = data_plane._GrpcDataChannel._enqueue_to_send
    send_input = fn_runner.BundleManager._send_input_to_worker
    chunks = threading.Condition()
    seen = {"chunks": 0, "flushes": 0, "writers": set()}

    def slow_enqueue(self, elem):
        # A flush from another thread than the input's writer (the timer's) is held up
        # until the writer has written another chunk (at most 10 ms)
        if threading.get_ident() not in seen["writers"]:
            with chunks:
                seen["flushes"] += 1
                chunks.notify_all()
                n = seen["chunks"]
                chunks.wait_for(lambda: seen["chunks"] > n, timeout=0.01)
        return enqueue(self, elem)

    def chunk_at_a_time(self, process_bundle_id, transform_id, byte_streams):
        def paced():
            seen["writers"].add(threading.get_ident())
            for b in byte_streams or []:
                yield b  # written by the runner when it asks for the next chunk
                with chunks:
                    seen["chunks"] += 1
                    chunks.notify_all()
                    f = seen["flushes"]  # the next chunk waits for a timed flush to begin
                    chunks.wait_for(lambda f=f: seen["flushes"] > f, timeout=0.01)
        return send_input(self, process_bundle_id, transform_id, paced())

    monkeypatch.setattr(data_plane._GrpcDataChannel, "_enqueue_to_send", slow_enqueue)
    monkeypatch.setattr(fn_runner.BundleManager, "_send_input_to_worker", chunk_at_a_time)
    inp, out = avro_run
    mp = _two_workers_same_decisions(inp, out, tmp_path / "mp")
    assert (out / "scores.parquet").read_bytes() == (mp / "scores.parquet").read_bytes()


@pytest.mark.parametrize("which", ["avro", "parquet"])
def test_metrics_reconcile(which, avro_run, parquet_run):
    inp, out = avro_run if which == "avro" else parquet_run
    m = json.loads((out / "metrics.json").read_text())
    rec = m["reconciliation"]
    manifest = json.loads((inp / "manifest.json").read_text())
    assert set(rec["inputs"]) == {"transfers", "reports", "outcomes", "blacklist"}
    for src, v in rec["inputs"].items():
        assert v["read"] == v["valid"] + v["dead_lettered"], src
        assert v["read"] == count_records(codecs.find_input(inp, src)), src
        assert v["dead_lettered"] == manifest["malformed_total"][src], src
    assert rec["all_reconcile"] is True
    assert rec["duplicates_ignored"]["transfers"] == manifest["duplicates"]["transfers"]
    # every dead letter of the run is in the file
    dl = list(codecs.read_records(out / f"dead_letter.{which}", "DeadLetter"))
    assert len(dl) == m["summary"]["dead_letters"] >= sum(manifest["malformed_total"].values())
    s = m["summary"]
    assert s["scam_prevented"] + s["scam_recovered"] + s["scam_lost"] == s["scam_transfers"]


def test_threshold_sweep_is_monotone(avro_run):
    _, out = avro_run
    sweep = json.loads((out / "metrics.json").read_text())["threshold_sweep"]
    assert [r["threshold"] for r in sweep] == sorted(r["threshold"] for r in sweep)
    for lo, hi in zip(sweep, sweep[1:], strict=False):
        assert hi["held"] <= lo["held"]
        assert hi["prevented_usd"] <= lo["prevented_usd"]
        assert hi["legit_held"] <= lo["legit_held"]


def test_report_escapes_data(avro_run):
    _, out = avro_run
    page = (out / "report.html").read_text()
    assert "r-evil" in page
    assert EVIL not in page and EVIL_USER not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<script") == 1  # the page's own (sorting, filtering), by its hash
    assert page.count("data:image/png;base64,") >= 3  # the plots are embedded


def test_friction_section_agrees_with_the_summary_and_versions_are_written(avro_run):
    _, out = avro_run
    m = json.loads((out / "metrics.json").read_text())
    f, s = m["friction"], m["summary"]
    assert sum(c.get("holds", 0) for c in f["holds_by_reason"].values()) == s["holds"]
    assert f["legit_held"] == s["legit_held"]
    assert sum(u["legit_holds"] for u in f["top_users_by_legit_holds"]) <= f["legit_held"]
    rows = [json.loads(x) for x in (out / "versions.jsonl").read_text().splitlines()]
    assert f["hold_threshold_versions"] == sum(r["model"] == "transfer_risk" for r in rows)
    for r in rows:  # no friction budget: every version carries the policy's threshold
        assert set(r) == {"model", "valid_from", "version", "n_labels", "hold_threshold"}
        assert r["hold_threshold"] == (0.8 if r["model"] == "scam_verdict" else 0.75)
    page = (out / "report.html").read_text()
    assert "Friction: who bears the holds" in page and "Why scam money was lost" in page


# ----------------------------------------------------------------------------- CLI errors
def _err(capsys, argv, via_cli=False) -> str:
    rc = cli.main(["backtest", *argv]) if via_cli else backtest.run(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_input_directory(capsys, tmp_path):
    err = _err(capsys, ["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")],
               via_cli=True)
    assert "does not exist" in err


def test_missing_transfers_file(capsys, tmp_path):
    (tmp_path / "in").mkdir()
    err = _err(capsys, ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")])
    assert "transfers" in err


def test_corrupt_file(capsys, avro_run, tmp_path):
    inp, _ = avro_run
    bad = tmp_path / "bad"
    shutil.copytree(inp, bad)
    data = (bad / "transfers.avro").read_bytes()
    (bad / "transfers.avro").write_bytes(data[:200] + b"\x00garbage" * 50 + data[-100:])
    err = _err(capsys, ["--input", str(bad), "--output", str(tmp_path / "o")])
    assert "transfers.avro" in err
    (bad / "transfers.avro").write_bytes(b"not avro at all")
    err = _err(capsys, ["--input", str(bad), "--output", str(tmp_path / "o")])
    assert "transfers.avro" in err


def test_unknown_flag(capsys, avro_run, tmp_path):
    inp, _ = avro_run
    err = _err(capsys, ["--input", str(inp), "--output", str(tmp_path / "o"), "--hold_treshold",
                        "0.5"])
    assert "--hold_treshold" in err


def test_bad_shard_count(capsys, avro_run, tmp_path):
    inp, _ = avro_run
    err = _err(capsys, ["--input", str(inp), "--output", str(tmp_path / "o"),
                        "--batch_shards", "0"])
    assert "--batch_shards" in err and ">= 1" in err


def test_output_is_a_file(capsys, avro_run, tmp_path):
    inp, _ = avro_run
    f = tmp_path / "file"
    f.write_text("x")
    err = _err(capsys, ["--input", str(inp), "--output", str(f)])
    assert "not a directory" in err


def test_missing_required_option(capsys, tmp_path):
    err = _err(capsys, ["--output", str(tmp_path)])
    assert "--input" in err


def test_unknown_subcommand(capsys):
    assert cli.main(["bactest"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bactest" in err
