"""The reference: SafetyNet's decisions in plain single-process Python, no Beam.

``run_reference(inputs, policy, side)`` runs the same pure machines (``core.machine``)
over the same graph (:data:`core.graph.STEPS`) with the same side data (a
:class:`~core.graph.Side`: the files a policy names are loaded by the caller,
:func:`transforms.side.load_side`), each keyed step as: group its events by key in a dict,
``run_history`` per key, collect the outputs by tag. Steps run in the
graph's topological order. It is the batch face without Beam's shuffles and coders, so:

* a second oracle: the Beam faces must decide exactly as it does (tests/test_reference.py);
* the practical speed limit of a backtest in Python on one core (bench/backtest_bench.py).

>>> from core.policy import Policy
>>> out = run_reference({}, Policy())
>>> sorted(out)  # doctest: +NORMALIZE_WHITESPACE
['cases', 'dead_letter', 'freezes', 'holds', 'model_metrics', 'outreach', 'resolutions',
 'scored', 'snapshots', 'verdicts', 'versions', 'warning_holdout']
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Optional

from core.graph import (
    DEAD_LETTERS,
    INPUTS,
    OUTPUTS,
    RESULTS,
    ROUTERS,
    STEPS,
    ProfileBook,
    Side,
    Step,
    globals_before,
    verdict_row,
)
from core.learner import warm_versions
from core.machine import METRIC, gc_paused, group_by_key, run_history
from core.policy import Policy
from schemas.blacklist import BlacklistSnapshot
from schemas.rows import DeadLetter

__all__ = ["run_reference", "run_steps", "no_files", "Stats", "decisions"]


class Stats:
    """What a run did: events in and outputs out per step, metric counters, and the number
    of keys each step held (the state's size, for the memory benchmark)."""

    def __init__(self):
        self.counters: dict[str, int] = defaultdict(int)
        self.keys: dict[str, int] = {}
        self.events: dict[str, int] = {}

    def __repr__(self):
        return f"Stats(keys={self.keys}, events={self.events}, counters={dict(self.counters)})"


def _stage(st: Step, policy: Policy, side: Side, events: Iterable[Any], stats: Stats,
           side_value: Any = None) -> dict[str, list]:
    """One keyed step: group by key, run each key's history, collect outputs by tag."""
    with gc_paused():  # as the batch face does: bulk work on long-lived objects
        groups = group_by_key((st.key(e), e) for e in events)
        n = sum(len(events) for events in groups.values())
        machine = st.make(policy, side)
        if side_value is not None:
            machine.bind(side_value)
        out: dict[str, list] = defaultdict(list)
        counters = stats.counters
        for k, evs in groups.items():
            for tag, _t, value in run_history(machine, k, evs):
                if tag == METRIC:
                    counters[f"{st.label}.{value[0]}"] += value[1]
                else:
                    out[tag].append(value)
    stats.keys[st.label] = len(groups)
    stats.events[st.label] = n
    return out


def no_files(policy: Policy, mode: str = "batch") -> Side:
    """The side data of a policy that names no file: no list, no profiles, no warm start."""
    if policy.blacklist_paths or policy.profiles_path or policy.model_warm_start:
        raise ValueError("the policy names side files (blacklist, profiles, warm start): "
                         "pass side=transforms.side.load_side(policy)")
    empty, profiles = BlacklistSnapshot(), ProfileBook()
    return Side(lambda: empty, lambda: profiles.get, mode)


def run_steps(inputs: dict, policy: Policy, stats: Stats, until: Optional[str] = None,
              side: Optional[Side] = None) -> dict[str, list]:
    """Every stream of the graph (:mod:`core.graph`) as lists: the inputs, the
    routers' branches and each step's outputs, by stream name; steps run in order, up to
    and including the step labelled ``until``. ``side``: the side data (default: none,
    :func:`no_files`)."""
    side = side or no_files(policy)
    streams: dict[str, list] = {name: list(inputs.get(name, ())) for name in INPUTS}
    for r in ROUTERS:
        branches: dict[str, list] = {b: [] for b in r.branches}
        for x in streams[r.input]:
            tag, v = r.fn(x)
            branches[tag].append(v)
        for b, rows in branches.items():
            streams[f"{r.input}:{b}"] = rows
    for st in STEPS:
        for g in globals_before(st.label):  # global selections (daily top-K)
            streams[f"{g.label}:{g.output}"] = g.pure(
                policy, side, *(streams[n] for n in g.inputs))
        events = [e for n in st.inputs for e in streams[n]]
        side_value = None
        if st.side is not None:  # model versions: a warm start's first, as SafetyNet does
            side_value = warm_versions(policy, side.warm()) + list(streams[st.side])
        out = _stage(st, policy, side, events, stats, side_value)
        for tag in (st.main, *st.tags):
            streams[f"{st.label}:{tag}"] = out.get(tag, [])
        if st.label == until:
            break
    return streams


def run_reference(inputs: dict, policy: Optional[Policy] = None,
                  stats: Optional[Stats] = None, side: Optional[Side] = None) -> dict[str, list]:
    """Inputs bundle (lists of validated rows: ``transfers``, ``reports``, ``outcomes``,
    ``blacklist``; any may be missing) -> outputs bundle (lists of rows: ``holds``,
    ``resolutions``, ``freezes``, ``outreach``, ``verdicts``, ``dead_letter``, and
    ``scored``, the ScoredTransfers), exactly as ``SafetyNet(policy, "batch")`` decides.

    A ``DeadLetter`` found among the input rows (a record the reader could not validate)
    is passed to ``dead_letter``, as the drivers do. Lists come back in no particular order.
    ``side``: the side data of the policy's files (default: it names none).
    """
    policy = (policy or Policy()).validate()
    stats = stats if stats is not None else Stats()
    dead_in: list = []
    rows: dict[str, list] = {}
    for name in INPUTS:
        got = rows[name] = []
        for r in inputs.get(name, ()) or ():
            (dead_in if type(r) is DeadLetter else got).append(r)
    streams = run_steps(rows, policy, stats, side=side)
    out = {name: streams[s] for name, s in RESULTS.items()}
    out["verdicts"] = [verdict_row(sr) for sr in streams["Score:scored_reports"]]
    out["dead_letter"] = dead_in + [d for s in DEAD_LETTERS for d in streams[s]]
    return out


def decisions(outputs: dict) -> dict[str, list]:
    """The decisions of an outputs bundle in a canonical order, for comparing runs
    (``scored`` reduced to (transfer id, score))."""
    got = {}
    for name in OUTPUTS:
        got[name] = sorted(outputs.get(name, ()), key=repr)
    got["scored"] = sorted((s.featured.transfer.transfer_id, s.score)
                           if hasattr(s, "featured") else tuple(s)
                           for s in outputs.get("scored", ()))
    return got
