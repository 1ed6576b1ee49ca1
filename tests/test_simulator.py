"""The simulator: determinism, realism of the shapes it promises, malformed/duplicate
bookkeeping, the CLI and publishing (the emulator test runs when PUBSUB_EMULATOR_HOST is set).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import fastavro
import pyarrow.parquet as pq
import pytest

import simulator
from core import lookalike
from pipelines import simulate
from schemas import codecs
from schemas.rows import DeadLetter, Transfer
from schemas.streams import REPLAY_FILES
from simulator.addresses import POISON_MATCH, _kind
from simulator.assets import _ASSET_INDEX, PRICE
from simulator.exchange import DAY, HOUR, TYPOLOGIES
from simulator.publish import plan_messages, publish_replay

SMALL = {"users": 2000, "days": 7, "seed": 7}


def is_lookalike(addr: str, genuine: str, network: str | None = None) -> bool:
    """True when ``addr`` imitates ``genuine`` as the simulator's poisoners do: both of the
    same network and shape, different, with the head and tail of ``POISON_MATCH`` equal
    (EVM compared lower-cased; base58 and bech32 as made). ``network`` None: EVM only."""
    kind = _kind(genuine, network)
    if kind == "EVM":
        a, g = addr.lower(), genuine.lower()
        return (len(a) == len(g) == 42 and a.startswith("0x") and g.startswith("0x")
                and a != g and a[2:5] == g[2:5] and a[-4:] == g[-4:])
    if network is None or kind != _kind(addr, network) or len(addr) != len(genuine):
        return False
    head, tail = POISON_MATCH[kind]
    return addr != genuine and addr[:head] == genuine[:head] and addr[-tail:] == genuine[-tail:]
FILES = ("transfers", "reports", "outcomes", "blacklist", "profiles", "blacklist_snapshot",
         "truth")


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("replay")
    simulator.generate(d, **SMALL)
    return d


@pytest.fixture(scope="module")
def manifest(replay: Path) -> dict:
    return json.loads((replay / "manifest.json").read_text())


def _valid(directory: Path, name: str, record: str) -> list:
    return [r for r in codecs.read_records(directory / f"{name}.avro", record)
            if not isinstance(r, DeadLetter)]


@pytest.fixture(scope="module")
def data(replay: Path) -> dict:
    out = {name: _valid(replay, name, rec) for name, rec in REPLAY_FILES.items()}
    out["truth"] = _valid(replay, "truth", "Truth")
    out["snapshot"] = _valid(replay, "blacklist_snapshot", "BlacklistUpdate")
    return out


def test_same_seed_gives_byte_identical_files(tmp_path: Path, replay: Path) -> None:
    simulator.generate(tmp_path, **SMALL)
    for name in FILES:
        assert (tmp_path / f"{name}.avro").read_bytes() == (replay / f"{name}.avro").read_bytes()
    assert (tmp_path / "manifest.json").read_bytes() == (replay / "manifest.json").read_bytes()


def test_in_process_writing_gives_the_same_bytes(tmp_path: Path, replay: Path) -> None:
    """With other threads running, files are written in-process (no fork): same bytes."""
    import threading

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        simulator.generate(tmp_path, **SMALL)
    finally:
        stop.set()
        t.join()
    for name in FILES:
        assert (tmp_path / f"{name}.avro").read_bytes() == (replay / f"{name}.avro").read_bytes()


def test_parquet_is_deterministic_and_holds_the_same_rows(tmp_path: Path, data: dict) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    simulator.generate(a, fmt="parquet", **SMALL)
    simulator.generate(b, fmt="parquet", **SMALL)
    for name in FILES:
        assert (a / f"{name}.parquet").read_bytes() == (b / f"{name}.parquet").read_bytes()
    rows = [r for r in codecs.read_records(a / "transfers.parquet", "Transfer")
            if not isinstance(r, DeadLetter)]
    assert rows == data["transfers"]


def test_different_seed_gives_different_data(tmp_path: Path, replay: Path) -> None:
    simulator.generate(tmp_path, **{**SMALL, "seed": 8})
    for name in ("transfers", "reports", "truth", "profiles"):
        assert (tmp_path / f"{name}.avro").read_bytes() != (replay / f"{name}.avro").read_bytes()


def test_files_read_with_plain_fastavro_and_pyarrow(tmp_path: Path, replay: Path,
                                                    manifest: dict) -> None:
    for name in FILES:
        with open(replay / f"{name}.avro", "rb") as fo:
            n = sum(1 for _ in fastavro.reader(fo))
        assert n == manifest["files"][f"{name}.avro"], name
    simulator.generate(tmp_path, fmt="parquet", users=300, days=2, seed=3)
    m = json.loads((tmp_path / "manifest.json").read_text())
    for name in FILES:
        table = pq.read_table(tmp_path / f"{name}.parquet")
        assert table.num_rows == m["files"][f"{name}.parquet"], name
    assert str(pq.read_schema(tmp_path / "transfers.parquet").field("event_time").type) == \
        "timestamp[ms, tz=UTC]"


def test_malformed_counts_in_manifest_match_dead_letters(replay: Path, manifest: dict) -> None:
    for name, rec in REPLAY_FILES.items():
        got = Counter(type(r).__name__ for r in codecs.read_records(replay / f"{name}.avro",
                                                                    rec))
        assert sum(got.values()) == manifest["files"][f"{name}.avro"]
        assert got["DeadLetter"] == manifest["malformed_total"].get(name, 0), name
    kinds = manifest["malformed"]["transfers"]
    assert set(kinds) == {"unknown_enum", "negative_amount", "non_numeric_amount",
                          "non_finite_amount", "non_finite_usd", "timestamp_out_of_range",
                          "empty_required"}
    assert all(v >= 1 for k in manifest["malformed"].values() for v in k.values())
    errors = " ".join(r.error for r in codecs.read_records(replay / "transfers.avro", "Transfer")
                      if isinstance(r, DeadLetter))
    for needle in ("unknown channel", "negative", "not a number", "not finite", "out of range",
                   "is empty"):
        assert needle in errors


def test_no_malformed_or_duplicates_when_shares_are_zero(tmp_path: Path) -> None:
    m = simulator.generate(tmp_path, users=300, days=2, malformed_share=0.0,
                           duplicate_share=0.0)
    assert sum(m["malformed_total"].values()) == 0 and sum(m["duplicates"].values()) == 0
    for name, rec in REPLAY_FILES.items():
        assert not any(isinstance(r, DeadLetter)
                       for r in codecs.read_records(tmp_path / f"{name}.avro", rec))


def test_duplicates_are_identical_rows_delivered_later(data: dict, manifest: dict) -> None:
    for name, key in (("transfers", "transfer_id"), ("reports", "report_id")):
        rows = data[name]
        first: dict = {}
        dups = 0
        for pos, r in enumerate(rows):
            k = getattr(r, key)
            if k in first:
                dups += 1
                assert rows[first[k]] == r and pos > first[k]
            else:
                first[k] = pos
        assert dups == manifest["duplicates"][name] >= 1


def test_files_are_in_event_time_order_apart_from_duplicates(data: dict) -> None:
    for name in ("transfers", "reports", "outcomes", "blacklist"):
        seen, last = set(), 0
        for r in data[name]:
            rid = r[0] if name != "blacklist" else (r.address, r.action, r.event_time)
            if rid in seen:  # a duplicate delivery keeps its original event_time
                continue
            seen.add(rid)
            assert r.event_time >= last, name
            last = r.event_time
    created = [p.created_time for p in data["profiles"]]
    assert created == sorted(created)
    times = [t.event_time for t in data["truth"]]
    assert times == sorted(times)


def test_every_typology_in_truth_and_scams_are_rare(data: dict, manifest: dict) -> None:
    truth = data["truth"]
    scam = [t for t in truth if t.subject_type == "TRANSFER" and t.is_scam]
    assert {t.typology for t in scam} == set(TYPOLOGIES)
    assert {t.subject_type for t in truth} == {"TRANSFER", "REPORT", "ADDRESS", "USER"}
    n_transfers = len({t.subject_id for t in truth if t.subject_type == "TRANSFER"})
    assert n_transfers == len({r.transfer_id for r in data["transfers"]})
    assert 0.005 < len(scam) / n_transfers < 0.04
    assert manifest["scam"]["transfers"] == len(scam)


def test_typology_shapes(data: dict) -> None:
    scam = [t for t in data["truth"] if t.subject_type == "TRANSFER" and t.is_scam]
    by = defaultdict(list)
    for t in scam:
        by[(t.typology, t.address)].append(t)
    # fake platform: many victims into one collector
    fp = max((v for (typ, _), v in by.items() if typ == "fake_platform"), key=len)
    assert len({t.user_id for t in fp}) >= 8
    # pig butchering: one victim pays one address repeatedly with growing amounts
    pig = [v for (typ, _), v in by.items() if typ == "pig_butchering"]
    assert any(len(v) >= 3 and v[-1].usd_value > v[0].usd_value for v in pig)
    # phishing: one payment per victim
    for (typ, _), v in by.items():
        if typ == "phishing_drainer":
            assert len(v) == len({t.user_id for t in v})


def test_report_bombing_burst(data: dict) -> None:
    bomb_ids = {t.subject_id for t in data["truth"] if t.detail == "bombing"}
    reports = [r for r in data["reports"] if r.report_id in bomb_ids]
    assert 15 <= len({r.report_id for r in reports}) <= 30
    assert len({r.suspect_address for r in reports}) == 1
    times = [r.event_time for r in reports]
    assert max(times) - min(times) <= HOUR
    created = {p.user_id: p.created_time for p in data["profiles"]}
    senders = {t.user_id for t in data["transfers"]}
    target = reports[0].suspect_address
    fan_in = {t.user_id for t in data["transfers"] if t.to_address == target}
    assert len(fan_in) >= 20  # a busy legitimate merchant
    for r in reports:
        c = created[r.reporter_user_id]
        assert c < r.event_time and c // DAY == r.event_time // DAY  # created that day
        assert r.reporter_user_id not in senders


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Ten times more users than ``data`` (a few seconds): enough poisoning episodes for
    every address family."""
    d = tmp_path_factory.mktemp("wide")
    simulator.generate(d, users=20_000, days=7, seed=7)
    return {"transfers": _valid(d, "transfers", "Transfer"),
            "truth": _valid(d, "truth", "Truth")}


def test_address_poisoning_imitates_a_payee_paid_before(wide: dict) -> None:
    data = wide
    poison = [t for t in data["truth"] if t.subject_type == "TRANSFER"
              and t.typology == "address_poisoning"]
    assert poison
    network = {t.transfer_id: t.network for t in data["transfers"]}
    first_paid: dict = {}
    for t in data["transfers"]:
        first_paid.setdefault((t.user_id, t.to_address), t.event_time)
    families = Counter()
    for t in poison:
        genuine = t.detail.removeprefix("imitates:")
        net = network[t.subject_id]
        assert t.address != genuine and is_lookalike(t.address, genuine, net)
        # what the wallets of the network show is the same: the rule sees an imitation
        k = lookalike.key(t.address, net)
        assert k is not None and k == lookalike.key(genuine, net)
        families[k[0]] += 1
        assert first_paid[(t.user_id, genuine)] < t.event_time
    assert {lookalike.EVM, lookalike.TRON} <= set(families)  # TRON poisoning, not only EVM
    assert families[lookalike.BTC] + families[lookalike.BECH32] > 0


def test_no_accidental_lookalikes_among_legitimate_payees(wide: dict) -> None:
    """No honest payment is a look-alike (as the rule sees it) of an earlier payee of its
    sender, on any network."""
    data = wide
    paid = defaultdict(dict)
    scam = {t.subject_id for t in data["truth"] if t.subject_type == "TRANSFER" and t.is_scam}
    for t in data["transfers"]:
        k = lookalike.key(t.to_address, t.network)
        if t.transfer_id in scam or k is None:
            continue
        g = paid[t.user_id].setdefault(k, t.to_address)
        assert g == t.to_address, (t, g)


def test_amounts_addresses_and_channels_are_realistic(data: dict) -> None:
    patterns = {"ETH": r"0x[0-9a-f]{40}", "BSC": r"0x[0-9a-f]{40}",
                "TRX": r"T[1-9A-HJ-NP-Za-km-z]{33}",
                "BTC": r"bc1q[02-9ac-hj-np-z]{38}|[13][1-9A-HJ-NP-Za-km-z]{33}",
                "SOL": r"[1-9A-HJ-NP-Za-km-z]{44}", "INTERNAL": r"acct:u\d{7,}"}
    for t in data["transfers"]:
        assert re.fullmatch(patterns[t.network], t.to_address), t
        value = Decimal(t.amount) * Decimal(str(PRICE[_ASSET_INDEX[t.asset]]))
        assert abs(value - Decimal(str(t.usd_value))) <= Decimal("0.006"), t
        assert (t.to_user_id is not None) == (t.channel in ("INTERNAL", "P2P"))
    assert {t.channel for t in data["transfers"]} == {"WITHDRAWAL", "INTERNAL", "P2P"}
    assert {t.network for t in data["transfers"]} >= {"ETH", "BSC", "TRX", "BTC", "SOL"}
    assert {t.to_address[0] for t in data["transfers"] if t.network == "BTC"} == {"b", "1", "3"}
    # recurring payees: most users paying twice or more pay some address again
    pairs = Counter((t.user_id, t.to_address) for t in data["transfers"])
    assert sum(1 for n in pairs.values() if n >= 2) > 100
    vulnerable = sum(p.vulnerable for p in data["profiles"]) / len(data["profiles"])
    assert 0.015 < vulnerable < 0.05


def test_reports_outcomes_and_lists_exercise_every_rule(data: dict) -> None:
    truth = data["truth"]
    transfers = {t.transfer_id: t for t in data["transfers"]}
    detail = Counter(t.detail.split(";")[0] for t in truth if t.subject_type == "USER")
    assert detail["fast"] and detail["late"] and detail["silent"]  # rules 4, 5
    assert any(t.detail.endswith(";repeat") for t in truth if t.subject_type == "USER")
    assert any(t.detail == "false_report" for t in truth if t.subject_type == "REPORT")
    for r in data["reports"]:  # every report names a real transfer or a suspect
        assert r.transfer_id in transfers or r.suspect_address or r.suspect_user_id
        if r.transfer_id:
            assert transfers[r.transfer_id].user_id == r.reporter_user_id
    kinds = {(o.subject_type, o.is_scam) for o in data["outcomes"]}
    assert {("TRANSFER", True), ("ADDRESS", True), ("ADDRESS", False)} <= kinds
    assert ("REPORT", False) in kinds
    # rule 1: payments to addresses listed in the snapshot; live ADD and REMOVE updates
    listed = {b.address for b in data["snapshot"]}
    assert any(t.to_address in listed for t in data["transfers"])
    assert {b.action for b in data["blacklist"]} == {"ADD", "REMOVE"}
    assert all(b.action == "ADD" and b.event_time == data["snapshot"][0].event_time
               for b in data["snapshot"])
    # rule 3: fast reports within hours of the scam transfer (a hold would be refunded)
    fast = [t for t in truth if t.subject_type == "REPORT" and t.detail == "fast"]
    assert fast
    # rule 6: some victims pay a scam address twice within 24h
    scam = sorted((t for t in truth if t.subject_type == "TRANSFER" and t.is_scam),
                  key=lambda t: t.event_time)
    last: dict = {}
    close = 0
    for t in scam:
        k = (t.user_id, t.address)
        if k in last and t.event_time - last[k] < DAY:
            close += 1
        last[k] = t.event_time
    assert close >= 1


def test_cli_writes_a_replay_and_prints_a_summary(tmp_path: Path, capsys) -> None:
    rc = simulate.main(["--output", str(tmp_path / "out"), "--users", "300", "--days", "2",
                        "--format", "parquet", "--seed", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "transfers.parquet" in out and "scam transfers" in out
    assert (tmp_path / "out" / "truth.parquet").is_file()


@pytest.mark.parametrize("argv", [["--bogus"], ["--users", "abc"], ["--format", "csv"],
                                  ["--malformed-share", "2"], []])
def test_cli_usage_error_is_one_line_and_exit_2(tmp_path: Path, capsys, argv: list) -> None:
    if argv != []:
        argv = ["--output", str(tmp_path / "o")] + argv
    assert simulate.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_cli_output_that_is_a_file_is_an_error(tmp_path: Path, capsys) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert simulate.main(["--output", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a directory" in err


def test_publish_plan_is_in_event_time_order_and_retimed(replay: Path, manifest: dict) -> None:
    names = ["transfers", "reports", "outcomes", "blacklist"]
    msgs = list(plan_messages(replay, names, "json", speedup=60.0,
                              retime_to_ms=2_000_000_000_000, garbage=5))
    keys = [m.event_time for m in msgs]
    assert keys == sorted(keys)
    real = [m for m in msgs if not m.garbage]
    assert len(real) == sum(manifest["files"][f"{n}.avro"] for n in names)
    assert sum(m.garbage for m in msgs) == 5
    for m in real:  # valid times are re-timed (payload and attribute alike)
        t = int(m.attributes["event_time"])
        if codecs.MIN_TS <= t <= codecs.MAX_TS:
            assert t >= 2_000_000_000_000
            assert f'"event_time":{t}'.encode() in m.data
    # durations shrink by the speed-up: the last event lands ~days/60 after the new start
    last = max(int(m.attributes["event_time"]) for m in real
               if int(m.attributes["event_time"]) < codecs.MAX_TS)
    assert last - 2_000_000_000_000 <= math.ceil(SMALL["days"] * DAY / 60) + 1
    assert last - 2_000_000_000_000 > (SMALL["days"] - 1) * DAY / 60
    # payloads decode: valid rows to rows, malformed ones and garbage to dead letters
    record = {n: REPLAY_FILES[n] for n in names}
    dead = Counter()
    for m in msgs:
        r = codecs.decode_json(record[m.name], m.data, m.name)
        if isinstance(r, DeadLetter):
            dead["garbage" if m.garbage else m.name] += 1
    assert dead["garbage"] == 5
    for n in names:
        assert dead[n] == manifest["malformed_total"][n]


def test_publish_plan_avro_payloads_decode(replay: Path) -> None:
    msgs = list(plan_messages(replay, ["transfers"], "avro", speedup=math.inf, limit=200,
                              garbage=3))
    assert sum(not m.garbage for m in msgs) == 200
    decoded = [codecs.decode_avro("Transfer", m.data, "transfers") for m in msgs]
    pairs = zip(decoded, msgs, strict=True)
    assert sum(isinstance(d, DeadLetter) for d, m in pairs if m.garbage) == 3
    assert any(isinstance(d, Transfer) for d in decoded)


@pytest.mark.emulator
@pytest.mark.skipif(not os.environ.get("PUBSUB_EMULATOR_HOST"),
                    reason="PUBSUB_EMULATOR_HOST is not set (run ./run_local.sh test)")
def test_publish_replay_to_the_emulator(tmp_path: Path) -> None:
    from google.cloud import pubsub_v1

    from connectors.pubsub_client import create_topics

    m = simulator.generate(tmp_path, users=300, days=2, seed=5)
    project = "safetynet-sim-test"
    tag = uuid.uuid4().hex[:8]
    topics = {n: f"sim-{n}-{tag}" for n in ("transfers", "reports", "outcomes", "blacklist")}
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    create_topics(project, topics.values(), publisher)
    subs = {}
    for n, t in topics.items():
        subs[n] = subscriber.subscription_path(project, f"{t}-sub")
        subscriber.create_subscription(name=subs[n], topic=publisher.topic_path(project, t))
    counts = publish_replay(tmp_path, project, topics, speedup=math.inf, garbage=4,
                            retime_to_ms=1_900_000_000_000, publisher=publisher)
    for n in topics:
        assert counts[n] == m["files"][f"{n}.avro"]
    assert sum(v for k, v in counts.items() if k.endswith(":garbage")) == 4
    got = 0
    times = []
    with subscriber:
        for n, sub in subs.items():
            want = counts[n] + counts.get(f"{n}:garbage", 0)
            seen = 0
            for _ in range(50):
                resp = subscriber.pull(subscription=sub, max_messages=1000, timeout=10)
                if not resp.received_messages:
                    if seen >= want:
                        break
                    continue
                subscriber.acknowledge(subscription=sub,
                                       ack_ids=[r.ack_id for r in resp.received_messages])
                for r in resp.received_messages:
                    assert "event_time" in r.message.attributes
                    assert r.message.attributes["record_id"]
                    if n == "transfers":
                        times.append(int(r.message.attributes["event_time"]))
                seen += len(resp.received_messages)
                if seen >= want:
                    break
            assert seen == want, n
            got += seen
    assert got == sum(counts.values())
    assert min(t for t in times if codecs.MIN_TS <= t <= codecs.MAX_TS) >= 1_900_000_000_000
