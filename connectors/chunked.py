"""A backtest's replay in chunks of event time, as the driver runs it: the ``--chunk``
flag, the ``--write_state`` directory, and the run of every chunk through the planner and
runner of :mod:`connectors.chunks`."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

from connectors import chunks, statefs
from connectors.files import SCORES_FILE, latest_cases_file, sort_key
from connectors.reader import read_batches
from pipelines.argtypes import UsageError
from pipelines.backtest_options import PROG
from pipelines.options import parse_duration
from schemas.streams import OUTPUTS


def chunk_flag(text: Optional[str], day_ms: int) -> Optional[int | str]:
    """``--chunk``: ``auto``, ``0`` (one run), or whole hours and whole days of ``--day``
    (the daily selections, rules 11 and 12, rank whole days of one chunk)."""
    if text is None or text == chunks.AUTO:
        return chunks.AUTO
    if text.strip() in ("0", "0d", "0h"):
        return None
    try:
        ms = parse_duration(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise UsageError(f"--chunk {text!r}: not a duration (e.g. 7d, 24h)") from None
    if ms < chunks.HOUR_MS or ms % chunks.HOUR_MS:
        raise UsageError(f"--chunk {text}: use whole hours (e.g. 12h, 7d)")
    if ms % day_ms:
        raise UsageError(f"--chunk {text}: use whole days (of --day, {day_ms // 3_600_000}h) "
                         "so that no day of the daily risk assessments and call capacity is "
                         "cut by a chunk")
    return ms


def prepare_state_dir(d: str, restore: str) -> None:
    """``--write_state DIR``: a new or empty directory, or a checkpoint this command may
    replace (never the one it restores from). ``gs://`` and Beam's other file systems
    through :mod:`connectors.statefs`."""
    if not statefs.is_local(d):
        if d.rstrip("/") == restore.rstrip("/"):
            raise UsageError("--write_state and --restore_state name the same directory")
        if statefs.files(d, "*") and not statefs.exists(statefs.join(d, "manifest.json")):
            raise UsageError(f"--write_state {d} is not empty and holds no checkpoint: "
                             "refusing to write into it")
        statefs.remove_all(d)
        return
    d, restore = Path(d), Path(restore)  # type: ignore[assignment]
    if d.exists() and d.resolve() == restore.resolve():
        raise UsageError("--write_state and --restore_state name the same directory")
    if d.exists() and not d.is_dir():
        raise UsageError(f"--write_state {d} exists and is not a directory")
    if d.is_dir() and any(d.iterdir()):
        if not (d / "manifest.json").exists():
            raise UsageError(f"--write_state {d} is not empty and holds no checkpoint: "
                             "refusing to write into it")
        shutil.rmtree(d)


def run_chunked(job, run_one: Callable, progress: bool,
                handover: Optional[bool] = None) -> dict:
    """The replay read once, then one pipeline per chunk of event time
    (:func:`connectors.chunks.run_chunks`), each starting from the previous one's state
    checkpoint; returns the summed counters. ``job`` is the backtest's checked command line
    (:class:`pipelines.backtest.Job`); ``run_one(out, chunk run)`` runs one chunk's
    pipeline and returns its counters. ``handover``: the steps' states between two chunks
    on local disk (:class:`transforms.faces.Handover`), not through checkpoints; None:
    whenever the runner is local."""
    if handover is None:
        handover = chunks.local_runner(job.options)
    restored, restore = job.restored, job.shared.restore_state
    bounds = (job.shared.max_usd_value, job.shared.max_amount)

    def check_start(lo: int) -> None:
        if restored is not None and restored["end_time"] > lo:
            raise UsageError(
                f"--restore_state {restore} holds state up to event time "
                f"{restored['end_time']} ms, after the replay's first event ({lo} ms): "
                "replay only what comes after the checkpoint")

    def merge(dirs: list) -> None:
        chunks.merge_parts(dirs, job.out, job.fmt, OUTPUTS, sort_key, SCORES_FILE)
        latest_cases_file(job.out / f"cases.{job.fmt}", job.fmt)  # the latest versions

    def say(text: str) -> None:
        if progress:
            print(f"[{PROG}] {text}", file=sys.stderr, flush=True)

    r = chunks.Replayer(
        read=lambda name, path: read_batches(name, path, job.replay.totals.get(name, 0),
                                             bounds, progress),
        run_one=run_one,
        say=say, merge=merge, check_start=check_start)
    chunking = chunks.chunking(job.chunk_ms, job.flags.chunk_transfers)
    return chunks.run_chunks(r, dict(job.replay.files), job.out, chunking, job.policy.day_ms,
                             job.readers, restore, restored["end_time"] if restored else None,
                             job.flags.write_state, handover=handover)
