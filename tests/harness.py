"""`./run_local.sh test`: start the Pub/Sub emulator(s), run pytest, stop them.

By default the suite runs on ``cores + 1`` pytest-xdist workers (the tests of one
module stay on one worker: ``tests/conftest.py`` picks ``--dist loadfile`` and the order),
and each worker gets an emulator of its own: the harness starts one per worker, passes
their hosts in SAFETYNET_TEST_EMULATORS, and each worker sets
PUBSUB_EMULATOR_HOST to its own before it imports a test. Two streaming jobs on two
workers never share an emulator, whatever project ids their tests pick.

Serially: ``-n 0`` (or SAFETYNET_TEST_WORKERS=0): one process, one emulator. Any ``-n``,
``--numprocesses``, ``--dist`` or ``-p no:xdist`` given here is passed on as it is.

Tests that need the emulator read PUBSUB_EMULATOR_HOST; where gcloud's emulator is not
installed they are skipped with that reason, and under CI=true each such skip is turned
into a failure of the run instead (tests/conftest.py: reported as an error when the skip
comes from a ``skipif`` mark, as a failure when from ``pytest.skip`` in the test).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import pytest

from connectors import emulator

EMULATORS_VAR = "SAFETYNET_TEST_EMULATORS"  # comma-separated hosts, one per xdist worker
WORKERS_VAR = "SAFETYNET_TEST_WORKERS"


def _has_xdist() -> bool:
    import importlib.util

    return importlib.util.find_spec("xdist") is not None


def _user_chose(argv: list[str]) -> bool:
    """Whether the command line already says how to distribute (or not to)."""
    for i, a in enumerate(argv):
        if a in ("-n", "--numprocesses", "--dist") or a.startswith(
                ("-n=", "--numprocesses=", "--dist=")) or (a.startswith("-n") and a[2:].isdigit()):
            return True
        if a == "-p" and i + 1 < len(argv) and argv[i + 1] == "no:xdist":
            return True
        if a == "-pno:xdist":
            return True
    return False


def workers(argv: list[str], env: Optional[dict] = None) -> int:
    """How many xdist workers to add to ``argv``: 0 when the command line chose already,
    when SAFETYNET_TEST_WORKERS says 0, or when pytest-xdist is missing; else
    SAFETYNET_TEST_WORKERS or ``cores + 1`` on a machine of 2 or more cores: the emulator
    tests wait on the wall clock (a streaming job's start, paced publishing, a compressed
    hold), and the extra worker keeps the cores busy meanwhile (3 workers on this 2-core
    machine: 258.8 s against 285.4 s for 2, whole suite on a fresh clone)."""
    env = os.environ if env is None else env
    if _user_chose(argv):
        return 0
    want = env.get(WORKERS_VAR, "").strip()
    cores = os.cpu_count() or 1
    n = int(want) if want else (cores + 1 if cores >= 2 else 1)
    if n <= 1:
        return 0
    if not _has_xdist():
        print("[test] pytest-xdist is not installed: running serially "
              "(pip install -r requirements.lock)")
        return 0
    return n


def emulators_wanted(argv: list[str], n: int) -> int:
    """One emulator per worker; one when serial. With an explicit ``-n K`` on the command
    line, K of them."""
    if n:
        return n
    for i, a in enumerate(argv):
        v = None
        if a in ("-n", "--numprocesses") and i + 1 < len(argv):
            v = argv[i + 1]
        elif a.startswith(("-n=", "--numprocesses=")):
            v = a.split("=", 1)[1]
        elif a.startswith("-n") and a[2:].isdigit():
            v = a[2:]
        if v is not None:
            if v.isdigit():
                return max(1, int(v))
            return min(2, os.cpu_count() or 1)  # "auto" / "logical"
    return 1


def start_emulators(count: int) -> list:
    """Start ``count`` emulators at once (their JVMs warm up side by side), then wait for
    each; [] when gcloud's emulator is not installed."""
    launcher = emulator.find_emulator()
    if launcher is None:
        return []
    started = []
    try:
        for _ in range(count):
            started.append(emulator.Emulator(launcher))
        for emu in started:
            emu.wait_ready()
    except BaseException:
        for emu in started:
            emu.stop()
        raise
    return started


def main(argv: list[str]) -> int:
    argv = list(argv)
    n = workers(argv)
    if n:
        argv = ["-n", str(n)] + argv
    emus: list = []
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        emus = start_emulators(emulators_wanted(argv, n))
        if not emus:
            print("[test] gcloud's Pub/Sub emulator is not installed: emulator tests will "
                  + ("FAIL (CI=true)" if os.environ.get("CI", "").lower() == "true"
                     else "skip"))
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = emus[0].host
            os.environ[EMULATORS_VAR] = ",".join(e.host for e in emus)
            print(f"[test] Pub/Sub emulator{'s' if len(emus) > 1 else ''} on "
                  + ", ".join(e.host for e in emus))
    if n:
        print(f"[test] {n} pytest-xdist workers (serially: -n 0)")
    try:
        return pytest.main(argv)
    finally:
        for emu in emus:
            emu.stop()
        if emus:
            print(f"[test] Pub/Sub emulator{'s' if len(emus) > 1 else ''} stopped")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
