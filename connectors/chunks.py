"""Long replays in event-time chunks, with state carried through state checkpoints.

``plan(scan, chunk_ms)`` cuts the replay's event time into chunks aligned to UTC hours or
days (the backtest requires whole hours, so that no hour of the hourly aggregates is cut in
two), skipping spans without events; the backtest runs one pipeline per
chunk: the inputs whose event time falls in it, every keyed step seeded from the previous
chunk's checkpoint, and at the chunk's end every key's state saved to the next one
(:mod:`transforms.checkpoint`). Memory is then bounded by one chunk's events plus the live
state, whatever the length of history, and the decisions are exactly those of one run
(tested). The last chunk runs on to the end of time, as a single run does.

``merge_parts`` joins the chunks' decision files into one, in the same order a single run
writes (each part is sorted; parts are merged, not concatenated, so an output of one chunk
that is due later than another chunk's still lands in order).
"""

from __future__ import annotations

import heapq
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional

from schemas import codecs

HOUR_MS = 3_600_000


class Slice(NamedTuple):
    """One chunk: inputs with ``lo <= event_time < hi`` (None: unbounded); ``last``."""

    index: int
    lo: Optional[int]
    hi: int
    last: bool


def plan(scan: "Scan", chunk_ms: Optional[int]) -> list:
    """Chunks covering the replay: one per span of ``chunk_ms`` (aligned to the epoch, so
    to UTC hours or days) that holds at least one event; each starts where the previous one
    ended (the first is open below) and the last ends just after the last event.

    >>> s = Scan(5, 47, {0, 1, 4})
    >>> [(x.lo, x.hi, x.last) for x in plan(s, 10)]
    [(None, 10, False), (10, 20, False), (20, 48, True)]
    >>> [(x.lo, x.hi, x.last) for x in plan(s, None)]
    [(None, 48, True)]
    """
    if not chunk_ms:
        return [Slice(0, None, scan.hi + 1, True)]
    ids = sorted(scan.ids)
    out, lo = [], None
    for i in ids[:-1]:
        out.append(Slice(len(out), lo, (i + 1) * chunk_ms, False))
        lo = (i + 1) * chunk_ms
    out.append(Slice(len(out), lo, scan.hi + 1, True))
    return out


class Scan(NamedTuple):
    """The event times of a replay: first, last, and which chunks (``t // chunk``) hold
    at least one event."""

    lo: int
    hi: int
    ids: set


def scan_times(paths: list, chunk_ms: Optional[int]) -> Scan:
    """Read the event times of the replay files (Parquet: one column; Avro: every record,
    decoded) once, before any chunk runs."""
    lo = hi = None
    ids: set = set()
    c = chunk_ms or 1
    for path in paths:
        for t in _times(Path(path)):
            if not codecs.MIN_TS <= t <= codecs.MAX_TS:
                continue  # the reader dead-letters it (stamped with a valid neighbour's time)
            lo = t if lo is None or t < lo else lo
            hi = t if hi is None or t > hi else hi
            if chunk_ms:
                ids.add(t // c)
    if lo is None:
        return Scan(0, 0, {0})
    return Scan(lo, hi, ids or {0})


def _times(path: Path) -> Iterator[int]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        f = pq.ParquetFile(str(path))
        if "event_time" not in f.schema_arrow.names:
            return
        for batch in f.iter_batches(columns=["event_time"]):
            col = batch.column(0)
            try:
                col = col.cast("int64")
            except Exception:  # noqa: BLE001 - a mistyped column: the reader dead-letters
                continue
            yield from (t for t in col.to_pylist() if t is not None)
        return
    import fastavro

    with open(path, "rb") as f:
        for r in fastavro.reader(f):
            t = r.get("event_time")
            if hasattr(t, "timestamp"):
                t = int(t.timestamp() * 1000)
            if isinstance(t, int):
                yield t


def _merged(parts: list, record: str, key: Callable) -> Iterator:
    """The parts' rows in one order: each part was written sorted by ``key``
    (:class:`connectors.files.WriteDecisionFiles`), so they are merged as they stream."""
    return heapq.merge(*(codecs.read_records(p, record) for p in parts), key=key)


def merge_parts(part_dirs: list, out: Path, fmt: str, names: dict, sort_key: Callable,
                scores_file: str) -> None:
    """Join each output of the chunks' directories into ``out``."""
    for name, record in names.items():
        parts = [d / f"{name}.{fmt}" for d in part_dirs if (d / f"{name}.{fmt}").exists()]
        codecs.write_records(out / f"{name}.{fmt}", record,
                             _merged(parts, record, sort_key(name)), fmt)
    _merge_scores([d / scores_file for d in part_dirs], out / scores_file)
    for name in ("hourly_metrics", "fan_in_hourly", "versions"):
        lines = []
        for d in part_dirs:
            p = d / f"{name}.jsonl"
            if p.exists():
                lines += p.read_text().splitlines()
        (out / f"{name}.jsonl").write_text("".join(x + "\n" for x in sorted(lines)))


def _merge_scores(parts: list, dest: Path) -> None:
    """Parts hold disjoint, increasing event-time ranges (a transfer is scored at its own
    time, in its chunk): appended in order, row group by row group."""
    import pyarrow.parquet as pq

    parts = [p for p in parts if p.exists()]
    tmp = dest.with_name(f".{dest.name}.tmp")
    writer = None
    try:
        for p in parts:
            f = pq.ParquetFile(str(p))
            for i in range(f.num_row_groups):
                t = f.read_row_group(i)
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp), t.schema, compression="zstd")
                writer.write_table(t)
        if writer is None and parts:
            shutil.copyfile(parts[0], tmp)
    finally:
        if writer is not None:
            writer.close()
    if tmp.exists():
        os.replace(tmp, dest)


def add_counters(total: dict, more: dict) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v
