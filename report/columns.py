"""Per-transfer data as columns: the replay's transfers and the ground truth about them,
held as numpy arrays and Arrow arrays rather than one Python row per transfer, so that the
report's memory follows what it needs, not the number of transfers.

* :class:`TransferColumns`: the replay's transfers, one per transfer id (the first read,
  in the file's order, as a dict filled with ``setdefault`` keeps them);
* :class:`TransferTruth`: transfer id -> (is_scam, typology, detail), the ground truth's
  map (the last row of an id, as a dict filled by assignment keeps it);
* :func:`positions`: where each of some ids sits among others (a hash join, at once).

Both are read with the row reader (:func:`schemas.codecs.read_batches`: the same
validation, the same rows), one batch at a time, keeping only the fields the report uses.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import codecs


class Paid(NamedTuple):
    """One transfer as the report shows it (the fields it uses of a ``Transfer``)."""

    transfer_id: str
    event_time: int
    user_id: str
    to_address: str
    asset: str
    amount: str
    usd_value: float


def _strings(x) -> pa.Array:
    """``x`` (a list of str / None, or Arrow strings) as one Arrow string array."""
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    if isinstance(x, pa.DictionaryArray):
        x = x.dictionary_decode()
    if isinstance(x, pa.Array):
        return x if x.type == pa.string() else x.cast(pa.string())
    return pa.array(list(x), type=pa.string())


def positions(values, keys) -> np.ndarray:
    """For each of ``values`` its position among ``keys`` (ids without repeats), -1 where
    it is not one of them (an int64 array)."""
    v, k = _strings(values), _strings(keys)
    if not len(v):
        return np.zeros(0, dtype=np.int64)
    if not len(k):
        return np.full(len(v), -1, dtype=np.int64)
    if len(v) == len(k) and v.equals(k):  # the same ids in the same order (no hashing)
        return np.arange(len(v), dtype=np.int64)
    if len(k) > 100_000 and len(k) > 4 * len(v):  # a few among many: hash the few
        few = pc.unique(v)
        which = _ints(pc.index_in(k, value_set=few))  # each key: which of the few, -1
        hit = np.flatnonzero(which >= 0)
        at = np.full(len(few), -1, dtype=np.int64)
        at[which[hit]] = hit  # each of the few is at most one key (keys do not repeat)
        return at[_ints(pc.index_in(v, value_set=few))]
    return _ints(pc.index_in(v, value_set=k))


def _ints(a) -> np.ndarray:
    """An Arrow integer array as int64 (null: -1)."""
    return a.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


class Coded:
    """A column of strings as codes into its distinct values (``names``, in the order each
    first appears, but for a column coded already (a Parquet dictionary): its order;
    code -1: None)."""

    def __init__(self, codes: np.ndarray, names: pa.Array):
        self.codes = codes
        self.names = names

    @classmethod
    def of(cls, x) -> "Coded":
        """``x`` (strings: a list, or Arrow, chunked or not) coded; a chunked array is coded
        chunk by chunk, without joining its chunks first."""
        if not isinstance(x, pa.ChunkedArray):
            x = pa.chunked_array([_strings(x)])
        elif pa.types.is_dictionary(x.type):  # coded already (a Parquet dictionary)
            d = x.unify_dictionaries()
            chunks = [c for c in d.chunks if len(c)]
            names = _strings(chunks[0].dictionary) if chunks else pa.array([], pa.string())
            return cls(np.concatenate([c.indices.fill_null(-1).to_numpy(zero_copy_only=False)
                                       .astype(np.int32) for c in chunks])
                       if chunks else np.zeros(0, dtype=np.int32), names)
        elif x.type != pa.string():
            x = x.cast(pa.string())
        d = pc.dictionary_encode(x)
        chunks = [c for c in d.chunks if len(c)]
        if not chunks:
            return cls(np.zeros(0, dtype=np.int32), pa.array([], type=pa.string()))
        names = chunks[-1].dictionary
        if any(len(c.dictionary) != len(names) for c in chunks):  # not one dictionary
            d = d.unify_dictionaries()
            chunks = [c for c in d.chunks if len(c)]
            names = chunks[-1].dictionary
        codes = np.concatenate([c.indices.fill_null(-1).to_numpy(zero_copy_only=False)
                                .astype(np.int32) for c in chunks])
        return cls(codes, names)

    def take(self, rows: np.ndarray) -> "Coded":
        """The rows ``rows`` only (the same names)."""
        return Coded(self.codes[rows], self.names)

    def __len__(self) -> int:
        return len(self.codes)

    def value(self, i: int) -> Optional[str]:
        c = int(self.codes[i])
        return None if c < 0 else self.names[c].as_py()

    def values(self, idx) -> list:
        """The values at the rows ``idx`` (a list of str / None)."""
        codes = self.codes[np.asarray(idx, dtype=np.int64)]
        if not len(codes):
            return []
        return self.names.take(pa.array(codes, mask=codes < 0)).to_pylist()

    def of_names(self, f, dtype) -> np.ndarray:
        """``f(value)`` of every distinct value (in the order of ``names``)."""
        return np.fromiter((f(x) for x in _each(self.names)), dtype, len(self.names))

    def per_name(self, f, dtype, none) -> np.ndarray:
        """``f(value)`` of every row, computed once per distinct value (``none`` for None)."""
        per = self.of_names(f, dtype)
        out = np.empty(len(self.codes), dtype=dtype)
        ok = self.codes >= 0
        out[ok] = per[self.codes[ok]]
        out[~ok] = none
        return out


def _each(a: pa.Array, step: int = 65_536):
    """The values of ``a`` one by one, made Python objects a slice at a time."""
    for i in range(0, len(a), step):
        yield from a.slice(i, step).to_pylist()


def _same(a, b: pa.Array, step: int = 1 << 20) -> bool:
    """Do the strings ``a`` (chunked or not) equal ``b``, in order (compared a slice at a
    time: no copy of either)?"""
    if len(a) != len(b):
        return False
    return all(a.slice(i, step).equals(pa.chunked_array([b.slice(i, step)]))
               if isinstance(a, pa.ChunkedArray) else a.slice(i, step).equals(b.slice(i, step))
               for i in range(0, len(b), step))


def _first_rows(codes: np.ndarray) -> np.ndarray:
    """The rows where each code appears first (codes numbered in the order they first
    appear, as ``dictionary_encode`` numbers them), in row order."""
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    seen = np.maximum.accumulate(codes)
    new = np.empty(len(codes), dtype=bool)
    new[0] = True
    new[1:] = codes[1:] > seen[:-1]
    return np.flatnonzero(new)


class TransferColumns:
    """The replay's transfers, one per id (the first read), in the file's order: ``tid``
    (Arrow strings), ``t`` (event time, ms) and ``usd`` (numpy), ``user``, ``to`` and
    ``asset`` (:class:`Coded`), ``amount`` (Arrow strings); ``n_read``: the transfers read,
    repeats included."""

    def __init__(self, tid, t, user, to, usd, asset, amount, n_read: Optional[int] = None):
        self.tid = _strings(tid)
        self.t = np.asarray(t, dtype=np.int64)
        self.user = user if isinstance(user, Coded) else Coded.of(user)
        self.to = to if isinstance(to, Coded) else Coded.of(to)
        self.usd = np.asarray(usd, dtype=np.float64)
        self.asset = asset if isinstance(asset, Coded) else Coded.of(asset)
        self.amount = _strings(amount)
        self.n_read = len(self.t) if n_read is None else n_read
        self._order: Optional[np.ndarray] = None  # time_order(), once asked

    FIELDS = ("transfer_id", "event_time", "user_id", "to_address", "usd_value", "asset",
              "amount")

    @classmethod
    def of(cls, transfers, unique: bool = True) -> "TransferColumns":
        """``transfers`` as columns: columns already, a dict of rows by id (the first of each
        id, in order), or rows (the first of each id kept; all of them with ``unique``
        false)."""
        if isinstance(transfers, cls):
            return transfers
        rows = list(transfers.values()) if isinstance(transfers, dict) else list(transfers)
        if not unique:
            return cls(*cls._columns(rows), n_read=len(rows))
        raw = dict(zip(cls.FIELDS, cls._columns(rows), strict=True))
        for f in ("transfer_id", "user_id", "to_address", "asset", "amount"):
            raw[f] = pa.chunked_array([_strings(raw[f])])
        return cls._unique(raw, len(rows))

    @staticmethod
    def _columns(rows: list) -> list:
        """The values of :data:`FIELDS` of ``rows``, one sequence per field."""
        from schemas.rows import Transfer

        if rows and all(type(t) is Transfer for t in rows):
            cols = list(zip(*rows, strict=True))
            return [cols[Transfer._fields.index(f)] for f in TransferColumns.FIELDS]
        return [[getattr(t, f) for t in rows] for f in TransferColumns.FIELDS]

    @classmethod
    def _unique(cls, raw: dict, n_read: int) -> "TransferColumns":
        """The first row of each id, from ``raw`` (field -> its values, as ``FIELDS`` names
        them): each column made and its raw values dropped in turn (one column's copies
        at a time)."""
        ids = Coded.of(raw.pop("transfer_id"))  # its names: the ids, first of each, in order
        keep = None
        if len(ids.names) < len(ids.codes):  # repeated ids: the first of each
            keep = _first_rows(ids.codes.astype(np.int64))
        cols = {"transfer_id": ids.names}
        del ids
        for f in ("user_id", "to_address", "asset"):
            c = Coded.of(raw.pop(f))
            cols[f] = c if keep is None else c.take(keep)
        amount = raw.pop("amount")
        amount = amount if keep is None else amount.take(pa.array(keep))
        cols["amount"] = _strings(amount)
        del amount
        for f in ("event_time", "usd_value"):
            v = np.asarray(raw.pop(f))
            cols[f] = v if keep is None else v[keep]
        return cls(cols["transfer_id"], cols["event_time"], cols["user_id"],
                   cols["to_address"], cols["usd_value"], cols["asset"], cols["amount"],
                   n_read)

    @classmethod
    def read(cls, path) -> "TransferColumns":
        """The transfers of the file at ``path`` (none without a file), read with the row
        reader, one batch at a time: only the columns are kept."""
        from schemas.rows import Transfer

        if path is None:
            return cls.of([])
        parts: dict = {f: [] for f in cls.FIELDS}  # Arrow strings / numpy, per batch
        nums = {"event_time": np.int64, "usd_value": np.float64}
        n = 0
        for batch in codecs.read_batches(path, "Transfer"):
            rows = [r for r in batch if type(r) is Transfer]
            n += len(rows)
            for f, col in zip(cls.FIELDS, cls._columns(rows), strict=True):
                parts[f].append(np.array(col, dtype=nums[f]) if f in nums
                                else pa.array(col, type=pa.string()))
        return cls._unique(cls._joined(parts), n)

    @classmethod
    def _joined(cls, parts: dict) -> dict:
        """field -> its values of every batch (``parts``: per field, per batch), the
        batches dropped as they are joined."""
        raw = {}
        for f in cls.FIELDS:
            got = parts.pop(f)
            if f in ("event_time", "usd_value"):
                raw[f] = np.concatenate(got) if got else np.zeros(0)
            else:
                raw[f] = pa.chunked_array(got, type=pa.string())
            del got
        return raw

    def __len__(self) -> int:
        return len(self.t)

    def __bool__(self) -> bool:
        return len(self.t) > 0

    def positions(self, tids) -> np.ndarray:
        """Where each of ``tids`` is among the transfers (-1: not one)."""
        return positions(tids, self.tid)

    def time_order(self) -> np.ndarray:
        """The rows by (event time, transfer id), as ``sorted`` orders them (kept)."""
        if self._order is None:
            n = len(self)
            if not n:
                self._order = np.zeros(0, dtype=np.int64)
            else:
                t = pa.table({"t": self.t, "tid": self.tid})
                got = pc.sort_indices(t, sort_keys=[("t", "ascending"), ("tid", "ascending")])
                self._order = got.to_numpy().astype(np.int32 if n < 2**31 else np.int64)
        return self._order

    def rows(self, idx) -> list:
        """The transfers at the rows ``idx``, as :class:`Paid` rows."""
        idx = np.asarray(idx, dtype=np.int64)
        if not len(idx):
            return []
        sel = pa.array(idx)
        return list(map(Paid._make, zip(
            self.tid.take(sel).to_pylist(), self.t[idx].tolist(), self.user.values(idx),
            self.to.values(idx), self.asset.values(idx), self.amount.take(sel).to_pylist(),
            self.usd[idx].tolist(), strict=True)))

    def by_id(self, tids: Iterable) -> dict:
        """transfer id -> :class:`Paid`, for those of ``tids`` that are transfers."""
        want = list(dict.fromkeys(x for x in tids if x is not None))
        pos = self.positions(want)
        found = pos >= 0
        return {r.transfer_id: r for r in self.rows(pos[found])}


class TransferTruth:
    """The ground truth about transfers, transfer id -> (is_scam, typology, detail), as
    columns: ``ids`` (Arrow strings, no repeats), ``scam`` (numpy bools), ``typ`` (codes
    into ``typ_names``, -1: None) and ``detail`` (Arrow strings)."""

    def __init__(self, ids, scam, typ, typ_names: list, detail):
        self.ids = _strings(ids)
        self.scam = np.asarray(scam, dtype=bool)
        self.typ = np.asarray(typ, dtype=np.int32)
        self.typ_names = list(typ_names)
        self.detail = _strings(detail)
        self.laundering = pc.equal(self.detail, "laundering").fill_null(False).to_numpy(
            zero_copy_only=False)
        self._asked: list = []  # (ids asked for, their positions): the last two

    @classmethod
    def last_of(cls, ids, scam, typ, typ_names: list, detail,
                like: Optional[pa.Array] = None) -> "TransferTruth":
        """From rows that may repeat an id: the last row of each, the ids in the order each
        first appears (as a dict filled by assignment keeps them). ``like``: ids without
        repeats that ``ids`` may equal (the transfers'): then they are shared, and not
        hashed."""
        if like is not None and len(like) == len(ids) and _same(ids, like):
            return cls(like, scam, typ, typ_names, detail)
        coded = Coded.of(ids)
        if len(coded.names) == len(coded.codes):
            return cls(coded.names, scam, typ, typ_names, detail)
        last = np.full(len(coded.names), -1, dtype=np.int64)
        np.maximum.at(last, coded.codes, np.arange(len(coded.codes), dtype=np.int64))
        return cls(coded.names, np.asarray(scam)[last], np.asarray(typ)[last], typ_names,
                   _strings(detail).take(pa.array(last)))

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, tids) -> np.ndarray:
        """Where each of ``tids`` is in the map (-1: absent); the last two answers for Arrow
        arrays are kept (the sections ask again for the transfers' and the scores' ids)."""
        for asked, got in self._asked:
            if asked is tids:
                return got
        got = positions(tids, self.ids)
        if isinstance(tids, pa.Array) and len(tids) > 1000:
            self.know(tids, got)
        return got

    def know(self, tids: pa.Array, pos: np.ndarray) -> None:
        """Keep ``pos`` as the positions of ``tids`` (found another way: by the order of
        the transfers whose ids the map shares); the last two are kept."""
        small = pos.astype(np.int32) if len(self.ids) < 2**31 else pos
        self._asked = [(tids, small)] + self._asked[:1]

    def at(self, pos: np.ndarray) -> tuple:
        """(scam, laundering and no scam, typology code) arrays for map positions ``pos``
        (absent, -1: False, False, -1: the report's default (False, None, None))."""
        ok = pos >= 0
        p = np.where(ok, pos, 0)
        if not len(self.scam):
            z = np.zeros(len(pos), dtype=bool)
            return z, z.copy(), np.full(len(pos), -1, dtype=np.int32)
        scam = self.scam[p] & ok
        return (scam, self.laundering[p] & ok & ~scam,
                np.where(ok, self.typ[p], -1).astype(np.int32))

    def subset(self, tids: Iterable) -> dict:
        """The map restricted to ``tids``: {id: (is_scam, typology, detail)} for those of
        them it holds."""
        want = list(dict.fromkeys(x for x in tids if x is not None))
        pos = self.positions(want)
        out = {}
        for tid, p in zip(want, pos.tolist(), strict=True):
            if p >= 0:
                c = int(self.typ[p])
                out[tid] = (bool(self.scam[p]), None if c < 0 else self.typ_names[c],
                            self.detail[p].as_py())
        return out

    def items(self):
        """(id, (is_scam, typology, detail)) of every transfer in the map (slow: tests)."""
        return self.subset(self.ids.to_pylist()).items()


def subset(transfer_truth, tids: Iterable) -> dict:
    """``transfer_truth`` (a :class:`TransferTruth` or a plain dict) restricted to
    ``tids``."""
    if isinstance(transfer_truth, TransferTruth):
        return transfer_truth.subset(tids)
    return {t: transfer_truth[t] for t in tids if t in transfer_truth}


def judged(transfer_truth, tids) -> tuple:
    """(scam, laundering) boolean arrays over ``tids`` (Arrow strings or a list) by the
    ground truth's map (a :class:`TransferTruth` or a plain dict); an id it lacks is
    neither."""
    if isinstance(transfer_truth, TransferTruth):
        scam, laund, _ = transfer_truth.at(transfer_truth.positions(tids))
        return scam, laund
    ids = tids.to_pylist() if isinstance(tids, (pa.Array, pa.ChunkedArray)) else list(tids)
    none = (False, None, None)
    vals = [transfer_truth.get(t, none) for t in ids]
    return (np.fromiter((bool(v[0]) for v in vals), bool, len(vals)),
            np.fromiter((not v[0] and v[2] == "laundering" for v in vals), bool, len(vals)))
