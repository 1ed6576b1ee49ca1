"""The local demo (``./run_local.sh``): a compressed week of a simulated exchange, live.

1. generates a small simulator data set into ``out/demo/replay`` (unless present): a month
   of history (``--history_days``) and the week played live (``--days``);
2. starts gcloud's Pub/Sub emulator on 127.0.0.1 and creates the topics/subscriptions;
3. backtests the month, re-timed onto the compressed clock to end now, into a state
   checkpoint (``out/demo/state``): the warm start;
4. starts the streaming job (``python -m pipelines.stream``) from that checkpoint, with the
   user profiles, and every duration divided by the compression factor (``--time_scale``);
   it says that it started warm;
5. has the simulator publish the week in event-time order, re-timed to the present on a
   clock running ``factor`` times faster than real time (a week in 2 minutes);
6. prints a live summary from the output topics, then stops the job and the emulator and
   writes the decisions it saw to ``out/demo/decisions/*.jsonl``.

Beam's local runner takes the Pub/Sub watermark from the wall clock, so old history cannot
be published as is (every hold would expire at once): hence the re-timing and scaling.
Without gcloud's emulator the demo says so and runs the backtest on the same data instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from connectors import emulator
from connectors.pubsub_client import (
    Collector,
    Publisher,
    create_resources,
    is_probe,
    wait_until_live,
)
from schemas.codecs import to_wire
from schemas.streams import OUTPUTS, REPLAY_FILES, topic_path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "safetynet-demo"


def _args(argv):
    p = argparse.ArgumentParser(
        prog="./run_local.sh demo", description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="`./run_local.sh` alone runs the demo with these defaults; options need the "
               "`demo` word: ./run_local.sh demo --input DIR --minutes 5")
    p.add_argument("--input", default=None, metavar="DIR",
                   help="a replay directory to play (yours, or from safetynet simulate / "
                        "convert-eth) instead of simulating one")
    p.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output directory")
    p.add_argument("--users", type=int, default=600,
                   help="simulated users (default 600: Beam's local runner restoring a "
                        "month of state for 2,000 users read no message for minutes)")
    p.add_argument("--days", type=int, default=7, help="simulated days played live")
    p.add_argument("--history_days", type=int, default=30,
                   help="simulated days before the live ones, replayed by a backtest whose "
                        "final state the job starts from (a warm start; 0: a cold start)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--minutes", type=float, default=2.0,
                   help="wall-clock minutes the simulated days are compressed into")
    p.add_argument("--payload", choices=("json", "avro"), default="json")
    p.add_argument("--every", type=float, default=5.0, help="seconds between summaries")
    return p.parse_args(argv)


def _span(replay: Path) -> tuple:
    """(first, last) event time of the replay's transfers: the manifest's when there is one."""
    m = replay / "manifest.json"
    if m.is_file():
        d = json.loads(m.read_text())
        if "start_ms" in d and "end_ms" in d:
            return d["start_ms"], d["end_ms"]
    from schemas import codecs

    ts = [r.event_time for r in codecs.read_records(codecs.find_input(replay, "transfers"),
                                                     "Transfer") if hasattr(r, "event_time")]
    if not ts:
        raise SystemExit(f"[demo] {replay}: no valid transfer (see safetynet validate --input "
                         f"{replay})")
    return min(ts), max(ts)


def _dataset(a) -> Path:
    if a.input:
        from schemas import codecs

        replay = Path(a.input)
        if not replay.is_dir() or codecs.find_input(replay, "transfers") is None:
            raise SystemExit(f"./run_local.sh demo: error: --input {replay}: not a replay "
                             "directory (it needs transfers.avro or transfers.parquet)")
        print(f"[demo] playing the replay directory {replay}")
        return replay
    replay = Path(a.out) / "replay"
    days = a.history_days + a.days
    m = replay / "manifest.json"
    made = json.loads(m.read_text()) if m.is_file() else {}
    if (made.get("days"), made.get("users"), made.get("seed")) == (days, a.users, a.seed):
        print(f"[demo] using the simulator data in {replay}")
        return replay
    from simulator.exchange import generate

    print(f"[demo] simulating {a.users} users for {days} days (seed {a.seed}) -> {replay}")
    got = generate(replay, users=a.users, days=days, seed=a.seed, fmt="avro")
    print(f"[demo]   {got['files']}")
    return replay


def _shift(row, field: str, split_ms: int, factor: float, end_ms: int):
    t = getattr(row, field, None)
    if type(t) is not int:
        return row
    return row._replace(**{field: end_ms + round((t - split_ms) / factor)})


def split_history(replay: Path, out: Path, split_ms: int, factor: float,
                  end_ms: int) -> tuple:
    """Cut a replay directory at ``split_ms``: ``out/history`` holds what happened before,
    re-timed onto the compressed clock to end at ``end_ms`` (a time ``t`` becomes
    ``end_ms + (t - split_ms) / factor``), with every profile re-timed alike (the backtest
    and the job both read them); ``out/live`` holds the rest as it was (the publisher
    re-times it to the present), and the snapshot and truth files. Returns the two
    directories."""
    import shutil

    from schemas import codecs
    from schemas.streams import INPUTS, PROFILES
    from simulator.publish import _keyed

    hist, live = out / "history", out / "live"
    for d in (hist, live):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for name in (*INPUTS, PROFILES):
        src = codecs.find_input(replay, name)
        if src is None:
            continue
        record = REPLAY_FILES[name]
        field = "created_time" if name == PROFILES else "event_time"
        # each row goes where the publisher's clock puts it: a malformed time goes with
        # the row before it (simulator.publish's monotone key)
        keyed = [(k, r) for k, _, _, _, r in _keyed(name, src)]
        before = [(k, r) for k, r in keyed if name == PROFILES or k < split_ms]
        after = [r for k, r in keyed if name != PROFILES and k >= split_ms]
        with codecs.RecordWriter(hist / f"{name}.avro", record, "avro") as w:
            w.write_many(_shift(r, field, split_ms, factor, end_ms) if getattr(r, field) == k
                         else r for k, r in before)
        if name != PROFILES:
            with codecs.RecordWriter(live / f"{name}.avro", record, "avro") as w:
                w.write_many(after)
    for name in ("blacklist_snapshot", "truth"):
        src = codecs.find_input(replay, name)
        if src is not None:
            shutil.copy(src, live / src.name)
            if name == "blacklist_snapshot":
                shutil.copy(src, hist / src.name)
    _, last = _span(replay)
    (live / "manifest.json").write_text(json.dumps({"start_ms": split_ms, "end_ms": last}))
    return hist, live


def warm_state(a, replay: Path, out: Path, factor: float) -> tuple:
    """The warm start: the first ``--history_days`` of ``replay`` backtested on the
    compressed clock, its final state written to ``out/state``. Returns (the replay of
    the live days, the job's extra arguments)."""
    from pipelines import backtest

    start, _ = _span(replay)
    split = start + a.history_days * 86_400_000
    end = int(time.time() * 1000)
    hist, live = split_history(replay, out, split, factor, end)
    state = out / "state"
    print(f"[demo] WARM START: backtesting the first {a.history_days} simulated days "
          f"(compressed x{factor:,.0f}) into a state checkpoint {state} ...", flush=True)
    t0 = time.monotonic()
    rc = backtest.run(["--input", str(hist), "--output", str(out / "history_backtest"),
                       "--overwrite", "--no_report", "--quiet", "--time_scale", str(factor),
                       "--write_state", str(state)])
    if rc != 0:
        raise SystemExit(f"[demo] the history's backtest failed (exit {rc})")
    print(f"[demo]   done in {time.monotonic() - t0:.0f}s; the job starts from it, with the "
          f"user profiles ({hist / 'profiles.avro'})", flush=True)
    return live, ["--restore_state", str(state), "--profiles", str(hist / "profiles.avro")]


def _summary(rows: dict, elapsed: float, sim_ms: float) -> str:
    res = Counter(r.resolution for r in rows["resolutions"])
    prevented = sum(r.usd_value or 0.0 for r in rows["resolutions"]
                    if r.resolution == "REFUNDED")
    kinds = Counter(o.kind for o in rows["outreach"])
    dead = sum(1 for d in rows["dead_letter"] if not is_probe(d))
    day = sim_ms / 86_400_000
    return (f"[demo] t+{elapsed:5.0f}s  sim day {day:4.1f} | holds {len(rows['holds'])} "
            f"(refunded {res['REFUNDED']}, released {res['RELEASED']}, "
            f"pending {len(rows['holds']) - sum(res.values())}) | freezes "
            f"{len(rows['freezes'])} | verdicts {len(rows['verdicts'])} | outreach "
            + (", ".join(f"{k.lower()} {v}" for k, v in sorted(kinds.items())) or "0")
            + f" | assessments {kinds.get('RISK_ASSESSMENT', 0)}"
            + f" | calls {sum(1 for o in rows['outreach'] if o.channel == 'CALL')}"
            + f" | cases {len({c.case_id for c in rows.get('cases', ())})}"
            + f" | dead letters {dead} | $ prevented {prevented:,.0f}")


def _write_decisions(rows: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows[name]:
                if name == "dead_letter" and is_probe(r):
                    continue
                f.write(json.dumps(to_wire(r), sort_keys=True, default=str) + "\n")


def _backtest_instead(replay: Path, out: Path) -> int:
    print("[demo] gcloud's Pub/Sub emulator is not installed (install the Google Cloud SDK "
          "component `pubsub-emulator` and a Java runtime), so the streaming demo cannot "
          "run here. Running the backtest on the same data instead.")
    try:
        from pipelines import backtest
    except ImportError as e:
        print(f"[demo] the backtest is not available either: {e}")
        return 1
    dest = out / "backtest"
    rc = backtest.run(["--input", str(replay), "--output", str(dest), "--overwrite"])
    print(f"[demo] backtest outputs: {dest} (open {dest / 'report.html'} in a browser)")
    return int(rc or 0)


def _print_clock(span_ms: int, minutes: float, factor: float) -> None:
    hold_s = 86_400 / factor
    print("[demo] " + "=" * 78)
    print(f"[demo] COMPRESSED CLOCK: {span_ms / 86_400_000:.0f} simulated days are played "
          f"in {minutes:.1f} minutes (x{factor:,.0f}).")
    print("[demo] Event times are RE-TIMED TO THE PRESENT (Beam's local runner takes the "
          "watermark from the wall clock),")
    print(f"[demo] and every duration is divided by the same factor: the 24h hold lasts "
          f"{hold_s:.0f} s, the 30-day lookback {30 * hold_s / 60:.0f} min.")
    print("[demo] " + "=" * 78)


def _job_args(replay: Path, factor: float, payload: str) -> list:
    args = ["--time_scale", str(factor), "--payload", payload]
    from schemas import codecs

    snap = codecs.find_input(replay, "blacklist_snapshot")
    if snap is not None:
        args += ["--blacklist", str(snap)]
    return args


def _publish_in_background(replay: Path, factor: float, payload: str, start_ms: int):
    """Start publishing the replay on a thread; returns (thread, counts, failures)."""
    from simulator.publish import publish_replay

    published: dict = {}
    failure: list = []

    def publish():
        try:
            published.update(publish_replay(
                replay, PROJECT, {n: topic_path(PROJECT, n) for n in
                                  ("transfers", "reports", "outcomes", "blacklist")},
                speedup=factor, fmt=payload, retime_to_ms=start_ms))
        except Exception as e:  # noqa: BLE001 — reported below
            failure.append(e)

    return threading.Thread(target=publish, name="publisher", daemon=True), published, failure


def _play(a, replay: Path, span_ms: int, factor: float, proc, col, log: Path) -> None:
    """Publish the replay while printing summaries, until the last holds have resolved."""
    rows, hold_s = col.rows, 86_400 / factor
    start_ms = int(time.time() * 1000) + 1000
    t, published, failure = _publish_in_background(replay, factor, a.payload, start_ms)
    wall0 = time.monotonic()
    t.start()
    next_print = wall0 + a.every
    tail_until = None
    while True:
        col.pull_once()
        now = time.monotonic()
        if proc.poll() is not None:
            print(f"[demo] the streaming job exited (code {proc.returncode}); see {log}")
            break
        if now >= next_print:
            sim = min(span_ms, (time.time() * 1000 - start_ms) * factor)
            print(_summary(rows, now - wall0, max(0.0, sim)), flush=True)
            next_print = now + a.every
        if not t.is_alive() and tail_until is None:
            if failure:
                print(f"[demo] publishing failed: {failure[0]}")
                break
            # Let the last holds run out (their deadline is one scaled day later).
            tail_until = now + hold_s + 10
            print(f"[demo] all {sum(published.values())} messages published "
                  f"({dict(published)}); waiting {hold_s + 10:.0f}s for the last holds "
                  "to resolve")
        if tail_until is not None and now >= tail_until:
            break
    print(_summary(rows, time.monotonic() - wall0, span_ms))


def _say_how_it_started(log: Path) -> None:
    """The job's own line about its state: warm (restored) or cold."""
    warm = [x for x in log.read_text().splitlines() if x.startswith("[stream] warm start")]
    print("[demo] the job STARTED WARM: " + warm[0].removeprefix("[stream] ") if warm
          else "[demo] the job started cold (no state restored)", flush=True)


def main(argv=None) -> int:
    a = _args(sys.argv[1:] if argv is None else argv)
    out = Path(a.out)
    replay = _dataset(a)
    out.mkdir(parents=True, exist_ok=True)
    start_ms, end_ms = _span(replay)
    warm = a.history_days > 0 and end_ms - start_ms > a.history_days * 86_400_000
    if a.history_days > 0 and not warm:
        print(f"[demo] the replay spans no more than --history_days {a.history_days}: "
              "a cold start, all of it live")
    live_ms = max(end_ms - start_ms - (a.history_days * 86_400_000 if warm else 0), 1)
    factor = max(1.0, live_ms / (a.minutes * 60_000))

    emu = emulator.start()
    if emu is None:
        return _backtest_instead(replay, out)
    os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
    proc = col = None
    rows: dict = {n: [] for n in OUTPUTS}
    log = out / "stream.log"
    log.unlink(missing_ok=True)
    try:
        print(f"[demo] Pub/Sub emulator on {emu.host}")
        create_resources(PROJECT)
        extra: list = []
        if warm:
            replay, extra = warm_state(a, replay, out, factor)
        _print_clock(live_ms, a.minutes, factor)
        proc = emulator.start_process(PROJECT, _job_args(replay, factor, a.payload) + extra,
                                      log_path=str(log))
        pub, col = Publisher(PROJECT, a.payload), Collector(PROJECT, payload=a.payload,
                                                            pull_timeout=0.5)
        col.rows = rows
        print(f"[demo] starting the streaming job (log: {log}) ...")
        took = wait_until_live(pub, col, timeout=180, is_alive=lambda: proc.poll() is None)
        print(f"[demo] streaming job live after {took:.0f}s; publishing the simulated week")
        _say_how_it_started(log)
        _play(a, replay, live_ms, factor, proc, col, log)
    except KeyboardInterrupt:
        print("\n[demo] interrupted; stopping")
    finally:
        if proc is not None:
            emulator.stop_process(proc)
        if col is not None:
            col.close()
        emu.stop()
        print("[demo] streaming job and Pub/Sub emulator stopped")
        _write_decisions(rows, out / "decisions")
        print(f"[demo] outputs: decisions seen on the output topics in {out / 'decisions'}"
              f"/*.jsonl; simulator data (with truth.avro) in {replay}; job log {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
