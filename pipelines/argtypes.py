"""argparse types shared by the CLIs (no Beam import: the simulator's CLI stays light)."""

from __future__ import annotations

import argparse
import difflib
from typing import NoReturn, Optional


class UsageError(Exception):
    """A mistake of the user's (paths, flags): one line on stderr, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line. Given ``raises`` (an exception class), the
    parser raises ``raises(message)`` and its caller says it; otherwise it prints
    ``PROG: error: ...`` on stderr, with a suggestion for a mistyped option (``did you mean
    --compare?``), and exits 2. Beam's templated (ValueProvider) options are added as plain
    ones, so any options class can add its flags here."""

    _argv: list = []

    def __init__(self, *args, raises: Optional[type] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.raises = raises

    def parse_known_args(self, args=None, namespace=None):
        import sys

        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def add_value_provider_argument(self, *args, **kwargs):
        self.add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if self.raises is not None:
            raise self.raises(message)
        # a typo makes argparse complain of a missing option first: look at the words too
        hint = suggestion(message + " " + " ".join(self._argv), self)
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def did_you_mean(flag: str, options) -> str:
    """The option among ``options`` that ``flag`` is a typo of ('' if none is close).
    Dashes and underscores count alike (``--batch-shards`` is ``--batch_shards``).

    >>> did_you_mean("--compre", ["--compare", "--input"]), did_you_mean("--zzz", ["--input"])
    ('--compare', '')
    >>> did_you_mean("--hold-treshold=0.5", ["--hold_threshold", "--warn_threshold"])
    '--hold_threshold'
    """
    name = flag.split("=", 1)[0]
    if not name.startswith("--"):
        return ""
    longs = {o.replace("-", "_")[2:]: o for o in options if o.startswith("--")}
    close = difflib.get_close_matches(name.replace("-", "_")[2:], list(longs), n=1,
                                      cutoff=0.75)
    return longs[close[0]] if close else ""


def unknown_option(flag: str, parser: argparse.ArgumentParser) -> str:
    """The error for an option no parser knows: ``unknown option --x (did you mean --y?)
    (see --help)``."""
    hint = did_you_mean(flag, parser._option_string_actions)
    return f"unknown option {flag}" + (f" (did you mean {hint}?)" if hint else "") + \
        " (see --help)"


def suggestion(message: str, parser: argparse.ArgumentParser) -> str:
    """``' (did you mean --x?)'`` for the first unknown option named in an argparse error
    ``message`` that is close to one of ``parser``'s options; '' otherwise."""
    for word in message.replace(",", " ").split():
        word = word.strip(":;()'\"").split("=", 1)[0]
        known = parser._option_string_actions
        if not word.startswith("--") or word in known or (
                parser.allow_abbrev and any(o.startswith(word) for o in known)):
            continue
        hint = did_you_mean(word, known)
        if hint:
            return f" ({word}: did you mean {hint}?)"
    return ""


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
    (:func:`core.holdout.parse_share`, with argparse's error)."""
    from core.holdout import parse_share

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
