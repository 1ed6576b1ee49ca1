"""Streaming latency on the local runner with the Pub/Sub emulator.

    PYTHONPATH=. .venv/bin/python bench/latency_bench.py [--rate 200] [--seconds 20]
        [--runs 3] [--probes 40]

For each run: start the emulator and ``python -m pipelines.stream`` (rules only, durations
scaled by 4320 so the 24h hold is 20 s), then offer a fixed load of ``--rate`` transfers per
second (ordinary transfers between ~2000 users, ~5% of them to a blacklisted address, so
they are held). While the load runs, ``--probes`` pairs are measured:

* transfer -> hold: publish a transfer to a blacklisted address; latency = the wall time
  the hold message is pulled from the holds topic minus the publish time;
* outcome -> freeze: publish a ``CaseOutcome`` confirming a fresh address as a scam;
  latency = the freeze pulled minus the publish time. (A report's path adds the verdict
  model step; measuring it needs several independent established reporters per address.)

Each message carries its own event time (now), as the local runner needs. Prints p50/p99
per run and the median over runs; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors import emulator  # noqa: E402
from connectors.pubsub_client import (  # noqa: E402
    Collector,
    Publisher,
    create_resources,
    wait_until_live,
)
from schemas.codecs import write_records  # noqa: E402
from tests.scenario import addr, listing, outcome, profile, transfer  # noqa: E402

PROJECT = "safetynet-bench"
LISTED = addr("bench-listed")


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def _load(a, pub, users: list, stop: threading.Event, sent: dict) -> None:
    """Background load at ``a.rate`` transfers/s (5% to the listed address) until stopped."""
    rng = random.Random(7)
    n, t0 = 0, time.monotonic()
    while not stop.is_set():
        due = t0 + n / a.rate
        now = time.monotonic()
        if due > now:
            stop.wait(due - now)
            continue
        u = rng.choice(users)
        to = LISTED if rng.random() < 0.05 else addr(f"payee-{rng.randrange(5000)}")
        pub.publish("transfers", transfer(f"L{n}", int(time.time() * 1000), u, to,
                                          rng.uniform(10, 500)))
        n += 1
        sent["load"] = n


def _probe(a, pub, col, users: list) -> tuple[dict, dict]:
    """Every ``a.seconds / a.probes``: a transfer to the listed address (-> a hold) and a
    confirmed scam outcome (-> a freeze); returns when each was published."""
    hold_pub, freeze_pub = {}, {}
    probe_every = a.seconds / a.probes
    t_start = time.monotonic()
    k = 0
    while time.monotonic() - t_start < a.seconds:
        due = t_start + k * probe_every
        if time.monotonic() >= due:
            tid = f"P{k}"
            hold_pub[tid] = time.time()
            pub.publish("transfers", transfer(tid, int(time.time() * 1000),
                                              users[k % len(users)], LISTED, 100.0))
            scam = addr(f"bench-scam-{k}")
            freeze_pub[scam] = time.time()
            pub.publish("outcomes", outcome(f"C{k}", int(time.time() * 1000),
                                            "ADDRESS", scam, True))
            k += 1
        col.pull_once()
    return hold_pub, freeze_pub


def _latencies(a, col, hold_pub: dict, freeze_pub: dict, sent: dict) -> dict:
    col.wait_for(lambda r: {h.transfer_id for h in r["holds"]} >= set(hold_pub)
                 and {f.address for f in r["freezes"]} >= set(freeze_pub), timeout=60)
    got_hold = {h.transfer_id: t for h, t in zip(col.rows["holds"],
                                                  col.received_at["holds"], strict=True)}
    got_freeze = {f.address: t for f, t in zip(col.rows["freezes"],
                                                col.received_at["freezes"], strict=True)}
    h_lat = [got_hold[t] - s for t, s in hold_pub.items() if t in got_hold]
    f_lat = [got_freeze[x] - s for x, s in freeze_pub.items() if x in got_freeze]
    return {"offered_per_s": a.rate, "load_sent": sent["load"],
            "achieved_per_s": sent["load"] / a.seconds,
            "holds_seen": len(col.rows["holds"]),
            "transfer_hold_p50": pct(h_lat, 50), "transfer_hold_p99": pct(h_lat, 99),
            "outcome_freeze_p50": pct(f_lat, 50), "outcome_freeze_p99": pct(f_lat, 99),
            "probes": len(hold_pub), "hold_probes_seen": len(h_lat),
            "freeze_probes_seen": len(f_lat)}


def one_run(a, workdir: Path) -> dict:
    from connectors.emulator import start_process, stop_process

    emu = emulator.start()
    if emu is None:
        raise SystemExit("gcloud's Pub/Sub emulator is not installed")
    os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
    snap = workdir / "snapshot.avro"
    write_records(snap, "BlacklistUpdate", [listing(LISTED, 1_700_000_000_000)], "avro")
    profs = workdir / "profiles.avro"
    users = [f"u{i}" for i in range(2000)]
    write_records(profs, "UserProfile", [profile(u, 1_600_000_000_000) for u in users],
                  "avro")
    proc = None
    try:
        create_resources(PROJECT)
        proc = start_process(PROJECT, ["--use_models", "false", "--time_scale", "4320",
                                       "--blacklist", str(snap), "--profiles", str(profs)],
                             log_path=str(workdir / "job.log"))
        pub, col = Publisher(PROJECT), Collector(PROJECT, names=("holds", "freezes",
                                                                  "dead_letter"),
                                                 pull_timeout=0.2)
        wait_until_live(pub, col, timeout=180, is_alive=lambda: proc.poll() is None)
        stop = threading.Event()
        sent = {"load": 0}
        th = threading.Thread(target=_load, args=(a, pub, users, stop, sent), daemon=True)
        th.start()
        hold_pub, freeze_pub = _probe(a, pub, col, users)
        stop.set()
        th.join()
        res = _latencies(a, col, hold_pub, freeze_pub, sent)
        pub.close()
        col.close()
        return res
    finally:
        if proc is not None:
            stop_process(proc)
        emu.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="offered transfers per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the load")
    ap.add_argument("--probes", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import tempfile

    runs = []
    for i in range(a.runs):
        with tempfile.TemporaryDirectory() as d:
            r = one_run(a, Path(d))
        runs.append(r)
        print(f"run {i + 1}: " + json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                             for k, v in r.items()}), flush=True)
    keys = ("transfer_hold_p50", "transfer_hold_p99", "outcome_freeze_p50",
            "outcome_freeze_p99", "achieved_per_s")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    print("median of runs: " + json.dumps({k: round(v, 3) for k, v in med.items()}))
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": runs, "median": med}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
