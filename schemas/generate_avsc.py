"""Generate ``schemas/*.avsc`` from ``schemas.rows.FIELDS``.

Run ``python -m schemas.generate_avsc`` after changing ``rows.py``; a test checks that the
files on disk match what this script would write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.rows import FIELDS

NAMESPACE = "safetynet"
SCHEMA_DIR = Path(__file__).resolve().parent

_PRIMITIVE = {"string": "string", "long": "long", "double": "double", "boolean": "boolean",
              "int": "int", "decimal": "string"}


def avro_type(kind: str) -> Any:
    """The Avro type of one FIELDS kind (without nullability)."""
    if kind == "timestamp":
        return {"type": "long", "logicalType": "timestamp-millis"}
    if kind == "array<string>":
        return {"type": "array", "items": "string"}
    if kind.startswith("enum:"):
        return "string"
    return _PRIMITIVE[kind]


def avsc(record_name: str) -> dict[str, Any]:
    """The Avro schema (as a plain dict) of one record in FIELDS."""
    fields = []
    for name, kind, nullable in FIELDS[record_name]:
        t = avro_type(kind)
        if nullable:
            fields.append({"name": name, "type": ["null", t], "default": None})
        else:
            fields.append({"name": name, "type": t})
    return {"type": "record", "name": record_name, "namespace": NAMESPACE, "fields": fields}


def render(record_name: str) -> str:
    """The exact text of ``schemas/<record_name>.avsc``."""
    return json.dumps(avsc(record_name), indent=2) + "\n"


def main(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Write one ``.avsc`` per record into ``out_dir``; return the paths written."""
    written = []
    for name in FIELDS:
        path = out_dir / f"{name}.avsc"
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(p)
