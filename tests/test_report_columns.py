"""The report's columns (report/columns.py) agree with the rows they replace: the transfers
read as columns are the dict of rows the report kept (first row of each id, in order; the
invalid ones left out), the truth's transfer map is the dict it filled (last row of an id),
and the figures computed on columns are those computed on rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

import fastavro
import numpy as np
import pytest

from report.columns import TransferColumns, positions
from report.files import rows
from report.friction import (
    LOST_CAUSES,
    REASONS,
    TABLE_ROWS,
    TOP_USERS,
    figures,
    friction_figures,
    hold_reason,
    lost_cause,
)
from report.precision import precision_by_reason
from report.truth import ground_truth, kinds
from schemas import codecs
from schemas.rows import Hold, HoldResolution, Transfer, Truth

T0 = 1_767_225_600_000
H = 3_600_000
A = "0x" + "a1" * 20
B = "0x" + "b2" * 20


def tr(tid, h, user, to, usd, amount="1.5", asset="ETH"):
    return Transfer(tid, T0 + int(h * H), user, to, None, "ETH", asset, amount, usd,
                    "WITHDRAWAL")


TRANSFERS = [tr("t3", 2, "carol", B, 50.0), tr("t1", 0, "alice", A, 100.0),
             tr("t2", 0, "bob", A, 200.25, "7", "USDT"),
             tr("t1", 5, "mallory", B, 1.0),  # a repeat: the first t1 stands
             tr("t4", 1, "alice", A.upper().replace("0X", "0x"), 75.5),
             tr("t5", 3, "dave", B, 0.1)]


def _write_avro(path: Path, records: list, name: str) -> None:
    schema = fastavro.parse_schema(codecs.load_schema(name))
    with open(path, "wb") as f:
        fastavro.writer(f, schema, records)


def _transfer_file(tmp: Path, fmt: str) -> Path:
    p = tmp / f"transfers.{fmt}"
    good = [codecs.to_wire(t) for t in TRANSFERS]
    bad = dict(good[0], transfer_id="bad", usd_value=-5.0)  # invalid: dead-lettered
    recs = good[:2] + [bad] + good[2:]
    if fmt == "avro":
        _write_avro(p, recs, "Transfer")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(recs), str(p))
    return p


@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_transfer_columns_are_the_rows_the_report_kept(tmp_path, fmt):
    p = _transfer_file(tmp_path, fmt)
    by_id: dict = {}
    n = 0
    for t in rows(p, Transfer):  # what the report did before
        n += 1
        by_id.setdefault(t.transfer_id, t)
    cols = TransferColumns.read(p)
    assert cols.n_read == n == len(TRANSFERS)
    assert len(cols) == len(by_id) == 5
    got = cols.rows(np.arange(len(cols)))
    assert [g.transfer_id for g in got] == list(by_id)
    for g in got:
        t = by_id[g.transfer_id]
        assert (g.event_time, g.user_id, g.to_address, g.asset, g.amount, g.usd_value) == \
            (t.event_time, t.user_id, t.to_address, t.asset, t.amount, t.usd_value)
    assert cols.by_id(["t2", "nope", None]) == {"t2": got[2]}
    assert TransferColumns.of(by_id).rows(np.arange(5)) == got


def test_positions_find_ids_or_say_minus_one():
    assert positions(["b", "x", "a"], ["a", "b"]).tolist() == [1, -1, 0]
    assert positions([], ["a"]).tolist() == []
    assert positions(["a"], []).tolist() == [-1]
    many = [f"k{i}" for i in range(200_001)]  # a few among many: the other way round
    assert positions(["k7", "no", "k200000", "k7"], many).tolist() == [7, -1, 200_000, 7]


def test_the_truths_transfer_map_is_the_dict_it_replaces(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    truth = [Truth("TRANSFER", "t1", True, "romance", "alice", A, 100.0, T0, None),
             Truth("TRANSFER", "t2", False, None, "bob", A, 200.25, T0, "laundering"),
             Truth("TRANSFER", "t3", False, None, "carol", B, 50.0, T0, None),
             Truth("ADDRESS", B, True, None, None, None, None, T0, None),
             Truth("TRANSFER", "t3", True, None, "carol", B, 50.0, T0, "x"),  # the last
             Truth("TRANSFER", "gone", True, "phishing", "x", A, 1.0, T0, None)]
    codecs.write_records(inp / "truth.avro", "Truth", truth)
    codecs.write_records(inp / "transfers.avro", "Transfer", TRANSFERS)
    g = ground_truth(inp, TransferColumns.read(inp / "transfers.avro"), {}, [])
    old: dict = {}
    for r in truth:
        if r.subject_type == "TRANSFER":
            old[r.subject_id] = (r.is_scam, r.typology or "unknown", r.detail)
    ids = ["t1", "t2", "t3", "t4", "gone"]
    assert g.transfer.subset(ids) == {k: old[k] for k in ids if k in old}
    assert dict(g.transfer.items()) == old
    kind = kinds(g.transfer)
    scam, legit = kind.arrays(ids)
    assert scam.tolist() == [True, False, True, False, True]
    assert legit.tolist() == [False, False, False, True, False]
    assert [kind(t) for t in ids] == ["scam", None, "scam", "legit", "scam"]
    # the scam transfers' destinations (of the replay's transfers) are scam addresses
    assert g.addresses == {A, B}


def test_friction_and_precision_on_columns_are_those_on_rows():
    by_id: dict = {}
    for t in TRANSFERS:
        by_id.setdefault(t.transfer_id, t)
    cols = TransferColumns.of(by_id)
    truth = {"t1": (True, "romance", None), "t2": (False, "unknown", "laundering"),
             "t5": (True, "x", None)}
    holds = [Hold("h" + t, t, "u", A, "ETH", "1", 1.0, T0, T0 + 24 * H, 0.9, r)
             for t, r in (("t1", ["hold_test=score"]), ("t3", ["blacklist:ofac"]),
                          ("t4", ["hold_test=expected_loss"]))]
    res = [HoldResolution("ht1", "t1", "REFUNDED", T0 + H, "destination frozen", "u", A, 1.0),
           HoldResolution("ht3", "t3", "RELEASED", T0 + 30 * H, "deadline", "u", B, 1.0)]
    one_by_one = kinds(truth).__call__  # a plain callable: the rows' path
    assert friction_figures(cols, kinds(truth), holds, res) == \
        friction_figures(list(by_id.values()), one_by_one, holds, res)
    assert precision_by_reason(cols, kinds(truth), holds) == \
        precision_by_reason(by_id, one_by_one, holds)


# The row-by-row friction figures the columns replaced (the base's code, kept as the
# reference the columns must agree with).
def _rows_friction_figures(transfers: Iterable, kind_of, holds: Iterable,
                           resolutions: Iterable, capped: Optional[set] = None,
                           top: int = TOP_USERS, rows: int = TABLE_ROWS) -> dict:
    trs = sorted(transfers, key=lambda t: (t.event_time, t.transfer_id))
    hold_by = {h.transfer_id: h for h in holds}
    res_by = {r.transfer_id: r for r in resolutions}
    by_reason: dict = {r: Counter() for r in REASONS}
    legit_n = legit_usd = 0.0
    legit_held: list = []
    per_user: Counter = Counter()
    lost: dict = {c: Counter() for c in LOST_CAUSES}
    capped_lost = Counter()
    held_before: set = set()  # destinations with a hold so far
    for t in trs:
        kind = kind_of(t.transfer_id)
        h = hold_by.get(t.transfer_id)
        usd = float(t.usd_value or 0.0)
        if h is not None:
            c = by_reason[hold_reason(h)]
            c["holds"] += 1
            c["usd"] += usd
            if kind in ("legit", "scam"):
                c[kind] += 1
            r = res_by.get(t.transfer_id)
            c["refunded"] += r is not None and r.resolution == "REFUNDED"
        if kind == "legit":
            legit_n += 1
            legit_usd += usd
            if h is not None:
                r = res_by.get(t.transfer_id)
                legit_held.append((t, h, r))
                per_user[t.user_id] += 1
        elif kind == "scam":
            r = res_by.get(t.transfer_id)
            if r is None or r.resolution != "REFUNDED":
                cause = lost_cause(h is not None, t.to_address in held_before)
                lost[cause]["n"] += 1
                lost[cause]["usd"] += usd
                if capped and t.transfer_id in capped:
                    capped_lost["n"] += 1
                    capped_lost["usd"] += usd
        if h is not None:
            held_before.add(t.to_address)
    return figures(by_reason, legit_held, per_user, legit_n, legit_usd, lost, capped_lost,
                   capped, top, rows)



def test_friction_on_columns_agrees_with_the_row_by_row_figures():
    rng = np.random.default_rng(7)
    addrs = [f"0x{i:040x}" for i in range(12)]
    trs = [tr(f"t{rng.integers(0, 400):03d}", int(rng.integers(0, 30)) / 4,
              f"u{rng.integers(0, 20)}", addrs[rng.integers(0, 12)],
              float(rng.choice([0.1, 0.2, 0.3, 1e6, 33.3, 7.77]))) for _ in range(500)]
    by_id: dict = {}
    for t in trs:
        by_id.setdefault(t.transfer_id, t)
    tids = list(by_id)
    truth = {t: (bool(rng.random() < 0.3), None, "laundering" if rng.random() < 0.1 else None)
             for t in tids if rng.random() < 0.9}
    reasons = (["hold_test=score"], ["blacklist:x"], ["destination_frozen"],
               ["hold_test=expected_loss"], ["fan_in_24h=9", "model:transfer_risk=0.5"])
    held = [t for t in tids if rng.random() < 0.3]
    holds = [Hold("h" + t, t, "u", by_id[t].to_address, "ETH", "1", 1.0, T0, T0 + 24 * H,
                  0.9, list(reasons[rng.integers(0, len(reasons))])) for t in held]
    res = [HoldResolution("h" + t, t, "REFUNDED" if rng.random() < 0.4 else "RELEASED",
                          T0 + H, "x", "u", A, 1.0) for t in held if rng.random() < 0.8]
    capped = {t for t in tids if rng.random() < 0.2}
    for cap in (None, capped):
        want = _rows_friction_figures(list(by_id.values()), kinds(truth).__call__, holds,
                                      res, cap)
        assert friction_figures(TransferColumns.of(by_id), kinds(truth), holds, res,
                                cap) == want
