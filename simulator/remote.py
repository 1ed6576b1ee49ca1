"""A writer in a child process, so that Avro encoding and deflate of one file run on the
second core while the main process generates and writes another.

``RemoteWriters`` starts one worker process; ``open(...)`` returns an object with the
``write`` / ``count`` / ``close`` of ``codecs.RecordWriter``; rows travel in pickled
batches, and the worker writes them with ``codecs.RecordWriter`` (same bytes as writing
in-process). ``close`` does not wait; leaving the ``with`` block waits for every file and
raises if the worker failed.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from pathlib import Path
from typing import Any

from schemas import codecs

BATCH = 16384


def _worker(conn: Any) -> None:
    writers: dict[str, codecs.RecordWriter] = {}
    try:
        while True:
            msg = conn.recv()
            op = msg[0]
            if op == "open":
                _, name, path, record, fmt = msg
                w = codecs.RecordWriter(path, record, fmt)
                w.open()
                writers[name] = w
            elif op == "rows":
                write = writers[msg[1]].write
                for row in msg[2]:
                    write(row)
            elif op == "close":
                writers.pop(msg[1]).close()
            elif op == "exit":
                conn.send(("ok", None))
                return
    except BaseException:  # report to the parent, which raises
        conn.send(("error", traceback.format_exc()))


class _Handle:
    def __init__(self, owner: RemoteWriters, name: str):
        self._owner, self._name, self._buf = owner, name, []
        self.count = 0

    def write(self, row: Any) -> None:
        self._buf.append(row)
        self.count += 1
        if len(self._buf) >= BATCH:
            self._owner._send(("rows", self._name, self._buf))
            self._buf = []

    def write_many(self, rows: Any) -> int:
        n = 0
        for row in rows:
            self.write(row)
            n += 1
        return n

    def close(self) -> int:
        if self._buf:
            self._owner._send(("rows", self._name, self._buf))
            self._buf = []
        self._owner._send(("close", self._name))
        return self.count


class RemoteWriters:
    """One child process writing files; use as a context manager."""

    def __init__(self) -> None:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self._proc.start()
        child.close()

    def _send(self, msg: tuple) -> None:
        if self._conn.poll():  # the worker only speaks first when it failed
            kind, value = self._conn.recv()
            raise RuntimeError(f"writer process failed:\n{value}")
        self._conn.send(msg)

    def open(self, path: str | Path, record: str, fmt: str) -> _Handle:
        name = str(path)
        self._send(("open", name, name, record, fmt))
        return _Handle(self, name)

    def __enter__(self) -> RemoteWriters:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._send(("exit",))
                kind, value = self._conn.recv()
                if kind == "error":
                    raise RuntimeError(f"writer process failed:\n{value}")
        finally:
            self._conn.close()
            self._proc.join(timeout=60)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()


class LocalWriters:
    """The same interface as ``RemoteWriters``, writing in this process (used when this
    process already runs threads, where forking is unsafe)."""

    def open(self, path: str | Path, record: str, fmt: str) -> Any:
        w = codecs.RecordWriter(path, record, fmt)
        w.open()
        close = w.close

        def close_and_count() -> int:
            close()
            return w.count

        w.close = close_and_count  # type: ignore[method-assign]
        return w

    def __enter__(self) -> LocalWriters:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def writers() -> RemoteWriters | LocalWriters:
    """A child-process writer when forking is safe (no other threads), else in-process."""
    import threading

    if threading.active_count() == 1 and "fork" in mp.get_all_start_methods():
        return RemoteWriters()
    return LocalWriters()
