"""Core and shell, the shell: a machine (:mod:`core.machine`) as a Beam step.

* :class:`RunMachine` with ``mode="stream"`` is a stateful ``DoFn``: it loads the key's
  state, advances it to the element's event time (deadlines first), feeds the element,
  stores the state back and sets one event-time timer at the machine's next deadline.
* ``mode="batch"`` groups by key, sorts the key's events by ``machine.sort_key`` and runs
  the whole history in one call, deadlines included, then advances to the end of time (as a
  bounded stream's final watermark does). No per-element state round trips; events are
  packed into one pickled list per shard of the key space and bundle before the shuffle
  (:class:`_PackByShard`).
* :class:`Gather`: a bounded PCollection as one list on one worker (one output file).

Both faces call :func:`~core.machine.step` / :func:`~core.machine.iter_history`,
so they decide identically. Neither decides anything itself.
"""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import os
import pickle
import tempfile
import threading
import zlib
from typing import Any, Callable, Iterable, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.coders import BytesCoder, PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from core.events import Seed
from core.machine import (
    END_OF_TIME,
    METRIC,
    STATE,
    Chunk,
    Log,
    Machine,
    Output,
    SortedRun,
    StateRecord,
    Table,
    gc_paused,
    group_by_key,
    iter_history,
    replay,
    sort_key_of,
    step,
)

_GLOBAL = (GlobalWindow(),)


def stamped(value: Any, t_ms: int) -> WindowedValue:
    """``value`` at event time ``t_ms`` in the global window, built directly: cheaper than
    the SDK's window assignment of a ``TimestampedValue`` (for bounded, global-window
    data: the batch face, the backtest's readers)."""
    return WindowedValue(value, Timestamp(micros=t_ms * 1000), _GLOBAL)


class _Emitter:
    """Turns machine outputs into Beam outputs; counters go to Beam metrics.

    ``global_window``: the outputs are windowed values in the global window, built here
    (the batch face: a bounded replay is in the global window), which spares the SDK its
    per-element window assignment of a ``TimestampedValue``."""

    def __init__(self, step_name: str, main_tag: str, global_window: bool = False):
        self.step_name = step_name
        self.main_tag = main_tag
        self.global_window = global_window
        self.counters: dict[str, Any] = {}

    def emit(self, outputs: Iterable[Output]):
        pending: dict[str, int] = {}  # counter increments, added to Beam's once at the end
        for tag, t, value in outputs:
            if tag == METRIC:
                name, inc = value
                pending[name] = pending.get(name, 0) + inc
                continue
            if tag == STATE:
                value = StateRecord(self.step_name, pickle.dumps(value[0], 4), value[1])
            if self.global_window:
                tv = stamped(value, t)
            else:
                tv = beam.window.TimestampedValue(value, t / 1000.0)
            yield tv if tag == self.main_tag else beam.pvalue.TaggedOutput(tag, tv)
        for name, inc in pending.items():
            c = self.counters.get(name)
            if c is None:
                c = self.counters[name] = Metrics.counter(self.step_name, name)
            c.inc(inc)


DEFAULT_SHARDS = 64

# Same-process shuffles (see :func:`local_shuffles`): packed lists waiting for their step,
# by token. Tokens are ints, never bytes, so a token and a pickled blob cannot be confused.
_WAITING: dict = {}
_TOKENS = itertools.count(1)
_LOCAL = [False]  # what a _PackByShard built now does (set by local_shuffles)


class Spill(NamedTuple):
    """Same-process shuffles to disk: a shard's packed list that reaches ``events`` events
    within one bundle is written to a file in ``directory`` (each key's events sorted, in
    pieces) and read back as its step runs the key (:class:`~core.machine.SortedRun`).
    The default, about half a gigabyte of labelled examples held at most per list: below
    it, memory costs less than the pickling (about 10 µs an event, there and back)."""

    directory: str
    events: int = 250_000


PIECE = 4096  # events per pickled piece of a spilled list: what a reader holds per run
_SPILL: list = [None]  # the Spill a _PackByShard built now uses (set by local_shuffles)


@contextlib.contextmanager
def local_shuffles(enabled: bool = True, spill: Optional[Spill] = None):
    """While building a graph in this block, the batch face's packed lists cross each
    shuffle as a token of an in-process table instead of a pickle: for a runner whose
    workers all run in this process (the FnApiRunner in memory, one worker), where a
    pickle round trip per step per event is the largest cost Beam adds. The objects are
    shared as the reference's steps share them; each list is taken once, by its step.

    ``spill``: lists that grow past ``spill.events`` go to disk instead
    (:class:`Spill`). A runner runs one stage after another, so a step's whole input
    waits for it at once: for a key with a long history in a bundle (the Learner's labels,
    above all at the end of time, when every waiting label is released) that would be
    held in memory as objects, then as one list per key."""
    before = _LOCAL[0], _SPILL[0]
    _LOCAL[0] = enabled
    _SPILL[0] = spill if enabled else None
    try:
        yield
    finally:
        _LOCAL[0], _SPILL[0] = before


def packing_locally() -> bool:
    """Does a packing DoFn built now hand its lists over in process (:func:`local_shuffles`)?"""
    return _LOCAL[0]


def parcel(obj: Any, local: bool):
    """What crosses a batch shuffle for ``obj``: a token of the in-process table
    (``local``: :func:`local_shuffles`) or its pickle; :func:`unpack` gives it back."""
    if local:
        token = next(_TOKENS)
        _WAITING[token] = obj
        return token
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def shard_of(key: Any, shards: int) -> int:
    """A key's shard: stable across processes and machines (``hash()`` of a str is not)."""
    raw = key.encode() if type(key) is str else repr(key).encode()
    return zlib.crc32(raw) % shards


class _PackByShard(beam.DoFn):
    """Batch face, before the shuffle: ``event`` -> ``(shard, blob)``, one pickled list of
    ``(key_fn(event), event)`` per shard of the key space per bundle.

    Why: the FnApiRunner materialises every multi-input Flatten (each step's inputs) as a
    stage of its own, and encodes an element with one pickle per event (Beam's fallback
    coder for NamedTuples); a shuffle also costs per key. Packed and pickled here, in the
    producing stage, the Flatten and the GroupByKey move a few opaque blobs (``shards``
    per bundle at most), and the step unpickles each once: one encode/decode round trip
    per step, class references written once per blob, no per-key shuffle overhead.
    ``shards`` bounds the parallelism of the step (and a shard's share of the history
    held at once): the default suits a machine or a small cluster; raise it for many
    workers. The batch face runs in the global window (a bounded replay)."""

    def __init__(self, shards: int, key_fn: Callable[[Any], Any],
                 factory: Optional[Callable[[], Machine]] = None):
        self.shards, self.key_fn = shards, key_fn
        self.local = _LOCAL[0]
        # spilling sorts by the step's machine's order: only with its factory
        self.spill = _SPILL[0] if self.local and factory is not None else None
        self.factory = factory if self.spill is not None else None

    def setup(self):
        self.sort_key = None

    def start_bundle(self):
        self.lists: dict = {}
        self.seed_files: list = []
        self.spilled: set = set()  # shards that went to disk in this bundle

    def process(self, event):
        if type(event) is SeedFile:  # a shard's handed-over states: to that shard as is
            self.seed_files.append(event)
            return
        key = self.key_fn(event)
        shard = shard_of(key, self.shards)
        got = self.lists.get(shard)
        if got is None:
            self.lists[shard] = [(key, event)]
            return
        got.append((key, event))
        if self.spill is not None and len(got) >= self.spill.events:
            self.lists[shard] = []
            self.spilled.add(shard)
            return [GlobalWindows.windowed_value((shard, self._spilled(got)))]
        return

    def finish_bundle(self):
        lists, self.lists = self.lists, {}
        for sf in self.seed_files:
            yield GlobalWindows.windowed_value((sf.shard, sf))
        self.seed_files = []
        for shard, pairs in lists.items():
            if shard in self.spilled:  # the rest of a long list: on disk too
                if pairs:
                    yield GlobalWindows.windowed_value((shard, self._spilled(pairs)))
            else:
                yield GlobalWindows.windowed_value((shard, parcel(pairs, self.local)))
        self.spilled = set()

    def _spilled(self, pairs: list):
        if self.sort_key is None:
            self.sort_key = sort_key_of(self.factory())
        return parcel(spill_pairs(pairs, self.sort_key, self.spill.directory), True)


class Spilled(NamedTuple):
    """A packed list on disk (:class:`Spill`): ``path``, and for each key in the order it
    first came, the offsets of its pieces (its events sorted, :data:`PIECE` a piece)."""

    path: str
    keys: tuple

    def pairs(self) -> list:
        """``(key, SortedRun)`` for each key: what the step's history reads lazily."""
        return [(key, SortedRun(_Pieces(self.path, offsets))) for key, offsets in self.keys]


def spill_pairs(pairs: list, sort_key: Callable[[Any], Any], directory: str) -> Spilled:
    """``(key, event)`` pairs into a file of ``directory``: per key, its events stably
    sorted by ``sort_key``, pickled :data:`PIECE` at a time."""
    fd, path = tempfile.mkstemp(suffix=".pkl", dir=directory)
    keys = []
    with os.fdopen(fd, "wb") as f:
        for key, events in group_by_key(pairs).items():
            events.sort(key=sort_key)
            offsets = []
            for i in range(0, len(events), PIECE):
                offsets.append(f.tell())
                pickle.dump(events[i:i + PIECE], f, pickle.HIGHEST_PROTOCOL)
            keys.append((key, tuple(offsets)))
    return Spilled(path, tuple(keys))


class _Pieces:
    """A spilled key's events, read a piece at a time (``SortedRun.read``)."""

    __slots__ = ("path", "offsets")

    def __init__(self, path: str, offsets: tuple):
        self.path, self.offsets = path, offsets

    def __call__(self) -> Iterable[Any]:
        with open(self.path, "rb") as f:
            for offset in self.offsets:
                f.seek(offset)
                yield from pickle.load(f)


class Handover(NamedTuple):
    """Batch face, a chunked replay on this machine: the keyed steps' states carried from
    one chunk to the next as files on local disk instead of a state checkpoint read and
    written through the pipeline. ``save``: the directory this chunk writes each step's
    states to, one file per shard (``save/STEP/SHARD.pkl``: a pickled list of ``(key,
    pickle((state, waiting events)), due)``, the checkpoint's records without the step,
    with the time the key must run again: :func:`core.machine.due_of`); ``load``:
    the previous chunk's, read by each shard when it runs (``Seed`` events at ``at``). So
    the states between two chunks stay on disk, and a chunk holds one shard's seeds at a
    time rather than every key's state as pipeline elements (seeds read, re-encoded between
    stages, saved states encoded again for the checkpoint's writer)."""

    load: Optional[str] = None
    save: Optional[str] = None
    at: int = 0


class SeedFile(NamedTuple):
    """One shard's states handed over by the previous chunk (:class:`Handover`): crosses
    the step's shuffle as itself, and the shard reads the file when it runs."""

    shard: int
    path: str
    at: int


def seed_files(handover: Optional[Handover], step_name: str, shards: int) -> list:
    """The :class:`SeedFile` of each shard of ``step_name`` the previous chunk saved."""
    if handover is None or handover.load is None:
        return []
    d = os.path.join(handover.load, step_name)
    if not os.path.isdir(d):
        return []
    out = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".pkl"):
            shard = int(name[:-4])
            if shard >= shards:
                raise ValueError(f"handed-over state of {step_name} has shard {shard}, this "
                                 f"run has {shards} shards")
            out.append(SeedFile(shard, os.path.join(d, name), handover.at))
    return out


def _read_seed_file(sf: SeedFile) -> list:
    """A :class:`SeedFile`'s records as written: ``(key, pickle((state, waiting)), due)``."""
    with open(sf.path, "rb") as f:
        return pickle.load(f)


def _seed(key, blob: bytes, at: int) -> Seed:
    """A handed-over record's state as a checkpoint's reader makes it
    (:func:`transforms.checkpoint.ReadSeeds`)."""
    state, waiting = pickle.loads(blob)
    return Seed(key, at, state, tuple(waiting))


def _write_seed_file(directory: str, shard: int, saved: list) -> None:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{shard:04d}.pkl")
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(saved, f, pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _states_aside(outputs: Iterable, saved: list):
    """Outputs on, but the saved states (``STATE``) into ``saved`` as ``(key, blob, due)``."""
    for out in outputs:
        if out[0] == STATE:
            saved.append(out[2])
        else:
            yield out


def unpack(blob) -> Any:
    """What :func:`parcel` packed (a token is taken once)."""
    if type(blob) is int:
        got = _WAITING.pop(blob, None)
        if got is None:
            raise RuntimeError("a packed list crossed a same-process shuffle into another "
                               "process (or was read twice): build the graph without "
                               "local_shuffles for this runner")
        return got.pairs() if type(got) is Spilled else got
    return pickle.loads(blob)


def group_blobs(blobs: Iterable) -> dict:
    """A shard's blobs (from :class:`_PackByShard`: pickled lists, or tokens of
    :func:`local_shuffles`) -> ``{key: [events]}``."""
    return group_by_key(pair for blob in blobs for pair in unpack(blob))


def _no_key(_element) -> None:
    return None


def _gathered(kv) -> list:
    return group_blobs(kv[1]).get(None, [])


class Gather(beam.PTransform):
    """A bounded PCollection -> one list of all its elements (``[]`` when it is empty), on
    one worker: for writing one output file. Like ``beam.combiners.ToList()``, without its
    side input, whose size the SDK measures object by object (seconds for 100k rows);
    elements cross the shuffle pickled one list per bundle. Global window only."""

    def expand(self, pcoll):
        packed = pcoll | "Pack" >> beam.ParDo(_PackByShard(1, _no_key))
        empty = pcoll.pipeline | "Empty" >> beam.Create([(0, pickle.dumps([]))])
        return ((packed, empty) | "In" >> beam.Flatten()
                | "GroupByKey" >> beam.GroupByKey()
                | "Unpack" >> beam.Map(_gathered))


class _BatchFace(beam.DoFn):
    """Runs each key of a shard: the key's events sorted, deadlines, then the end of time
    (or the end of the chunk, saving the key's state)."""

    def __init__(self, factory: Callable[[], Machine], step_name: str, main_tag: str,
                 chunk: Chunk = Chunk(), save_dir: Optional[str] = None):
        self.factory, self.step_name, self.main_tag = factory, step_name, main_tag
        self.chunk = chunk
        self.save_dir = save_dir  # Handover.save: the states go to a file per shard

    def setup(self):
        self.machine = self.factory()
        self.emitter = _Emitter(self.step_name, self.main_tag, global_window=True)
        self._side_id = None

    def process(self, shard_blobs, side=None):
        if side is not None and id(side) != self._side_id:
            self._side_id = id(side)
            self.machine.bind(side)
        c = self.chunk
        saved: Optional[list] = [] if self.save_dir is not None and c.save else None
        with gc_paused():
            blobs = shard_blobs[1]
            if type(blobs) is not list:
                blobs = list(blobs)
            by_key = group_blobs(b for b in blobs if type(b) is not SeedFile)
            for sf in (b for b in blobs if type(b) is SeedFile):
                self._seeded(by_key, sf, saved)
            emit, machine = self.emitter.emit, self.machine
            while by_key:
                key, events = by_key.popitem()
                outs = iter_history(machine, key, events, c.until, end=c.end, save=c.save)
                if saved is not None:
                    outs = _states_aside(outs, saved)
                yield from emit(outs)
        if saved is not None and saved:
            _write_seed_file(self.save_dir, shard_blobs[0], saved)

    def _seeded(self, by_key: dict, sf: SeedFile, saved: Optional[list]) -> None:
        """The handed-over states of ``sf`` into ``by_key`` as each key's first event;
        but a key with no event in this chunk, and nothing due before its end, is handed
        over to the next chunk as it came (into ``saved``): not loaded, not advanced, not
        saved again, as a single run would not touch it either. So a chunk's cost follows
        the keys it touches, not every live key of the history."""
        c = self.chunk
        keep = saved is not None and c.end is not None and c.until < c.end
        at = sf.at
        for key, blob, due in _read_seed_file(sf):
            got = by_key.get(key)
            if got is None:
                if keep and (due is None or due >= c.end):
                    saved.append((key, blob, due))
                    continue
                by_key[key] = [_seed(key, blob, at)]
            else:
                got.insert(0, _seed(key, blob, at))


class _Held:
    """What the stream face keeps per key: the machine's state, and (ordering
    "event_time") the events waiting for the watermark to pass their time."""

    __slots__ = ("state", "waiting")

    def __init__(self, state):
        self.state = state
        self.waiting: list = []


ORDERINGS = ("arrival", "event_time")
MAX_LOGS = 6  # bag states per step: the most Machine.LOGS any step's machine names


class KeyStore:
    """One key's state in the stream face's cells: the *head* (the machine's state and the
    waiting events, without the items of its :class:`~core.machine.Log` objects) in
    one read-modify-write cell, pickled; each log's items in a bag of its own, one item per
    entry. Loading reads the head only; a log's bag is read when the machine reads the log;
    storing writes the head and adds the items appended since (or clears and refills a bag
    whose log was rewritten). So an event costs what its head costs, however long the logs.

    A :class:`~core.machine.Table` is kept the same way, as a bag of change records
    that only grows between compactions; the head holds its size and a token that changes
    whenever it does. With a ``cache`` (a :class:`TableCache`, per worker), a table read by
    an event is replayed from its bag only when the worker has no dict of it under the
    head's token; the bag stays the only durable copy (the cache holds what was stored).

    ``head`` needs ``read/write/clear`` (a ``ReadModifyWriteState`` of bytes); ``bags``,
    one per name in ``logs``, ``read/add/clear`` (``BagState``). Plain Python: the bench
    drives it with in-memory cells to count the bytes an event reads and writes."""

    def __init__(self, logs: tuple, head, bags, key=None, cache: "TableCache" = None):
        if len(logs) > len(bags):
            raise ValueError(f"{len(logs)} logs, {len(bags)} bags: raise MAX_LOGS")
        self.head = head
        self.bag_of = dict(zip(logs, bags[:len(logs)], strict=True))
        self.loaded: set = set()
        self.bytes_read = self.bytes_written = 0
        self.key, self.cache = key, cache
        self.tokens: dict = {}  # table name -> its token in the loaded head

    def _stored(self, pid):
        if len(pid) == 4:
            return self._stored_table(*pid)
        name, n = pid
        self.loaded.add(name)
        bag = self.bag_of[name]

        def load() -> list:
            items = list(bag.read())
            if self.counting:
                self.bytes_read += sum(len(pickle.dumps(x, 4)) for x in items)
            return items

        return Log.stored(name, n, load)

    def _stored_table(self, name: str, n: int, records: int, token: int) -> Table:
        self.loaded.add(name)
        self.tokens[name] = token
        bag, cache = self.bag_of[name], self.cache

        def load() -> dict:
            if cache is not None:
                got = cache.take(self.key, name, token)
                if got is not None:
                    return got
            raw = list(bag.read())
            if self.counting:
                self.bytes_read += sum(len(pickle.dumps(x, 4)) for x in raw)
            return replay(raw)

        return Table.stored(name, n, records, load)

    def load(self) -> Optional[_Held]:
        raw = self.head.read()
        if raw is None:
            return None
        self.bytes_read += len(raw)
        up = pickle.Unpickler(io.BytesIO(raw))
        up.persistent_load = self._stored
        return up.load()

    def clear(self) -> None:
        self.head.clear()
        for bag in self.bag_of.values():
            bag.clear()

    def store(self, held: _Held) -> None:
        logs: list = []

        tables: dict = {}

        def pid(obj):
            t = type(obj)
            if t is Log:
                logs.append(obj)
                return (obj.name, len(obj))
            if t is Table:
                rewritten, records = obj.changes()
                token = self.tokens.get(obj.name)
                if rewritten or records or token is None:
                    token = int.from_bytes(os.urandom(8), "big")
                tables[obj.name] = (obj, rewritten, records, token)
                return (obj.name, len(obj), obj.records(), token)
            return None

        buf = io.BytesIO()
        pk = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
        pk.persistent_id = pid
        pk.dump(held)
        raw = buf.getvalue()
        self.head.write(raw)
        self.bytes_written += len(raw)
        kept = set()
        for log in logs:
            kept.add(log.name)
            bag = self.bag_of[log.name]
            rewritten, items = log.changes()
            if rewritten:
                bag.clear()
            for item in items:
                bag.add(item)
            if self.counting:
                self.bytes_written += sum(len(pickle.dumps(x, 4)) for x in items)
        for name, (table, rewritten, records, token) in tables.items():
            kept.add(name)
            bag = self.bag_of[name]
            if rewritten:
                bag.clear()
            for rec in records:
                bag.add(rec)
            if self.counting:
                self.bytes_written += sum(len(pickle.dumps(x, 4)) for x in records)
            if self.cache is not None and table.loaded():
                self.cache.put(self.key, name, token, table._entries())
        for name in self.loaded - kept:  # a log the state no longer holds
            self.bag_of[name].clear()

    counting = False  # count the bag items' bytes too (the bench: costs a pickle per item)
    tally: Optional[dict] = None  # with counting: step -> key -> [(read, written)] per call

    def note(self, step_name: str, key) -> None:
        """With ``counting``, record this call's bytes in ``tally`` (the bench)."""
        if self.tally is not None:
            calls = self.tally.setdefault(step_name, {}).setdefault(key, [])
            calls.append((self.bytes_read, self.bytes_written))


class TableCache:
    """A worker's dicts of the tables it stored last, per (key, table), each under the
    token the key's head holds for that version: in front of the bags, never instead of
    them. A dict is handed out once (taken) and comes back when the key's state is stored,
    so a bundle that fails between the two leaves nothing stale behind. At most
    ``max_tables`` dicts and ``max_entries`` entries in all (their sizes when stored), the
    least recently stored dropped first."""

    def __init__(self, max_tables: int = 4096, max_entries: int = 1_000_000):
        self.max_tables, self.max_entries = max_tables, max_entries
        self.dicts: collections.OrderedDict = collections.OrderedDict()
        self.entries = 0
        self.lock = threading.Lock()  # a worker may run several bundles of a step at once

    def take(self, key, name: str, token: int) -> Optional[dict]:
        with self.lock:
            got = self.dicts.pop((key, name), None)
            if got is None:
                return None
            self.entries -= got[2]
        return got[1] if got[0] == token else None

    def put(self, key, name: str, token: int, entries: dict) -> None:
        with self.lock:
            old = self.dicts.pop((key, name), None)
            if old is not None:
                self.entries -= old[2]
            self.dicts[(key, name)] = (token, entries, len(entries))
            self.entries += len(entries)
            while self.dicts and (len(self.dicts) > self.max_tables
                                  or self.entries > self.max_entries):
                self.entries -= self.dicts.popitem(last=False)[1][2]


# The stream face's table caches, per step label, for the life of the process: a DoFn may
# live one bundle (the local runner), and Beam's Shared keeps objects by weak reference only.
_TABLE_CACHES: dict = {}


class _StreamFace(beam.DoFn):
    """The streaming face. ``ordering``:

    * ``"event_time"``: an event waits in state until the watermark passes its event time,
      then the key's due events run in (time, kind, id) order — exactly the batch face's
      order, whatever path each event took through the graph. Late events (behind the
      watermark) run at once. Costs the watermark's delay in latency, and needs timers
      that hold the output watermark (Dataflow, Flink); Beam's local runner lets the
      watermark run ahead of pending timers, so a step's timer outputs can reach the next
      step late.
    * ``"arrival"``: each event runs when it arrives (deadlines due by its time first):
      lowest latency, but an event that overtakes an earlier one on a shorter path is
      decided before it.

    State (:class:`KeyStore`): the head in a ``ReadModifyWriteState`` of bytes, each of the
    machine's logs in a ``BagState`` (every runner supports both: the local runners,
    Dataflow, Flink); one event-time timer per key, at the machine's next deadline.
    """

    HEAD = ReadModifyWriteStateSpec("head", BytesCoder())
    LOG0, LOG1, LOG2, LOG3, LOG4, LOG5 = (BagStateSpec(f"log{i}", PickleCoder())
                                          for i in range(MAX_LOGS))
    DEADLINE = TimerSpec("deadline", TimeDomain.WATERMARK)

    def __init__(self, factory: Callable[[], Machine], step_name: str, main_tag: str,
                 ordering: str = "arrival"):
        self.factory, self.step_name, self.main_tag = factory, step_name, main_tag
        self.ordering = ordering

    def setup(self):
        self.machine = self.factory()
        self.emitter = _Emitter(self.step_name, self.main_tag)
        self.sort_key = sort_key_of(self.machine)
        self._side_id = None
        # one per step and process, shared by the step's DoFn instances (the local runner
        # makes one per bundle); what it holds is checked against the head's tokens
        self.tables = _TABLE_CACHES.setdefault(self.step_name, TableCache())

    def _cells(self, head, bags, key) -> KeyStore:
        return KeyStore(tuple(self.machine.LOGS), head, bags, key, self.tables)

    def _store(self, h: _Held, cells: KeyStore, timer, key):
        m = self.machine
        if not h.waiting and m.is_empty(h.state):
            cells.clear()
            timer.clear()
            return
        cells.store(h)
        if cells.counting:
            cells.note(self.step_name, key)
        d = m.next_deadline(h.state)
        if h.waiting:
            first = min(m.time_of(e) for e in h.waiting)
            d = first if d is None else min(d, first)
        if d is None:
            timer.clear()
        else:
            timer.set(Timestamp(micros=min(d, END_OF_TIME // 1000) * 1000))

    def process(self, kv, head=beam.DoFn.StateParam(HEAD),
                log0=beam.DoFn.StateParam(LOG0), log1=beam.DoFn.StateParam(LOG1),
                log2=beam.DoFn.StateParam(LOG2), log3=beam.DoFn.StateParam(LOG3),
                log4=beam.DoFn.StateParam(LOG4), log5=beam.DoFn.StateParam(LOG5),
                timer=beam.DoFn.TimerParam(DEADLINE)):
        cells = self._cells(head, (log0, log1, log2, log3, log4, log5), kv[0])
        return self._process(kv, cells, timer)

    def _process(self, kv, cells: KeyStore, timer):
        key, event = kv
        if type(event) is Seed:
            yield from self._seed(key, event, cells, timer)
            return
        h = cells.load()
        if h is None:
            h = _Held(self.machine.new_state(key))
        out: list = []
        if self.ordering == "event_time":
            h.waiting.append(event)
        else:
            h.state, out = step(self.machine, key, h.state, event)
        self._store(h, cells, timer, key)
        yield from self.emitter.emit(out)

    def _seed(self, key, seed: Seed, cells: KeyStore, timer):
        """A saved state (``--restore_state``): the key starts from it, unless events
        reached the key first (then the live state wins and the seed is counted)."""
        if cells.head.read() is not None:
            yield from self.emitter.emit([(METRIC, seed.event_time, ("seeds_too_late", 1))])
            return
        h = _Held(seed.state)
        h.waiting = list(seed.waiting)
        out: list = [(METRIC, seed.event_time, ("seeds", 1))]
        if self.ordering != "event_time" and h.waiting:
            for e in sorted(h.waiting, key=self.sort_key):
                h.state, more = step(self.machine, key, h.state, e)
                out.extend(more)
            h.waiting = []
        self._store(h, cells, timer, key)
        yield from self.emitter.emit(out)

    @on_timer(DEADLINE)
    def on_deadline(self, key=beam.DoFn.KeyParam, fire_ts=beam.DoFn.TimestampParam,
                    head=beam.DoFn.StateParam(HEAD),
                    log0=beam.DoFn.StateParam(LOG0), log1=beam.DoFn.StateParam(LOG1),
                    log2=beam.DoFn.StateParam(LOG2), log3=beam.DoFn.StateParam(LOG3),
                    log4=beam.DoFn.StateParam(LOG4), log5=beam.DoFn.StateParam(LOG5),
                    timer=beam.DoFn.TimerParam(DEADLINE)):
        cells = self._cells(head, (log0, log1, log2, log3, log4, log5), key)
        h = cells.load()
        if h is None:
            return
        m = self.machine
        now = END_OF_TIME if fire_ts >= MAX_TIMESTAMP else fire_ts.micros // 1000
        out: list = []
        if h.waiting:
            due = [e for e in h.waiting if m.time_of(e) <= now]
            if due:
                h.waiting = [e for e in h.waiting if m.time_of(e) > now]
                for e in sorted(due, key=self.sort_key):
                    h.state, more = step(m, key, h.state, e)
                    out.extend(more)
        out.extend(m.advance(h.state, now))
        self._store(h, cells, timer, key)
        yield from self.emitter.emit(out)


def _seed_aware(key_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def key_of(event):
        return event.key if type(event) is Seed else key_fn(event)
    return key_of


class _StreamFacePolling(_StreamFace):
    """The streaming face of a step that reads side data published outside the graph
    (``poller.fetch()``: e.g. model versions, :mod:`transforms.versions`), polled in
    processing time and given to the machine through ``Machine.bind``."""

    def __init__(self, factory, step_name, main_tag, ordering, poller):
        super().__init__(factory, step_name, main_tag, ordering)
        self.poller = poller

    def setup(self):
        super().setup()
        self.machine.bind(self.poller.fetch(force=True))

    def process(self, kv, head=beam.DoFn.StateParam(_StreamFace.HEAD),
                log0=beam.DoFn.StateParam(_StreamFace.LOG0),
                log1=beam.DoFn.StateParam(_StreamFace.LOG1),
                log2=beam.DoFn.StateParam(_StreamFace.LOG2),
                log3=beam.DoFn.StateParam(_StreamFace.LOG3),
                log4=beam.DoFn.StateParam(_StreamFace.LOG4),
                log5=beam.DoFn.StateParam(_StreamFace.LOG5),
                timer=beam.DoFn.TimerParam(_StreamFace.DEADLINE)):
        new = self.poller.fetch()
        if new:
            self.machine.bind(new)
        cells = self._cells(head, (log0, log1, log2, log3, log4, log5), kv[0])
        return self._process(kv, cells, timer)


class RunMachine(beam.PTransform):
    """Run ``factory()``'s machine over events keyed by ``key_fn``: one PCollection, or a
    tuple of them (the step's inputs; the batch face keys and packs each in its producer,
    before any Flatten). :class:`~core.events.Seed` events (saved states) may be
    among them; they carry their own key.

    ``mode`` is ``"stream"`` (stateful DoFn with event-time timers) or ``"batch"``
    (pack by shard of the key, GroupByKey, then per key: sort, one call); ``shards`` is
    the batch face's number of shards; ``chunk`` the batch face's slice of event time
    (:class:`Chunk`). ``side`` (batch): a side input view whose value the machine receives
    through ``Machine.bind``; ``poller`` (stream): an object whose ``fetch()`` brings new
    side data, polled as elements arrive (see :mod:`transforms.versions`). Returns a
    ``DoOutputsTuple`` with ``main_tag`` as the main output and ``tags`` as the others
    (plus ``STATE`` in batch).
    """

    def __init__(self, factory: Callable[[], Machine], mode: str, main_tag: str,
                 tags: tuple[str, ...] = (), label: Optional[str] = None,
                 ordering: str = "arrival", shards: int = DEFAULT_SHARDS, *,
                 key_fn: Callable[[Any], Any], chunk: Chunk = Chunk(), side=None,
                 poller=None, handover: Optional[Handover] = None):
        super().__init__(label)
        self.handover = handover
        self.key_fn = _seed_aware(key_fn)
        if shards < 1:
            raise ValueError(f"shards must be at least 1, not {shards}")
        self.shards = shards
        if mode not in ("stream", "batch"):
            raise ValueError(f"mode must be 'stream' or 'batch', not {mode!r}")
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {ORDERINGS}, not {ordering!r}")
        self.factory, self.mode, self.main_tag, self.tags = factory, mode, main_tag, tags
        self.ordering, self.chunk, self.side, self.poller = ordering, chunk, side, poller

    def expand(self, keyed):
        name = self.label or "machine"
        parts = tuple(keyed) if isinstance(keyed, (tuple, list)) else (keyed,)
        side = () if self.side is None else (self.side,)
        if self.mode == "batch":
            seeds = seed_files(self.handover, name, self.shards)
            if seeds:
                parts += (parts[0].pipeline | "HandedOver" >> beam.Create(seeds)
                          .with_output_types(Any),)
            packed = [pc | f"Pack{i}" >> beam.ParDo(_PackByShard(self.shards, self.key_fn,
                                                                  self.factory))
                      for i, pc in enumerate(parts)]
            if len(packed) > 1:
                packed = packed | "In" >> beam.Flatten()
            else:
                packed = packed[0]
            grouped = packed | "GroupByKey" >> beam.GroupByKey()
            save = None
            if self.handover is not None and self.handover.save is not None:
                save = os.path.join(self.handover.save, name)
            fn = _BatchFace(self.factory, name, self.main_tag, self.chunk, save)
            return grouped | "RunHistory" >> beam.ParDo(fn, *side).with_outputs(
                *self.tags, STATE, main=self.main_tag)
        events = parts | "In" >> beam.Flatten() if len(parts) > 1 else parts[0]
        key_fn = self.key_fn
        events = events | "Key" >> beam.Map(lambda e: (key_fn(e), e))
        if self.poller is not None:
            fn = _StreamFacePolling(self.factory, name, self.main_tag, self.ordering,
                                    self.poller)
        else:
            fn = _StreamFace(self.factory, name, self.main_tag, self.ordering)
        return events | "RunStateful" >> beam.ParDo(fn).with_input_types(
            Tuple[str, Any]).with_outputs(
            *self.tags, main=self.main_tag)
