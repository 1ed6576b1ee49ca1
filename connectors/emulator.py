"""Child processes of local runs: gcloud's Pub/Sub emulator on 127.0.0.1 (``start``) and
the streaming job (``start_process`` / ``stop_process``), for the demo, the tests and the
benchmarks; and a Cloud Storage emulator (``start_storage``) for ``gs://`` checkpoints.

>>> find_emulator() is None or find_emulator().name == "cloud-pubsub-emulator"
True
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional


def find_emulator() -> Optional[Path]:
    """The emulator's launcher script, or None when gcloud's emulator is not installed."""
    candidates = []
    env = os.environ.get("SAFETYNET_PUBSUB_EMULATOR")
    if env:
        candidates.append(Path(env))
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk = Path(os.path.realpath(gcloud)).parent.parent
        candidates.append(sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator")
    candidates += [Path(p) / "platform/pubsub-emulator/bin/cloud-pubsub-emulator" for p in (
        "/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk")]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK) and shutil.which("java"):
            return c
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """A running emulator process; ``host`` is what PUBSUB_EMULATOR_HOST must hold."""

    def __init__(self, launcher: Path, port: Optional[int] = None):
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._dir = tempfile.mkdtemp(prefix="pubsub-emulator-")
        self._log = open(os.path.join(self._dir, "emulator.log"), "wb")
        self.proc = subprocess.Popen(
            [str(launcher), "--host=127.0.0.1", f"--port={self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Pub/Sub emulator exited early; see {self._log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)  # polling a process we started, not waiting on a pipeline
        raise RuntimeError(f"Pub/Sub emulator not ready after {timeout:.0f}s; see {self._log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def start(port: Optional[int] = None) -> Optional[Emulator]:
    """Start the emulator and wait until it accepts connections; None when not installed."""
    launcher = find_emulator()
    if launcher is None:
        return None
    emu = Emulator(launcher, port)
    emu.wait_ready()
    return emu


def start_process(project: str, args: list[str], env: Optional[dict] = None,
                  log_path: Optional[str] = None):
    """Start ``python -m pipelines.stream --project P ARGS`` as a child process (its own
    session, so ``stop_process`` can end it and its threads cleanly)."""
    root = str(Path(__file__).resolve().parent.parent)
    e = dict(os.environ if env is None else env)
    e["PYTHONPATH"] = root + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.stream", "--project", project,
                             *args], cwd=root, env=e, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log_path = log_path
    return proc


def stop_process(proc, kill: bool = False, timeout: float = 15.0) -> None:
    """SIGINT (or SIGKILL with ``kill``) the job's process group and wait for it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGINT)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


class StorageEmulator:
    """A Cloud Storage emulator (the ``gcp-storage-emulator`` package) in this process, in
    memory, with ``bucket`` created: Beam's ``gs://`` file system talks to it when
    ``STORAGE_EMULATOR_HOST`` holds :attr:`host` (in this process and its children)."""

    def __init__(self, bucket: str, port: Optional[int] = None):
        from gcp_storage_emulator.server import create_server

        self.port = port or free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.server = create_server("127.0.0.1", self.port, in_memory=True,
                                    default_bucket=bucket)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


def start_storage(bucket: str) -> Optional[StorageEmulator]:
    """A running Cloud Storage emulator with ``bucket``; None when the package is missing."""
    try:
        import gcp_storage_emulator  # noqa: F401
    except ImportError:
        return None
    return StorageEmulator(bucket)
