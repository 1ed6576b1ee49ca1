"""argparse types shared by the CLIs (no Beam import: the simulator's CLI stays light)."""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``PROG: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def positive_number(text: str) -> float:
    """A finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return v


def share(text: str) -> float:
    """A share between 0 and 1: ``0.05`` or ``5%``
    (:func:`transforms.holdout.parse_share`, with argparse's error)."""
    from transforms.holdout import parse_share

    try:
        return parse_share(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_or_status(parser: argparse.ArgumentParser, argv) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit status argparse ended with (``--help``: 0; a
    usage error, its one line already printed: 2), for a ``main`` that returns statuses."""
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2


def dashed_aliases(parser: argparse.ArgumentParser) -> None:
    """Accept ``--report-share`` for ``--report_share`` (every command spells options with
    underscores, as Beam does; the dashed spelling is an alias, not shown in --help)."""
    for a in list(parser._actions):
        for flag in a.option_strings:
            alias = "--" + flag[2:].replace("_", "-")
            if flag.startswith("--") and "_" in flag and alias not in parser._option_string_actions:
                kw = {"dest": a.dest, "default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
                if a.nargs == 0:  # store_true and friends
                    parser.add_argument(alias, action="store_const", const=a.const, **kw)
                else:
                    parser.add_argument(alias, type=a.type, choices=a.choices, **kw)


def reader_left() -> int:
    """After a BrokenPipeError on stdout (``safetynet ... | head``): the reader has gone,
    which is not an error. Point stdout at /dev/null so that Python's exit flush does not
    fail again, and return status 0."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0
