"""Checks made before a pipeline starts, so a user's mistake costs one line, not a run.

Every check raises :class:`PreflightError` with a message that names the flag concerned;
the drivers print it as one line and exit with status 2. No Beam import at module level:
``simulate`` uses this too and stays light.

>>> owned_files(["holds"], ("avro", "parquet"), extra=("metrics.json",))
['holds.avro', 'holds.parquet', 'metrics.json']
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from pipelines.argtypes import OneLineParser


class PreflightError(Exception):
    """A mistake of the user's found before the run: one line on stderr, exit 2."""


def owned_files(stems: Iterable[str], formats: Iterable[str], extra: Iterable[str] = ()) -> list:
    """The file names a command writes: each stem in each format, plus ``extra``."""
    formats = tuple(formats)
    return sorted({f"{s}.{f}" for s in stems for f in formats} | set(extra))


def prepare_output(directory: str | Path, owned: Iterable[str], overwrite: bool,
                   flag: str = "--output") -> Path:
    """Make sure ``directory`` can take this run's files, before anything runs.

    * it is created if missing, and must be a directory this process can write into;
    * if it already holds files this command writes (in any format), the run is refused
      unless ``overwrite``: then exactly those files are removed first, so a failed run never
      leaves an older ``metrics.json`` beside newer decisions, nor two formats side by side.
      Files the command does not own are left alone.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise PreflightError(f"{flag} {d}: exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PreflightError(f"{flag} {d}: cannot create the directory ({e.strerror})") \
            from None
    probe = d / f".safetynet-write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PreflightError(f"{flag} {d}: cannot write there ({e.strerror})") from None
    present = [n for n in owned if (d / n).exists()]
    if present and not overwrite:
        shown = ", ".join(present[:4]) + (f" and {len(present) - 4} more" if len(present) > 4
                                          else "")
        raise PreflightError(f"{flag} {d} already holds the output of an earlier run ({shown}); "
                             f"choose another directory or add --overwrite to replace it")
    for n in present:
        try:
            (d / n).unlink()
        except OSError as e:
            raise PreflightError(f"{flag} {d}: cannot remove {n} ({e.strerror})") from None
    return d


def check_runner(name: str | None) -> None:
    """``--runner``: a runner Beam knows (by name or dotted path), checked without running.

    >>> check_runner("FnApiRunner")
    >>> check_runner("NoSuchRunner")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipelines.preflight.PreflightError: --runner NoSuchRunner: unknown runner (e.g. ...)
    """
    if not name:
        return
    from apache_beam.runners.runner import create_runner

    try:
        create_runner(name)
    except (ValueError, ImportError, AttributeError):
        raise PreflightError(
            f"--runner {name}: unknown runner (e.g. FnApiRunner, BundleBasedDirectRunner, "
            "DataflowRunner, FlinkRunner, PortableRunner)") from None


# Google Cloud project ids: 6-30 characters, lower-case letters, digits and hyphens, starting
# with a letter, not ending with a hyphen; optionally "domain.com:" in front (legacy ids).
_PROJECT_RE = re.compile(r"(?:[a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]")


def check_project(project: str | None) -> None:
    """``--project``: a valid Google Cloud project id (also on the emulator, whose names
    Pub/Sub checks the same way).

    >>> check_project("safetynet-demo")
    >>> check_project("p")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipelines.preflight.PreflightError: --project 'p': not a valid project id (...)
    """
    if not project or not _PROJECT_RE.fullmatch(project):
        raise PreflightError(
            f"--project {project!r}: not a valid project id (6-30 lower-case letters, digits "
            "or hyphens, starting with a letter; e.g. my-project)")


def check_pubsub_reachable(project: str, is_local: bool) -> None:
    """Before a streaming job starts: the emulator answers (``PUBSUB_EMULATOR_HOST``), or,
    without an emulator, Google credentials exist. One line saying which is missing."""
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if host:
        import socket

        h, _, port = host.rpartition(":")
        try:
            with socket.create_connection((h or "127.0.0.1", int(port)), timeout=3):
                return
        except (OSError, ValueError):
            raise PreflightError(
                f"the Pub/Sub emulator at PUBSUB_EMULATOR_HOST={host} does not answer (start "
                "it, e.g. gcloud beta emulators pubsub start, or unset the variable to use "
                "Google Cloud)") from None
    try:
        import google.auth

        google.auth.default()
    except Exception as e:  # noqa: BLE001 - DefaultCredentialsError and transport errors
        where = "the local runner" if is_local else "this runner"
        raise PreflightError(
            f"no Google Cloud credentials for project {project} on {where} "
            f"({type(e).__name__}); run `gcloud auth application-default login`, or set "
            "PUBSUB_EMULATOR_HOST=127.0.0.1:8085 to use the emulator") from None


def add_verbosity(p) -> None:
    """``--quiet`` / ``--verbose`` on a parser."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quiet", "-q", action="store_true",
                   help="errors and the job's own warnings only: no progress lines, no "
                        "summary, none of Beam's log")
    g.add_argument("--verbose", "-v", action="store_true",
                   help="also Beam's own log (INFO) and warnings, and tracebacks on failure")


def apply_verbosity(quiet: bool = False, verbose: bool = False) -> None:
    """Beam logs and warns a lot that a user of the CLI cannot act on: hidden unless
    ``--verbose``; ``--quiet`` keeps errors only."""
    import logging
    import warnings

    level = logging.INFO if verbose else logging.ERROR
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    for name in ("apache_beam", "absl", "google", "urllib3"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        warnings.filterwarnings("ignore")
    # The job's own warnings (publish retries, dropped or late events, refused seeds) are
    # always shown, also with --quiet: that hides Beam's chatter, not ours.
    own = logging.getLogger("safetynet")
    own.setLevel(logging.INFO if verbose else logging.WARNING)
    if not any(getattr(h, "_safetynet", False) for h in own.handlers):
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("[safetynet] %(levelname)s %(message)s"))
        h._safetynet = True
        own.addHandler(h)
    own.propagate = False


def first_line(e: BaseException) -> str:
    """An exception as one line: its type and the last informative line of its message
    (runners wrap worker errors in pages of context)."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    msg = lines[-1] if lines else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def beam_unknown_flags(flags: list) -> list:
    """Flags that no PipelineOptions class knows (Beam itself would only log them); a bad
    value of a Beam option (``--direct_num_workers abc``) raises PreflightError, one line."""
    from apache_beam.options.pipeline_options import PipelineOptions

    # every options class's flags on one plain parser; Beam's templated (ValueProvider)
    # options are checked as plain ones
    parser = OneLineParser(allow_abbrev=False, raises=PreflightError)
    seen = set()
    todo = list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(flags)
    return [u for u in unknown if u.startswith("-")]
