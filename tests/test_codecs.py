"""Codecs: Avro schemas match FIELDS, every record round-trips every format, bad input
becomes a DeadLetter with a readable reason, output is byte-identical for the same rows."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import codecs, generate_avsc
from schemas.codecs import (
    CodecError,
    RecordWriter,
    decode_avro,
    decode_json,
    encode_avro,
    encode_json,
    find_input,
    load_schema,
    normalize_address,
    read_records,
    to_wire,
    validate,
    write_records,
)
from schemas.rows import (
    FIELDS,
    BlacklistUpdate,
    CaseFile,
    CaseOutcome,
    DeadLetter,
    Freeze,
    Hold,
    HoldResolution,
    Outreach,
    ScamReport,
    Transfer,
    Truth,
    UserProfile,
    Verdict,
)

T0 = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z
EVM = "0x52908400098527886e0f7030069857d2e4169ee7"
BTC = "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"

SAMPLES = {
    "Transfer": [
        Transfer("tx-1", T0, "u-1", EVM, None, "ETH", "ETH", "1.500000000000000001", 2500.5,
                 "WITHDRAWAL"),
        Transfer("tx-2", T0 + 1, "u-2", "acct-77", "u-77", "INTERNAL", "USDT", "0", 0.0,
                 "INTERNAL"),
        Transfer("tx-3", T0 + 2, "u-3", BTC, None, "BTC", "BTC", "1E-8", 0.0006, "P2P"),
    ],
    "ScamReport": [
        ScamReport("r-1", T0, "u-1", "tx-1", EVM, None, "ROMANCE",
                   "Il m'a promis l'amour — 爱情 💔", 2500.0),
        ScamReport("r-2", T0, "u-2", None, None, "u-9", "OTHER", "x", None),
    ],
    "CaseOutcome": [CaseOutcome("c-1", T0, "ADDRESS", EVM, True),
                    CaseOutcome("c-2", T0, "TRANSFER", "tx-2", False)],
    "BlacklistUpdate": [BlacklistUpdate(EVM, "ETH", "ADD", T0, "ofac_sdn", "sanctioned"),
                        BlacklistUpdate(BTC, None, "REMOVE", T0 + 5, "mew_darklist", None)],
    "UserProfile": [UserProfile("u-1", T0, "DE", 1950, True),
                    UserProfile("u-2", T0, None, None, False)],
    "Hold": [Hold("h-1", "tx-1", "u-1", EVM, "ETH", "1.5", 2500.5, T0, T0 + 86_400_000, 0.97,
                  ["blacklist:ofac_sdn", "score>=0.9"], "m-3"),
             Hold("h-2", "tx-2", "u-2", BTC, "BTC", "2", 1.0, T0, T0 + 1, 0.5, [], None)],
    "HoldResolution": [HoldResolution("h-1", "tx-1", "REFUNDED", T0, "verdict SCAM", "u-1", EVM,
                                      2500.5),
                       HoldResolution("h-2", "tx-2", "RELEASED", T0, "deadline")],
    "Freeze": [Freeze("f-1", EVM, "u-1", T0, 0.99, ["r-1", "r-2"], ["verdict"]),
               Freeze("f-2", BTC, None, T0, 0.5, [], [])],
    "Outreach": [Outreach("o-1", "u-1", "SILENT_SUFFERER", "CHAT", T0, "tx-1", EVM,
                          ["blacklisted: Ünïcødé"]),
                 Outreach("o-2", "u-2", "WARNING", "APP", T0, None, None, []),
                 Outreach("o-3", "u-3", "RISK_ASSESSMENT", "APP", T0, None, None,
                          ["warnings=2", "expected_loss_usd=12.50"], 12.5)],
    "Verdict": [Verdict("r-1", EVM, 0.93, "SCAM", T0, "vm-1", "u-1", ["a", "b"]),
                Verdict("r-2", "u-9", 0.1, "NOT_SCAM", T0, "vm-1")],
    "DeadLetter": [DeadLetter("transfers", "{\"bad\": \"ö\"}", "missing required field 'x'", T0)],
    "CaseFile": [
        CaseFile("case-1", EVM, "ETH", "u-9", T0, T0 + 5, 7, ["frozen", "verdict:SCAM"],
                 ['{"fate":"LOST","transfer_id":"tx-1"}'], ['{"text":"爱情 💔"}'], [],
                 '{"freeze_id":"f-1"}', [], [], ['{"at":1,"event":"x"}'], 3, 10.5, 4.25,
                 6.25, 0.0, 1, 0, 0, 0, 0, 2),
        CaseFile("case-2", BTC, None, None, T0, T0, 1, ["blacklisted:ofac_sdn"], [], [], [],
                 None, [], [], [], 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, 0, 0, 0),
    ],
    "Truth": [Truth("TRANSFER", "tx-1", True, "romance", "u-1", EVM, 2500.5, T0, "late"),
              Truth("USER", "u-2", False, None, None, None, None, T0, None)],
}

GOOD = to_wire(SAMPLES["Transfer"][0])


def bad(**changes: object) -> DeadLetter:
    row = validate("Transfer", {**GOOD, **changes}, "transfers")
    assert isinstance(row, DeadLetter), row
    return row


def test_samples_cover_every_record() -> None:
    assert set(SAMPLES) == set(FIELDS)


# --- schemas ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_avsc_files_match_fields(name: str) -> None:
    path = codecs.SCHEMA_DIR / f"{name}.avsc"
    assert path.read_text(encoding="utf-8") == generate_avsc.render(name), \
        "run python -m schemas.generate_avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["namespace"] == "safetynet"
    assert [f["name"] for f in schema["fields"]] == [f[0] for f in FIELDS[name]]
    for field, (_, kind, nullable) in zip(schema["fields"], FIELDS[name], strict=True):
        t = field["type"]
        if nullable:
            assert t[0] == "null" and field["default"] is None
            t = t[1]
        if kind == "timestamp":
            assert t == {"type": "long", "logicalType": "timestamp-millis"}
        elif kind.startswith("enum:") or kind == "decimal":
            assert t == "string"
        elif kind == "array<string>":
            assert t == {"type": "array", "items": "string"}
    assert load_schema(name)["name"] == f"safetynet.{name}"


def test_generate_avsc_writes_every_record(tmp_path: Path) -> None:
    written = generate_avsc.main(tmp_path)
    assert sorted(p.stem for p in written) == sorted(FIELDS)


# --- round trips -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FIELDS))
@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_file_round_trip_every_record(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / f"{name}.{fmt}"
    assert write_records(path, name, SAMPLES[name], fmt) == len(SAMPLES[name])
    assert list(read_records(path, name)) == SAMPLES[name]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_json_and_schemaless_avro_payload_round_trip_every_record(name: str) -> None:
    for row in SAMPLES[name]:
        assert decode_json(name, encode_json(row), "pubsub") == row
        assert decode_avro(name, encode_avro(row), "pubsub") == row


def test_json_payload_has_epoch_ms_timestamps_and_utf8_text() -> None:
    data = encode_json(SAMPLES["ScamReport"][0])
    obj = json.loads(data.decode("utf-8"))
    assert obj["event_time"] == T0
    assert "爱情" in data.decode("utf-8")


def test_record_writer_one_row_at_a_time_and_empty_file(tmp_path: Path) -> None:
    for fmt in ("avro", "parquet"):
        path = tmp_path / f"h.{fmt}"
        with RecordWriter(path, "Hold", fmt, row_group_size=1) as w:
            for row in SAMPLES["Hold"]:
                w.write(row)
        assert w.count == 2
        assert list(read_records(path, "Hold")) == SAMPLES["Hold"]
        empty = tmp_path / f"empty.{fmt}"
        assert write_records(empty, "Hold", []) == 0
        assert list(read_records(empty, "Hold")) == []


def test_parquet_row_groups_stream_many_rows(tmp_path: Path) -> None:
    rows = [SAMPLES["Transfer"][0]._replace(transfer_id=f"tx-{i}") for i in range(2500)]
    path = tmp_path / "t.parquet"
    with RecordWriter(path, "Transfer", row_group_size=1000) as w:
        w.write_many(rows)
    assert pq.ParquetFile(path).num_row_groups == 3
    assert list(read_records(path, "Transfer")) == rows


@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_same_rows_give_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    rows = [SAMPLES["Transfer"][i % 3]._replace(transfer_id=f"tx-{i}") for i in range(3000)]
    digests = set()
    for k in range(2):
        path = tmp_path / f"run{k}.{fmt}"
        write_records(path, "Transfer", rows, fmt)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_files_are_readable_by_plain_fastavro_and_pyarrow(tmp_path: Path) -> None:
    write_records(tmp_path / "t.avro", "Transfer", SAMPLES["Transfer"])
    write_records(tmp_path / "t.parquet", "Transfer", SAMPLES["Transfer"])
    with open(tmp_path / "t.avro", "rb") as f:
        recs = list(fastavro.reader(f))
    assert recs[0]["event_time"] == datetime.fromtimestamp(T0 / 1000, tz=timezone.utc)
    assert recs[0]["amount"] == "1.500000000000000001"
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("to_user_id").nullable
    assert not table.schema.field("user_id").nullable
    assert table.column("transfer_id").to_pylist() == ["tx-1", "tx-2", "tx-3"]


def test_avro_file_written_with_older_schema_still_reads(tmp_path: Path) -> None:
    old = json.loads((codecs.SCHEMA_DIR / "Transfer.avsc").read_text())
    old["fields"] = [f for f in old["fields"] if f["name"] != "to_user_id"]
    rec = {k: v for k, v in GOOD.items() if k != "to_user_id"}
    path = tmp_path / "old.avro"
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(old), [rec])
    assert list(read_records(path, "Transfer")) == [SAMPLES["Transfer"][0]]


def test_parquet_from_another_tool_with_us_timestamps_and_missing_nullable_column(
        tmp_path: Path) -> None:
    table = pa.table({
        "transfer_id": ["tx-1"], "event_time": pa.array([T0 * 1000], pa.timestamp("us")),
        "user_id": ["u-1"], "to_address": [EVM.upper().replace("0X", "0x")],
        "network": ["ETH"], "asset": ["ETH"], "amount": ["1.500000000000000001"],
        "usd_value": [2500.5], "channel": ["WITHDRAWAL"], "extra": [1]})
    pq.write_table(table, tmp_path / "t.parquet")
    assert list(read_records(tmp_path / "t.parquet", "Transfer")) == [SAMPLES["Transfer"][0]]


def test_bad_records_in_a_file_become_dead_letters_named_by_source(tmp_path: Path) -> None:
    schema = json.loads((codecs.SCHEMA_DIR / "Transfer.avsc").read_text())
    path = tmp_path / "transfers.avro"
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema), [GOOD, {**GOOD, "amount": "-5"}])
    out = list(read_records(path, "Transfer"))
    assert out[0] == SAMPLES["Transfer"][0]
    assert out[1].source == "transfers" and out[1].error == "amount is negative: '-5'"
    assert json.loads(out[1].payload)["amount"] == "-5"


# --- files that cannot be read --------------------------------------------------------
def test_missing_corrupt_and_unknown_files_raise_codec_error(tmp_path: Path) -> None:
    with pytest.raises(CodecError, match="no such file"):
        read_records(tmp_path / "nope.avro", "Transfer")
    (tmp_path / "junk.avro").write_bytes(b"not avro at all")
    with pytest.raises(CodecError, match="junk.avro"):
        list(read_records(tmp_path / "junk.avro", "Transfer"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(CodecError, match="junk.parquet"):
        list(read_records(tmp_path / "junk.parquet", "Transfer"))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(CodecError, match="unknown format"):
        read_records(tmp_path / "x.csv", "Transfer")
    assert issubclass(CodecError, ValueError)


def test_truncated_avro_file_raises_codec_error(tmp_path: Path) -> None:
    rows = [SAMPLES["Transfer"][0]._replace(transfer_id=f"tx-{i}") for i in range(5000)]
    path = tmp_path / "t.avro"
    write_records(path, "Transfer", rows)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CodecError, match="t.avro"):
        list(read_records(path, "Transfer"))


def test_find_input_picks_avro_or_parquet_and_refuses_both(tmp_path: Path) -> None:
    assert find_input(tmp_path, "transfers") is None
    write_records(tmp_path / "transfers.parquet", "Transfer", [])
    assert find_input(tmp_path, "transfers") == tmp_path / "transfers.parquet"
    write_records(tmp_path / "transfers.avro", "Transfer", [])
    with pytest.raises(CodecError, match="both"):
        find_input(tmp_path, "transfers")


# --- validation ------------------------------------------------------------------------
def test_valid_dict_becomes_the_row() -> None:
    assert validate("Transfer", dict(GOOD), "transfers") == SAMPLES["Transfer"][0]


def test_missing_none_or_empty_required_field_is_dead_lettered() -> None:
    missing = validate("Transfer", {k: v for k, v in GOOD.items() if k != "user_id"}, "t")
    assert missing.error == "missing required field 'user_id'"
    assert bad(user_id=None).error == "missing required field 'user_id'"
    assert bad(user_id="").error == "required field 'user_id' is empty"


def test_wrong_types_are_dead_lettered() -> None:
    assert bad(user_id=5).error == "user_id must be a string, got int"
    assert bad(usd_value="12").error == "usd_value must be a number, got str"
    assert bad(event_time=1.7e12).error.startswith("event_time must be epoch milliseconds")
    out = validate("CaseOutcome", {**to_wire(SAMPLES["CaseOutcome"][0]), "is_scam": "true"}, "o")
    assert out.error == "is_scam must be a boolean, got str"
    out = validate("Hold", {**to_wire(SAMPLES["Hold"][0]), "reasons": ["a", 3]}, "h")
    assert out.error == "reasons[1] must be a string, got int"


def test_bad_amounts_are_dead_lettered() -> None:
    assert bad(amount="-5").error == "amount is negative: '-5'"
    assert bad(amount="abc").error == "amount is not a number: 'abc'"
    assert bad(amount="NaN").error == "amount is not finite: 'NaN'"
    assert bad(amount="Infinity").error == "amount is not finite: 'Infinity'"
    assert bad(amount="1_000").error == "amount is not a number: '1_000'"
    assert bad(usd_value=float("nan")).error == "usd_value is not finite: nan"
    assert bad(usd_value=-1.0).error == "usd_value is negative: -1.0"


def test_amount_keeps_its_exact_string() -> None:
    for amount in ("0.000000000000000001", "12345678901234567890.5", "1e-8", "-0"):
        row = validate("Transfer", {**GOOD, "amount": amount}, "t")
        assert isinstance(row, Transfer) and row.amount == amount


def test_unknown_enum_value_is_dead_lettered() -> None:
    assert bad(channel="WIRE").error == \
        "unknown channel 'WIRE' (expected one of WITHDRAWAL, INTERNAL, P2P)"
    assert bad(channel="withdrawal").error.startswith("unknown channel 'withdrawal'")


def test_timestamps_out_of_range_are_dead_lettered() -> None:
    assert bad(event_time=99_999_999_999_999).error == \
        "event_time out of range: 99999999999999 (years 2000..2100)"
    assert bad(event_time=1_700_000_000).error.startswith("event_time out of range")
    assert bad(event_time="yesterday").error.startswith("event_time is not a timestamp")


def test_timestamps_accept_int_datetime_and_iso8601() -> None:
    iso = "2023-11-14T22:13:20.123Z"
    for value in (T0, iso, "2023-11-14T23:13:20.123+01:00", str(T0),
                  datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc),
                  datetime(2023, 11, 14, 22, 13, 20, 123000)):
        row = validate("Transfer", {**GOOD, "event_time": value}, "t")
        assert isinstance(row, Transfer) and row.event_time == T0, value


def test_nullable_fields_missing_or_empty_read_as_none() -> None:
    d = {k: v for k, v in to_wire(SAMPLES["ScamReport"][1]).items()
         if k not in ("transfer_id", "claimed_loss_usd")}
    d["suspect_address"] = ""
    assert validate("ScamReport", d, "reports") == SAMPLES["ScamReport"][1]


def test_int_usd_value_from_json_becomes_float() -> None:
    row = validate("Transfer", {**GOOD, "usd_value": 2500}, "t")
    assert row.usd_value == 2500.0 and isinstance(row.usd_value, float)


def test_dead_letter_payload_is_the_raw_text_or_a_json_dump() -> None:
    out = validate("Transfer", {**GOOD, "amount": "-5"}, "transfers", raw=b"raw \xff", at=T0)
    assert out == DeadLetter("transfers", "raw \ufffd", "amount is negative: '-5'", T0)
    out = bad(amount="-5")
    assert json.loads(out.payload) == {**GOOD, "amount": "-5"}


# --- Pub/Sub payload errors ------------------------------------------------------------
def test_unparseable_payloads_are_dead_lettered() -> None:
    out = decode_json("Transfer", b"{not json", "pubsub", at=T0)
    assert out.error.startswith("payload is not valid JSON") and out.payload == "{not json"
    assert out.at == T0
    out = decode_json("Transfer", b"\xff\xfe{}", "pubsub")
    assert out.error.startswith("payload is not valid UTF-8")
    out = decode_json("Transfer", b"[1, 2]", "pubsub")
    assert out.error == "payload is not a JSON object (got list)"
    out = decode_avro("Transfer", b"\x02garbage", "pubsub")
    assert out.error.startswith("payload is not valid Avro for Transfer")
    out = decode_avro("Transfer", encode_avro(SAMPLES["Transfer"][0]) + b"xx", "pubsub")
    assert out.error == "payload is not valid Avro for Transfer: 2 trailing bytes"


def test_json_payload_with_iso_timestamp_and_mixed_case_address() -> None:
    msg = json.dumps({**GOOD, "event_time": "2023-11-14T22:13:20.123Z",
                      "to_address": "  " + EVM.upper().replace("0X", "0x")}).encode()
    assert decode_json("Transfer", msg, "pubsub") == SAMPLES["Transfer"][0]


def test_invalid_row_in_json_payload_is_dead_lettered_with_the_raw_text() -> None:
    msg = json.dumps({**GOOD, "channel": "WIRE"}).encode()
    out = decode_json("Transfer", msg, "pubsub")
    assert out.payload == msg.decode() and out.error.startswith("unknown channel 'WIRE'")


# --- addresses -------------------------------------------------------------------------
def test_address_normalisation() -> None:
    mixed = "0x52908400098527886E0F7030069857D2E4169EE7"
    assert normalize_address(mixed) == EVM
    assert normalize_address(f"\t{mixed} \n", "ETH") == EVM
    assert normalize_address(BTC, "BTC") == BTC
    assert normalize_address(" TBHTJqAy4DhHhmT3dNceJYNRz4SdLofLre ", "TRX") == \
        "TBHTJqAy4DhHhmT3dNceJYNRz4SdLofLre"
    assert normalize_address("0xABC") == "0xABC"  # not EVM-shaped: kept as given
    row = validate("BlacklistUpdate", {**to_wire(SAMPLES["BlacklistUpdate"][0]),
                                       "address": mixed}, "blacklist")
    assert row.address == EVM
    row = validate("ScamReport", {**to_wire(SAMPLES["ScamReport"][0]),
                                  "suspect_address": mixed}, "reports")
    assert row.suspect_address == EVM


def test_unknown_record_name_is_an_error() -> None:
    with pytest.raises(CodecError, match="unknown record"):
        validate("Nope", {}, "x")
