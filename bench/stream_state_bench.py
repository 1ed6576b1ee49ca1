"""Streaming state against a key's history: busy keys through the stream face.

    PYTHONPATH=. PYTHONHASHSEED=0 .venv/bin/python -m bench.stream_state_bench \\
        [--n 500,1000,2000,4000] [--runs 3] [--bytes 200,2000] [--same_rate] [--json FILE]

Three shapes of N transfers spread evenly over 20 days of event time, each through the
``SafetyNet`` composite in stream mode (a ``TestStream`` on the ``BundleBasedDirectRunner``,
rules only, the local runner patches installed as the local job does):

* ``one_address``: N users each pay the same address once (a busy destination: the
  address-keyed steps CounterpartyProfile + LabelJoin, Actions and CaseBook see N events);
* ``one_payer``: one user pays N different addresses (a bulk payer: SenderProfile, Score
  and Outreach see N events);
* ``distinct``: N users each pay their own address (every key sees one event).

Each run is one fresh process; the times are the pipeline's wall time and the process's
CPU time (building and running it; CPU is steadier on a shared machine), medians of
``--runs``, and each busy shape's ratio to ``distinct`` at the same N (runs alternate
between shapes, so the machine's drift hits all alike).

``--bytes`` N1,N2: the state bytes the busiest key reads and writes per event in each
keyed step (``transforms.faces.KeyStore`` counting: head bytes, plus bag items loaded and
added), for the busy shapes at two sizes, 10x apart: flat means an event's cost does not
grow with the key's history. Reported as the mean per event (trims and sweeps amortised)
over the busiest key's events. Both sizes are spread over 20 days, so 10x the history is
also 10x the rate; ``--same_rate`` spreads the larger over proportionally more days
(history 10x, rate unchanged), which separates what grows with a key's history from what
grows with its rate (windows over time).
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import statistics
import sys
import time
from pathlib import Path

from bench import run_child

SHAPES = ("one_address", "one_payer", "distinct")
DAYS = 20


def events(shape: str, n: int, days: float = DAYS) -> list:
    from tests.scenario import addr, at, transfer

    step = days * 24 * 60 / n  # minutes between transfers
    out = []
    for i in range(n):
        user = "payer" if shape == "one_payer" else f"u{i}"
        to = addr("busy") if shape == "one_address" else addr(f"a{i}")
        out.append(transfer(f"t{i}", at(minutes=i * step), user, to))
    return out


def child(args) -> None:

    from core.policy import Policy
    from tests.scenario import build, pipeline
    from transforms import faces

    evs = events(args.shape, args.n, args.days)
    tally: dict = {}
    if args.count:
        faces.KeyStore.counting = True
        faces.KeyStore.tally = tally
    t0, c0 = time.monotonic(), _cpu()
    with pipeline("stream") as p:  # the local runner patched, as the local job runs
        build(p, evs, Policy(use_models=False), "stream")
    wall, cpu = time.monotonic() - t0, _cpu() - c0
    busiest = {}
    for step, by_key in tally.items():
        key, calls = max(by_key.items(), key=lambda kv: len(kv[1]))
        busiest[step] = {"events": len(calls),
                         "read_per_event": round(sum(c[0] for c in calls) / len(calls)),
                         "written_per_event": round(sum(c[1] for c in calls) / len(calls))}
    print(json.dumps({"wall": wall, "cpu": cpu, "busiest": busiest}))


def _cpu() -> float:
    """CPU seconds of this process (the local runner runs in it): steadier than wall time
    on a shared machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(n_list: list, runs: int) -> dict:
    res: dict = {}
    for n in n_list:
        got: dict = {s: [] for s in SHAPES}
        for _ in range(runs):
            for shape in SHAPES:
                got[shape].append(run_child("bench.stream_state_bench",
                                            ["--shape", shape, "--n", n], f"{shape} N={n}"))
        res[n] = {}
        for what in ("wall", "cpu"):
            med = {s: statistics.median(r[what] for r in got[s]) for s in SHAPES}
            for s in SHAPES:
                res[n].setdefault(s, {})[what] = {
                    "median_s": round(med[s], 2), "runs": [round(r[what], 2) for r in got[s]],
                    "ratio_to_distinct": round(med[s] / med["distinct"], 2)}
            print(f"[bench] N={n} {what}: " + ", ".join(
                f"{s} {med[s]:.1f} s (x{med[s] / med['distinct']:.2f})" for s in SHAPES),
                flush=True)
    return res


def state_bytes(n_list: list, same_rate: bool = False) -> dict:
    """``same_rate``: the history grows at the rate of the first size (N2 transfers in
    N2/N1 x 20 days), so windows over time hold as much at both sizes; otherwise both
    sizes are spread over 20 days (10x the history is also 10x the rate)."""
    res: dict = {}
    for shape in ("one_address", "one_payer"):
        for n in n_list:
            days = DAYS * n / n_list[0] if same_rate else DAYS
            r = run_child("bench.stream_state_bench",
                          ["--shape", shape, "--n", n, "--count", "--days", days],
                          f"bytes {shape} N={n} in {days:g} days")
            res[f"{shape} N={n} days={days:g}"] = r["busiest"]
            for step, b in sorted(r["busiest"].items()):
                print(f"[bench] bytes {shape} N={n} in {days:g} days {step}: {b['events']} events, "
                      f"read {b['read_per_event']} B/event, written "
                      f"{b['written_per_event']} B/event", flush=True)
    return res

    def clear(self) -> None:
        self.raw = []


def _busy_inputs(step: str, m: int) -> tuple:
    """(machine, key, events): one address receiving ``m`` transfers in 20 days
    (``HeldActions``: 3 days, every one held, so that a fifth to all of them are pending at
    once); ``SenderProfile``: one user paying ``m`` different addresses in 20 days."""
    import hashlib

    from core.actions import Actions
    from core.casefiles import CaseBook
    from core.labels import LabelJoin
    from core.profiles import SenderProfile
    from tests.kit import P, scored
    from tests.scenario import addr, at, transfer

    busy = addr("busy")
    gap = DAYS * 24 * 60 / m
    feats = {f"f{i}": float(i) for i in range(30)}  # about the features a record carries
    if step == "SenderProfile":
        return SenderProfile(P, lambda _user: None), "payer", [
            transfer(f"t{i}", at(minutes=i * gap), "payer",
                     "0x" + hashlib.sha1(f"payee{i}".encode()).hexdigest())
            for i in range(m)]
    if step == "HeldActions":
        held = 3 * 24 * 60 / m
        return Actions(P), busy, [scored(f"t{i}", at(minutes=i * held), f"u{i}", busy,
                                         blacklist=("list",)) for i in range(m)]
    sc = [scored(f"t{i}", at(minutes=i * gap), f"u{i}", busy) for i in range(m)]
    if step == "Actions":
        return Actions(P), busy, sc
    if step == "LabelJoin":
        return LabelJoin(P), busy, [e.featured._replace(features=feats) for e in sc]
    return CaseBook(P), busy, sc


def machine_alone(steps: list, sizes: list, layouts: list) -> dict:
    """µs and state bytes per event of one busy key through the stream face's state
    encoding, the machine alone: ``logs`` (transforms.faces.KeyStore: head + bags) or
    ``whole`` (the previous layout: the whole state pickled in one cell per event), over
    the last tenth of the key's ``m`` events."""
    from core.machine import step as run_step
    from tests.kit import Bag, Cell
    from transforms import faces
    from transforms.faces import KeyStore, _Held

    tables = getattr(faces, "TableCache", None)  # None: a release before tables (a base)

    res: dict = {}
    for name in steps:
        for m in sizes:
            for layout in layouts:
                machine, key, evs = _busy_inputs(name, m)
                head, bags = Cell(), tuple(Bag() for _ in machine.LOGS)
                tail, spent, moved = len(evs) - len(evs) // 10, 0.0, 0
                cache = tables and tables()  # the worker's: a table is read from its bag once
                for i, ev in enumerate(evs):
                    t0 = time.perf_counter()
                    if layout == "logs":
                        cells = (KeyStore(machine.LOGS, head, bags, key, cache) if cache
                                 else KeyStore(machine.LOGS, head, bags))
                        cells.counting = True
                        h = cells.load() or _Held(machine.new_state(key))
                        h.state, _ = run_step(machine, key, h.state, ev)
                        cells.store(h)
                        n = cells.bytes_read + cells.bytes_written
                    else:
                        raw = head.read()
                        h = pickle.loads(raw) if raw else _Held(machine.new_state(key))
                        h.state, _ = run_step(machine, key, h.state, ev)
                        head.write(pickle.dumps(h, pickle.HIGHEST_PROTOCOL))
                        n = (len(raw) if raw else 0) + len(head.raw)
                    if i >= tail:
                        spent += time.perf_counter() - t0
                        moved += n
                k = len(evs) - tail
                got = {"us_per_event": round(spent / k * 1e6, 1), "bytes_per_event": moved // k}
                res[f"{name} m={m} {layout}"] = got
                print(f"[bench] {name} alone, {m} events, {layout}: {got['us_per_event']} "
                      f"µs/event, {got['bytes_per_event']} state bytes/event", flush=True)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.stream_state_bench")
    p.add_argument("--n", default="500,1000,2000,4000")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bytes", default="200,2000", help="two sizes for the bytes per event "
                   "(empty: skip)")
    p.add_argument("--same_rate", action="store_true", help="bytes: the larger size over "
                   "proportionally more days (history grows, the rate does not)")
    p.add_argument("--days", type=float, default=DAYS, help=argparse.SUPPRESS)
    p.add_argument("--alone", default="", help="machines to measure alone, e.g. "
                   "Actions,HeldActions,LabelJoin,CaseBook,SenderProfile (µs and bytes per "
                   "event, no Beam)")
    p.add_argument("--alone_sizes", default="1000,10000")
    p.add_argument("--layouts", default="logs,whole")
    p.add_argument("--json", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shape", choices=SHAPES, help=argparse.SUPPRESS)
    p.add_argument("--count", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.n = int(args.n)
        child(args)
        return 0
    res = {}
    if args.alone:
        res["alone"] = machine_alone(args.alone.split(","),
                                     [int(x) for x in args.alone_sizes.split(",")],
                                     args.layouts.split(","))
    if args.n:
        res["time"] = timed([int(x) for x in args.n.split(",")], args.runs)
    if args.bytes:
        res["bytes"] = state_bytes([int(x) for x in args.bytes.split(",")], args.same_rate)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
