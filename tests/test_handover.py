"""A chunked replay on this machine hands the keyed steps' states from one chunk to the next
on local disk (``transforms.faces.Handover``), not through the pipeline: what a chunk keeps
for the next is exactly what a state checkpoint would hold, and none of it crosses the
pipeline as elements (so a chunk's memory does not carry every key's state several times
over: read, re-encoded between stages, encoded again for the checkpoint's writer)."""

from __future__ import annotations

import pickle
from pathlib import Path

import fastavro
import pytest

from connectors import chunked
from pipelines import backtest
from pipelines import simulate as simulate_cli
from schemas.streams import OUTPUTS

POLICY = ["--model_warmup_labels", "30", "--model_min_negatives", "20",
          "--model_min_positives", "3", "--model_publish_labels", "20",
          "--label_horizon", "1d"]


def _checkpoint_records(d: Path) -> set:
    out = set()
    for p in d.glob("state-*.avro"):
        with open(p, "rb") as f:
            out |= {(r["step"], pickle.loads(r["key"]), r["state"])
                    for r in fastavro.reader(f)}
    return out


def _handed_over(d: Path) -> set:
    out = set()
    for p in (d / "handover").glob("*/*.pkl"):  # STEP/SHARD.pkl
        with open(p, "rb") as f:
            out |= {(p.parent.name, key, blob) for key, blob, _due in pickle.load(f)}
    return out


def _replay(inp: Path, out: Path, handover: bool) -> list:
    """A replay in 2-day chunks; returns, per chunk but the last, what it kept for the
    next one: (records in its checkpoint's state files, records handed over on disk)."""
    job = backtest.prepare(["--input", str(inp), "--output", str(out), "--no_progress",
                            *POLICY, "--chunk", "2d", "--no_report"])
    kept = []

    def run_one(part, run):
        counters = backtest._run_pipeline(job, part, False, run)
        if run.save is not None:  # read before the next chunk removes it
            kept.append((_checkpoint_records(Path(run.save)),
                         _handed_over(Path(run.save))))
        return counters

    chunked.run_chunked(job, run_one, False, handover=handover)
    return kept


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    base = tmp_path_factory.mktemp("handover")
    inp = base / "in"
    assert simulate_cli.main(["--output", str(inp), "--users", "800", "--days", "6",
                              "--seed", "3", "--format", "parquet"]) == 0
    return (_replay(inp, base / "ckpt", False), _replay(inp, base / "hand", True),
            base)


def test_what_a_chunk_hands_over_is_what_its_checkpoint_would_hold(kept):
    by_checkpoint, by_handover, _ = kept
    assert len(by_checkpoint) == len(by_handover) == 2  # 3 chunks of 2 days
    for (ckpt, none), (empty, handed) in zip(by_checkpoint, by_handover, strict=True):
        assert none == set()
        assert len(ckpt) > 1000
        steps = {step for step, _, _ in ckpt}
        assert {"TransferLedger", "SenderProfile", "CaseBook", "Learner"} <= steps
        # every step, key and saved state, byte for byte; none of it as pipeline elements
        assert handed == ckpt
        assert empty == set()


def test_a_replay_that_hands_over_decides_as_one_through_checkpoints(kept):
    _, _, base = kept
    for name in OUTPUTS:
        a, b = base / "ckpt" / f"{name}.parquet", base / "hand" / f"{name}.parquet"
        assert a.read_bytes() == b.read_bytes(), f"{name} differs"
    assert ((base / "ckpt" / "scores.parquet").read_bytes()
            == (base / "hand" / "scores.parquet").read_bytes())


@pytest.mark.slow
def test_two_worker_processes_hand_over_to_the_same_decisions(kept, tmp_path, capsys):
    """Worker processes of the local runner read and write the hand-over files too (two
    chunks, cut at the first 4-day boundary of the epoch, two days in: one hand-over,
    written by the first chunk's workers and read by the second's; a chunked replay
    decides as one run whatever its chunks, test_checkpoint.py). Each chunk of a run on
    worker processes starts its own workers: about 9 CPU-s a chunk here."""
    _, _, base = kept
    mp = tmp_path / "mp"
    assert backtest.run(["--input", str(base / "in"), "--output", str(mp), *POLICY,
                         "--chunk", "4d", "--no_report", "--direct_num_workers", "2",
                         "--direct_running_mode", "multi_processing"]) == 0
    assert "2 chunk(s) of event time" in capsys.readouterr().err  # one hand-over
    for name in OUTPUTS:
        a, b = base / "hand" / f"{name}.parquet", mp / f"{name}.parquet"
        assert a.read_bytes() == b.read_bytes(), f"{name} differs"


def test_a_replay_whose_labels_wait_on_disk_decides_as_one_in_memory(kept, tmp_path,
                                                                     monkeypatch):
    """A step's long input (the Learner's labels; above all in the last chunk, where every
    waiting label is released at once) waits for its step on disk, sorted, and is read back
    a piece at a time (``transforms.faces.Spill``): the decisions are the same as with
    every list in memory. Here every list of 40 events or more spills."""
    from transforms import faces

    spilled = []
    real = faces.spill_pairs

    def counted(pairs, sort_key, directory):
        spilled.append(len(pairs))
        return real(pairs, sort_key, directory)

    monkeypatch.setattr(faces, "spill_pairs", counted)
    monkeypatch.setattr(faces, "PIECE", 7)  # many pieces per key: every seam crossed
    monkeypatch.setattr(backtest, "Spill", lambda d: faces.Spill(d, events=40))
    _, _, base = kept
    out = tmp_path / "spill"
    _replay(base / "in", out, True)
    assert len(spilled) >= 10 and sum(spilled) >= 400  # several keys, several runs each
    for name in OUTPUTS:
        a, b = base / "hand" / f"{name}.parquet", out / f"{name}.parquet"
        assert a.read_bytes() == b.read_bytes(), f"{name} differs"
    assert ((base / "hand" / "scores.parquet").read_bytes()
            == (out / "scores.parquet").read_bytes())
    assert not list(out.glob(".shuffle-*")) and not list(out.glob(".chunks-*"))
