"""Blacklist loader: real vendor formats (../shared/data), contract files, merging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.blacklist import BlacklistSnapshot, detect_format, load_many
from schemas.codecs import CodecError, write_records
from schemas.rows import BlacklistUpdate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real vendor lists not present at {DATA} (a fresh clone has no "
    "../shared/data)")

T0 = 1_700_000_000_000
A = "0x52908400098527886e0f7030069857d2e4169ee7"
B = "0x8617e340b3d01fa5f11f306f4090fd50e238070d"
BTC = "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"


def load_blacklist(path, fmt=None, as_of=None) -> tuple[BlacklistSnapshot, list[str]]:
    """One blacklist file: the snapshot and the problems found in it (``as_of``: only
    contract updates at or before that time)."""
    return load_many([path], fmt=fmt, as_of=as_of)


# --- real files --------------------------------------------------------------------------
@needs_data
def test_union_csv_loads_all_64234_addresses_with_their_sources() -> None:
    snap, problems = load_blacklist(DATA / "blacklist_union_evm.csv")
    assert problems == []
    assert len(snap) == 64_234
    sources = snap.lookup("0x0000000000000000000000000000000000000000")
    assert sources == ("etherscan_labels_brianleect", "openaml_sanctioned")
    assert "ofac_sdn" in snap.sources or "mew_darklist" in snap.sources
    assert len(snap.version) == 12


@needs_data
def test_mew_darklist_reports_the_malformed_address_and_lowercases_the_rest() -> None:
    snap, problems = load_blacklist(DATA / "mew_addresses_darklist.json")
    assert len(problems) == 1
    assert "0x9CdfC5b0ACA4527a0916412E9dbD6AD85556A49" in problems[0]
    assert "entry 376" in problems[0] and "39 characters" in problems[0]
    assert snap.lookup("0xF193a9aFb00715AaCF7ca9Ebffafe02C77517C2E") == ("mew_darklist",)
    assert "0xf193a9afb00715aacf7ca9ebffafe02c77517c2e" in snap
    # trailing whitespace in the vendor file is stripped
    assert "0x00e01a648ff41346cdeb873182383333d2184dd1" in snap
    assert all(a == a.lower() for a in snap)


@needs_data
def test_ofac_bitcoin_and_tron_addresses_are_kept_as_given() -> None:
    snap, problems = load_blacklist(DATA / "ofac_sdn_addresses_XBT.txt")
    assert problems == []
    lines = [x.strip() for x in (DATA / "ofac_sdn_addresses_XBT.txt").read_text().splitlines()]
    assert len(snap) == len(set(x for x in lines if x))
    assert snap.lookup("123WBUDmSJv4GctdVEz6Qq6z8nXSKrJ4KX") == ("ofac_sdn",)
    assert "123wbudmsjv4gctdvez6qq6z8nxskrj4kx" not in snap  # case matters off EVM
    trx, _ = load_blacklist(DATA / "ofac_sdn_addresses_TRX.txt")
    assert "TBHTJqAy4DhHhmT3dNceJYNRz4SdLofLre" in trx


@needs_data
def test_every_vendor_file_loads_with_its_source_name() -> None:
    expected = {"forta_eth_phishing_scams.csv": "forta",
                "scamsniffer_address_blacklist.json": "scamsniffer",
                "ofac_sdn_addresses_ETH.txt": "ofac_sdn",
                "ofac_sdn_addresses_USDT.txt": "ofac_sdn",
                "mew_addresses_darklist.json": "mew_darklist"}
    for name, source in expected.items():
        snap, _ = load_blacklist(DATA / name)
        assert len(snap) > 0 and snap.sources == {source}, name
    scam, _ = load_blacklist(DATA / "scamsniffer_address_blacklist.json")
    assert len(scam) == len(set(json.loads(
        (DATA / "scamsniffer_address_blacklist.json").read_text())))


@needs_data
def test_load_many_unions_sources_per_address() -> None:
    files = [DATA / "ofac_sdn_addresses_ETH.txt", DATA / "blacklist_union_evm.csv",
             DATA / "ofac_sdn_addresses_XBT.txt"]
    snap, _ = load_many(files)
    eth, _ = load_blacklist(files[0])
    some = next(iter(eth))
    assert "ofac_sdn" in snap.lookup(some)
    assert "123WBUDmSJv4GctdVEz6Qq6z8nXSKrJ4KX" in snap
    assert len(snap) >= 64_234


# --- vendor-format edge cases on small files --------------------------------------------
def test_malformed_and_empty_lines_are_problems_not_crashes(tmp_path: Path) -> None:
    path = tmp_path / "ofac_sdn_addresses_ETH.txt"
    path.write_text(f"{A.upper().replace('0X', '0x')}\n\n0x1234\n{B}\n\n")
    snap, problems = load_blacklist(path)
    assert sorted(snap) == sorted([A, B])
    assert problems == [f"{path.name}:2: empty line",
                        f"{path.name}:3: malformed EVM address '0x1234' "
                        "(4 characters after 0x, expected 40 hex digits)"]


def test_forta_and_union_csv_formats(tmp_path: Path) -> None:
    forta = tmp_path / "forta_eth_phishing_scams.csv"
    forta.write_text("address,etherscan_tag,etherscan_labels,is_contract\n"
                     f"{A},Fake_Phishing1,phish-hack,False\n0xzz,x,y,False\n")
    union = tmp_path / "union.csv"
    union.write_text(f"address,n_sources,sources,categories\n{A},2,b_src;a_src,x\n"
                     f"{B},1,a_src,y\n")
    assert detect_format(forta) == "forta" and detect_format(union) == "union"
    snap, problems = load_blacklist(forta)
    assert snap.lookup(A) == ("forta",) and len(problems) == 1 and ":3:" in problems[0]
    snap, problems = load_blacklist(union)
    assert snap.lookup(A) == ("a_src", "b_src") and snap.lookup(B) == ("a_src",)
    assert problems == []


def test_missing_file_or_unknown_format_raise_codec_error(tmp_path: Path) -> None:
    with pytest.raises(CodecError, match="no such file"):
        load_blacklist(tmp_path / "nope.csv")
    (tmp_path / "x.bin").write_bytes(b"\x00")
    with pytest.raises(CodecError, match="x.bin"):
        load_blacklist(tmp_path / "x.bin")


# --- contract format ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_contract_file_applies_add_then_remove_in_event_time_order(tmp_path: Path,
                                                                    fmt: str) -> None:
    rows = [  # written out of order: the loader sorts by event time
        BlacklistUpdate(A, "ETH", "REMOVE", T0 + 10, "ofac_sdn", "delisted"),
        BlacklistUpdate(A.upper().replace("0X", "0x"), "ETH", "ADD", T0, "ofac_sdn", None),
        BlacklistUpdate(B, "ETH", "ADD", T0, "forta", None),
        BlacklistUpdate(B, "ETH", "ADD", T0 + 1, "scamsniffer", None),
        BlacklistUpdate(B, "ETH", "REMOVE", T0 + 2, "forta", None),
        BlacklistUpdate(BTC, "BTC", "ADD", T0 + 3, "ofac_sdn", "sanctioned"),
    ]
    path = tmp_path / f"blacklist.{fmt}"
    write_records(path, "BlacklistUpdate", rows)
    snap, problems = load_blacklist(path)
    assert problems == []
    assert A not in snap
    assert snap.lookup(B) == ("scamsniffer",)
    assert snap.lookup(BTC) == ("ofac_sdn",)
    before_delisting, _ = load_blacklist(path, as_of=T0 + 5)
    assert before_delisting.lookup(A) == ("ofac_sdn",)
    assert before_delisting.lookup(B) == ("scamsniffer",)
    before_remove, _ = load_blacklist(path, as_of=T0)
    assert before_remove.lookup(A) == ("ofac_sdn",)
    assert before_remove.lookup(B) == ("forta",)


# --- the snapshot itself -------------------------------------------------------------------
def test_snapshot_lookup_normalises_and_version_depends_on_content() -> None:
    snap = BlacklistSnapshot({A.upper().replace("0X", "0x"): ["x", "y"], BTC: ["ofac_sdn"]})
    assert snap.lookup(f"  {A} ") == ("x", "y")
    assert snap.lookup(A.upper().replace("0X", "0x")) == ("x", "y")
    assert snap.lookup("0x" + "0" * 40) is None
    assert BTC in snap and BTC.lower() not in snap and 5 not in snap
    assert len(snap) == 2 and sorted(snap) == sorted([A, BTC])
    same = BlacklistSnapshot({BTC: ["ofac_sdn"], A: ["y", "x"]})
    other = BlacklistSnapshot({A: ["x"], BTC: ["ofac_sdn"]})
    assert snap.version == same.version != other.version
    assert BlacklistSnapshot({}, version="v1").version == "v1"


def test_snapshot_shares_source_tuples_between_addresses() -> None:
    snap = BlacklistSnapshot({f"0x{i:040x}": ["forta", "mew_darklist"] for i in range(100)})
    tuples = {id(snap.lookup(f"0x{i:040x}")) for i in range(100)}
    assert len(tuples) == 1
