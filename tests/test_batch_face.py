"""The batch face's machinery: shards, packing, the fused second step, Gather, the GC pause.

Decisions through the batch face are held to the reference's by tests/test_reference.py;
these pin the parts a backtest relies on for being right at all: a key always lands in
the same shard (whatever the process), every event reaches its key's history exactly
once, and the fused LabelJoin sees what it would see as a step of its own.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from core.machine import Fused, Machine, gc_paused, run_history
from transforms.faces import Gather, RunMachine, shard_of

ROOT = Path(__file__).resolve().parent.parent


def test_a_key_lands_in_the_same_shard_in_every_process():
    """Python's str hash differs per process (PYTHONHASHSEED); shards must not, or one
    key's events would be split between two histories on a multi-process runner."""
    keys = ["0xabc", "T:t1", "u42", "transfer_risk"]
    here = [shard_of(k, 64) for k in keys]
    code = ("from transforms.faces import shard_of; "
            f"print([shard_of(k, 64) for k in {keys!r}])")
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == repr(here)
    assert all(0 <= s < 64 for s in here)


class _Log(Machine):
    """Emits each event as ("seen", t, event); events are (t, "key:name")."""

    def new_state(self, key):
        return {"key": key}

    def time_of(self, ev):
        return ev[0]

    def sort_key(self, ev):
        return ev

    def on_event(self, s, ev, now):
        return [("seen", now, ev)] if len(ev) == 2 else []


class _Echo(Machine):
    """The fused second step: numbers what it was fed and its own events, per key, in
    time order (so a missing, extra or misrouted event changes every later output)."""

    def new_state(self, key):
        return {"key": key, "n": 0}

    def time_of(self, ev):
        return ev[0]

    def sort_key(self, ev):
        return (ev[0], repr(ev))

    def on_event(self, s, ev, now):
        s["n"] += 1
        return [("echo", now, (s["key"], s["n"], ev))]


def _key(ev):
    return ev[1].split(":")[0]


def test_every_event_reaches_its_keys_history_once_across_inputs_and_shards():
    a = [(t, f"k{t % 5}:a{t}") for t in range(40)]
    b = [(t, f"k{t % 3}:b{t}") for t in range(40, 70)]
    expected = a + b
    with TestPipeline(runner="FnApiRunner") as p:
        pa = p | "A" >> beam.Create(a)
        pb = p | "B" >> beam.Create(b)
        got = (pa, pb) | RunMachine(_Log, "batch", "seen", key_fn=_key, shards=4)
        assert_that(got.seen, equal_to(expected))


def _takes(ev):
    return len(ev) == 3


def _fused():
    return Fused(_Log(), _Echo(), "seen", _takes)


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_the_fused_step_sees_exactly_what_it_would_see_as_a_step_of_its_own(mode):
    events = [(t, f"k{t % 2}:e{t}") for t in range(6)]
    own = [(t, f"k{t % 2}:own{t}", "mine") for t in (2, 4)]

    # As two steps, by hand: the first's outputs fed to the second with its own events.
    expected = []
    for key in ("k0", "k1"):
        first = run_history(_Log(), key, [e for e in events if _key(e) == key])
        fed = [v for _, _, v in first] + [e for e in own if _key(e) == key]
        fed.sort(key=_Echo().sort_key)
        expected += [v for _, _, v in run_history(_Echo(), key, fed)]

    with TestPipeline(runner="FnApiRunner") as p:
        ins = p | "In" >> beam.Create(events + own)
        outs = ins | RunMachine(_fused, mode, "seen", ("echo",), key_fn=_key,
                                ordering="event_time")
        assert_that(outs.echo, equal_to(expected), label="echo")
        assert_that(outs.seen, equal_to(events), label="seen")


def test_gather_gives_one_list_even_of_nothing():
    with TestPipeline(runner="FnApiRunner") as p:
        some = p | "Some" >> beam.Create(range(1000)) | "G1" >> Gather()
        none = p | "None" >> beam.Create([]) | "G2" >> Gather()
        assert_that(some | beam.Map(sorted), equal_to([list(range(1000))]), label="some")
        assert_that(none, equal_to([[]]), label="none")


def test_gc_pause_restores_the_collector():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()


class _Arrival(Machine):
    """Orders by time alone, so events of one time run in the order they arrived; numbers
    them, and ticks 7 after each (a deadline): any other order, a lost or a repeated event,
    or a deadline fired at another point of the history changes the outputs."""

    def new_state(self, key):
        return {"n": 0, "due": None}

    def time_of(self, ev):
        return ev[0]

    def sort_key(self, ev):
        return (ev[0],)

    def on_event(self, s, ev, now):
        s["n"] += 1
        s["due"] = now + 7
        return [("seen", now, (s["n"], ev))]

    def next_deadline(self, s):
        return s["due"]

    def advance(self, s, now):
        if s["due"] is not None and s["due"] <= now:
            at, s["due"] = s["due"], None
            return [("tick", at, s["n"])]
        return []


@pytest.mark.parametrize("cut", [dict(), dict(end=30, until=29, save=True),
                                 dict(end=30, save=True)])
def test_a_history_read_in_sorted_runs_runs_as_the_whole_history_sorted(cut):
    """A spilled shuffle hands a step parts of a key's history as sorted runs read lazily
    (``SortedRun``), among events in memory: the step must run what a stable sort of all
    of them, in their arrival order, gives; with a saved state and its waiting events
    first, and split at a chunk's end as the whole history is."""
    import random

    from core.events import Seed
    from core.machine import SortedRun, iter_history

    rng = random.Random(5)
    m = _Arrival()
    waiting = tuple(sorted(((rng.choice((20, 41, 59)), f"w{i}") for i in range(15)),
                           key=m.sort_key))
    times = (0, 1, 2, 10, 11, 19, 20, 28, 29, 40, 41, 52, 59)  # ties, and gaps to tick in
    arrived = [(rng.choice(times), f"e{i}") for i in range(400)]

    def seed():  # the state a run mutates: one each
        return Seed("k", 0, {"n": 100, "due": 25}, waiting)

    whole = list(iter_history(m, "k", [seed(), *arrived], **cut))
    assert len(whole) > 200 and {o[0] for o in whole} >= {"seen", "tick"}

    parts, i, reads = [seed()], 0, []
    while i < len(arrived):
        n = rng.randrange(1, 60)
        part, i = arrived[i:i + n], i + n
        if rng.random() < 0.5:
            part = sorted(part, key=m.sort_key)
            parts.append(SortedRun(lambda part=part: reads.append(len(part)) or iter(part)))
        else:
            parts.extend(part)
    runs = list(iter_history(m, "k", parts, **cut))
    assert reads and sum(reads) < len(arrived)  # both kinds of part
    assert runs == whole
