"""The reference: SafetyNet's decisions in plain single-process Python, no Beam.

``run_reference(inputs, policy)`` runs the same pure machines (``transforms.machine``) with
the same routing functions (``transforms.safetynet``) and the same side-data factories
(``Policy.blacklist_paths``, ``Policy.profiles_path``), each keyed step as: group its events
by key in a dict, ``run_history`` per key, collect the outputs by tag. Steps run in the
graph's topological order. It is the batch face without Beam's shuffles and coders, so:

* a second oracle: the Beam faces must decide exactly as it does (tests/test_reference.py);
* the practical speed limit of a backtest in Python on one core (bench/backtest_bench.py).

>>> from transforms.policy import Policy
>>> out = run_reference({}, Policy())
>>> sorted(out)
['cases', 'dead_letter', 'freezes', 'holds', 'outreach', 'resolutions', 'scored', 'verdicts']
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from schemas.rows import DeadLetter
from transforms import actions as act
from transforms import ledger as led
from transforms.assessments import daily_assessments  # issue 12
from transforms.capacity import apply_capacity  # issue 12
from transforms.casefiles import case_files  # issue 12
from transforms.labels import EXAMPLES
from transforms.machine import METRIC, gc_paused, group_by_key, run_history
from transforms.models import SCORED_REPORTS, SCORED_TRANSFERS, model_key
from transforms.outreach import OUTREACH
from transforms.policy import Policy
from transforms.profiles import FEATURED
from transforms.safetynet import (
    INPUTS,
    OUTPUTS,
    SideData,
    _address_of,
    _Factory,
    _ledger_key,
    _user_of,
    _verdict,
    split_outcome,
    split_report,
)

__all__ = ["run_reference", "load_replay", "replay_policy", "Stats", "decisions"]


class Stats:
    """What a run did: events in and outputs out per step, metric counters, and the number
    of keys each step held (the state's size, for the memory benchmark)."""

    def __init__(self):
        self.counters: dict[str, int] = defaultdict(int)
        self.keys: dict[str, int] = {}
        self.events: dict[str, int] = {}

    def __repr__(self):
        return f"Stats(keys={self.keys}, events={self.events}, counters={dict(self.counters)})"


def _stage(name: str, step: str, policy: Policy, side: SideData,
           keyed: Iterable[tuple[Any, Any]], stats: Stats) -> dict[str, list]:
    """One keyed step: group by key, run each key's history, collect outputs by tag."""
    with gc_paused():  # as the batch face does: bulk work on long-lived objects
        groups = group_by_key(keyed)
        n = sum(len(events) for events in groups.values())
        machine = _Factory(step, policy, side)()
        out: dict[str, list] = defaultdict(list)
        counters = stats.counters
        for k, events in groups.items():
            for tag, _t, value in run_history(machine, k, events):
                if tag == METRIC:
                    counters[f"{name}.{value[0]}"] += value[1]
                else:
                    out[tag].append(value)
    stats.keys[name] = len(groups)
    stats.events[name] = n
    return out


def _keyed(fn: Callable[[Any], Any], *lists: list) -> Iterable[tuple[Any, Any]]:
    for rows in lists:
        for r in rows:
            yield fn(r), r


def run_upstream(policy: Policy, side: SideData, stats: Stats, transfers: list,
                 reports: list, outcomes: list, blacklist: list) -> dict:
    """The steps before Models: ledgers, profiles and LabelJoin. Returns the featured
    transfers and reports, the labelled examples, the address facts and the dead letters."""
    split_r: dict[str, list] = {"direct": [], "via_transfer": [], "dead": []}
    for r in reports:
        tag, v = split_report(r)
        split_r[tag].append(v)
    split_o: dict[str, list] = {"address": [], "transfer": [], "report": []}
    for o in outcomes:
        tag, v = split_outcome(o)
        split_o[tag].append(v)

    def run(name, step, keyed):
        return _stage(name, step, policy, side, keyed, stats)

    # Ledgers: de-duplication and resolution.
    t_led = run("TransferLedger", "ledger",
                _keyed(_ledger_key, transfers, split_o["transfer"], split_r["via_transfer"]))
    r_led = run("ReportLedger", "ledger",
                _keyed(_ledger_key, split_r["direct"], t_led[led.REPORTS], split_o["report"]))
    facts = split_o["address"] + t_led[led.FACTS] + r_led[led.FACTS]
    # Features.
    sender = run("SenderProfile", "sender",
                 _keyed(_user_of, t_led[led.TRANSFERS], r_led[led.REPORTS]))
    counter = run("CounterpartyProfile", "counterparty",
                  _keyed(_address_of, sender[FEATURED], blacklist))
    featured = counter[FEATURED]
    # Labels.
    labels = run("LabelJoin", "labels", _keyed(_address_of, featured, facts))
    return {"featured": featured, "examples": labels[EXAMPLES], "facts": facts,
            "dead_letter": split_r["dead"] + t_led[led.DEAD] + r_led[led.DEAD]}


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
    side = SideData(policy)
    dead_in: list = []

    def rows(name):
        got = []
        for r in inputs.get(name, ()) or ():
            (dead_in if type(r) is DeadLetter else got).append(r)
        return got

    transfers, reports, outcomes, blacklist = (rows(n) for n in INPUTS)

    up = run_upstream(policy, side, stats, transfers, reports, outcomes, blacklist)
    featured, facts = up["featured"], up["facts"]

    def run(name, step, keyed):
        return _stage(name, step, policy, side, keyed, stats)

    models = run("Models", "models", _keyed(model_key, featured, up["examples"]))

    # Actions and outreach.
    actions = run("Actions", "actions",
                  _keyed(_address_of, models[SCORED_TRANSFERS], models[SCORED_REPORTS],
                         facts, blacklist))
    # --- issue 12: daily risk assessments (rule 11) into Outreach; call capacity (rule 12)
    assessments = daily_assessments(models[SCORED_TRANSFERS], actions[act.LOSSES], policy,
                                    side.profiles().get)
    outreach = run("Outreach", "outreach",
                   _keyed(_user_of, actions[act.REQUESTS], actions[act.LOSSES], assessments))
    outreach[OUTREACH] = apply_capacity(outreach[OUTREACH], policy)

    return {
        "holds": actions[act.HOLDS],
        "resolutions": actions[act.RESOLUTIONS],
        "freezes": actions[act.FREEZES],
        "outreach": outreach[OUTREACH],
        "verdicts": [_verdict(sr) for sr in models[SCORED_REPORTS]],
        "dead_letter": dead_in + up["dead_letter"],
        "scored": models[SCORED_TRANSFERS],
        # issue 12: every version of every case file
        "cases": case_files(policy, models[SCORED_TRANSFERS], models[SCORED_REPORTS],
                            actions[act.HOLDS], actions[act.RESOLUTIONS],
                            actions[act.FREEZES], blacklist, outreach[OUTREACH]),
    }


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
