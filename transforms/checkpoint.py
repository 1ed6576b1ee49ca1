"""State checkpoints: every keyed step's live state, written at the end of a chunk of event
time (or of a run) and read at the start of the next, or by the streaming job.

A checkpoint is a directory::

    manifest.json        format, River and Beam versions, the end of event time it holds
                         state for, and the SHA-256 of every file below
    state-*.avro         (step, key, state) records: key and state pickled (see
                         core.machine.StateRecord); sharded, written by Beam
    versions-*.avro      the newest published model version of each model

It is the same idea as Flink savepoints and Dataflow's ``--update``: state that is small per
key and versioned. A checkpoint written by another format version or River version is
refused with one line (models are pickled River objects); a missing or altered file is an
error before anything runs (:func:`check`).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Optional

import apache_beam as beam

from connectors import statefs
from core.events import ModelVersion, Seed

# 2: the machines keep what grows with a key's history in logs (core.machine.Log),
# pickled with their items; a format-1 state (plain lists) would not load into them.
# 3: Actions keeps the pending holds not due soon, SenderProfile its payees, in tables
# (core.machine.Table): a format-2 state would not load into them.
FORMAT = 3
MANIFEST = "manifest.json"
VERSIONS_STEP = "__versions__"
SCHEMA = {
    "type": "record", "name": "StateRecord", "namespace": "safetynet",
    "fields": [{"name": "step", "type": "string"}, {"name": "key", "type": "bytes"},
               {"name": "state", "type": "bytes"}],
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: one line saying why."""


def _versions() -> dict:
    import river

    return {"river": river.__version__, "beam": beam.__version__}


def _to_record(rec) -> dict:
    return {"step": rec.step, "key": rec.key, "state": rec.state}


def _version_record(v: ModelVersion) -> dict:
    return {"step": VERSIONS_STEP, "key": v.model.encode(),
            "state": pickle.dumps(v, pickle.HIGHEST_PROTOCOL)}


def _newest(versions):
    return max(versions, key=lambda v: (v.event_time, v.n_labels))


class WriteCheckpoint(beam.PTransform):
    """``{"state": PCollection of StateRecord, "versions": PCollection of ModelVersion}``
    -> Avro files under ``directory`` (the manifest is written by :func:`seal` once the
    pipeline has finished)."""

    def __init__(self, directory: str, label: Optional[str] = None):
        super().__init__(label)
        self.directory = directory

    def expand(self, parts: dict):
        d = self.directory
        (parts["state"] | "Records" >> beam.Map(_to_record)
         | "WriteState" >> beam.io.WriteToAvro(f"{d}/state", SCHEMA,
                                                file_name_suffix=".avro"))
        return (parts["versions"]
                | "ByModel" >> beam.Map(lambda v: (v.model, v))
                | "Newest" >> beam.CombinePerKey(_newest)
                | "VersionRecords" >> beam.Map(lambda kv: _version_record(kv[1]))
                | "WriteVersions" >> beam.io.WriteToAvro(
                    f"{d}/versions", SCHEMA, file_name_suffix=".avro", num_shards=1))


def seal(directory: str | Path, end_time: int, extra: Optional[dict] = None) -> dict:
    """Write the manifest of a checkpoint whose files are complete."""
    d = str(directory)
    files = statefs.files(d, "*.avro")
    manifest = {"format": FORMAT, **_versions(), "end_time": end_time,
                "files": {statefs.name(p): statefs.sha256(p) for p in files}}
    manifest.update(extra or {})
    statefs.write_text(statefs.join(d, MANIFEST), json.dumps(manifest, indent=1,
                                                             sort_keys=True))
    return manifest


def check(directory: str | Path) -> dict:
    """The manifest of a usable checkpoint, or :class:`CheckpointError` saying why not:
    no manifest, another format or River version, a file missing or altered."""
    d = str(directory)
    if not statefs.is_dir(d):
        raise CheckpointError(f"state checkpoint {d}: no such directory")
    try:
        manifest = json.loads(statefs.read_text(statefs.join(d, MANIFEST)))
    except FileNotFoundError:
        raise CheckpointError(f"state checkpoint {d}: no {MANIFEST} (not a checkpoint, or "
                              "one whose writing did not finish)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"state checkpoint {d}: unreadable {MANIFEST} ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else "?"
        older = (" (an earlier release's state layout: write the checkpoint again with "
                 "this release)") if isinstance(got, int) and got < FORMAT else ""
        raise CheckpointError(f"state checkpoint {d}: format {got}, this release reads "
                              f"format {FORMAT}{older}")
    mine = _versions()
    if manifest.get("river") != mine["river"]:
        raise CheckpointError(f"state checkpoint {d}: written with River "
                              f"{manifest.get('river')}, this is River {mine['river']} "
                              "(pickled models need the same version)")
    for name, digest in sorted(manifest.get("files", {}).items()):
        p = statefs.join(d, name)
        if not statefs.exists(p):
            raise CheckpointError(f"state checkpoint {d}: {name} is missing")
        if statefs.sha256(p) != digest:
            raise CheckpointError(f"state checkpoint {d}: {name} is corrupt (checksum "
                                  "differs from the manifest)")
    return manifest


def read_versions(directory: str | Path) -> list:
    """The model versions a checkpoint holds (small: one per model)."""
    import fastavro

    out = []
    for p in statefs.files(directory, "versions-*.avro"):
        with statefs.open_read(p) as f:
            for r in fastavro.reader(f):
                out.append(pickle.loads(r["state"]))
    return out


def _seed(record: dict, at: int) -> tuple:
    state, waiting = pickle.loads(record["state"])
    return record["step"], Seed(pickle.loads(record["key"]), at, state, tuple(waiting))


class ReadSeeds(beam.PTransform):
    """A checkpoint's states as :class:`~core.events.Seed` events, one PCollection
    per step label (``labels``), for ``SafetyNet(seeds=...)``."""

    def __init__(self, directory: str, labels: tuple, at: int,
                 label: Optional[str] = None):
        super().__init__(label)
        self.directory, self.labels, self.at = directory, tuple(labels), at

    def expand(self, pbegin):
        labels, at = self.labels, self.at
        files = statefs.files(self.directory, "state-*.avro")
        if not files:
            return {name: pbegin | f"None{name}" >> beam.Create([]) for name in labels}
        seeds = (pbegin
                 | "Files" >> beam.Create(files)
                 | "Read" >> beam.io.ReadAllFromAvro()
                 | "Seeds" >> beam.Map(_seed, at))
        parts = seeds | "ByStep" >> beam.Partition(
            lambda kv, n: labels.index(kv[0]) if kv[0] in labels else n - 1,
            len(labels) + 1)
        return {name: parts[i] | f"Values{name}" >> beam.Values()
                for i, name in enumerate(labels)}
