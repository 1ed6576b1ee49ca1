"""A replay directory, read: its files found and counted, its records validated.

* :func:`scan_input`: the files of a replay directory (``transfers`` required;
  ``reports``, ``outcomes``, ``blacklist``; ``blacklist_snapshot``, ``profiles``,
  ``truth``), each counted from its structure, so a missing or corrupt file fails before a
  run (:class:`ReplayError`, :class:`~schemas.codecs.CodecError`).
* :func:`read_validated`: one file's valid rows and DeadLetters, the money bounds applied;
  each dead letter is stamped with the right event time: its own ``event_time`` when that
  field is valid, else that of the nearest record of the same file before it with a valid
  time (after it, for the first ones). ``safetynet validate`` and the backtest share it.

No Beam here (``safetynet validate`` stays light); the backtest's Beam read of these files
is :mod:`connectors.reader`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Optional

from schemas import codecs
from schemas.codecs import CodecError
from schemas.rows import DeadLetter

REQUIRED = ("transfers",)
OPTIONAL = ("reports", "outcomes", "blacklist")


class ReplayError(ValueError):
    """A replay directory that cannot be used (missing, not a directory, no transfers)."""


class Replay:
    """What an input directory holds: the files found, and their record counts."""

    def __init__(self, directory: Path, files: dict, totals: dict, snapshot: Optional[Path],
                 profiles: Optional[Path], truth: Optional[Path]):
        self.directory, self.files, self.totals = directory, files, totals
        self.snapshot, self.profiles, self.truth = snapshot, profiles, truth


def count_records(path: Path) -> int:
    """Records in a file, from its structure alone (Avro blocks, Parquet footer); checks
    the whole Avro file decompresses, so a corrupt file fails here, before the run."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(str(path)).metadata.num_rows
        except Exception as e:
            raise CodecError(f"{path}: not a readable Parquet file: {type(e).__name__}: {e}") \
                from e
    import fastavro

    n = 0
    try:
        with open(path, "rb") as fo:
            for block in fastavro.block_reader(fo):
                n += block.num_records
    except Exception as e:
        raise CodecError(f"{path}: not a readable Avro file: {type(e).__name__}: {e}") from e
    return n


def scan_input(input_dir: str | Path) -> Replay:
    """Find the replay files in ``input_dir``; raise ReplayError / CodecError if unusable."""
    d = Path(input_dir)
    if not d.exists():
        raise ReplayError(f"input directory {d} does not exist")
    if not d.is_dir():
        raise ReplayError(f"input {d} is not a directory")
    files, totals = {}, {}
    for name in (*REQUIRED, *OPTIONAL):
        p = codecs.find_input(d, name)
        if p is None:
            if name in REQUIRED:
                raise ReplayError(f"{d} holds no {name}.avro or {name}.parquet "
                                 f"(a replay directory needs at least {name})")
            continue
        files[name] = p.resolve()
        totals[name] = count_records(p)
    extra = {}
    for name in ("blacklist_snapshot", "profiles", "truth"):
        p = codecs.find_input(d, name)
        if p is not None:
            count_records(p)
            extra[name] = p.resolve()
    return Replay(d.resolve(), files, totals, extra.get("blacklist_snapshot"),
                  extra.get("profiles"), extra.get("truth"))


_TS = codecs._check_timestamp("event_time")


def _own_time(dead: DeadLetter) -> Optional[int]:
    """The dead record's own ``event_time``, when that field is valid."""
    try:
        data = json.loads(dead.payload)
        return _TS(data["event_time"]) if isinstance(data, dict) else None
    except Exception:  # noqa: BLE001 - anything unusable: no own time
        return None


def read_validated(path: str | Path, record_name: str, source: str,
                   max_usd: float = codecs.MAX_USD_VALUE,
                   max_amount: float = codecs.MAX_AMOUNT) -> Iterator[list]:
    """Batches of valid rows and DeadLetters (source ``source``, ``at`` = a real event time,
    see the module doc) from one replay file, the money bounds applied."""
    st = _Stamps()
    for batch in codecs.read_batches(path, record_name, source):
        batch = codecs.check_bounds_batch(batch, source, max_usd, max_amount)
        out = st.stamped(batch, source)
        if out:
            yield out
    if st.pending:  # no record of the file has a valid time: the earliest time there can be
        yield [d._replace(at=codecs.MIN_TS) for d in st.pending]


class _Stamps:
    """The dead letters' event times through a file: ``last``, the time of the latest
    record with a valid one; ``pending``, the dead letters before the first such record."""

    def __init__(self) -> None:
        self.last: Optional[int] = None
        self.pending: list = []

    def stamped(self, batch: list, source: str) -> list:
        """The batch with its dead letters stamped; rows unchanged, in the same order."""
        types = set(map(type, batch))
        if not all("event_time" in getattr(t, "_fields", ()) for t in types - {DeadLetter}):
            return self._one_by_one(batch, source)
        if DeadLetter not in types:
            return self._rows(batch, [])
        out: list = []
        prev = 0
        for i in [i for i, r in enumerate(batch) if type(r) is DeadLetter]:
            self._rows(batch[prev:i], out)
            self._dead(batch[i], source, out)
            prev = i + 1
        return self._rows(batch[prev:], out)

    def _rows(self, rows: list, out: list) -> list:
        """Valid rows, each with its event time: the pending dead letters take the first's."""
        if rows:
            if self.pending:
                out.extend(d._replace(at=rows[0].event_time) for d in self.pending)
                self.pending = []
            self.last = rows[-1].event_time
            out.extend(rows)
        return out

    def _dead(self, r: DeadLetter, source: str, out: list) -> None:
        own = _own_time(r)
        if own is not None:
            self.last = own
            if self.pending:
                out.extend(d._replace(at=own) for d in self.pending)
                self.pending = []
            out.append(r._replace(source=source, at=own))
        elif self.last is not None:
            out.append(r._replace(source=source, at=self.last))
        else:
            self.pending.append(r._replace(source=source))

    def _one_by_one(self, batch: list, source: str) -> list:
        out: list = []
        for r in batch:
            if type(r) is DeadLetter:
                self._dead(r, source, out)
            else:
                self.last = getattr(r, "event_time", self.last)
                if self.pending and self.last is not None:
                    out.extend(d._replace(at=self.last) for d in self.pending)
                    self.pending = []
                out.append(r)
        return out
