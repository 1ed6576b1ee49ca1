"""File I/O of state checkpoints through Beam's ``FileSystems``: the same calls on a local
path, ``gs://`` (or any file system Beam has: ``s3://``, ``hdfs://``, ...).

A checkpoint is a "directory" of files (``transforms.checkpoint``); object stores have no
directories, so a directory here is a path prefix: it exists when a file is under it.
Every function takes the directory or file as a string (a ``Path`` is accepted for local
paths; never turn a ``gs://`` path into a ``Path``: it would lose a slash).

>>> join("gs://b/state", "manifest.json"), join("/tmp/state/", "manifest.json")
('gs://b/state/manifest.json', '/tmp/state/manifest.json')
>>> is_local("gs://b/x"), is_local("/tmp/x"), is_local("state")
(False, True, True)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Union

PathLike = Union[str, Path]


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def is_local(path: PathLike) -> bool:
    return "://" not in str(path)


def join(directory: PathLike, name: str) -> str:
    d = str(directory)
    return (d.rstrip("/") + "/" + name) if not is_local(d) else os.path.join(d, name)


def exists(path: PathLike) -> bool:
    return _fs().exists(str(path))


def is_dir(directory: PathLike) -> bool:
    """A local directory, or a prefix with at least one file under it."""
    if is_local(directory):
        return Path(directory).is_dir()
    return bool(files(directory, "*"))


def files(directory: PathLike, pattern: str) -> list[str]:
    """Full paths of the files directly in ``directory`` whose names match ``pattern``,
    sorted."""
    if is_local(directory) and not Path(directory).is_dir():
        return []
    got = _fs().match([join(directory, pattern)])[0].metadata_list
    return sorted(m.path for m in got)


def name(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def open_read(path: PathLike):
    """A binary file object (as stored: no decompression)."""
    from apache_beam.io.filesystem import CompressionTypes

    return _fs().open(str(path), compression_type=CompressionTypes.UNCOMPRESSED)


def read_text(path: PathLike) -> str:
    """The file's text; FileNotFoundError when it does not exist."""
    if not exists(path):
        raise FileNotFoundError(str(path))
    with open_read(path) as f:
        return f.read().decode("utf-8")


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then rename it into place (a
    reader sees the old file or the whole new one)."""
    from apache_beam.io.filesystem import CompressionTypes

    fs, path = _fs(), str(path)
    if is_local(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = path + ".tmp"
    with fs.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(text.encode("utf-8"))
    if not is_local(path) and fs.exists(path):
        fs.delete([path])
    fs.rename([tmp], [path])


def sha256(path: PathLike) -> str:
    h = hashlib.sha256()
    with open_read(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_all(directory: PathLike) -> None:
    """Delete ``directory`` and everything in it (a prefix: every file under it)."""
    if is_local(directory):
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        return
    fs = _fs()
    found = [m.path for m in fs.match([join(directory, "**")])[0].metadata_list]
    if found:
        fs.delete(found)
