"""Model snapshots as files (the shell's side of :mod:`core.models`, which makes and
reads their bytes): where a model's snapshot goes, writing one atomically, loading a file or
a directory of them, local or on any Beam filesystem such as ``gs://``."""

from __future__ import annotations

import hashlib

from core.models import SnapshotError, read_snapshot


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def snapshot_file(base: str, name: str) -> str:
    """Where the model ``name`` is snapshotted under the directory ``base``."""
    return _fs().join(base, f"{name}.pkl")


def write_snapshot_bytes(data: bytes, path: str) -> str:
    """Write snapshot bytes to ``path`` atomically (write then rename). Returns ``path``."""
    fs = _fs()
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent and "://" not in parent and not fs.exists(parent):
        try:
            fs.mkdirs(parent)
        except OSError:
            pass  # made concurrently
    tmp = f"{path}.tmp-{hashlib.sha1(data).hexdigest()[:8]}"
    with fs.create(tmp) as f:
        f.write(data)
    if fs.exists(path):
        fs.delete([path])
    fs.rename([tmp], [path])
    return path


def load_snapshot(path: str) -> dict:
    """``{model name: ModelState}`` from a snapshot file, or from every ``*.pkl`` in a
    directory (what the Learner's snapshots are written as); each state's ``origin`` is its
    snapshot id."""
    fs = _fs()
    files = [m.path for r in fs.match([fs.join(path, "*.pkl")]) for m in r.metadata_list] \
        if not path.endswith(".pkl") else []
    if not files:
        files = [path]
    out: dict = {}
    for fp in sorted(files):
        try:
            with fs.open(fp) as f:
                data = f.read()
        except Exception as e:  # noqa: BLE001 - filesystem errors vary by scheme
            raise SnapshotError(f"{fp}: cannot read model snapshot ({e})") from e
        states, sid = read_snapshot(data, fp)
        for name, s in states.items():
            s.fill_defaults()
            s.origin = sid
            s.finished = False
            out[name] = s
    return out
