"""Reading a batch at a time gives what reading a record at a time gives: the column checks
(``codecs.validate_columns``), the Avro read of timestamps as ints, the money bounds per
batch, the dead letters' stamping (``connectors.replay.read_validated``) and the spill files
of the staging (``connectors.chunks``), each against the record-by-record reference."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import chunks
from connectors.replay import _own_time, read_validated
from schemas import codecs
from schemas.codecs import MIN_TS, CodecError
from schemas.rows import FIELDS, DeadLetter, Transfer

T0 = 1_700_000_000_123
EVM = "0x52908400098527886e0f7030069857d2e4169ee7"

# per kind: good values, then bad or changed ones (each becomes a dead letter or a value
# that validation changes: EVM addresses lower-cased, "" in a nullable field read as None)
GOOD = {
    "string": ["a", "tx-1", "U", "0xAB"],
    "timestamp": [T0, MIN_TS, codecs.MAX_TS],
    "double": [0.0, 1.5, 2500.25],
    "decimal": ["0", "1.5", "12.", ".5", "1E-8", "+3", "1e3"],
    "boolean": [True, False],
    "int": [0, 1970],
}
ODD = {
    "string": ["", " ", " x ", 5, None, b"x", EVM.upper(), " " + EVM.upper(),
               "TaA7L3TTb65bTHvVKLLV4ZJpJCBA3vKLUA"],
    "timestamp": [5, -1, codecs.MAX_TS + 1, "2023-11-14T22:13:20Z", "17", True, 1.5, None,
                  datetime(2024, 1, 1, tzinfo=timezone.utc)],
    "double": [-0.0, -1.0, float("nan"), float("inf"), 3, True, "1.5", None],
    "decimal": ["-1", "-0", "1.2.3", "abc", "", "NaN", "Infinity", 7, "\u0661\u0662", "\u00b2",
                None, " 1"],
    "boolean": [0, 1, "true", None],
    "int": [True, 1.0, "3", None],
}
ENUM_ODD = ["", "withdrawal", "NOPE", 3, None]


def _kind(kind: str) -> str:
    return "string" if kind.startswith("enum:") else "int" if kind == "long" else kind


def _value(rng: random.Random, name: str, kind: str, bad: float):
    if kind.startswith("enum:"):
        values = list(getattr(__import__("schemas.rows", fromlist=["x"]), kind[5:]))
        return rng.choice(ENUM_ODD) if rng.random() < bad else rng.choice(values)
    k = _kind(kind)
    if name in ("to_address", "suspect_address", "address") and rng.random() < 0.5:
        return rng.choice([EVM, EVM.upper(), "0x" + EVM[2:].upper()])
    return rng.choice(ODD[k]) if rng.random() < bad else rng.choice(GOOD[k])


def _records(record: str, n: int, bad: float, seed: int) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        rec = {name: _value(rng, name, kind, bad) for name, kind, _ in FIELDS[record]}
        if rng.random() < bad / 4:
            rec.pop(rng.choice(list(rec)))
        out.append(rec)
    return out


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y) and x == y or (x != x and y != y), (x, y)
        assert [type(v) for v in x] == [type(v) for v in y], (x, y)


@pytest.mark.parametrize("record", ["Transfer", "ScamReport", "CaseOutcome", "BlacklistUpdate",
                                    "UserProfile", "Truth"])
@pytest.mark.parametrize("bad", [0.0, 0.002, 0.2])
def test_columns_validate_as_records_do(record: str, bad: float) -> None:
    recs = _records(record, 3000, bad, seed=len(record) + int(bad * 1000))
    names = [f[0] for f in FIELDS[record]]
    cols = [[r.get(n) for r in recs] for n in names]
    got = codecs.validate_columns(record, cols, "src", lambda i: recs[i])
    _same(got, [codecs.validate(record, r, "src") for r in recs])


def test_columns_with_known_types_validate_as_records_do() -> None:
    recs = [r for r in _records("Transfer", 2000, 0.01, seed=3)
            if type(r.get("transfer_id")) is str]
    names = [f[0] for f in FIELDS["Transfer"]]
    cols = [[r.get(n) for r in recs] for n in names]
    known = (str,) + (None,) * (len(names) - 1)
    got = codecs.validate_columns("Transfer", cols, "src", lambda i: recs[i], known)
    _same(got, [codecs.validate("Transfer", r, "src") for r in recs])


def _avro(path, schema: dict, recs: list) -> None:
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema), recs, codec="deflate")


def _reference(path, record: str, source: str) -> list:
    """The record-by-record read: fastavro's records with the file's schema, validated."""
    with open(path, "rb") as f:
        return [codecs.validate(record, r, source) for r in fastavro.reader(f)]


def _transfers(n: int, seed: int) -> list:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = T0 + i * 1000
        if rng.random() < 0.01:
            t = rng.choice([5, 4_200_000_000_000, -7])
        out.append({"transfer_id": rng.choice([f"t{i}", "", " "]) if rng.random() < 0.01
                    else f"t{i}", "event_time": t, "user_id": f"u{i % 7}",
                    "to_address": rng.choice([EVM, EVM.upper(), " x", "acct"]),
                    "to_user_id": rng.choice([None, "", "u1"]), "network": "ETH",
                    "asset": "ETH", "amount": rng.choice(["1.5", "1e40", "-1", "2"]),
                    "usd_value": rng.choice([1.5, -2.0, 3e11, 0.0]),
                    "channel": rng.choice(["WITHDRAWAL", "P2P", "nope"])})
    return out


def test_avro_reads_timestamps_as_ints_with_the_same_rows_and_dead_letters(tmp_path) -> None:
    p = tmp_path / "transfers.avro"
    _avro(p, codecs.load_schema("Transfer"), _transfers(20_000, 1))
    got = [r for b in codecs.read_batches(p, "Transfer", "transfers") for r in b]
    want = _reference(p, "Transfer", "transfers")
    _same(got, want)
    dead = [r for r in got if type(r) is DeadLetter]
    assert dead and any("event_time out of range" in d.error for d in dead)
    # the payload shows the timestamp as fastavro reads it: a datetime
    assert any("+00:00" in json.loads(d.payload)["event_time"] for d in dead
               if "event_time out of range" in d.error)


@pytest.mark.parametrize("other", ["boolean", "int", "string"])
def test_avro_of_another_schema_reads_as_before(tmp_path, other: str) -> None:
    """A timestamp in a union (with a branch that makes ints: read as datetimes, as
    before), a missing nullable field, an extra field, and an int amount."""
    schema = {"type": "record", "name": "Other", "fields": [
        {"name": "transfer_id", "type": "string"},
        {"name": "event_time", "type": ["null", other, {"type": "long",
                                                        "logicalType": "timestamp-millis"}]},
        {"name": "user_id", "type": "string"}, {"name": "to_address", "type": "string"},
        {"name": "network", "type": "string"}, {"name": "asset", "type": "string"},
        {"name": "amount", "type": "long"}, {"name": "usd_value", "type": "double"},
        {"name": "channel", "type": "string"}, {"name": "extra", "type": "int"}]}
    recs = [{"transfer_id": f"t{i}", "event_time": None if i % 50 == 0 else
             {"int": 7, "boolean": True, "string": "x"}[other] if i % 51 == 0 else
             datetime.fromtimestamp((T0 + i) / 1000, tz=timezone.utc),
             "user_id": "u", "to_address": EVM.upper(), "network": "ETH", "asset": "ETH",
             "amount": i, "usd_value": 1.0, "channel": "P2P", "extra": i} for i in range(9000)]
    p = tmp_path / "t.avro"
    _avro(p, schema, recs)
    _same([r for b in codecs.read_batches(p, "Transfer", "x") for r in b],
          _reference(p, "Transfer", "x"))


def test_avro_timestamp_beyond_datetimes_fails_as_before(tmp_path) -> None:
    schema = codecs.load_schema("CaseOutcome")
    recs = [{"case_id": f"c{i}", "event_time": T0, "subject_type": "ADDRESS",
             "subject_id": "a", "is_scam": True} for i in range(10_000)]
    recs[9000]["event_time"] = 400_000_000_000_000  # year 14645: no datetime holds it
    p = tmp_path / "outcomes.avro"
    _avro(p, schema, recs)
    with pytest.raises(CodecError) as new:
        list(codecs.read_batches(p, "CaseOutcome", "outcomes"))
    with pytest.raises(OverflowError) as old:
        _reference(p, "CaseOutcome", "outcomes")
    assert str(new.value) == (f"{p}: corrupt Avro file: OverflowError: {old.value}")
    got = []
    with pytest.raises(CodecError):
        for b in codecs.read_batches(p, "CaseOutcome", "outcomes"):
            got.extend(b)
    assert len(got) == 8192  # the batches before the bad record's, as before


def test_parquet_reads_as_record_by_record(tmp_path) -> None:
    recs = _transfers(20_000, 2)
    cols = {f: [r[f] for r in recs] for f in recs[0]}
    cols["event_time"] = pa.array(cols["event_time"], pa.timestamp("ms", tz="UTC"))
    p = tmp_path / "transfers.parquet"
    pq.write_table(pa.table(cols), p)
    got = [r for b in codecs.read_batches(p, "Transfer", "t") for r in b]
    t = pq.read_table(p)
    t = t.set_column(1, "event_time", t.column("event_time").cast(pa.int64()))
    _same(got, [codecs.validate("Transfer", r, "t") for r in t.to_pylist()])


@pytest.mark.parametrize("max_usd,max_amount", [(codecs.MAX_USD_VALUE, codecs.MAX_AMOUNT),
                                                (100.0, 5e3), (1e300, 0.5), (1.0, 1e100)])
def test_bounds_per_batch_are_the_bounds_per_row(max_usd, max_amount) -> None:
    rng = random.Random(5)
    rows = [Transfer(f"t{i}", T0, "u", EVM, None, "ETH", "ETH",
                     rng.choice(["1", "12345.5", "0.0001", "9" * 31, "1e31", "+50", "00000007"]),
                     rng.choice([0.0, 50.0, 1e9, 2e10]), "P2P") for i in range(500)]
    for batch in (rows, rows[:1], [r._replace(amount="1", usd_value=1.0) for r in rows],
                  [DeadLetter("t", "{}", "x", T0)] + rows[:10]):
        want = [r if type(r) is DeadLetter else codecs.check_bounds(r, "t", max_usd, max_amount)
                for r in batch]
        assert codecs.check_bounds_batch(batch, "t", max_usd, max_amount) == want


def _stamped_reference(path, record: str, source: str) -> list:
    """``read_validated`` as it was: record by record."""
    last, pending, out = None, [], []
    for r in codecs.read_records(path, record, source):
        if type(r) is not DeadLetter:
            r = codecs.check_bounds(r, source)
        if type(r) is DeadLetter:
            own = _own_time(r)
            if own is not None:
                last = own
                out.extend(d._replace(at=own) for d in pending)
                pending = []
                out.append(r._replace(source=source, at=own))
            elif last is not None:
                out.append(r._replace(source=source, at=last))
            else:
                pending.append(r._replace(source=source))
        else:
            last = getattr(r, "event_time", last)
            if pending and last is not None:
                out.extend(d._replace(at=last) for d in pending)
                pending = []
            out.append(r)
    return out + [d._replace(at=MIN_TS) for d in pending]


def test_dead_letters_are_stamped_as_record_by_record(tmp_path) -> None:
    recs = _transfers(20_000, 3)
    for i in range(5):  # dead letters without a time of their own before the first row
        recs[i] = {**recs[i], "event_time": "soon", "transfer_id": ""}
    p = tmp_path / "transfers.avro"
    _avro(p, {**codecs.load_schema("Transfer"), "fields": [
        {**f, "type": ["null", "string", {"type": "long", "logicalType": "timestamp-millis"}]}
        if f["name"] == "event_time" else f
        for f in codecs.load_schema("Transfer")["fields"]]}, recs)
    got = [r for b in read_validated(p, "Transfer", "transfers") for r in b]
    _same(got, _stamped_reference(p, "Transfer", "transfers"))


def test_staged_spill_files_hold_the_rows_in_order(tmp_path) -> None:
    rng = random.Random(9)
    day = 86_400_000
    rows = []
    for i in range(30_000):
        t = T0 + rng.randrange(4) * day + i
        rows.append(DeadLetter("t", "{}", "bad", t) if rng.random() < 0.01 else
                    Transfer(f"t{i}", t, "u", EVM, None, "ETH", "ETH", "1", 1.0, "P2P"))
    batches = [rows[i:i + 3000] for i in range(0, len(rows), 3000)]
    for parts in (1, 3):
        work = tmp_path / f"w{parts}"
        work.mkdir()
        staged = chunks.stage_inputs({"transfers": None}, lambda n, p: iter(batches), work,
                                     day, parts)
        assert staged.rows == {"transfers": len(rows)}
        assert (staged.scan.lo, staged.scan.hi) == (min(r[1] if type(r) is Transfer else r.at
                                                        for r in rows),
                                                    max(r[1] if type(r) is Transfer else r.at
                                                        for r in rows))
        for cid, paths in staged.files["transfers"].items():
            want = [r for r in rows if (r.at if type(r) is DeadLetter else r.event_time)
                    // day == cid]
            got = [r for p in paths for b in chunks.read_spilled(p) for r in b]
            assert sorted(got, key=lambda r: r[0] + str(r[1])) == \
                sorted(want, key=lambda r: r[0] + str(r[1]))
            assert [type(r) for r in got].count(DeadLetter) == \
                [type(r) for r in want].count(DeadLetter)
            # each part: its share of the bucket's rows, dealt in batches of 4096, in order
            per = [[r for b in chunks.read_spilled(p) for r in b] for p in paths]
            dealt = [want[i:i + 4096] for i in range(0, len(want), 4096)]
            assert per == [[r for k, b in enumerate(dealt) if k % parts == j for r in b]
                           for j in range(len(paths))]
