"""Where a backtest's time goes, step by step, without Beam: each keyed step of the graph
alone on its recorded inputs, in µs per event (CPU time), and the read before them.

    python -m bench.step_costs --input REPLAY_DIR [--runs 3]

The inputs of each step are recorded by running the graph (:mod:`core.reference`)
once; then each step runs again alone, ``--runs`` times, on its recorded events (group by
key, each key's history, as the batch face does); the median CPU time per event is
printed with the step's events and keys, and the read and validation of the replay
directory per record. The Beam backtest adds to these its shuffles and its per-element
dispatch (bench/README.md, "Where the time goes").
"""

from __future__ import annotations

import argparse
import statistics
import time

from core.graph import STEPS
from core.learner import warm_versions
from core.reference import Stats, _stage, run_steps
from schemas.rows import DeadLetter
from transforms.side import load_replay, load_side, replay_policy


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.step_costs")
    p.add_argument("--input", required=True, metavar="DIR")
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args(argv)
    t = time.process_time()
    inputs = load_replay(a.input)
    read_s = time.process_time() - t
    n_read = sum(len(v) for v in inputs.values())
    inputs = {k: [r for r in v if type(r) is not DeadLetter] for k, v in inputs.items()}
    policy = replay_policy(a.input).validate()
    stats = Stats()
    side = load_side(policy)
    streams = run_steps(inputs, policy, stats, side=side)
    print(f"read + validate: {n_read:,} records, {read_s * 1e6 / max(n_read, 1):.1f} µs each")
    print(f"{'step':<22}{'events':>10}{'keys':>9}{'µs/event':>10}{'s':>8}")
    total = 0.0
    for st in STEPS:
        events = [e for n in st.inputs for e in streams[n]]
        sv = (warm_versions(policy, side.warm()) + list(streams[st.side])) if st.side else None
        secs = statistics.median(
            _cpu(lambda st=st, events=events, sv=sv: _stage(st, policy, side, events, Stats(),
                                                             sv))
            for _ in range(a.runs))
        total += secs
        print(f"{st.label:<22}{len(events):>10,}{stats.keys[st.label]:>9,}"
              f"{secs * 1e6 / max(len(events), 1):>10.1f}{secs:>8.2f}")
    n_t = len(inputs.get("transfers", ()))
    print(f"all steps: {total:.2f} s CPU, {total * 1e6 / max(n_t, 1):.1f} µs per transfer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
