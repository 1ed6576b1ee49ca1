"""Core and shell, the core: a keyed step is a pure state machine. No Beam here.

A :class:`Machine` is plain Python. Given a key's state and one event it returns the
outputs; given a time ``now`` it fires every deadline due at or before ``now``.
:func:`step` runs one event, :func:`iter_history` / :func:`run_history` a key's whole
history. The Beam shell (:mod:`transforms.faces`) runs the same functions as a stateful
streaming ``DoFn`` and as a batch replay, so both faces decide identically; the reference
(:mod:`core.reference`) runs them without Beam.

Ordering (DESIGN.md): deadlines due at or before t fire first, then the events at t in the
order blacklist updates, case outcomes, reports, transfers (``core.events`` ranks),
then by id.

>>> class Count(Machine):
...     def new_state(self, key): return {"n": 0, "until": None}
...     def time_of(self, ev): return ev[0]
...     def on_event(self, s, ev, now):
...         s["n"] += 1; s["until"] = now + 10
...         return [("main", now, s["n"])]
...     def advance(self, s, now):
...         if s["until"] is not None and s["until"] <= now:
...             t, s["until"] = s["until"], None
...             return [("main", t, "expired")]
...         return []
...     def next_deadline(self, s): return s["until"]
...     def is_empty(self, s): return s["until"] is None
...     def sort_key(self, ev): return ev
>>> run_history(Count(), "k", [(5, "a"), (1, "b"), (30, "c")])
[('main', 1, 1), ('main', 5, 2), ('main', 15, 'expired'), ('main', 30, 1), ('main', 40, 'expired')]
"""

from __future__ import annotations

import gc
import heapq
import pickle
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional

from core.events import Seed, sort_key

END_OF_TIME = 2**62  # "advance to the end": every remaining deadline fires
METRIC = "metric"  # outputs with this tag are counters: (METRIC, t, (name, increment))
STATE = "state"  # outputs with this tag are saved states: (STATE, t, (key, blob, due))

Output = tuple  # (tag, event_time_ms, value)


class StateRecord(NamedTuple):
    """One key's saved state in a state checkpoint: the step's label, the key and
    ``pickle((state, waiting events))``, both pickled (see :mod:`transforms.checkpoint`)."""

    step: str
    key: bytes
    state: bytes


class Log:
    """An append-only list in a machine's state: what grows with a key's history and is read
    only now and then (a sweep, a trim, a file issued), apart from the small rest of the
    state (its *head*) that every event reads and writes.

    The machine appends (O(1)), reads the items only when it needs them, or replaces them
    all (a trim). The face decides where the items live: in the batch face and the reference
    a plain list; in the stream face a Beam ``BagState`` per log, loaded only when the
    machine reads it (see :mod:`transforms.faces`), so an event that only appends reads and
    writes no more state than the head. ``name`` identifies the log within the key's state
    (unique among the logs a step's machine keeps: ``Machine.LOGS``).

    >>> log = Log("seen"); log.append(1); log.append(2); len(log), log.items()
    (2, [1, 2])
    >>> log.replace([2]); log.items()
    [2]
    """

    __slots__ = ("name", "_items", "_n", "_new", "_load", "_rewritten")

    def __init__(self, name: str, items: Iterable[Any] = ()):
        self.name = name
        self._items: Optional[list] = list(items)
        self._n = len(self._items)
        self._new: Optional[list] = None  # appended since loaded from storage (stream face)
        self._load: Optional[Callable[[], list]] = None
        self._rewritten = True  # storage must be replaced by the items (a new log)

    @classmethod
    def stored(cls, name: str, n: int, load: Callable[[], list]) -> "Log":
        """A log of ``n`` items kept elsewhere; ``load()`` brings them when read."""
        log = cls.__new__(cls)
        log.name, log._items, log._n, log._new = name, None, n, []
        log._load, log._rewritten = load, False
        return log

    def __len__(self) -> int:
        return self._n

    def append(self, item: Any) -> None:
        if self._items is not None:
            self._items.append(item)
        if self._new is not None and not self._rewritten:
            self._new.append(item)
        self._n += 1

    def items(self) -> list:
        """Every item, oldest first (the caller must not change the list)."""
        if self._items is None:
            loaded = self._load()
            loaded.extend(self._new)
            self._items = loaded
        return self._items

    def replace(self, items: Iterable[Any]) -> None:
        """The log becomes ``items`` (a trim, a rewrite)."""
        self._items = list(items)
        self._n = len(self._items)
        self._rewritten = True
        self._new = None

    def changes(self) -> tuple[bool, list]:
        """For the stream face: (rewritten, items to store): every item after a rewrite,
        else those appended since the log was loaded."""
        if self._rewritten:
            return True, self.items()
        return False, self._new or []

    def __getstate__(self):
        return (self.name, self.items())

    def __setstate__(self, st):
        self.__init__(st[0], st[1])

    def __eq__(self, other) -> bool:
        return isinstance(other, Log) and (self.name, self.items()) == (other.name,
                                                                        other.items())

    def __repr__(self) -> str:
        return f"Log({self.name!r}, {self._n} items)"


class Table:
    """A map in a machine's state that grows with a key's history but is read one entry at
    a time (the payees a user paid, by address): ``get``, ``in``, ``len``, ``set``,
    ``delete``, iteration over the keys. Like a :class:`Log`, the face decides where it
    lives: in the batch face and the reference a plain dict; in the stream face a bag of
    change records (``(key, value)`` set, ``(key, DELETED)`` deleted), appended per event,
    replayed into a dict only when the table is first read in a worker (the face may keep
    that dict in process memory, in front of the bag, never instead of it), and compacted
    to the live entries once the records are twice as many. So an event that reads or sets
    an entry writes one record, not the map.

    >>> t = Table("payees"); t.set("a", 1); t.set("b", 2); t.delete("a")
    >>> len(t), "a" in t, t.get("b"), sorted(t)
    (1, False, 2, ['b'])
    >>> t.changes()  # a new table: storage gets its entries
    (True, [('b', 2)])
    >>> t = Table.stored("payees", 1, 1, lambda: {"a": 1})  # as the stream face loads it
    >>> t.set("b", 2); t.delete("a"); t.changes()  # storage gets the records since
    (False, [('b', 2), ('a', <deleted>)])
    >>> replay([("a", 1), ("b", 2), ("a", DELETED)])
    {'b': 2}
    """

    __slots__ = ("name", "_map", "_n", "_records", "_new", "_load", "_rewritten")

    def __init__(self, name: str, entries: Iterable[tuple] = ()):
        self.name = name
        self._map: Optional[dict] = dict(entries)
        self._n = len(self._map)
        self._records = self._n  # change records in storage once stored
        self._new: Optional[list] = None
        self._load: Optional[Callable[[], dict]] = None
        self._rewritten = True

    @classmethod
    def stored(cls, name: str, n: int, records: int, load: Callable[[], dict]) -> "Table":
        """A table of ``n`` entries kept elsewhere as ``records`` change records;
        ``load()`` brings its dict when it is read."""
        t = cls.__new__(cls)
        t.name, t._map, t._n, t._records, t._new = name, None, n, records, []
        t._load, t._rewritten = load, False
        return t

    def _entries(self) -> dict:
        if self._map is None:
            self._map = self._load()
        return self._map

    def __len__(self) -> int:
        return self._n

    def __contains__(self, k) -> bool:
        return self._n > 0 and k in self._entries()

    def __iter__(self):
        return iter(list(self._entries()))

    def get(self, k, default=None):
        return self._entries().get(k, default) if self._n else default

    def _note(self, record: tuple) -> None:
        self._records += 1
        if self._new is not None and not self._rewritten:
            self._new.append(record)
            if self._records > 2 * max(self._n, 32):  # compact: rewrite the live entries
                self._rewritten, self._new = True, None
                self._records = self._n

    def set(self, k, v) -> None:
        m = self._entries()
        if k not in m:
            self._n += 1
        m[k] = v
        self._note((k, v))

    def delete(self, k) -> None:
        m = self._entries()
        if k in m:
            del m[k]
            self._n -= 1
            self._note((k, DELETED))

    def loaded(self) -> bool:
        return self._map is not None

    def records(self) -> int:
        """Change records in storage after :meth:`changes` is stored."""
        return self._records

    def changes(self) -> tuple[bool, list]:
        """For the stream face: (rewritten, records to store): every live entry after a
        rewrite, else the records since the table was loaded."""
        if self._rewritten:
            entries = list(self._entries().items())
            self._records = len(entries)
            return True, entries
        return False, self._new or []

    def __getstate__(self):
        return (self.name, list(self._entries().items()))

    def __setstate__(self, st):
        self.__init__(st[0], st[1])

    def __eq__(self, other) -> bool:
        return isinstance(other, Table) and (self.name, self._entries()) == (
            other.name, other._entries())

    def __repr__(self) -> str:
        return f"Table({self.name!r}, {self._n} entries)"


class Derived:
    """A mixin for a state class with ``__slots__`` some of which are derived (an index
    kept beside the data, rebuilt when needed): only the slots named in ``SAVED`` are
    pickled, as the default pickling of slots writes them (so adding a derived slot
    leaves the saved bytes as they were); on loading, ``forget()`` resets the others."""

    __slots__ = ()
    SAVED: tuple = ()

    def forget(self) -> None:
        """Reset the derived slots (after loading)."""

    def __getstate__(self):
        return None, {k: getattr(self, k) for k in self.SAVED}

    def __setstate__(self, state):
        for k, v in state[1].items():
            setattr(self, k, v)
        self.forget()


class _Deleted:
    """The value of a change record that deletes its key (one object, pickled by name)."""

    def __reduce__(self):
        return "DELETED"

    def __repr__(self) -> str:
        return "<deleted>"


DELETED = _Deleted()


def replay(records: Iterable[tuple]) -> dict:
    """A :class:`Table`'s dict from its change records, oldest first."""
    m: dict = {}
    for k, v in records:
        if v is DELETED:
            m.pop(k, None)
        else:
            m[k] = v
    return m


class Machine(ABC):
    """A keyed step's logic: no Beam, no I/O, no clocks. Subclasses override the hooks.

    State is a plain picklable object the machine mutates in place; ``is_empty`` tells the
    shell it may clear the key's state (every state must become empty when idle long
    enough: that is its expiry). What grows with the key's history lives in :class:`Log`
    objects inside the state, whose names the machine lists in ``LOGS`` (and maps read an
    entry at a time in :class:`Table` objects, named in ``LOGS`` too).
    """

    LOGS: tuple[str, ...] = ()

    @abstractmethod
    def new_state(self, key: Any) -> Any:
        """A fresh state for ``key``."""

    def time_of(self, event: Any) -> int:
        return event.event_time

    def sort_key(self, event: Any) -> tuple:
        """(event time, kind rank, id): deterministic order within a key's history."""
        return sort_key(event)

    def bind(self, side: Any) -> None:
        """Side data of the step (a Beam side input's value), given by the shell before
        the events that need it. Most machines have none."""
        return None

    @abstractmethod
    def on_event(self, state: Any, event: Any, now: int) -> list[Output]:
        """One event at time ``now`` (its event time): mutate ``state``, return outputs."""

    def advance(self, state: Any, now: int) -> list[Output]:
        """Fire every deadline due at or before ``now``, in time order."""
        return []

    def next_deadline(self, state: Any) -> Optional[int]:
        return None

    def is_empty(self, state: Any) -> bool:
        return False


def step(machine: Machine, key: Any, state: Any, event: Any) -> tuple[Any, list[Output]]:
    """One event: deadlines due at or before its time fire first (an expired state starts
    afresh, as if its expiry timer had cleared it), then the event. Returns the new state."""
    now = machine.time_of(event)
    out = machine.advance(state, now)
    if machine.is_empty(state):
        state = machine.new_state(key)
    out.extend(machine.on_event(state, event, now))
    return state, out


def sort_key_of(machine: Machine) -> Callable[[Any], tuple]:
    """``machine.sort_key``, or for the default one ``core.events.sort_key`` itself
    (the same function without a method call per event)."""
    if type(machine).sort_key is Machine.sort_key:
        return sort_key
    return machine.sort_key


class SortedRun:
    """Part of a key's history that arrives already in the machine's sort order, read
    lazily: ``read()`` gives its events (a shuffle spilled to disk: a long history need
    not be held at once). In a key's event list it stands where its events arrived."""

    __slots__ = ("read",)

    def __init__(self, read: Callable[[], Iterable[Any]]):
        self.read = read


def iter_history(machine: Machine, key: Any, events: Iterable[Any],
                 until: int = END_OF_TIME, *, end: Optional[int] = None,
                 save: bool = False) -> Iterator[Output]:
    """The batch face's core: a key's history, sorted, then time runs to ``until``.
    Outputs are yielded as they are decided, so a long history's outputs need not all be
    held at once.

    A :class:`~core.events.Seed` among ``events`` is the key's state saved by an
    earlier chunk: the key starts from it (and its waiting events join the history).
    A :class:`SortedRun` among them is read as the key's history is run, merged with the
    other events: the order is the one sorting all of them at once gives (a stable sort
    of the events in their arrival order).
    ``end`` (a chunked replay) is the exclusive end of this chunk of event time: events at
    or after it are not run yet; time advances to ``end - 1``; with ``save`` the key's state
    and the events not run are yielded as ``(STATE, end - 1, (key, blob, due))`` (nothing
    for an empty key; ``due``: :func:`due_of`); then, only if ``until`` lies beyond the
    chunk (the last chunk), the remaining events run and time advances to ``until``."""
    sk = sort_key_of(machine)
    state = None
    todo: list = []
    parts: Optional[list] = None  # with sorted runs: the history in arrival order, in parts
    for ev in events:
        t = type(ev)
        if t is Seed:
            state = ev.state
            todo.extend(ev.waiting)
        elif t is SortedRun:
            if parts is None:
                parts = []
            parts.append(todo)
            parts.append(ev)
            todo = []
        else:
            todo.append(ev)
    if state is None:
        state = machine.new_state(key)
    later: list = []
    time_of = machine.time_of
    if parts is None:
        if end is not None:
            later = [e for e in todo if time_of(e) >= end]
            if later:
                todo = [e for e in todo if time_of(e) < end]
        ordered: Iterable = sorted(todo, key=sk)
    else:
        parts.append(todo)
        # heapq.merge is stable (ties go to the earlier part): a stable sort of the whole
        ordered = heapq.merge(*(p.read() if type(p) is SortedRun else sorted(p, key=sk)
                                for p in parts), key=sk)
        if end is not None:
            ordered = _before(ordered, end, time_of, later)
    for ev in ordered:
        state, more = step(machine, key, state, ev)
        yield from more
    if end is not None:
        yield from machine.advance(state, end - 1)
        if machine.is_empty(state):
            state = machine.new_state(key)
        later.sort(key=sk)
        if save and (later or not machine.is_empty(state)):
            blob = pickle.dumps((state, tuple(later)), pickle.HIGHEST_PROTOCOL)
            yield (STATE, end - 1, (key, blob, due_of(machine, state, later)))
        if until <= end - 1:
            return
        for ev in later:
            state, more = step(machine, key, state, ev)
            yield from more
    yield from machine.advance(state, until)


def _before(ordered: Iterable[Any], end: int, time_of: Callable[[Any], int],
            later: list) -> Iterator[Any]:
    """``ordered``'s events before ``end``; the others go into ``later``, in order."""
    for ev in ordered:
        if time_of(ev) >= end:
            later.append(ev)
        else:
            yield ev


def due_of(machine: Machine, state: Any, waiting: Iterable[Any]) -> Optional[int]:
    """When a key saved with ``state`` and events ``waiting`` must run again: its next
    deadline or its first waiting event, whichever is first (None: neither). Until then,
    with no new event, running it would decide nothing: a machine's ``advance`` emits
    only at the deadlines its ``next_deadline`` reports (it may rearrange its state's
    layout before, as Actions' and LabelJoin's head and log do, which a single run would
    not do either)."""
    due = machine.next_deadline(state)
    time_of = machine.time_of
    for ev in waiting:
        t = time_of(ev)
        if due is None or t < due:
            due = t
    return due


def run_history(machine: Machine, key: Any, events: Iterable[Any],
                until: int = END_OF_TIME) -> list[Output]:
    """:func:`iter_history` as a list."""
    return list(iter_history(machine, key, events, until))


@contextmanager
def gc_off(freeze: bool = False):
    """Python's cyclic garbage collector off for a block of bulk work whose objects are
    freed by reference counting (or stay alive to its end): collections triggered by
    their allocations would find nothing to free, and traverse every live object each
    time. The previous state is restored on exit; ``freeze``: what the block built is
    frozen first (:func:`gc_paused`)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if freeze:
                gc.freeze()
            gc.enable()


def gc_paused():
    """Pause Python's cyclic garbage collector for bulk work that builds many objects which
    stay alive (a shard's unpickled history, its outputs): otherwise each full collection
    traverses them all again, and the collections come more often the more there are
    (measured: a third of a 100k-transfer backtest's time). The machines' states and
    events hold no reference cycles; reference counting frees them as usual. The previous
    state is restored on exit. What the pause built is frozen there (``gc.freeze``): it
    stays alive, and the collection its allocations would trigger at once, traversing
    every live object, would find nothing to free; a driver may ``gc.unfreeze()`` after
    the bulk work."""
    return gc_off(freeze=True)


def group_by_key(pairs: Iterable[tuple[Any, Any]]) -> dict:
    """``(key, event)`` pairs -> ``{key: [events]}``, events in arrival order."""
    by_key: dict = {}
    for key, event in pairs:
        got = by_key.get(key)
        if got is None:
            by_key[key] = [event]
        else:
            got.append(event)
    return by_key


class Fused(Machine):
    """Two steps on the same key as one machine: ``first`` runs the key's events except
    those for which ``takes(event)`` is true, which go to ``second``; ``first``'s outputs
    tagged ``feed`` go on downstream *and* into ``second`` at once. The outputs are exactly
    those of two separate steps (the fed records keep their event's time and kind, so the
    second step sees them in the order it would have sorted them), with one shuffle and
    one stateful stage less on both faces. Both machines must order events alike (the
    first one's ``sort_key`` orders the fused step)."""

    def __init__(self, first: Machine, second: Machine, feed: str,
                 takes: Callable[[Any], bool]):
        self.first, self.second, self.feed, self.takes = first, second, feed, takes
        self.LOGS = tuple(first.LOGS) + tuple(second.LOGS)

    def new_state(self, key):
        return [key, self.first.new_state(key), self.second.new_state(key)]

    def time_of(self, event):
        return self.first.time_of(event)

    def sort_key(self, event):
        return self.first.sort_key(event)

    def is_empty(self, s) -> bool:
        return self.first.is_empty(s[1]) and self.second.is_empty(s[2])

    def next_deadline(self, s) -> Optional[int]:
        a, b = self.first.next_deadline(s[1]), self.second.next_deadline(s[2])
        return b if a is None else a if b is None else min(a, b)

    def bind(self, side) -> None:
        self.first.bind(side)
        self.second.bind(side)

    def advance(self, s, now: int) -> list:
        out = self.first.advance(s[1], now)
        out.extend(self.second.advance(s[2], now))
        return out

    def on_event(self, s, ev, now: int) -> list:
        key, first, second = s[0], self.first, self.second
        if self.takes(ev):
            if second.is_empty(s[2]):
                s[2] = second.new_state(key)
            return second.on_event(s[2], ev, now)
        if first.is_empty(s[1]):
            s[1] = first.new_state(key)
        out = first.on_event(s[1], ev, now)
        fed = [o for o in out if o[0] == self.feed]
        for _tag, t, value in fed:
            if second.is_empty(s[2]):
                s[2] = second.new_state(key)
            out.extend(second.on_event(s[2], value, t))
        return out


class Chunk(NamedTuple):
    """Batch face: which chunk of event time a run covers (see :func:`iter_history`).
    ``end``: exclusive end of the chunk (None: the whole history); ``until``: how far time
    runs at the end (``END_OF_TIME`` for the last chunk); ``save``: emit every key's state.
    The planner's chunk is :class:`connectors.chunks.ChunkSpan`, one pipeline's
    :class:`connectors.chunks.ChunkRun`."""

    end: Optional[int] = None
    until: int = END_OF_TIME
    save: bool = False
