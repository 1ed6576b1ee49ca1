"""The converter from the real labelled Ethereum transfers to a replay directory, on a slice."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines import convert_eth
from schemas import codecs
from schemas.rows import Transfer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CSV = DATA / "eth_transfers_2018H1_labeled.csv.gz"
needs_data = pytest.mark.skipif(
    not CSV.exists(), reason=f"real data not here ({CSV}): a fresh clone has no ../shared")
LIMIT = 6000


def _valid(path, record):
    rows = list(codecs.read_records(path, record))
    assert all(type(r).__name__ == record for r in rows), [r for r in rows
                                                            if type(r).__name__ != record][:1]
    return rows


@needs_data
@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_slice_converts_to_a_valid_replay_directory(tmp_path, capsys, fmt):
    out = tmp_path / "eth"
    rc = convert_eth.main(["--input", str(CSV), "--output", str(out), "--limit", str(LIMIT),
                           "--seed", "3", "--format", fmt])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"{LIMIT:,} transfers" in printed and "victim payments" in printed
    transfers = _valid(out / f"transfers.{fmt}", "Transfer")
    reports = _valid(out / f"reports.{fmt}", "ScamReport")
    outcomes = _valid(out / f"outcomes.{fmt}", "CaseOutcome")
    truth = _valid(out / f"truth.{fmt}", "Truth")
    assert _valid(out / f"blacklist.{fmt}", "BlacklistUpdate") == []  # no leaked labels
    assert len(transfers) == LIMIT
    m = json.loads((out / "manifest.json").read_text())
    assert m["rows"] == LIMIT and m["victim_payments"] > 0

    t: Transfer = transfers[0]  # the file's first row, mapped as SOURCES.md says
    assert t.transfer_id.startswith("0x") and t.network == "ETH" == t.asset
    assert t.channel == "WITHDRAWAL" and t.to_user_id is None
    assert t.amount == "1921.8" and t.usd_value == pytest.approx(1921.8 * 1110.0)
    assert t.event_time == 1514765415 * 1000

    scam = {r.subject_id for r in truth if r.subject_type == "TRANSFER" and r.is_scam}
    assert len(scam) == m["victim_payments"]
    assert sum(r.subject_type == "TRANSFER" for r in truth) == LIMIT
    by_id = {x.transfer_id: x for x in transfers}
    victim_reports = [r for r in reports if r.category == "PHISHING"]
    assert victim_reports and all(r.transfer_id in scam for r in victim_reports)
    for r in victim_reports:  # reported by the sender, after the payment
        assert r.reporter_user_id == by_id[r.transfer_id].user_id
        assert r.event_time >= by_id[r.transfer_id].event_time
    # every reported scam address gets its case outcome, after its first report
    first = {}
    for r in victim_reports:
        first[r.suspect_address] = min(first.get(r.suspect_address, r.event_time), r.event_time)
    addr_out = {o.subject_id: o for o in outcomes if o.subject_type == "ADDRESS"}
    assert set(addr_out) == set(first)
    assert all(addr_out[a].is_scam and addr_out[a].event_time > first[a] for a in first)
    users = [r for r in truth if r.subject_type == "USER"]
    assert {r.detail for r in users} <= {"fast", "late", "silent"}
    assert sum(r.detail == "silent" for r in users) == m["silent_victims"]


@needs_data
def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert convert_eth.main(["--input", str(CSV), "--output", str(d), "--limit", "1500"]) == 0
    for name in ("transfers", "reports", "outcomes", "truth"):
        assert (a / f"{name}.avro").read_bytes() == (b / f"{name}.avro").read_bytes()


def test_exact_amounts():
    assert convert_eth.eth_amount("1000000000000000000") == "1"
    assert convert_eth.eth_amount("123456789012345678901234567") == "123456789.012345678901234567"
    assert Decimal(convert_eth.eth_amount("1")) == Decimal("1e-18")


def test_errors_are_one_line(tmp_path, capsys):
    assert convert_eth.main(["--input", str(tmp_path / "nope.csv.gz"), "--output",
                             str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"this is not gzip")
    assert convert_eth.main(["--input", str(bad), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unreadable" in err
    assert convert_eth.main(["--input", str(bad), "--output", str(tmp_path / "o"),
                             "--bogus"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

