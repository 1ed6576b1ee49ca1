"""Codecs: the only place that turns bytes and files into rows (``schemas.rows``) and back.

* ``validate`` turns a dict (from Avro, Parquet or JSON) into a row, or a ``DeadLetter`` whose
  ``error`` a person understands. Checks are precomputed per record name (hot path).
* Files: ``write_records`` / ``RecordWriter`` / ``read_records`` / ``read_batches`` for
  ``.avro`` (fastavro, deflate, fixed sync marker: same rows, same bytes) and ``.parquet``
  (pyarrow, row groups of ``ROW_GROUP_SIZE``).
* Pub/Sub payloads: ``encode_json`` / ``decode_json``, ``encode_avro`` / ``decode_avro``
  (schemaless Avro).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from itertools import compress, count, islice, repeat
from operator import and_, eq, ge, is_, itemgetter, le, ne, not_, truth
from pathlib import Path
from typing import Any, NamedTuple

import fastavro

from schemas import rows as _rows
from schemas.rows import FIELDS, ROW_TYPES, DeadLetter

SCHEMA_DIR = Path(__file__).resolve().parent
ROW_GROUP_SIZE = 65536
FORMATS = ("avro", "parquet")

# Timestamps must fall within years 2000..2100 (inclusive), in epoch milliseconds.
MIN_TS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS = 4_133_980_800_000 - 1  # 2100-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)

_EVM_RE = re.compile(r"0[xX][0-9a-fA-F]{40}\Z")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
# a decimal whose first character is not "-": the fast test of a decimal field
_UNSIGNED_RE = re.compile(r"\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_ADDRESS_FIELDS = frozenset({"to_address", "suspect_address", "address"})


class CodecError(ValueError):
    """A file or payload that cannot be read at all (missing, corrupt, wrong format)."""


class _Invalid(Exception):
    """Raised by a field check; the message is the DeadLetter's ``error``."""


# --- addresses -------------------------------------------------------------------------
def is_evm_address(addr: str) -> bool:
    """True for ``0x`` followed by exactly 40 hex digits (any case)."""
    return _EVM_RE.match(addr) is not None


def normalize_address(addr: str, network: str | None = None) -> str:
    """Normalise an address: EVM (0x + 40 hex) lower-cased, anything else only stripped.

    Bitcoin, Tron, Solana and internal account ids are case-sensitive and kept as given.
    ``network`` is accepted for callers that know it; the EVM shape alone decides.

    >>> normalize_address(" 0xAbCdEf0123456789aBcDeF0123456789AbCdEf01 ")
    '0xabcdef0123456789abcdef0123456789abcdef01'
    >>> normalize_address("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "BTC")
    '1BoatSLRHtKNngkdXEeobR76b53LETtpyT'
    """
    a = addr.strip()
    if len(a) == 42 and _EVM_RE.match(a) is not None:
        return a.lower()
    return a


# --- schemas ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def load_schema(record_name: str) -> dict:
    """The parsed Avro schema of a record (``schemas/<record_name>.avsc``), cached."""
    if record_name not in FIELDS:
        raise CodecError(f"unknown record {record_name!r} (expected one of {', '.join(FIELDS)})")
    with open(SCHEMA_DIR / f"{record_name}.avsc", encoding="utf-8") as f:
        return fastavro.parse_schema(json.load(f))


@functools.lru_cache(maxsize=None)
def arrow_schema(record_name: str) -> Any:
    """The pyarrow schema of a record: same columns, timestamps ``timestamp[ms, UTC]``."""
    import pyarrow as pa

    types = {"string": pa.string(), "decimal": pa.string(), "long": pa.int64(),
             "int": pa.int32(), "double": pa.float64(), "boolean": pa.bool_(),
             "timestamp": pa.timestamp("ms", tz="UTC"), "array<string>": pa.list_(pa.string())}
    fields = []
    for name, kind, nullable in FIELDS[record_name]:
        t = pa.string() if kind.startswith("enum:") else types[kind]
        fields.append(pa.field(name, t, nullable=nullable))
    return pa.schema(fields)


# --- field checks ----------------------------------------------------------------------
def _typename(v: Any) -> str:
    return type(v).__name__


def _check_string(name: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is str:
            return v
        raise _Invalid(f"{name} must be a string, got {_typename(v)}")
    return check


def _check_address(name: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is str:
            v = v.strip()
            if len(v) == 42 and _EVM_RE.match(v) is not None:
                return v.lower()
            return v
        raise _Invalid(f"{name} must be a string, got {_typename(v)}")
    return check


def _to_ms(name: str, v: Any) -> int:
    """Epoch ms from int, datetime or ISO-8601 / digit string; raises _Invalid."""
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        return (v - _EPOCH) // _ONE_MS
    if isinstance(v, str):
        s = v.strip()
        if s.isdigit():
            return int(s)
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise _Invalid(f"{name} is not a timestamp: {v!r} "
                           "(expected epoch milliseconds or ISO-8601)") from None
        return _to_ms(name, dt)
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    raise _Invalid(f"{name} must be epoch milliseconds, an ISO-8601 string or a datetime, "
                   f"got {_typename(v)}")


def _check_timestamp(name: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is not int:
            v = _to_ms(name, v)
        if MIN_TS <= v <= MAX_TS:
            return v
        raise _Invalid(f"{name} out of range: {v} (years 2000..2100)")
    return check


def _check_double(name: str, nonneg: bool) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        t = type(v)
        if t is not float:
            if t is int:
                v = float(v)
            else:
                raise _Invalid(f"{name} must be a number, got {_typename(v)}")
        if v - v != 0.0:  # nan or inf
            raise _Invalid(f"{name} is not finite: {v!r}")
        if nonneg and v < 0.0:
            raise _Invalid(f"{name} is negative: {v!r}")
        return v
    return check


def _check_decimal(name: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is not str:
            if isinstance(v, Decimal) or (type(v) is int):
                v = str(v)
            else:
                raise _Invalid(f"{name} must be a decimal string, got {_typename(v)}")
        if _DECIMAL_RE.match(v) is None:
            try:
                d = Decimal(v)
            except (InvalidOperation, ValueError):
                d = None
            if d is not None and not d.is_finite():
                raise _Invalid(f"{name} is not finite: {v!r}")
            raise _Invalid(f"{name} is not a number: {v!r}")
        if v[0] == "-" and Decimal(v) != 0:
            raise _Invalid(f"{name} is negative: {v!r}")
        return v
    return check


def _check_bool(name: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is True or v is False:
            return v
        raise _Invalid(f"{name} must be a boolean, got {_typename(v)}")
    return check


def _check_int(name: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is int:
            return v
        raise _Invalid(f"{name} must be an integer, got {_typename(v)}")
    return check


def _check_long(name: str) -> Callable[[Any], Any]:
    return _check_int(name)


def _check_enum(name: str, values: tuple[str, ...]) -> Callable[[Any], Any]:
    allowed = frozenset(values)
    expected = ", ".join(values)

    def check(v: Any) -> Any:
        if v in allowed and type(v) is str:
            return v
        if type(v) is not str:
            raise _Invalid(f"{name} must be a string, got {_typename(v)}")
        raise _Invalid(f"unknown {name} {v!r} (expected one of {expected})")
    return check


def _check_str_list(name: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is not list:
            if isinstance(v, tuple):
                v = list(v)
            else:
                raise _Invalid(f"{name} must be a list of strings, got {_typename(v)}")
        for i, item in enumerate(v):
            if type(item) is not str:
                raise _Invalid(f"{name}[{i}] must be a string, got {_typename(item)}")
        return v
    return check


def _make_check(name: str, kind: str) -> Callable[[Any], Any]:
    if kind == "string":
        return _check_address(name) if name in _ADDRESS_FIELDS else _check_string(name)
    if kind == "timestamp":
        return _check_timestamp(name)
    if kind == "double":
        return _check_double(name, nonneg=name in ("usd_value", "claimed_loss_usd"))
    if kind == "decimal":
        return _check_decimal(name)
    if kind == "boolean":
        return _check_bool(name)
    if kind == "int":
        return _check_int(name)
    if kind == "long":
        return _check_long(name)
    if kind == "array<string>":
        return _check_str_list(name)
    if kind.startswith("enum:"):
        return _check_enum(name, getattr(_rows, kind[5:]))
    raise ValueError(f"unknown kind {kind!r} for field {name!r}")


class _Spec(NamedTuple):
    row_type: type
    names: tuple[str, ...]
    arrays: tuple[int, ...]  # positions of array fields (to_wire makes them lists)
    convert: Callable[[dict], Any]  # dict -> row; raises _Invalid


def _slow_check(name: str, kind: str, nullable: bool) -> Callable[[Any], Any]:
    """The full check of one field, None / empty handling included (the slow path)."""
    check = _make_check(name, kind)
    is_str = kind in ("string", "decimal") or kind.startswith("enum:")

    def slow(v: Any) -> Any:
        if v is None or (is_str and v == ""):
            if nullable:
                return None
            if v is None:
                raise _Invalid(f"missing required field {name!r}")
            raise _Invalid(f"required field {name!r} is empty")
        return check(v)
    return slow


def _fast_test(i: int, name: str, kind: str, env: dict) -> str | None:
    """A Python expression that is True when ``v{i}`` is valid as is (None: no fast path)."""
    v = f"v{i}"
    if kind == "string" and name not in _ADDRESS_FIELDS:
        return f"type({v}) is str and {v} != ''"
    if kind == "timestamp":
        return f"type({v}) is int and {MIN_TS} <= {v} <= {MAX_TS}"
    if kind == "double":
        low = " and v >= 0.0".replace("v", v) if name in ("usd_value", "claimed_loss_usd") else ""
        return f"type({v}) is float and {v} - {v} == 0.0{low}"
    if kind == "boolean":
        return f"({v} is True or {v} is False)"
    if kind == "int" or kind == "long":
        return f"type({v}) is int"
    if kind == "decimal":
        return f"type({v}) is str and _dec({v}) is not None and {v}[0] != '-'"
    if kind.startswith("enum:"):
        env[f"_e{i}"] = frozenset(getattr(_rows, kind[5:]))
        return f"type({v}) is str and {v} in _e{i}"
    return None


@functools.lru_cache(maxsize=None)
def _spec(record_name: str) -> _Spec:
    if record_name not in FIELDS:
        raise CodecError(f"unknown record {record_name!r} (expected one of {', '.join(FIELDS)})")
    fields = FIELDS[record_name]
    env: dict[str, Any] = {"_dec": _DECIMAL_RE.match, "_row": ROW_TYPES[record_name]}
    lines = ["def convert(data):", "    get = data.get"]
    for i, (name, kind, nullable) in enumerate(fields):
        env[f"_s{i}"] = _slow_check(name, kind, nullable)
        lines.append(f"    v{i} = get({name!r})")
        test = _fast_test(i, name, kind, env)
        if test is None:
            lines.append(f"    v{i} = _s{i}(v{i})")
        else:
            lines.append(f"    if not ({test}):")
            lines.append(f"        v{i} = _s{i}(v{i})")
    lines.append(f"    return _row({', '.join(f'v{i}' for i in range(len(fields)))})")
    exec(compile("\n".join(lines), f"<validate {record_name}>", "exec"), env)  # noqa: S102
    arrays = tuple(i for i, (_, k, _) in enumerate(fields) if k == "array<string>")
    return _Spec(ROW_TYPES[record_name], tuple(f[0] for f in fields), arrays, env["convert"])


# --- validate --------------------------------------------------------------------------
def _payload_text(data: Any, raw: bytes | str | None) -> str:
    if raw is not None:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            return bytes(raw).decode("utf-8", errors="replace")
        return str(raw)
    try:
        return json.dumps(data, default=str, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(data)


def _dead(source: str, data: Any, raw: bytes | str | None, error: str, at: int) -> DeadLetter:
    return DeadLetter(source, _payload_text(data, raw), error, at)


def validate(record_name: str, data: dict, source: str, raw: bytes | str | None = None,
             at: int = 0) -> Any:
    """Turn a dict into the row type of ``record_name``, or a ``DeadLetter`` saying why not.

    Required fields missing, None or empty are errors; nullable fields may be missing (older
    schemas) and an empty string there reads as None. Unknown keys are ignored.
    """
    spec = _spec(record_name)
    if type(data) is not dict:
        return _dead(source, data, raw, f"expected an object, got {_typename(data)}", at)
    try:
        return spec.convert(data)
    except _Invalid as e:
        return _dead(source, data, raw, str(e), at)


# --- validate, a batch at a time -------------------------------------------------------
# A file's records are checked column by column: a column whose values all pass their
# field's fast test (``_fast_test``) is taken as it is, in a few C-level passes (types,
# min / max, ``in``); any other column value by value through the field's full check. A
# record with a value that fails its check is validated alone (``validate``), so its
# DeadLetter says what one record's validation says (the first bad field, its payload).
def _types(col: Any) -> set:
    return set(map(type, col))


def _all(col: Any, known: type | None, t: type) -> bool:
    """Every value of ``col`` is exactly a ``t`` (``known``: the type the decoder gives every
    value of this column, None: not known)."""
    return known is t if known is not None else _types(col) == {t}


def _failing(mask: Iterable[Any]) -> list:
    """The positions where ``mask`` is false."""
    return list(compress(count(), map(not_, mask)))


# A batch check: ``(values, positions)``: the column's values as validated, but for the
# values at ``positions``, which fail the field's fast test (``_fast_test``) and are checked
# one by one; None: check every value one by one (a column of mixed types).
def _bulk_string(col: Any, known: type | None) -> Any:
    if not _all(col, known, str):
        return None
    return col, ([] if "" not in col else _failing(col))


def _bulk_address(col: Any, known: type | None) -> Any:
    """Addresses not empty and stripped already (``_check_address``): EVM ones lower-cased."""
    if not _all(col, known, str):
        return None
    stripped = list(map(str.strip, col))
    failing = [] if "" not in col and all(map(eq, stripped, col)) else \
        _failing(map(and_, map(truth, col), map(eq, stripped, col)))
    low = list(map(str.lower, col))
    changed = list(compress(count(), map(ne, low, col)))
    if not changed:
        return col, failing
    out = list(col)
    for i in changed:
        v = out[i]
        if len(v) == 42 and _EVM_RE.match(v) is not None:
            out[i] = low[i]
    return out, failing


def _bulk_timestamp(col: Any, known: type | None) -> Any:
    if not _all(col, known, int):
        return None
    if min(col) >= MIN_TS and max(col) <= MAX_TS:
        return col, []
    return col, _failing(map(and_, map(le, repeat(MIN_TS), col), map(ge, repeat(MAX_TS), col)))


def _bulk_double(nonneg: bool) -> Callable[[Any, Any], Any]:
    def bulk(col: Any, known: type | None) -> Any:
        if not _all(col, known, float):
            return None
        if all(map(math.isfinite, col)) and (not nonneg or min(col) >= 0.0):
            return col, []
        ok = map(math.isfinite, col)
        if nonneg:
            ok = map(and_, ok, map(le, repeat(0.0), col))
        return col, _failing(ok)
    return bulk


def _bulk_decimal(col: Any, known: type | None) -> Any:
    """Digits with at most one "." (``isdecimal`` is the regex's ``\\d``), else the regex
    itself: the fast test."""
    if not _all(col, known, str):
        return None
    n = len(col)
    plain = list(map(str.isdecimal, map(str.replace, col, repeat(".", n), repeat("", n),
                                        repeat(1, n))))
    if all(plain):
        return col, []
    return col, [i for i in _failing(plain) if _UNSIGNED_RE.match(col[i]) is None]


def _bulk_type(t: type) -> Callable[[Any, Any], Any]:
    def bulk(col: Any, known: type | None) -> Any:
        return (col, []) if _all(col, known, t) else None
    return bulk


def _bulk_enum(values: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    allowed = frozenset(values)

    def bulk(col: Any, known: type | None) -> Any:
        if not _all(col, known, str):
            return None
        if set(col) <= allowed:
            return col, []
        return col, _failing(map(allowed.__contains__, col))
    return bulk


def _make_bulk(name: str, kind: str) -> Callable[[Any, Any], Any] | None:
    """A column's batch check (above): the batch form of ``_fast_test``."""
    if kind == "string":
        return _bulk_address if name in _ADDRESS_FIELDS else _bulk_string
    if kind == "timestamp":
        return _bulk_timestamp
    if kind == "double":
        return _bulk_double(name in ("usd_value", "claimed_loss_usd"))
    if kind == "decimal":
        return _bulk_decimal
    if kind == "boolean":
        return _bulk_type(bool)
    if kind in ("int", "long"):
        return _bulk_type(int)
    if kind.startswith("enum:"):
        return _bulk_enum(getattr(_rows, kind[5:]))
    return None


def _nullable_bulk(bulk: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A nullable field: None is valid (and stays None); the other values as ``bulk``. A
    column with both and a value that fails: every value one by one."""
    def check(col: Any, known: type | None) -> Any:
        if known is not None or None not in col:
            return bulk(col, known)
        rest = [v for v in col if v is not None]
        if not rest:
            return col, []
        got = bulk(rest, None)
        return (col, []) if got is not None and got[0] is rest and not got[1] else None
    return check


def _per_value(slow: Callable[[Any], Any], col: Any, bad: set) -> list:
    """Values checked one by one (``slow(v)`` is what ``convert`` makes of ``v``); the rows
    of the values that fail go into ``bad``, their values kept as they are."""
    out: list = []
    append = out.append
    for i, v in enumerate(col):
        try:
            append(slow(v))
        except _Invalid:
            append(v)
            bad.add(i)
    return out


def _check_column(bulk: Callable[[Any, Any], Any] | None, slow: Callable[[Any], Any],
                  col: Any, bad: set, known: type | None) -> Any:
    """A column's values as validated (``col`` itself when validation changes none of its
    valid ones); rows with a value that fails go into ``bad``."""
    got = bulk(col, known) if bulk is not None else None
    if got is None:
        out = _per_value(slow, col, bad)
    else:
        out, failing = got
        if failing:
            out = list(out)
            for i in failing:
                try:
                    out[i] = slow(col[i])
                except _Invalid:
                    bad.add(i)
    return col if out is col or all(map(is_, out, col)) else out


@functools.lru_cache(maxsize=None)
def _columns(record_name: str) -> tuple:
    """Per field of the record: (its batch check or None, its full check)."""
    out = []
    for name, kind, nullable in FIELDS[record_name]:
        bulk = _make_bulk(name, kind)
        if bulk is not None and nullable:
            bulk = _nullable_bulk(bulk)
        out.append((bulk, _slow_check(name, kind, nullable)))
    return tuple(out)


def validate_columns(record_name: str, cols: list, source: str,
                     record: Callable[[int], Any], known: tuple | None = None,
                     tuples: list | None = None) -> list:
    """``[validate(record_name, record(i), source) for i in range(n)]``, from the records'
    columns (``cols``: one sequence of values per field of ``FIELDS[record_name]``, in
    order, None where a record lacks it; ``record(i)``: the i-th record as a dict), checked a
    column at a time. ``known``: per field, the type the decoder gives every value of its
    column (an Avro ``string``, a Parquet column of doubles without nulls...), or None.
    ``tuples``: the records' values as tuples in field order (``cols`` transposed), made
    rows as they are when validation changed no value.

    >>> from schemas.rows import CaseOutcome
    >>> rows = validate_columns("CaseOutcome", [["c1", "c2"], [MIN_TS, 5], ["ADDRESS"] * 2,
    ...                         ["0xab", "0xcd"], [True, False]], "outcomes",
    ...                         lambda i: {"case_id": "c2", "event_time": 5,
    ...                                    "subject_type": "ADDRESS", "subject_id": "0xcd",
    ...                                    "is_scam": False})
    >>> rows[0].case_id, rows[0].event_time, rows[0].is_scam
    ('c1', 946684800000, True)
    >>> rows[1].error
    'event_time out of range: 5 (years 2000..2100)'
    """
    bad: set = set()
    checked = []
    for i, (col, (bulk, slow)) in enumerate(zip(cols, _columns(record_name), strict=True)):
        checked.append(_check_column(bulk, slow, col, bad, known[i] if known else None))
    same = tuples is not None and all(map(is_, checked, cols))
    rows = list(map(functools.partial(tuple.__new__, ROW_TYPES[record_name]),
                    tuples if same else zip(*checked, strict=True)))
    for i in sorted(bad):
        rows[i] = validate(record_name, record(i), source)
    return rows


def to_wire(row: Any) -> dict:
    """A row as a plain dict (timestamps are ints already; arrays become lists)."""
    spec = _spec(type(row).__name__)
    d = dict(zip(spec.names, row, strict=True))
    for i in spec.arrays:
        v = row[i]
        if v is not None and type(v) is not list:
            d[spec.names[i]] = list(v)
    return d


def _record_name(row: Any) -> str:
    name = type(row).__name__
    if name not in ROW_TYPES or not isinstance(row, ROW_TYPES[name]):
        raise TypeError(f"not a row type of schemas.rows: {name}")
    return name


# --- Pub/Sub payloads ------------------------------------------------------------------
def encode_json(row: Any) -> bytes:
    """UTF-8 JSON of a row; timestamps as epoch-ms ints."""
    return json.dumps(to_wire(row), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def decode_json(record_name: str, data: bytes | str, source: str, at: int = 0) -> Any:
    """A row from a JSON payload, or a DeadLetter (invalid UTF-8 / JSON, not an object...)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            return _dead(source, None, data, f"payload is not valid UTF-8: {e.reason} at byte "
                         f"{e.start}", at)
    else:
        text = data
    try:
        obj = json.loads(text)
    except ValueError as e:
        return _dead(source, None, text, f"payload is not valid JSON: {e}", at)
    if type(obj) is not dict:
        return _dead(source, None, text,
                     f"payload is not a JSON object (got {type(obj).__name__})", at)
    return validate(record_name, obj, source, raw=text, at=at)


def encode_avro(row: Any) -> bytes:
    """Schemaless Avro bytes of a row, with the record's ``.avsc``."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, load_schema(_record_name(row)), to_wire(row))
    return buf.getvalue()


def decode_avro(record_name: str, data: bytes, source: str, at: int = 0) -> Any:
    """A row from schemaless Avro bytes, or a DeadLetter when they do not decode."""
    buf = io.BytesIO(data)
    try:
        obj = fastavro.schemaless_reader(buf, load_schema(record_name), None)
    except Exception as e:  # fastavro raises many types on garbage
        return _dead(source, None, data, f"payload is not valid Avro for {record_name}: "
                     f"{type(e).__name__}: {e}", at)
    if buf.tell() != len(data):
        return _dead(source, None, data, f"payload is not valid Avro for {record_name}: "
                     f"{len(data) - buf.tell()} trailing bytes", at)
    return validate(record_name, obj, source, raw=data, at=at)


# --- files -----------------------------------------------------------------------------
def _fmt_of(path: Path, fmt: str | None = None) -> str:
    f = fmt or path.suffix.lstrip(".").lower()
    if f not in FORMATS:
        raise CodecError(f"{path}: unknown format {f!r} (expected .avro or .parquet)")
    return f


def sync_marker(record_name: str) -> bytes:
    """The fixed 16-byte Avro sync marker of a record (so output is byte-identical)."""
    return hashlib.sha256(f"safetynet.{record_name}".encode()).digest()[:16]


class RecordWriter:
    """Write rows one at a time to an ``.avro`` or ``.parquet`` file, in constant memory.

    >>> import tempfile, os
    >>> from schemas.rows import DeadLetter
    >>> p = os.path.join(tempfile.mkdtemp(), "dl.avro")
    >>> with RecordWriter(p, "DeadLetter", "avro") as w:
    ...     w.write(DeadLetter("transfers", "{}", "missing required field 'x'", 0))
    >>> w.count
    1
    """

    def __init__(self, path: str | Path, record_name: str, fmt: str | None = None,
                 row_group_size: int = ROW_GROUP_SIZE) -> None:
        self.path = Path(path)
        self.record_name = record_name
        self.fmt = _fmt_of(self.path, fmt)
        self.count = 0
        self._spec = _spec(record_name)
        self._row_group_size = row_group_size
        self._fo: Any = None
        self._avro: Any = None
        self._pq: Any = None
        self._cols: list[list] = []

    def __enter__(self) -> RecordWriter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the file (``__enter__`` does this)."""
        if self.fmt == "avro":
            self._fo = open(self.path, "wb")
            self._avro = fastavro.write.Writer(self._fo, load_schema(self.record_name),
                                               codec="deflate",
                                               sync_marker=sync_marker(self.record_name))
        else:
            import pyarrow.parquet as pq

            self._pq = pq.ParquetWriter(str(self.path), arrow_schema(self.record_name),
                                        compression="zstd")
            self._cols = [[] for _ in self._spec.names]

    def write(self, row: Any) -> None:
        """Write one row (a NamedTuple of this record)."""
        if self._avro is not None:
            self._avro.write(to_wire(row))
        else:
            for col, v in zip(self._cols, row, strict=True):
                col.append(v)
            if len(self._cols[0]) >= self._row_group_size:
                self._flush_parquet()
        self.count += 1

    def write_many(self, rows: Iterable[Any]) -> int:
        """Write rows; return how many."""
        n = 0
        for row in rows:
            self.write(row)
            n += 1
        return n

    def _flush_parquet(self) -> None:
        import pyarrow as pa

        schema = arrow_schema(self.record_name)
        arrays = [pa.array(col, type=f.type) for col, f in zip(self._cols, schema, strict=True)]
        self._pq.write_table(pa.Table.from_arrays(arrays, schema=schema),
                             row_group_size=self._row_group_size)
        self._cols = [[] for _ in self._spec.names]

    def close(self) -> None:
        """Flush and close; the file is complete (an empty file still has its schema)."""
        if self._avro is not None:
            self._avro.flush()
            self._fo.close()
            self._avro = None
        elif self._pq is not None:
            if self._cols and self._cols[0]:
                self._flush_parquet()
            self._pq.close()
            self._pq = None


def write_records(path: str | Path, record_name: str, rows: Iterable[Any],
                  fmt: str | None = None) -> int:
    """Stream rows into an ``.avro`` or ``.parquet`` file; return the row count."""
    with RecordWriter(path, record_name, fmt) as w:
        return w.write_many(rows)


class _Spliced:
    """A file read from its start with its first bytes replaced: an Avro header of our own,
    then the file's blocks (all fastavro's reader asks of a file is ``read``)."""

    def __init__(self, head: bytes, fo: Any) -> None:
        self.head, self.fo = head, fo

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.fo.read(n)
        if n is None or n < 0:
            out, self.head = self.head + self.fo.read(), b""
            return out
        out, self.head = self.head[:n], self.head[n:]
        if len(out) < n:
            out += self.fo.read(n - len(out))
        return out


# what fastavro makes of every value of a field of these types
_AVRO_TYPES = {"string": str, "long": int, "int": int, "double": float, "float": float,
               "boolean": bool}


def _is_ms(t: Any) -> bool:
    return type(t) is dict and t.get("type") == "long" \
        and t.get("logicalType") == "timestamp-millis"


# the branches a union may have beside a timestamp-millis one when that one is read as a
# plain long: none of them makes an int, so an int read comes from the timestamp branch
_NOT_INTS = frozenset({"null", "string", "boolean", "double", "float", "bytes"})


def _plain_ms(t: Any) -> Any:
    """A field's Avro type with ``timestamp-millis`` read as a plain long (also as a branch
    of a union whose other branches make no ints); None when there is none."""
    if _is_ms(t):
        return "long"
    if type(t) is list and sum(map(_is_ms, t)) == 1 \
            and all(_is_ms(x) or (type(x) is str and x in _NOT_INTS) for x in t):
        return ["long" if _is_ms(x) else x for x in t]
    return None


def _ints_reader(fo: Any, record_name: str) -> tuple[Any, dict, tuple] | None:
    """A reader of the open Avro file ``fo`` whose timestamp fields of ``record_name``
    (``timestamp-millis`` longs) come as the epoch-ms ints they hold, not as datetimes made
    to be turned back into them; with ``{field: fastavro's conversion}`` to make a record
    as fastavro reads it, and the type of every value of each field of ``record_name``
    where the file's schema decides it (``string``: str...; else None). None when the
    file's schema has no such field (or the header is not as expected: the plain reader
    reads it)."""
    try:
        fo.seek(0)
        header = fastavro.schemaless_reader(fo, fastavro.read.HEADER_SCHEMA)
        schema = json.loads(header["meta"]["avro.schema"])
        if type(schema) is not dict or schema.get("type") != "record":
            return None
        stamps = {n for n, k, _ in FIELDS[record_name] if k == "timestamp"}
        conv = fastavro.read.LOGICAL_READERS["long-timestamp-millis"]
        restore = {}
        for f in schema.get("fields", ()):
            plain = _plain_ms(f.get("type")) if f.get("name") in stamps else None
            if plain is not None:
                f["type"] = plain
                restore[f["name"]] = conv
        if not restore:
            return None
        types = {f.get("name"): _AVRO_TYPES.get(f.get("type")) if type(f.get("type")) is str
                 else None for f in schema.get("fields", ())}
        known = tuple(types.get(n) for n, _, _ in FIELDS[record_name])
        meta = dict(header["meta"])
        meta["avro.schema"] = json.dumps(schema).encode("utf-8")
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.read.HEADER_SCHEMA, {**header, "meta": meta})
        return fastavro.reader(_Spliced(buf.getvalue(), fo)), restore, known
    except Exception:  # noqa: BLE001 - anything unexpected: the plain reader
        return None


def _restored(rec: Any, restore: dict) -> Any:
    """A record as fastavro reads it with the file's own schema (timestamps as datetimes;
    raises where fastavro raises)."""
    if restore and type(rec) is dict:
        for name, conv in restore.items():
            v = rec.get(name)
            if type(v) is int:
                rec[name] = conv(v)
    return rec


def _avro_batch(record_name: str, names: tuple, recs: list, source: str,
                restore: dict, known: tuple | None) -> list:
    if _types(recs) != {dict}:
        return [validate(record_name, _restored(r, restore), source) for r in recs]
    try:  # every record has every field: one pass, then the columns at once
        if len(names) < 2:
            raise KeyError(names)
        tuples = list(map(itemgetter(*names), recs))
        cols = list(zip(*tuples, strict=True))
    except KeyError:  # a file of an older schema: None where a record lacks a field
        n = len(recs)
        tuples, cols = None, [list(map(dict.get, recs, repeat(name, n))) for name in names]
    return validate_columns(record_name, cols, source, lambda i: _restored(recs[i], restore),
                            known, tuples)


def _avro_iter(path: Path, fo: Any, rdr: Any, record_name: str, source: str,
               batch_size: int, restore: dict, known: tuple | None) -> Iterator[list]:
    """Batches of ``batch_size`` records validated (the last one shorter); a read that
    fails fails at the record it failed at, as a record-by-record read would, and its
    batch is not yielded."""
    names = _spec(record_name).names
    try:
        with fo:
            while True:
                recs: list = []
                failed = None
                try:
                    recs.extend(islice(rdr, batch_size))
                except Exception as e:  # noqa: BLE001 - raised after the records before it
                    failed = e
                batch = _avro_batch(record_name, names, recs, source, restore, known) \
                    if recs else []
                if failed is not None:
                    raise failed
                if batch:
                    yield batch
                if len(recs) < batch_size:
                    break
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(f"{path}: corrupt Avro file: {type(e).__name__}: {e}") from e


def _arrow_type(t: Any) -> type | None:
    """The Python type ``to_pylist`` gives every (non-null) value of an Arrow type, where
    it is one of the row fields' (None: other types)."""
    import pyarrow as pa

    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return str
    if pa.types.is_integer(t):
        return int
    if pa.types.is_float32(t) or pa.types.is_float64(t):
        return float
    if pa.types.is_boolean(t):
        return bool
    return None


def _parquet_iter(path: Path, pf: Any, record_name: str, source: str,
                  batch_size: int) -> Iterator[list]:
    import pyarrow as pa

    names = _spec(record_name).names
    try:
        for rb in pf.iter_batches(batch_size=batch_size):
            present = set(rb.schema.names)
            cols, known = [], []
            for name in names:
                if name not in present:
                    cols.append(None)
                    known.append(None)
                    continue
                col = rb.column(name)
                if pa.types.is_timestamp(col.type):
                    col = col.cast(pa.timestamp("ms", tz=col.type.tz), safe=False)
                    col = col.cast(pa.int64())
                cols.append(col.to_pylist())
                known.append(_arrow_type(col.type) if col.null_count == 0 else None)
            n = rb.num_rows
            if not n:
                continue
            cols = [c if c is not None else [None] * n for c in cols]
            yield validate_columns(
                record_name, cols, source,
                lambda i, c=cols: dict(zip(names, [x[i] for x in c], strict=True)),
                tuple(known))
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(f"{path}: corrupt Parquet file: {type(e).__name__}: {e}") from e


# Files whose validated batches are kept while a ``kept_reads`` block runs:
# {resolved path: {(record, source, batch size, mtime, size): [batches] or None}}
_KEPT: dict = {}


@contextlib.contextmanager
def kept_reads(paths: Iterable[str | Path]):
    """Within this block, the first complete read of each of ``paths`` (by
    :func:`read_batches`, in this process) keeps its batches, and later reads of the same
    file, record and source are served from them: the backtest reads its inputs in the
    pipeline, and its report reads them again. The rows are shared, never copied (readers
    must not change the lists)."""
    keys = [str(Path(p).resolve()) for p in paths]
    for k in keys:
        _KEPT[k] = {}
    try:
        yield
    finally:
        for k in keys:
            _KEPT.pop(k, None)


def _gc_paused(it: Iterator[list]) -> Iterator[list]:
    """``it``'s batches, each made with the cyclic garbage collector paused: a batch is
    thousands of new containers that all stay alive (the collections their allocations
    trigger would find nothing to free, and each of them traverses them again); the
    collector runs again, as it was, between batches."""
    while True:
        was = gc.isenabled()
        gc.disable()
        try:
            batch = next(it, None)
        finally:
            if was:
                gc.enable()
        if batch is None:
            return
        yield batch


def _keeping(it: Iterator[list], kept: list, slot: dict, key: tuple) -> Iterator[list]:
    for batch in it:
        kept.append(batch)
        yield batch
    slot[key] = kept  # complete: a later read is served from it


def read_batches(path: str | Path, record_name: str, source: str | None = None,
                 batch_size: int = 8192) -> Iterator[list]:
    """Lists of rows / DeadLetters from an ``.avro`` or ``.parquet`` file.

    Reads with the file's own schema (so files from other tools or older schemas read) and
    validates each record. A missing or unreadable file raises ``CodecError`` here, before
    iteration starts. Inside :func:`kept_reads`, a file read before is not read again.
    """
    p = Path(path)
    fmt = _fmt_of(p)
    _spec(record_name)
    src = source if source is not None else p.stem
    if not p.is_file():
        raise CodecError(f"{p}: no such file")
    slot = _KEPT.get(str(p.resolve())) if _KEPT else None
    if slot is not None:
        st = p.stat()
        key = (record_name, src, batch_size, st.st_mtime_ns, st.st_size)
        kept = slot.get(key)
        if kept is not None:
            return iter(kept)
        slot[key] = None
        return _keeping(_gc_paused(_read_batches(p, fmt, record_name, src, batch_size)), [],
                        slot, key)
    return _gc_paused(_read_batches(p, fmt, record_name, src, batch_size))


def _read_batches(p: Path, fmt: str, record_name: str, src: str,
                  batch_size: int) -> Iterator[list]:
    if fmt == "avro":
        fo = open(p, "rb")
        try:
            rdr = fastavro.reader(fo)
        except Exception as e:
            fo.close()
            raise CodecError(f"{p}: not a readable Avro file: {type(e).__name__}: {e}") from e
        ints = _ints_reader(fo, record_name)
        if ints is None:
            fo.seek(0)
            rdr = fastavro.reader(fo)
            return _avro_iter(p, fo, rdr, record_name, src, batch_size, {}, None)
        rdr, restore, known = ints
        return _avro_iter(p, fo, rdr, record_name, src, batch_size, restore, known)
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(p))
    except Exception as e:
        raise CodecError(f"{p}: not a readable Parquet file: {type(e).__name__}: {e}") from e
    return _parquet_iter(p, pf, record_name, src, batch_size)


def read_records(path: str | Path, record_name: str, source: str | None = None) -> Iterator[Any]:
    """Rows (or DeadLetters) from an ``.avro`` / ``.parquet`` file, streamed, validated.

    ``source`` names the input in DeadLetters (default: the file's stem).
    """
    batches = read_batches(path, record_name, source)
    return (r for batch in batches for r in batch)


def find_input(directory: str | Path, stem: str) -> Path | None:
    """``directory/stem.avro`` or ``.parquet`` if present; None if neither; error if both."""
    d = Path(directory)
    found = [d / f"{stem}.{f}" for f in FORMATS if (d / f"{stem}.{f}").is_file()]
    if len(found) > 1:
        raise CodecError(f"{d}: both {stem}.avro and {stem}.parquet exist; keep one")
    return found[0] if found else None


# --- bounds ----------------------------------------------------------------------------
MAX_USD_VALUE = 1e10  # $10 billion: above any single transfer; one 1e300 ruins every USD sum
MAX_AMOUNT = 1e30  # asset units (memecoins have large supplies; "1e400" is not an amount)


def check_bounds(row: Any, source: str, max_usd: float = MAX_USD_VALUE,
                 max_amount: float = MAX_AMOUNT) -> Any:
    """``row`` unchanged, or a ``DeadLetter`` when a money field exceeds its upper bound
    (``usd_value`` / ``claimed_loss_usd`` above ``max_usd``, ``amount`` above
    ``max_amount``): validation admits any finite number, and one absurd value would turn
    every USD figure of a run into nonsense.

    >>> from schemas.rows import Transfer
    >>> t = Transfer("t1", MIN_TS, "u", "0xab", None, "ETH", "ETH", "1e400", 5.0, "WITHDRAWAL")
    >>> check_bounds(t, "transfers").error
    'amount 1e400 exceeds the upper bound 1e+30 (--max_amount)'
    """
    bad = None
    usd = getattr(row, "usd_value", None)
    if usd is None:
        usd = getattr(row, "claimed_loss_usd", None)
        name = "claimed_loss_usd"
    else:
        name = "usd_value"
    if usd is not None and usd > max_usd:
        bad = f"{name} {usd!r} exceeds the upper bound {max_usd:g} (--max_usd_value)"
    amount = getattr(row, "amount", None)
    if bad is None and amount is not None:
        try:
            too_big = Decimal(amount) > Decimal(repr(float(max_amount)))
        except (InvalidOperation, ValueError):
            too_big = False
        if too_big:
            bad = f"amount {amount} exceeds the upper bound {max_amount:g} (--max_amount)"
    if bad is None:
        return row
    return DeadLetter(source, json.dumps(to_wire(row), sort_keys=True, default=str), bad,
                      getattr(row, "event_time", 0))


def _bound_digits(max_amount: float) -> int:
    """The most integer digits an amount may have and still be within ``max_amount`` for
    sure (10**k <= the bound); -1 when there is no such number."""
    m = Decimal(repr(float(max_amount)))
    if not m.is_finite() or m < 1:
        return -1
    return len(str(int(m))) - 1


def check_bounds_batch(batch: list, source: str, max_usd: float = MAX_USD_VALUE,
                       max_amount: float = MAX_AMOUNT) -> list:
    """``[r if type(r) is DeadLetter else check_bounds(r, source, max_usd, max_amount)
    for r in batch]``, at once where every row of the batch is within the bounds for sure
    (the batch itself is returned then): its largest USD value at most ``max_usd`` and every
    amount written without exponent in fewer characters than ``max_amount`` has integer
    digits.

    >>> from schemas.rows import Transfer
    >>> ok = Transfer("t1", MIN_TS, "u", "0xab", None, "ETH", "ETH", "12.5", 5.0, "WITHDRAWAL")
    >>> check_bounds_batch([ok], "transfers") == [ok]
    True
    >>> check_bounds_batch([ok, ok._replace(usd_value=2e10)], "transfers")[1].error
    'usd_value 20000000000.0 exceeds the upper bound 1e+10 (--max_usd_value)'
    """
    types = _types(batch)
    kinds = types - {DeadLetter}
    if len(kinds) == 1:
        (cls,) = kinds
        fields = getattr(cls, "_fields", ())
        if ("usd_value" in fields) + ("claimed_loss_usd" in fields) <= 1:
            rows = list(compress(batch, map(is_, map(type, batch), repeat(cls)))) \
                if DeadLetter in types else batch
            if _within(rows, fields, max_usd, max_amount):
                return batch
    return [r if type(r) is DeadLetter else check_bounds(r, source, max_usd, max_amount)
            for r in batch]


def _present(rows: list, i: int) -> list:
    """The rows' values of field ``i`` that are not None."""
    got = list(map(itemgetter(i), rows))
    return [v for v in got if v is not None] if None in got else got


def _within(rows: list, fields: tuple, max_usd: float, max_amount: float) -> bool:
    """Every row's money fields within the bounds, for sure (False: not known)."""
    for name in ("usd_value", "claimed_loss_usd"):
        if name in fields:
            usd = _present(rows, fields.index(name))
            if usd and not (_types(usd) == {float} and max(usd) <= max_usd):
                return False
    if "amount" in fields:
        amounts = _present(rows, fields.index("amount"))
        if amounts:
            if _types(amounts) != {str}:
                return False
            try:
                k = _bound_digits(max_amount)
            except (ValueError, TypeError, OverflowError, ArithmeticError):
                return False
            if max(map(len, amounts)) > k:
                return False
            text = "".join(amounts)  # no exponent, and no "Infinity" (not a validated amount)
            if "e" in text or "E" in text or "n" in text or "N" in text:
                return False
    return True
