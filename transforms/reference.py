"""The reference: SafetyNet's decisions in plain single-process Python, no Beam.

``run_reference(inputs, policy)`` runs the same pure machines (``transforms.machine``) over
the same graph (:data:`transforms.graph.STEPS`) with the same side-data factories
(``Policy.blacklist_paths``, ``Policy.profiles_path``), each keyed step as: group its events
by key in a dict, ``run_history`` per key, collect the outputs by tag. Steps run in the
graph's topological order. It is the batch face without Beam's shuffles and coders, so:

* a second oracle: the Beam faces must decide exactly as it does (tests/test_reference.py);
* the practical speed limit of a backtest in Python on one core (bench/backtest_bench.py).

>>> from transforms.policy import Policy
>>> out = run_reference({}, Policy())
>>> sorted(out)  # doctest: +NORMALIZE_WHITESPACE
['cases', 'dead_letter', 'freezes', 'holds', 'model_metrics', 'outreach', 'resolutions',
 'scored', 'snapshots', 'verdicts', 'versions', 'warning_holdout']
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional

from schemas.rows import DeadLetter
from transforms.graph import (
    DEAD_LETTERS,
    INPUTS,
    OUTPUTS,
    RESULTS,
    ROUTERS,
    STEPS,
    Side,
    Step,
    globals_before,
    load_side,
    verdict_row,
)
from transforms.learner import warm_versions
from transforms.machine import METRIC, gc_paused, group_by_key, run_history
from transforms.policy import Policy

__all__ = ["run_reference", "run_steps", "load_replay", "replay_policy", "Stats",
           "decisions"]


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


def run_steps(inputs: dict, policy: Policy, stats: Stats,
              until: Optional[str] = None) -> dict[str, list]:
    """Every stream of the graph (:mod:`transforms.graph`) as lists: the inputs, the
    routers' branches and each step's outputs, by stream name; steps run in order, up to
    and including the step labelled ``until``."""
    side = load_side(policy)
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
            side_value = warm_versions(policy) + list(streams[st.side])
        out = _stage(st, policy, side, events, stats, side_value)
        for tag in (st.main, *st.tags):
            streams[f"{st.label}:{tag}"] = out.get(tag, [])
        if st.label == until:
            break
    return streams


def run_reference(inputs: dict, policy: Optional[Policy] = None,
                  stats: Optional[Stats] = None) -> dict[str, list]:
    """Inputs bundle (lists of validated rows: ``transfers``, ``reports``, ``outcomes``,
    ``blacklist``; any may be missing) -> outputs bundle (lists of rows: ``holds``,
    ``resolutions``, ``freezes``, ``outreach``, ``verdicts``, ``dead_letter``, and
    ``scored``, the ScoredTransfers), exactly as ``SafetyNet(policy, "batch")`` decides.

    A ``DeadLetter`` found among the input rows (a record the reader could not validate)
    is passed to ``dead_letter``, as the drivers do. Lists come back in no particular order.
    """
    policy = (policy or Policy()).validate()
    stats = stats if stats is not None else Stats()
    dead_in: list = []
    rows: dict[str, list] = {}
    for name in INPUTS:
        got = rows[name] = []
        for r in inputs.get(name, ()) or ():
            (dead_in if type(r) is DeadLetter else got).append(r)
    streams = run_steps(rows, policy, stats)
    out = {name: streams[s] for name, s in RESULTS.items()}
    out["verdicts"] = [verdict_row(sr) for sr in streams["Score:scored_reports"]]
    out["dead_letter"] = dead_in + [d for s in DEAD_LETTERS for d in streams[s]]
    return out


# ------------------------------------------------------------------------ replay directories
def replay_policy(directory: str | Path, policy: Optional[Policy] = None) -> Policy:
    """``policy`` with the side data of a replay directory: ``blacklist_snapshot.*`` as the
    blacklist snapshot and ``profiles.*`` as the profiles, where present."""
    import dataclasses

    from schemas.codecs import find_input

    policy = policy or Policy()
    snap = find_input(directory, "blacklist_snapshot")
    prof = find_input(directory, "profiles")
    return dataclasses.replace(
        policy,
        blacklist_paths=(str(snap),) if snap else policy.blacklist_paths,
        profiles_path=str(prof) if prof else policy.profiles_path)


_RECORDS = {"transfers": "Transfer", "reports": "ScamReport", "outcomes": "CaseOutcome",
            "blacklist": "BlacklistUpdate"}


def load_replay(directory: str | Path) -> dict[str, list]:
    """The four inputs of a replay directory as lists of rows. A record the reader cannot
    validate is a ``DeadLetter`` stamped, as the backtest driver stamps it, with the last
    valid event time before it in its file (``run_reference`` passes it to ``dead_letter``)."""
    from schemas.codecs import find_input, read_batches

    out = {}
    for name, record in _RECORDS.items():
        path = find_input(directory, name)
        rows: list = []
        if path is not None:
            last = 0
            for batch in read_batches(path, record, name):
                for r in batch:
                    if type(r) is DeadLetter:
                        rows.append(r._replace(at=last))
                    else:
                        last = r.event_time
                        rows.append(r)
        out[name] = rows
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
