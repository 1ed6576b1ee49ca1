"""Fault experiments for the local streaming job (results in bench/STREAMING.md, "Faults").

    PYTHONPATH=. .venv/bin/python bench/stream_faults.py [outage|kill|both]

Every probe is a transfer to a blacklisted address, so every processed transfer yields
exactly one hold (rule 1): "lost" = transfers published and acknowledged by the emulator
for which no hold ever appears.

* outage: publish 200 transfers at 50/s, stop the emulator right after the last publish,
  keep it down 30 s, restart it on the same port (it is in-memory: topics, subscriptions
  and unacknowledged messages are gone), re-create the resources, publish 200 more.
* kill: publish 600 transfers at 100/s; 2 s in, SIGKILL the job; start a new one at once;
  then count holds, and the holds placed before the kill that never got a resolution
  (their 20 s deadline timers lived in the dead process's memory).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors import emulator  # noqa: E402
from connectors.emulator import start_process, stop_process  # noqa: E402
from connectors.pubsub_client import (  # noqa: E402
    Collector,
    Publisher,
    create_resources,
    wait_until_live,
)
from schemas.codecs import write_records  # noqa: E402
from tests.scenario import addr, listing, transfer  # noqa: E402

PROJECT = "safetynet-faults"
LISTED = addr("faults-listed")


def _publish(pub, prefix, n, rate, start=0):
    t0 = time.monotonic()
    for i in range(start, start + n):
        due = t0 + (i - start) / rate
        while time.monotonic() < due:
            time.sleep(0.001)
        pub.publish("transfers", transfer(f"{prefix}{i}", int(time.time() * 1000),
                                          f"u{i % 300}", LISTED, 50.0))
    pub.flush()


def _job(workdir, name):
    snap = workdir / "snapshot.avro"
    if not snap.exists():
        write_records(snap, "BlacklistUpdate", [listing(LISTED, 1_700_000_000_000)], "avro")
    return start_process(PROJECT, ["--use_models", "false", "--time_scale", "4320",
                                   "--blacklist", str(snap)],
                         log_path=str(workdir / f"{name}.log"))


def outage(workdir: Path) -> dict:
    emu = emulator.start()
    os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
    create_resources(PROJECT)
    proc = _job(workdir, "outage-job")
    pub, col = Publisher(PROJECT), Collector(PROJECT, pull_timeout=0.3)
    try:
        wait_until_live(pub, col, 180, lambda: proc.poll() is None)
        _publish(pub, "A", 200, 50)
        emu.stop()
        t_down = time.monotonic()
        before = {h.transfer_id for h in col.rows["holds"]}
        col.close()
        time.sleep(30)
        emu = emulator.Emulator(emulator.find_emulator(), emu.port)
        emu.wait_ready()
        create_resources(PROJECT)
        t_up = time.monotonic()
        col = Collector(PROJECT, pull_timeout=0.3)
        pub = Publisher(PROJECT)
        _publish(pub, "B", 200, 50)
        want = {f"A{i}" for i in range(200)} | {f"B{i}" for i in range(200)}
        col.wait_for(lambda r: {h.transfer_id for h in r["holds"]} | before >= want,
                     timeout=90)
        got = {h.transfer_id for h in col.rows["holds"]} | before
        return {"job_alive": proc.poll() is None, "outage_s": round(t_up - t_down, 1),
                "holds_seen_before_stop": len(before),
                "job_log": str(workdir / "outage-job.log"),
                "lost_before": sorted(x for x in want - got if x.startswith("A")),
                "lost_after": sorted(x for x in want - got if x.startswith("B")),
                "published": 400}
    finally:
        stop_process(proc)
        emu.stop()


def kill(workdir: Path) -> dict:
    emu = emulator.start()
    os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
    create_resources(PROJECT)
    proc = _job(workdir, "kill-job-1")
    pub, col = Publisher(PROJECT), Collector(PROJECT, pull_timeout=0.3)
    proc2 = None
    try:
        wait_until_live(pub, col, 180, lambda: proc.poll() is None)
        import threading

        th = threading.Thread(target=_publish, args=(pub, "K", 600, 100), daemon=True)
        th.start()
        time.sleep(2.0)
        stop_process(proc, kill=True)
        t_kill = time.time()
        proc2 = _job(workdir, "kill-job-2")
        th.join()
        want = {f"K{i}" for i in range(600)}
        col.wait_for(lambda r: {h.transfer_id for h in r["holds"]} >= want, timeout=120)
        holds = {h.transfer_id: h for h in col.rows["holds"]}
        # Let every hold placed before the kill reach its 20 s deadline (+ margin).
        col.wait_for(lambda r: False, timeout=25)
        resolved = {r.transfer_id for r in col.rows["resolutions"]}
        before = [t for t, h in holds.items() if h.placed_at < t_kill * 1000]
        return {"published": 600, "holds": len(holds),
                "lost": len(want - set(holds)),
                "holds_placed_before_kill": len(before),
                "unresolved_before_kill": len([t for t in before if t not in resolved]),
                "unresolved_after_restart": len([t for t, h in holds.items()
                                                 if h.placed_at >= t_kill * 1000
                                                 and t not in resolved
                                                 and h.expires_at < time.time() * 1000])}
    finally:
        stop_process(proc)
        if proc2 is not None:
            stop_process(proc2)
        emu.stop()


def main(argv=None) -> int:
    which = (argv or sys.argv[1:] or ["both"])[0]
    with tempfile.TemporaryDirectory() as d:
        if which in ("outage", "both"):
            print("outage:", outage(Path(d)), flush=True)
        if which in ("kill", "both"):
            print("kill:", kill(Path(d)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
