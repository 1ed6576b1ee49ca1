"""Blacklist snapshots: load the contract files and real vendor lists into a compact lookup.

Formats (picked from the file name, suffix and contents, or forced with ``fmt``):

* ``avro`` / ``parquet`` — ``BlacklistUpdate`` rows (the contract), applied in event-time
  order (file order for ties). ``ADD`` lists the address under its ``source``; ``REMOVE``
  withdraws that source's listing, and the address leaves the list when no source lists it.
* ``mew`` — MyEtherWallet darklist JSON (``[{address, comment, date}]``), source
  ``mew_darklist``.
* ``ofac`` — OFAC SDN text lists, one address per line (``ofac_sdn_addresses_<NET>.txt``),
  source ``ofac_sdn``. Bitcoin / Tron addresses are kept as given.
* ``scamsniffer`` — a JSON array of addresses, source ``scamsniffer``.
* ``forta`` — Forta CSV (``address, etherscan_tag, ...``), source ``forta``.
* ``union`` — CSV ``address, n_sources, sources`` with ``;``-separated sources.
* ``txt`` / ``csv`` with an ``address`` column — source = the file's stem.

Malformed entries (a ``0x`` address that is not 0x + 40 hex digits, empty lines or values)
are reported in ``problems`` with their line or entry number, never raised.

Memory: EVM addresses are stored as 20-byte ``bytes`` keys, other addresses as ``str``, each
mapped to a small int indexing a tuple of distinct (interned) source tuples.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from schemas.codecs import CodecError, is_evm_address, normalize_address

FORMATS = ("avro", "parquet", "mew", "ofac", "scamsniffer", "forta", "union", "txt", "csv")

Key = bytes | str


def _key(address: str) -> Key:
    """The storage key of an address: 20 bytes for EVM (any case), else the stripped str."""
    if len(address) == 42 and address[0] == "0" and (address[1] == "x" or address[1] == "X"):
        try:
            k = bytes.fromhex(address[2:])
        except ValueError:
            return address
        return k if len(k) == 20 else address
    stripped = address.strip()
    if len(stripped) != len(address):
        return _key(stripped)
    return address


def _display(key: Key) -> str:
    return "0x" + key.hex() if isinstance(key, bytes) else key


class BlacklistSnapshot:
    """An immutable blacklist: normalised address -> tuple of the sources that list it."""

    __slots__ = ("_index", "_combos", "_version")

    def __init__(self, entries: Mapping[str, Iterable[str]] | None = None,
                 version: str | None = None) -> None:
        b = _Builder()
        for address, sources in (entries or {}).items():
            b.add(normalize_address(address), tuple(sources))
        self._index, self._combos = b.index, tuple(b.combos)
        self._version = version

    @classmethod
    def _from_builder(cls, b: _Builder, version: str | None = None) -> BlacklistSnapshot:
        snap = cls.__new__(cls)
        snap._index, snap._combos, snap._version = b.index, tuple(b.combos), version
        return snap

    def lookup(self, address: str) -> tuple[str, ...] | None:
        """The sources listing ``address`` (normalised first), or None if it is not listed."""
        i = self._index.get(_key(address))
        return None if i is None else self._combos[i]

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and _key(address) in self._index

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[str]:
        return (_display(k) for k in self._index)

    def items(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """(address, sources) pairs, addresses in their normalised text form."""
        combos = self._combos
        return ((_display(k), combos[i]) for k, i in self._index.items())

    @property
    def sources(self) -> frozenset[str]:
        """Every source name that lists at least one address."""
        used = set(self._index.values())
        return frozenset(s for i in used for s in self._combos[i])

    @property
    def version(self) -> str:
        """The given version, or the first 12 hex digits of a sha256 of the sorted content."""
        if self._version is None:
            # Order-free digest in constant memory: sum of per-entry blake2b, then sha256.
            combos, index = self._combos, self._index
            rank = {c: r for r, c in enumerate(sorted(set(combos)))}
            tags = [b"%d" % rank[c] for c in combos]  # combo id -> its rank, load-order free
            blake, frombytes = hashlib.blake2b, int.from_bytes
            total = 0
            for k, i in index.items():
                key = k if isinstance(k, bytes) else b"s:" + k.encode()
                total += frombytes(blake(key + b"|" + tags[i], digest_size=16).digest(), "big")
            h = hashlib.sha256(b"\n".join(";".join(c).encode() for c in sorted(rank)))
            h.update(b"%d|%d" % (len(index), total & ((1 << 128) - 1)))
            self._version = h.hexdigest()[:12]
        return self._version

    def __repr__(self) -> str:
        return f"BlacklistSnapshot({len(self)} addresses, version={self.version!r})"


class _Builder:
    """Mutable state while loading: key -> combo id, with distinct source tuples shared."""

    def __init__(self) -> None:
        self.index: dict[Key, int] = {}
        self.combos: list[tuple[str, ...]] = []
        self._combo_ids: dict[tuple[str, ...], int] = {}

    def combo(self, sources: Iterable[str]) -> int:
        t = tuple(sorted({sys.intern(s) for s in sources}))
        i = self._combo_ids.get(t)
        if i is None:
            i = self._combo_ids[t] = len(self.combos)
            self.combos.append(t)
        return i

    def add_id(self, key: Key, cid: int) -> None:
        old = self.index.get(key)
        if old is None or old == cid:
            self.index[key] = cid
        else:
            self.index[key] = self.combo(self.combos[old] + self.combos[cid])

    def add(self, address: str, sources: tuple[str, ...]) -> None:
        self.add_id(_key(address), self.combo(sources))

    def remove(self, address: str, source: str) -> None:
        key = _key(address)
        old = self.index.get(key)
        if old is None:
            return
        rest = tuple(s for s in self.combos[old] if s != source)
        if rest:
            self.index[key] = self.combo(rest)
        else:
            del self.index[key]


def _check_entry(raw: object, where: str, problems: list[str]) -> str | None:
    """The normalised address of one vendor entry, or None (a problem is recorded)."""
    if not isinstance(raw, str):
        problems.append(f"{where}: address is not a string: {raw!r}")
        return None
    a = raw.strip()
    if not a:
        problems.append(f"{where}: empty address")
        return None
    if a[:2] in ("0x", "0X"):
        if not is_evm_address(a):
            problems.append(f"{where}: malformed EVM address {a!r} "
                            f"({len(a) - 2} characters after 0x, expected 40 hex digits)")
            return None
        return a.lower()
    if any(c.isspace() for c in a):
        problems.append(f"{where}: address contains whitespace: {a!r}")
        return None
    return a


def detect_format(path: Path) -> str:
    """Guess a blacklist file's format from its name and first bytes."""
    name = path.name.lower()
    suffix = path.suffix.lower()
    if suffix in (".avro", ".parquet"):
        return suffix[1:]
    if suffix == ".txt":
        return "ofac" if name.startswith("ofac") else "txt"
    if suffix == ".json":
        if "mew" in name or "darklist" in name:
            return "mew"
        with open(path, encoding="utf-8") as f:
            head = f.read(4096).lstrip()
        return "mew" if head.startswith("[") and head[1:].lstrip().startswith("{") \
            else "scamsniffer"
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            header = [h.strip().lower() for h in next(csv.reader(f), [])]
        if "sources" in header:
            return "union"
        if "etherscan_tag" in header or "forta" in name:
            return "forta"
        return "csv"
    raise CodecError(f"{path}: cannot tell the blacklist format (expected one of "
                     f"{', '.join(FORMATS)})")


def _load_contract(path: Path, b: _Builder, problems: list[str], as_of: int | None) -> None:
    from schemas.codecs import read_records
    from schemas.rows import BlacklistUpdate

    events = []
    for n, r in enumerate(read_records(path, "BlacklistUpdate", source="blacklist"), 1):
        if not isinstance(r, BlacklistUpdate):
            problems.append(f"{path.name}: record {n}: {r.error}")
            continue
        if as_of is not None and r.event_time > as_of:
            continue
        events.append((r.event_time, n, r.action == "ADD", r.address, sys.intern(r.source)))
    events.sort()
    for _, _, add, address, source in events:
        if add:
            b.add(address, (source,))
        else:
            b.remove(address, source)


def _load_lines(path: Path, b: _Builder, problems: list[str], source: str) -> None:
    cid = b.combo((source,))
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            problems.append(f"{path.name}:{n}: empty line")
            continue
        a = _check_entry(line, f"{path.name}:{n}", problems)
        if a is not None:
            b.add_id(_key(a), cid)


def _load_json(path: Path, b: _Builder, problems: list[str], source: str) -> None:
    cid = b.combo((source,))
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except ValueError as e:
            raise CodecError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, list):
        raise CodecError(f"{path}: expected a JSON array, got {type(data).__name__}")
    for n, entry in enumerate(data, 1):
        where = f"{path.name}: entry {n}"
        if isinstance(entry, dict):
            if "address" not in entry:
                problems.append(f"{where}: no 'address' key")
                continue
            entry = entry["address"]
        a = _check_entry(entry, where, problems)
        if a is not None:
            b.add_id(_key(a), cid)


def _load_csv(path: Path, b: _Builder, problems: list[str], source: str, union: bool) -> None:
    default = b.combo((source,))
    cache: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        header = [h.strip().lower() for h in next(rows, [])]
        if "address" not in header:
            raise CodecError(f"{path}: no 'address' column in the header {header}")
        ai = header.index("address")
        si = header.index("sources") if union and "sources" in header else -1
        for n, row in enumerate(rows, 2):
            if not row:
                problems.append(f"{path.name}:{n}: empty line")
                continue
            raw = row[ai] if ai < len(row) else ""
            if len(raw) == 42 and raw[:2] == "0x":
                try:
                    key: Key = bytes.fromhex(raw[2:])
                    if len(key) != 20:
                        raise ValueError(raw)
                except ValueError:
                    problems.append(f"{path.name}:{n}: malformed EVM address {raw!r} "
                                    "(expected 0x + 40 hex digits)")
                    continue
            else:
                a = _check_entry(raw, f"{path.name}:{n}", problems)
                if a is None:
                    continue
                key = _key(a)
            cid = default
            if si >= 0 and si < len(row):
                s = row[si]
                cid = cache.get(s, -1)
                if cid < 0:
                    names = [x.strip() for x in s.split(";") if x.strip()]
                    cid = cache[s] = b.combo(names) if names else default
            b.add_id(key, cid)


def _load_into(path: Path, b: _Builder, problems: list[str], fmt: str | None,
               as_of: int | None) -> None:
    if not path.is_file():
        raise CodecError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    try:
        if fmt in ("avro", "parquet"):
            _load_contract(path, b, problems, as_of)
        elif fmt == "ofac":
            _load_lines(path, b, problems, "ofac_sdn")
        elif fmt == "txt":
            _load_lines(path, b, problems, path.stem)
        elif fmt == "mew":
            _load_json(path, b, problems, "mew_darklist")
        elif fmt == "scamsniffer":
            _load_json(path, b, problems, "scamsniffer")
        elif fmt == "forta":
            _load_csv(path, b, problems, "forta", union=False)
        elif fmt == "union":
            _load_csv(path, b, problems, path.stem, union=True)
        elif fmt == "csv":
            _load_csv(path, b, problems, path.stem, union=False)
        else:
            raise CodecError(f"{path}: unknown blacklist format {fmt!r} (expected one of "
                             f"{', '.join(FORMATS)})")
    except UnicodeDecodeError as e:
        raise CodecError(f"{path}: not UTF-8 text: {e}") from e


def load_many(paths: Iterable[str | Path], fmt: str | None = None, as_of: int | None = None,
              version: str | None = None) -> tuple[BlacklistSnapshot, list[str]]:
    """Load and merge several blacklist files (sources are unioned per address)."""
    b = _Builder()
    problems: list[str] = []
    for p in paths:
        _load_into(Path(p), b, problems, fmt, as_of)
    return BlacklistSnapshot._from_builder(b, version), problems
