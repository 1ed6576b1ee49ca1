"""argparse types shared by the CLIs (no Beam import: the simulator's CLI stays light)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


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
