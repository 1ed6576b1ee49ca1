"""Reading a replay's and a backtest's files for the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from schemas import codecs
from schemas.rows import ROW_TYPES
from schemas.streams import OUTPUTS


def rows(path: Optional[Path], row_type: type) -> list:
    """The rows of ``row_type`` in the file at ``path`` (none without a file)."""
    if path is None:
        return []
    return [r for r in codecs.read_records(path, row_type.__name__) if type(r) is row_type]


def output(out_dir: Path, name: str) -> list:
    """The rows of the backtest output ``name`` (``holds``, ``freezes``, ...)."""
    return output_named(out_dir, name, name)


def output_named(out_dir: Path, file_name: str, name: str) -> list:
    """Rows of output ``name`` written under another file name (``shadow_holds``, ...)."""
    p = codecs.find_input(out_dir, file_name)
    if p is None:
        return []
    rt = OUTPUTS[name]
    row_type = ROW_TYPES[rt]
    return [r for r in codecs.read_records(p, rt) if type(r) is row_type]


def read_scores(out_dir: Path):
    """``scores.parquet`` as columns (:class:`report.scores.ScoreColumns`: iterated, the
    tuples (transfer_id, event_time, to_address, usd_value, score, model_version,
    blacklisted, lookalike_of)); empty without the file. Only these columns are read, one
    at a time, and kept as Arrow and numpy arrays (no Python object per row); the
    destinations are read again when the threshold sweep asks (not kept)."""
    from report.columns import Coded
    from report.scores import ScoreColumns

    p = out_dir / "scores.parquet"
    if not p.exists():
        return ScoreColumns.of([])
    import pyarrow as pa
    import pyarrow.parquet as pq

    def col(name: str, coded: bool = False):  # one column at a time: one column's copies
        return pq.read_table(str(p), columns=[name],
                             read_dictionary=[name] if coded else None).column(0)

    return ScoreColumns(col("transfer_id"), col("event_time").cast(pa.int64()).to_numpy(),
                        lambda: col("to_address"), col("usd_value").to_numpy(),
                        col("score").to_numpy(), Coded.of(col("model_version", True)),
                        col("blacklisted").fill_null(False).to_numpy(zero_copy_only=False),
                        col("lookalike_of"))


SCORE_COLUMNS = ("transfer_id", "event_time", "to_address", "usd_value", "score",
                 "model_version", "blacklisted", "lookalike_of")


def read_jsonl(path: Path) -> list:
    """The rows of a JSON-lines file a backtest wrote (none if it is absent)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
