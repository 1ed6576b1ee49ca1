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

The inputs are read once per run (:func:`stage_inputs`: validated, spilled per day of
event time, and per worker), and each chunk's pipeline reads only its own days;
:func:`run_chunks` runs the chunks in turn; ``--chunk auto`` picks their length from the
history's size (:func:`auto_chunk_ms`).
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import os
import pickle
import shutil
import tempfile
import time
from itertools import compress, repeat
from operator import is_, is_not
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional

from core.machine import END_OF_TIME, Chunk, gc_off
from schemas import codecs
from transforms.checkpoint import seal as seal_checkpoint
from transforms.faces import Handover

HOUR_MS = 3_600_000
AUTO = "auto"  # --chunk auto: chunks chosen from the history's span and size
AUTO_TRANSFERS = 1_000_000  # --chunk auto: about this many transfers per chunk


class ChunkSpan(NamedTuple):
    """One chunk of the plan: inputs with ``lo <= event_time < hi`` (None: unbounded); ``last``."""

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
        return [ChunkSpan(0, None, scan.hi + 1, True)]
    ids = sorted(scan.ids)
    out, lo = [], None
    for i in ids[:-1]:
        out.append(ChunkSpan(len(out), lo, (i + 1) * chunk_ms, False))
        lo = (i + 1) * chunk_ms
    out.append(ChunkSpan(len(out), lo, scan.hi + 1, True))
    return out


class Scan(NamedTuple):
    """The event times of a replay: first, last, and which chunks (``t // chunk``) hold
    at least one event."""

    lo: int
    hi: int
    ids: set


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


ROW_GROUP = 1024 * 1024  # pyarrow's default row group: what one run's write_table makes


def _merge_scores(parts: list, dest: Path) -> None:
    """Parts hold disjoint, increasing event-time ranges (a transfer is scored at its own
    time, in its chunk): appended in order, cut into row groups as one run's single
    ``write_table`` cuts them, so the merged file is byte-identical to one run's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = [p for p in parts if p.exists()]
    tmp = dest.with_name(f".{dest.name}.tmp")
    writer, pending, n = None, [], 0

    def flush(rows: int) -> None:
        nonlocal pending, n
        t = pa.concat_tables(pending).combine_chunks()
        writer.write_table(t.slice(0, rows))
        rest = t.slice(rows)
        pending, n = ([rest], rest.num_rows) if rest.num_rows else ([], 0)

    try:
        for p in parts:
            f = pq.ParquetFile(str(p))
            for i in range(f.num_row_groups):
                t = f.read_row_group(i)
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp), t.schema, compression="zstd")
                pending.append(t)
                n += t.num_rows
                while n >= ROW_GROUP:
                    flush(ROW_GROUP)
        if writer is not None and n:
            flush(n)
        if writer is None and parts:
            shutil.copyfile(parts[0], tmp)
    finally:
        if writer is not None:
            writer.close()
    if tmp.exists():
        os.replace(tmp, dest)


def memory_note() -> str:
    """This process's resident memory now and at its peak (Linux; "" elsewhere)."""
    import resource

    try:
        with open("/proc/self/statm") as f:
            now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return ""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return f"resident {now / 2**20:,.0f} MB, peak {peak / 2**20:,.0f} MB"


def add_counters(total: dict, more: dict) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


# --------------------------------------------------------------- inputs read once per run
class Staged(NamedTuple):
    """A replay's inputs read once, validated and spread over spill files by bucket of
    event time (:func:`stage_inputs`): ``scan`` holds the buckets (``t // bucket_ms``)
    that hold events, ``files`` is ``{input: {bucket: [spill file paths]}}``, ``rows``
    the rows staged per input."""

    scan: Scan
    bucket_ms: int
    files: dict
    rows: dict


class _Spill:
    """The spill files of one input: one per (bucket, part), batches pickled in turn; a
    bucket's batches are dealt round robin over its parts (one reader per part). A batch is
    pickled as its rows' plain tuples (:func:`_packed`), read back as rows by
    :func:`read_spilled`."""

    def __init__(self, work: Path, name: str, parts: int, batch: int = 4096):
        self.work, self.name, self.parts, self.batch = work, name, parts, batch
        self.buf: dict = {}  # (bucket, part) -> rows waiting
        self.turn: dict = {}  # bucket -> part the next full batch goes to
        self.files: dict = {}  # (bucket, part) -> open file

    def add_many(self, cid: int, rows: list) -> None:
        """Rows of bucket ``cid``, in order, into its parts' batches."""
        i, n = 0, len(rows)
        while i < n:
            part = self.turn.get(cid, 0)
            got = self.buf.setdefault((cid, part), [])
            take = min(self.batch - len(got), n - i)
            got.extend(rows[i:i + take])
            i += take
            if len(got) >= self.batch:
                self._flush(cid, part)
                self.turn[cid] = (part + 1) % self.parts

    def _flush(self, cid: int, part: int) -> None:
        rows = self.buf.pop((cid, part), None)
        if not rows:
            return
        f = self.files.get((cid, part))
        if f is None:
            path = self.work / f"{self.name}-{cid}-{part}.pkl"
            f = self.files[(cid, part)] = open(path, "wb")
        _dump(_packed(rows), f)

    def close(self) -> dict:
        """Flush and close; returns ``{bucket: [paths]}``."""
        for cid, part in list(self.buf):
            self._flush(cid, part)
        out: dict = {}
        for (cid, _part), f in sorted(self.files.items()):
            f.close()
            out.setdefault(cid, []).append(f.name)
        return out


def _plain_row(t: type) -> bool:
    """A NamedTuple class of its own (no state beyond its tuple)."""
    return t.__base__ is tuple and "_fields" in vars(t)


def _packed(rows: list) -> tuple:
    """A batch of rows as ``(row type, their plain tuples, [(position, row)] of the rows of
    another type)``: the row type is pickled once, not once per row through its
    ``__getnewargs__`` (two thirds of the batch's pickling), and rebuilt as fast."""
    types = collections.Counter(map(type, rows))
    if not all(map(_plain_row, types)):
        return (None, rows, [])
    cls = types.most_common(1)[0][0]
    tuples = list(map(tuple, rows))
    if len(types) == 1:
        return (cls, tuples, [])
    return (cls, tuples, [(i, rows[i]) for i in compress(
        range(len(rows)), map(is_not, map(type, rows), repeat(cls)))])


def _dump(obj, f) -> None:
    """Pickle without the memo: the batches are flat tuples of values that no two rows
    share, and the memo's bookkeeping is half the time of pickling them."""
    p = pickle.Pickler(f, pickle.HIGHEST_PROTOCOL)
    p.fast = True
    p.dump(obj)


def _unpacked(packed) -> list:
    cls, tuples, others = packed
    if cls is None:
        return tuples
    rows = list(map(functools.partial(tuple.__new__, cls), tuples))
    for i, r in others:
        rows[i] = r
    return rows


def _bucket_runs(batch: list, ts: list, lo: int, hi: int, bucket_ms: int) -> Iterator[tuple]:
    """``(bucket, rows)`` of a batch, in order: runs of rows of the same bucket of event
    time (``ts``: the rows' times, from ``lo`` to ``hi``)."""
    if lo // bucket_ms == hi // bucket_ms:
        yield lo // bucket_ms, batch
        return
    i = 0
    for cid, run in itertools.groupby([t // bucket_ms for t in ts]):
        k = sum(1 for _ in run)
        yield cid, batch[i:i + k]
        i += k


def stage_inputs(files: dict, read: Callable[[str, Path], Iterator[list]], work: Path,
                 bucket_ms: int, parts: int) -> Staged:
    """Read each input file once (``read(name, path)``: batches of validated rows and
    DeadLetters, as :func:`connectors.replay.read_validated` yields them) into spill files
    under ``work``: by bucket of ``bucket_ms`` of event time (a row by its
    ``event_time``, a dead letter by its ``at``: as a chunk's window selects them) and
    ``parts`` files per bucket. Each chunk's pipeline then reads only its own buckets,
    ``parts`` readers per bucket at once."""
    # staging makes millions of rows and tuples, freed by reference counting once spilled
    with gc_off():
        return _stage(files, read, work, bucket_ms, parts)


def _stage(files: dict, read: Callable[[str, Path], Iterator[list]], work: Path,
           bucket_ms: int, parts: int) -> Staged:
    lo = hi = None
    ids: set = set()
    spilled, counts = {}, {}
    for name, path in files.items():
        spill, n = _Spill(work, name, parts), 0
        try:
            for batch in read(name, path):
                if not batch:
                    continue
                n += len(batch)
                # a row by its event time, a dead letter by its own
                ts = list(map(getattr, batch, repeat("event_time"), repeat(None)))
                if None in ts:
                    for i in compress(range(len(ts)), map(is_, ts, repeat(None))):
                        ts[i] = batch[i].at
                b_lo, b_hi = min(ts), max(ts)
                for cid, rows in _bucket_runs(batch, ts, b_lo, b_hi, bucket_ms):
                    ids.add(cid)
                    spill.add_many(cid, rows)
                lo = b_lo if lo is None or b_lo < lo else lo
                hi = b_hi if hi is None or b_hi > hi else hi
        finally:
            spilled[name] = spill.close()
        counts[name] = n
    scan = Scan(0, 0, {0}) if lo is None else Scan(lo, hi, ids)
    return Staged(scan, bucket_ms, spilled, counts)


def chunk_files(staged: Staged, chunk_ms: Optional[int]) -> tuple[list, list]:
    """The chunks of ``chunk_ms`` (:func:`plan`; None: one) over staged inputs, and each
    chunk's ``{input: [spill files]}`` (``chunk_ms`` is a multiple of the bucket)."""
    b, scan = staged.bucket_ms, staged.scan
    of = (lambda cid: cid * b // chunk_ms) if chunk_ms else (lambda cid: 0)
    slices = plan(Scan(scan.lo, scan.hi, {of(c) for c in scan.ids}), chunk_ms)
    index = {c: i for i, c in enumerate(sorted({of(c) for c in scan.ids}))}
    per: list = [{name: [] for name in staged.files} for _ in slices]
    for name, by_bucket in staged.files.items():
        for cid in sorted(by_bucket):
            per[index[of(cid)]][name].extend(by_bucket[cid])
    return slices, per


def auto_chunk_ms(staged: Staged, transfers_per_chunk: int) -> Optional[int]:
    """Chunks chosen from the history's span and size: whole buckets (days), as many as
    hold about ``transfers_per_chunk`` transfers on average (at least one); None (one run)
    when the whole history fits in one such chunk.

    >>> s = Staged(Scan(0, 29 * 10 + 5, set(range(30))), 10, {}, {"transfers": 300})
    >>> auto_chunk_ms(s, 10), auto_chunk_ms(s, 75), auto_chunk_ms(s, 300)
    (10, 70, None)
    """
    b = staged.bucket_ms
    days = staged.scan.hi // b - staged.scan.lo // b + 1
    per_day = max(staged.rows.get("transfers", 0), 1) / days
    k = max(1, int(transfers_per_chunk // per_day))
    return None if days <= k else k * b


def read_spilled(path: str) -> Iterator[list]:
    """The batches of one spill file (:func:`stage_inputs`), in the order written."""
    with open(path, "rb") as f:
        while True:
            try:
                packed = pickle.load(f)
            except EOFError:
                return
            yield _unpacked(packed)


def chunking(chunk_ms, transfers: int = AUTO_TRANSFERS) -> Callable[[Staged], Optional[int]]:
    """``--chunk`` as a choice made once the inputs are staged: a fixed length, None (one
    run), or :data:`AUTO` (:func:`auto_chunk_ms`)."""
    if chunk_ms == AUTO:
        return lambda staged: auto_chunk_ms(staged, transfers)
    return lambda staged: chunk_ms


def readers(options) -> int:
    """Readers per input and day of a staged replay: one per worker process."""
    from apache_beam.options.pipeline_options import DirectOptions

    d = options.view_as(DirectOptions)
    if d.direct_running_mode not in ("multi_processing", "multi_threading"):
        return 1
    return max(1, d.direct_num_workers or 1)


def no_timed_flushes() -> None:
    """Stop Beam's data plane from flushing its output streams on a timer in this process.

    The FnApiRunner talks to gRPC workers (``--direct_running_mode multi_processing`` or
    ``multi_threading``) through streams that a background thread flushes every second:
    it takes the bytes written so far, hands them to the send queue, then clears the
    buffer, without stopping the writer. Bytes written while the hand-over waits (the send
    queue is full, the thread is descheduled: a loaded machine, inputs of hundreds of MB)
    are cleared unsent: a bundle's input loses whole chunks, silently. Seen as every
    scored report missing from the Actions step with two workers on 200k transfers
    (holds 1,808 instead of 2,579, freezes 390 instead of 432; scores and verdicts
    identical, as they do not cross such an input). Without the timer a stream is sent
    when the writer flushes it (by size, at element boundaries) or closes it. Idempotent."""
    from apache_beam.runners.worker import data_plane

    cls = data_plane.TimeBasedBufferingClosableOutputStream
    if getattr(cls._schedule_periodic_flush, "disabled", False):
        return

    def _schedule_periodic_flush(self):
        self._periodic_flusher = None

    _schedule_periodic_flush.disabled = True
    cls._schedule_periodic_flush = _schedule_periodic_flush


def local_runner(options) -> bool:
    """A local runner: every worker on this machine (in this process or not), so the
    chunks of a replay can hand their states over on local disk (:class:`Handover`)."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = str(options.view_as(StandardOptions).runner or "").split(".")[-1]
    return runner in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")


def in_process(options) -> bool:
    """Every worker in this process (a local runner, not multi_processing): shuffles by
    reference (:func:`transforms.faces.local_shuffles`)."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    runner = str(options.view_as(StandardOptions).runner or "").split(".")[-1]
    return (runner in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")
            and options.view_as(DirectOptions).direct_running_mode != "multi_processing")


class ChunkRun(NamedTuple):
    """What one pipeline of a chunked replay reads and writes: the inputs' event-time
    window (direct reads) or its spill files (``spilled``, :func:`stage_inputs`), the
    batch faces' Chunk, the checkpoint to start from (None: nothing) and the one to write
    (None: no state saved); ``handover``: the keyed steps' states between two chunks of
    this run on local disk (:class:`transforms.faces.Handover`), not in the checkpoints."""

    window: tuple = (None, None)
    chunk: Chunk = Chunk()
    restore: Optional[str] = None
    restore_at: int = 0
    save: Optional[str] = None
    spilled: Optional[dict] = None
    handover: Optional[Handover] = None


def _chunk_plan(sl: ChunkSpan, work: Path, write_state: Optional[str]) -> tuple:
    """(checkpoint to write or None, the batch faces' Chunk) for the chunk ``sl``."""
    if not sl.last:
        return str(work / f"state-{sl.index:04d}"), Chunk(end=sl.hi, until=sl.hi - 1,
                                                           save=True)
    if write_state:
        return str(write_state), Chunk(end=sl.hi, until=END_OF_TIME, save=True)
    return None, Chunk()


class Replayer(NamedTuple):
    """How a replay runs: ``read(name, path)`` reads an input file (batches of rows and
    DeadLetters); ``run_one(out_dir, ChunkRun) -> counters`` runs one pipeline;
    ``say(text)`` prints a progress line (or nothing); ``merge(part_dirs)`` joins the
    chunks' outputs into the run's; ``check_start(first event time)`` may refuse."""

    read: Callable
    run_one: Callable
    say: Callable
    merge: Callable
    check_start: Callable


def run_chunks(r: Replayer, files: dict, out: Path, chunking: Callable[[Staged], Optional[int]],
               bucket_ms: int, parts: int, restore: Optional[str] = None,
               restore_end: Optional[int] = None, write_state: Optional[str] = None,
               handover: bool = False) -> dict:
    """The replay read once (:func:`stage_inputs`, by bucket of ``bucket_ms``), cut into
    chunks of ``chunking(staged)`` ms (None: one), then one pipeline per chunk, each
    starting from the previous one's state checkpoint; returns the summed counters. One
    chunk writes straight into ``out``; several are merged into it (``r.merge``).
    ``handover`` (every worker on this machine): between two chunks of this run the keyed
    steps' states are handed over on local disk, by shard (:class:`Handover`); the
    checkpoint of ``restore`` and the one of ``write_state`` stay checkpoints."""
    work = Path(tempfile.mkdtemp(prefix=".chunks-", dir=out))
    counters: dict = {}
    try:
        t0 = time.monotonic()
        staged = stage_inputs(files, r.read, work, bucket_ms, parts)
        r.check_start(staged.scan.lo)
        slices, spills = chunk_files(staged, chunking(staged))
        r.say(f"inputs read in {time.monotonic() - t0:.1f}s: {len(slices)} chunk(s) of "
              f"event time, {parts} reader(s) per day")
        prev = restore
        prev_at = restore_end - 1 if restore_end is not None else 0
        handed = None  # the directory the previous chunk handed its states over in
        dirs = []
        for sl, spilled in zip(slices, spills, strict=True):
            one = len(slices) == 1
            part = out if one else work / f"part-{sl.index:04d}"
            part.mkdir(exist_ok=True)
            save, chunk = _chunk_plan(sl, work, write_state)
            hand_out = str(Path(save) / "handover") if handover and not sl.last else None
            hand_in = handed
            hand = Handover(hand_in, hand_out, prev_at) if hand_in or hand_out else None
            if not one:
                r.say(f"chunk {sl.index + 1}/{len(slices)}")
            t1, c1 = time.monotonic(), time.process_time()
            add_counters(counters, r.run_one(part, ChunkRun(
                chunk=chunk, restore=prev, restore_at=prev_at, save=save, spilled=spilled,
                handover=hand)))
            if not one:  # CPU: this process's (not worker processes')
                r.say(f"chunk {sl.index + 1}/{len(slices)} done in "
                      f"{time.monotonic() - t1:.1f}s ({time.process_time() - c1:.1f} CPU s);"
                      f" {memory_note()}")
            if save is not None:
                seal_checkpoint(save, sl.hi)
            if prev and prev != restore:
                shutil.rmtree(prev, ignore_errors=True)
            prev, prev_at, handed = save, sl.hi - 1, hand_out
            dirs.append(part)
        if len(dirs) > 1:
            r.merge(dirs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dict(sorted(counters.items()))
