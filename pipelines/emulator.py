"""Start and stop gcloud's Pub/Sub emulator on 127.0.0.1 (for the demo and the tests).

>>> find_emulator() is None or find_emulator().name == "cloud-pubsub-emulator"
True
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
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
