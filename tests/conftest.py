"""Suite-wide hooks.

* Under ``CI=true`` a test skipped because the Pub/Sub emulator is missing (its skip reason
  names PUBSUB_EMULATOR_HOST) fails instead: CI must run the emulator tests, and a green run
  that skipped them would hide a broken install. Elsewhere they skip with the reason.
* Parallel runs (pytest-xdist, ``-n``; ``tests/harness.py`` adds ``-n 2``):
  - each worker talks to its own emulator (the harness lists one host per worker in
    SAFETYNET_TEST_EMULATORS; ``gwN`` takes the N-th);
  - the tests of one module run on one worker (``--dist loadfile``): a module-scoped
    fixture is built once, and a streaming job started by one is never started twice on
    the same subscriptions. (Finer groups, ``--dist loadgroup``, do not work with pytest
    9.2: xdist 3.8 renames a grouped test through ``item._nodeid``, which pytest 9.2 no
    longer reads, so every test would become a unit of its own.);
  - the order handed to the workers: the longest module first, by the durations of the
    last run here (``tests/.durations.json``, written at the end of every run, not
    versioned); a module never timed here takes its wall seconds from
    ``tests/module_seconds.json`` (versioned: a fresh clone's first run is ordered too;
    refresh it with ``python -m tests.save_module_seconds`` after a full run);
    otherwise a test counts 1 s, or 30 s if it needs the emulator (such a test waits on
    the wall clock: started early, it overlaps with the rest). Nothing here names a test
    file: a new file is ordered by the same rules.
* ``--cpu-durations N``: the N slowest test phases in CPU-seconds (the test's process and
  the children it waited for), a measure that a busy shared machine distorts less than
  wall time (``--durations``).
* At the end of a parallel run: per worker, its tests, the wall and CPU-seconds of their
  phases and when its last report came (whether the workers ended together).
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import pytest

EMULATOR_VAR = "PUBSUB_EMULATOR_HOST"
EMULATORS_VAR = "SAFETYNET_TEST_EMULATORS"
_CPU = pytest.StashKey[dict]()
_PAST = pytest.StashKey[dict]()
DURATIONS = Path(__file__).resolve().parent / ".durations.json"
MODULE_SECONDS = Path(__file__).resolve().parent / "module_seconds.json"
UNTIMED_S, UNTIMED_EMULATOR_S = 1.0, 30.0


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


# ------------------------------------------------------------------ options and workers
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N",
                     help="show the N test phases that used the most CPU-seconds "
                          "(this process and its waited-for children); 0 for all")


def _distributed(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) or hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    worker = getattr(config, "workerinput", None)
    hosts = [h for h in os.environ.get(EMULATORS_VAR, "").split(",") if h]
    if worker is not None and hosts:
        n = int(worker["workerid"].removeprefix("gw") or 0)
        os.environ[EMULATOR_VAR] = hosts[n % len(hosts)]
    if worker is None and getattr(config.option, "numprocesses", None):
        args = config.invocation_params.args
        if not any(str(a) == "--dist" or str(a).startswith("--dist=") for a in args):
            config.option.dist = "loadfile"  # keep a module's shared fixtures on one worker
        config.option.loadscopereorder = False  # the order below, not by test count
    if worker is not None:
        config.stash[_PAST] = dict(worker.get("safetynet_durations", {}))
    else:
        config.stash[_PAST] = _read_durations()


def _read_durations(path: Path = DURATIONS) -> dict:
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in got.items()} if isinstance(got, dict) else {}


def module_seconds(durations: dict) -> dict:
    """Per-test durations summed per module (file), rounded to the second."""
    out: dict = {}
    for nodeid, sec in durations.items():
        m = nodeid.split("::", 1)[0]
        out[m] = out.get(m, 0.0) + sec
    return {m: round(v) for m, v in sorted(out.items())}


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """(xdist, controller) Every worker orders its collection from the same durations."""
    node.workerinput["safetynet_durations"] = node.config.stash.get(_PAST, {})


# ------------------------------------------------------------------ grouping and order
def _needs_emulator(item: pytest.Item) -> bool:
    if item.get_closest_marker("emulator") is not None:
        return True
    return any(EMULATOR_VAR in str(m.kwargs.get("reason", ""))
               for m in item.iter_markers("skipif"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if not _distributed(config):
        return
    past = config.stash.get(_PAST, {})
    timed_here = {_module_of(k) for k in past}
    versioned = _read_durations(MODULE_SECONDS)
    units: dict = {}
    for i, item in enumerate(items):
        m = _module(item)
        if m not in timed_here and m in versioned:
            units.setdefault(m, {"first": i, "cost": versioned[m]})
            continue
        cost = past.get(item.nodeid, UNTIMED_EMULATOR_S if _needs_emulator(item)
                        else UNTIMED_S)
        u = units.setdefault(m, {"first": i, "cost": 0.0})
        u["cost"] += cost

    def rank(item_and_index):
        i, item = item_and_index
        u = units[_module(item)]
        return (-u["cost"], u["first"], i)

    items[:] = [item for _, item in sorted(enumerate(items), key=rank)]


def _module(item: pytest.Item) -> str:
    return _module_of(item.nodeid)


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


# ------------------------------------------------------------------ CI and CPU time
def _cpu_seconds() -> float:
    me, kids = (resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(item: pytest.Item, when: str):
    start = _cpu_seconds()
    yield
    item.stash.setdefault(_CPU, {})[when] = _cpu_seconds() - start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    yield from _timed(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    yield from _timed(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item):
    yield from _timed(item, "teardown")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    cpu = item.stash.get(_CPU, {}).get(call.when)
    if cpu is not None:
        rep.user_properties.append(("cpu_seconds", round(cpu, 3)))
    if rep.skipped and _ci() and EMULATOR_VAR in str(rep.longrepr):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"CI=true but the Pub/Sub emulator is missing ({reason}): install "
                        "gcloud's pubsub-emulator component; CI must not skip these tests")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _TIMES[report.nodeid] = _TIMES.get(report.nodeid, 0.0) + report.duration
    cpu = 0.0
    for name, value in report.user_properties:
        if name == "cpu_seconds":
            cpu = value
            if value >= 0.005:
                _SEEN.append((value, report.when, report.nodeid))
    worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None)
    if worker is not None:  # (xdist, controller) what each worker did, and when it ended
        w = _WORKERS.setdefault(worker, {"tests": 0, "wall": 0.0, "cpu": 0.0, "last": 0.0})
        w["wall"] += report.duration
        w["cpu"] += cpu
        w["tests"] += report.when == "teardown"
        w["last"] = time.monotonic() - _STARTED[0]


_SEEN: list = []
_TIMES: dict = {}
_WORKERS: dict = {}
_STARTED = [time.monotonic()]


def pytest_sessionstart(session: pytest.Session) -> None:
    _STARTED[0] = time.monotonic()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """(controller or serial run) Keep this run's durations for the next run's order."""
    if hasattr(session.config, "workerinput") or not _TIMES:
        return
    merged = {**session.config.stash.get(_PAST, {}), **{k: round(v, 2)
                                                         for k, v in _TIMES.items()}}
    try:
        tmp = DURATIONS.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, sort_keys=True, indent=0))
        tmp.replace(DURATIONS)
    except OSError:
        pass  # a read-only checkout: the next run orders by the defaults


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    if _WORKERS:  # do the workers end together? (the order above is meant to make them)
        terminalreporter.write_sep("=", "per worker: tests, test phases (wall, CPU), last "
                                        "report after the session began")
        for worker, w in sorted(_WORKERS.items()):
            terminalreporter.write_line(
                f"{worker}: {w['tests']:4d} tests, {w['wall']:7.1f} s wall, {w['cpu']:7.1f} "
                f"CPU-s, ended at {w['last']:7.1f} s")
    n = config.getoption("cpu_durations")
    if n is None:
        return
    rows = sorted(_SEEN, reverse=True)
    total = sum(v for v, _, _ in rows)
    terminalreporter.write_sep("=", f"CPU-seconds per test phase (all: {total:.1f} s)")
    for v, when, nodeid in rows[: n or None]:
        terminalreporter.write_line(f"{v:8.2f}s {when:<8} {nodeid}")
