"""How published model versions reach the streaming scorers: through a directory.

The Learner's streaming shell writes each :class:`~core.events.ModelVersion` it
publishes as a file under ``<dir>/<model>/`` (written to a temporary name, then renamed;
the newest :data:`KEEP` per model are kept), and every scorer polls the directory every
few seconds of processing time for files it has not read yet — the pattern of Beam's
``WatchFilePattern`` for RunInference model updates, without a side input. It works alike
on Dataflow and Flink (``gs://`` or a shared file system) and on Beam's local runner, whose
global-window side inputs block the main input until the side input is complete. The
graph stays acyclic: the file system is outside it.

A backtest does not use this: its scorers get every version of the replay as a side input
and pick exactly the latest one before each event.
"""

from __future__ import annotations

import pickle
import time
from typing import Optional

import apache_beam as beam

from core.events import ModelVersion

KEEP = 8  # files per model left in the directory
SUFFIX = ".version"


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def version_path(base: str, v: ModelVersion) -> str:
    fs = _fs()
    return fs.join(base, v.model, f"{v.event_time:015d}-{v.n_labels:012d}{SUFFIX}")


def write_version(base: str, v: ModelVersion, keep: int = KEEP) -> str:
    """Write ``v`` under ``base`` atomically; delete all but the newest ``keep``."""
    fs = _fs()
    path = version_path(base, v)
    folder = fs.join(base, v.model)
    if "://" not in base:
        import os

        os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with fs.create(tmp) as f:
        f.write(pickle.dumps(v, pickle.HIGHEST_PROTOCOL))
    if fs.exists(path):
        fs.delete([path])
    fs.rename([tmp], [path])
    files = sorted(m.path for r in fs.match([fs.join(folder, "*" + SUFFIX)])
                   for m in r.metadata_list)
    if len(files) > keep:
        fs.delete(files[:-keep])
    return path


class VersionPoller:
    """Reads versions not yet seen from ``base`` at most every ``every_s`` seconds."""

    def __init__(self, base: str, every_s: float = 2.0):
        self.base, self.every_s = base, every_s
        self._seen: set = set()
        self._next = 0.0

    def __getstate__(self):
        return {"base": self.base, "every_s": self.every_s}

    def __setstate__(self, d):
        self.__init__(d["base"], d["every_s"])

    def fetch(self, force: bool = False) -> list:
        now = time.monotonic()
        if not force and now < self._next:
            return []
        self._next = now + self.every_s
        fs = _fs()
        try:
            found = [m.path for r in fs.match([fs.join(self.base, "*", "*" + SUFFIX)])
                     for m in r.metadata_list]
        except Exception:  # noqa: BLE001 - no directory yet: no version yet
            return []
        out = []
        for path in sorted(set(found) - self._seen):
            try:
                with fs.open(path) as f:
                    v = pickle.loads(f.read())
            except Exception:  # noqa: BLE001 - deleted or half-visible: next poll
                continue
            self._seen.add(path)
            if type(v) is ModelVersion:
                out.append(v)
        return out


class PublishVersions(beam.PTransform):
    """Streaming: write every published version to ``base`` (see the module docstring)."""

    def __init__(self, base: str, label: Optional[str] = None):
        super().__init__(label)
        self.base = base

    def expand(self, versions):
        base = self.base
        return versions | "Write" >> beam.Map(lambda v: write_version(base, v))
