"""Long replays in chunks and state checkpoints (DESIGN.md, "Scale"): a chunked replay
decides exactly as one run; a checkpoint carries every step's state; a checkpoint of
another format, another River version or with an altered file is refused with one line,
before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import backtest
from pipelines import simulate as simulate_cli
from schemas.streams import OUTPUTS
from transforms.checkpoint import CheckpointError, check

# labels within a day, so that the model switches on early; no report.html (nothing here
# reads it, and its plots are a quarter of a run's CPU)
POLICY = ["--model_warmup_labels", "30", "--model_min_negatives", "20", "--model_min_positives",
          "3", "--model_publish_labels", "20", "--label_horizon", "1d", "--no_report"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One simulated history (Parquet, 6 days; labels within a day, so that the model
    switches on early), replayed in one run and in 2-day chunks
    (the chunked one also writes its final state)."""
    base = tmp_path_factory.mktemp("chunks")
    inp = base / "in"
    assert simulate_cli.main(["--output", str(inp), "--users", "1500", "--days", "6",
                              "--seed", "5", "--format", "parquet"]) == 0
    one, chunked, state = base / "one", base / "chunked", base / "state"
    assert backtest.run(["--input", str(inp), "--output", str(one), "--no_progress",
                         *POLICY]) == 0
    assert backtest.run(["--input", str(inp), "--output", str(chunked), "--no_progress",
                         *POLICY, "--chunk", "2d", "--write_state", str(state)]) == 0
    return inp, one, chunked, state


@pytest.mark.parametrize("how", ["2d", "auto"])
def test_chunked_replay_decides_exactly_as_one_run(runs, how, tmp_path):
    inp, one, chunked, _ = runs
    if how == "auto":  # no --chunk: the chunks are chosen from the history's size
        # (~1,655 transfers over 6 days: at most 900 a chunk gives 3-day chunks, cut at days
        # 2 and 5 where the 2d run cuts at 2 and 4; each chunk is a pipeline of its own, so
        # fewer, longer chunks than 500's six 1-day ones)
        chunked = tmp_path / "auto"
        assert backtest.run(["--input", str(inp), "--output", str(chunked), "--no_progress",
                             *POLICY, "--chunk_transfers", "900"]) == 0
    for name in OUTPUTS:
        a, b = one / f"{name}.parquet", chunked / f"{name}.parquet"
        assert a.read_bytes() == b.read_bytes(), f"{name} differs"
    # byte for byte: the merged file is cut into row groups as one run's
    assert (one / "scores.parquet").read_bytes() == (chunked / "scores.parquet").read_bytes()
    sa = pq.read_table(one / "scores.parquet")
    assert sa.num_rows > 1000
    # the models did decide in it: a chunk boundary that lost the model state would show
    versions = set(sa.column("model_version").to_pylist())
    assert any(v.startswith("transfer_risk:") for v in versions)
    for name in ("hourly_metrics", "fan_in_hourly"):
        assert (one / f"{name}.jsonl").read_text() == (chunked / f"{name}.jsonl").read_text()


def test_inputs_are_read_once_into_chunks_each_row_in_its_own(runs, tmp_path):
    """The staging pass behind --chunk auto: every record of every input lands in exactly
    one chunk, the one whose event-time window holds it; a smaller budget, more chunks."""
    from connectors import chunks
    from connectors.replay import read_validated, scan_input
    from schemas.streams import REPLAY_FILES

    inp = runs[0]
    replay = scan_input(inp)
    staged = chunks.stage_inputs(
        dict(replay.files), lambda n, p: read_validated(p, REPLAY_FILES[n], n), tmp_path,
        86_400_000, parts=2)
    assert staged.rows == replay.totals
    plans = {b: chunks.chunk_files(staged, chunks.auto_chunk_ms(staged, b))
             for b in (500, 10**9)}
    assert len(plans[10**9][0]) == 1 and len(plans[500][0]) >= 3
    slices, spills = plans[500]
    for name, total in replay.totals.items():
        seen = 0
        for sl, files in zip(slices, spills, strict=True):
            for path in files[name]:
                for batch in chunks.read_spilled(path):
                    for r in batch:
                        t = getattr(r, "event_time", None) or r.at
                        assert (sl.lo is None or t >= sl.lo) and (sl.last or t < sl.hi)
                        seen += 1
        assert seen == total, name


def test_the_final_state_is_a_sealed_checkpoint_with_every_step(runs):
    import pickle

    import fastavro

    _, _, _, state = runs
    manifest = check(state)
    steps = set()
    for p in state.glob("state-*.avro"):
        with open(p, "rb") as f:
            steps |= {r["step"] for r in fastavro.reader(f)}
    assert {"TransferLedger", "SenderProfile", "CounterpartyProfile", "Learner",
            "Actions", "Outreach"} <= steps
    assert manifest["files"] and manifest["end_time"] > 0
    versions = []
    for p in state.glob("versions-*.avro"):
        with open(p, "rb") as f:
            versions += [pickle.loads(r["state"]) for r in fastavro.reader(f)]
    assert [v.model for v in versions] == ["transfer_risk"]


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage, message", [
    ("format", "format 99, this release reads format 3"),
    ("old", "format 1, this release reads format 3"),
    ("previous", "format 2, this release reads format 3"),
    ("river", "written with River 0.0.1"),
    ("corrupt", "is corrupt"),
    ("manifest", "no manifest.json"),
])
def test_a_checkpoint_that_cannot_be_used_is_refused_before_the_run(
        runs, tmp_path, capsys, damage, message):
    inp, _, _, state = runs
    d = _copy(state, tmp_path / "ckpt")
    m = json.loads((d / "manifest.json").read_text())
    if damage in ("format", "old", "previous"):
        m["format"] = {"format": 99, "old": 1, "previous": 2}[damage]
    elif damage == "river":
        m["river"] = "0.0.1"
    if damage in ("format", "old", "previous", "river"):
        (d / "manifest.json").write_text(json.dumps(m))
    elif damage == "corrupt":
        f = next(d.glob("state-*.avro"))
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    else:
        (d / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=message):
        check(d)
    out = tmp_path / "out"
    assert backtest.run(["--input", str(inp), "--output", str(out), "--no_progress",
                         "--restore_state", str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (out / "holds.parquet").exists()  # refused before anything ran


def test_restoring_a_checkpoint_that_ends_after_the_replay_begins_is_refused(runs, tmp_path,
                                                                             capsys):
    inp, _, _, state = runs
    assert backtest.run(["--input", str(inp), "--output", str(tmp_path / "o"),
                         "--no_progress", "--restore_state", str(state)]) == 2
    assert "after the replay's first event" in capsys.readouterr().err
