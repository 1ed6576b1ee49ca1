"""The backtest's output files, written from a bounded pipeline.

* :class:`WriteDecisionFiles` — decision streams -> one ``NAME.avro`` / ``NAME.parquet``
  file each (:mod:`schemas.codecs`), rows sorted by the stream's :data:`FILE_ORDER` key, so a
  rerun writes byte-identical files;
* :class:`WriteJsonLines` — dict rows -> one sorted ``NAME.jsonl`` file each;
* :class:`WriteScores` — scored transfers -> ``scores.parquet``.

Each file is gathered on one worker and written once, to a temporary name renamed in place
(a half-written file is never left under the final name).

>>> record_of("shadow_warning_holdout"), record_of("holds")
('outreach', 'holds')
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import apache_beam as beam
from apache_beam.metrics import Metrics

from core.casefiles import latest_cases
from schemas import codecs
from schemas.rows import DeadLetter
from schemas.streams import CASES, FILE_ORDER, OUTPUTS
from transforms.faces import Gather

SCORES_FILE = "scores.parquet"
SCORE_COLUMNS = ("transfer_id", "event_time", "user_id", "to_address", "network", "asset",
                 "usd_value", "score", "model_version", "blacklisted", "lookalike_of")
SHADOW_PREFIX = "shadow_"
# Files of another output's records: the warnings a holdout withheld are outreach.
RECORDS_OF = {"warning_holdout": "outreach"}


def record_of(file_name: str) -> str:
    """The output (a key of :data:`OUTPUTS`) whose records the file ``file_name`` holds."""
    name = file_name.removeprefix(SHADOW_PREFIX)
    return RECORDS_OF.get(name, name)


def sort_key(name: str) -> Callable:
    """The row order of output ``name``'s file: time field, id field, then the whole row."""
    tf, idf = FILE_ORDER[name]

    def key(row):
        return (getattr(row, tf), getattr(row, idf), repr(row))
    return key


def write_empty(path: Path, file_name: str, fmt: str) -> None:
    """An empty file of ``file_name``'s records (a runner may skip a write of nothing)."""
    codecs.write_records(path, OUTPUTS[record_of(file_name)], [], fmt)


def latest_cases_file(path: Path, fmt: str) -> None:
    """Keep only the latest version of each case in a merged ``cases`` file (a case's state
    carries from chunk to chunk, so each chunk wrote the version it had then)."""
    if not path.exists():
        return
    rows = [r for r in codecs.read_records(path, OUTPUTS[CASES]) if type(r) is not DeadLetter]
    rows = sorted(latest_cases(rows), key=sort_key(CASES))
    tmp = path.with_name(f".{path.name}.tmp")
    codecs.write_records(tmp, OUTPUTS[CASES], rows, fmt)
    os.replace(tmp, path)


def score_row(s) -> tuple:
    """The columns of ``scores.parquet`` (:data:`SCORE_COLUMNS`) from a ScoredTransfer."""
    ft = s.featured
    t = ft.transfer
    return (t.transfer_id, t.event_time, t.user_id, t.to_address, t.network, t.asset,
            float(t.usd_value), float(s.score), s.model_version, bool(ft.blacklist),
            ft.lookalike_of)


def write_scores(path: Path, rows) -> None:
    """Score rows, sorted by event time then transfer id, as a zstd Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(rows, key=lambda r: (r[1], r[0]))
    cols = list(zip(*rows, strict=False)) if rows else [[] for _ in SCORE_COLUMNS]
    types = [pa.string(), pa.timestamp("ms", tz="UTC"), pa.string(), pa.string(), pa.string(),
             pa.string(), pa.float64(), pa.float64(), pa.string(), pa.bool_(), pa.string()]
    schema = pa.schema([pa.field(n, t) for n, t in zip(SCORE_COLUMNS, types, strict=True)])
    table = pa.Table.from_arrays([pa.array(list(c), type=t) for c, t in
                                  zip(cols, types, strict=True)], schema=schema)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, str(tmp), compression="zstd")
    os.replace(tmp, path)


class _WriteRecords(beam.DoFn):
    """One gathered list of an output's rows -> ``out_dir/FILE_NAME.fmt``, sorted."""

    def __init__(self, file_name: str, out_dir: str, fmt: str):
        self.file_name, self.out_dir, self.fmt = file_name, out_dir, fmt
        self.name = record_of(file_name)

    def process(self, rows):
        path = Path(self.out_dir) / f"{self.file_name}.{self.fmt}"
        rows = sorted(rows, key=sort_key(self.name))
        tmp = path.with_name(f".{path.name}.tmp")
        codecs.write_records(tmp, OUTPUTS[self.name], rows, self.fmt)
        os.replace(tmp, path)
        Metrics.counter("Write", f"{self.file_name}_written").inc(len(rows))
        yield self.file_name, len(rows)


class _WriteJsonLines(beam.DoFn):
    """One gathered list of dict rows -> ``out_dir/NAME.jsonl``, lines sorted."""

    def __init__(self, name: str, out_dir: str):
        self.name, self.out_dir = name, out_dir

    def process(self, rows):
        path = Path(self.out_dir) / f"{self.name}.jsonl"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as f:
            for line in sorted(json.dumps(r, sort_keys=True) for r in rows):
                f.write(line + "\n")
        os.replace(tmp, path)
        yield self.name, len(rows)


class _WriteScores(beam.DoFn):
    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def process(self, rows):
        write_scores(Path(self.out_dir) / SCORES_FILE, rows)
        yield "scores", len(rows)


class WriteDecisionFiles(beam.PTransform):
    """``{file name: PCollection}`` -> ``out_dir/PREFIX+NAME.fmt`` per entry (fmt ``avro`` or
    ``parquet``). A name is an output of :data:`OUTPUTS` or in :data:`RECORDS_OF`; ``cases``
    keeps the latest version of each case. Returns ``{file name: PCollection of (file name,
    rows written)}``."""

    def __init__(self, out_dir: str | Path, fmt: str, prefix: str = ""):
        super().__init__()
        self.out_dir, self.fmt, self.prefix = str(out_dir), fmt, prefix

    def expand(self, pcolls: dict):
        written = {}
        for name, pc in pcolls.items():
            rows = pc | f"Gather{name.title()}" >> Gather()
            if name == CASES:  # every version of each case -> the latest one
                rows = rows | "LatestCases" >> beam.Map(latest_cases)
            written[name] = rows | f"Write{name.title()}" >> beam.ParDo(
                _WriteRecords(self.prefix + name, self.out_dir, self.fmt))
        return written


class WriteJsonLines(beam.PTransform):
    """``{name: PCollection of dicts}`` -> ``out_dir/NAME.jsonl`` per entry, lines sorted
    (global window only)."""

    def __init__(self, out_dir: str | Path):
        super().__init__()
        self.out_dir = str(out_dir)

    def expand(self, pcolls: dict):
        return {name: (pc | f"Gather{name}" >> Gather()
                       | f"Write{name}" >> beam.ParDo(_WriteJsonLines(name, self.out_dir)))
                for name, pc in pcolls.items()}


class WriteScores(beam.PTransform):
    """ScoredTransfers -> ``out_dir/scores.parquet`` (:data:`SCORE_COLUMNS`)."""

    def __init__(self, out_dir: str | Path):
        super().__init__()
        self.out_dir = str(out_dir)

    def expand(self, scored):
        return (scored | "ScoreRows" >> beam.Map(score_row)
                | "Gather" >> Gather()
                | "Write" >> beam.ParDo(_WriteScores(self.out_dir)))
