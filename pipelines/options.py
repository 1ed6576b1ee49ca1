"""Pipeline options: every threshold, window and duration of :class:`Policy`, with defaults.

Durations need a unit: ``250ms``, ``90s``, ``15m``, ``24h``, ``30d`` (a bare number is an
error, not milliseconds). ``--time_scale F`` (F > 0) divides every duration by F (the local
demo's compressed clock). Error messages name the flags (``--hold``), never the
:class:`Policy` fields behind them (``hold_ms``).

>>> o = SafetyNetOptions(["--hold", "12h", "--hold_threshold", "0.9"])
>>> p = policy_from_options(o)
>>> (p.hold_ms, p.hold_threshold)
(43200000, 0.9)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from core.policy import Policy, described
from pipelines.argtypes import OneLineParser, positive_number, share

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


DURATION_UNITS = "ms, s, m, h, d"


def parse_duration(text: str) -> int:
    """Milliseconds from ``"24h"``, ``"30d"``, ``"15m"``, ``"90s"`` or ``"250ms"``.

    A unit is required: ``"24"`` is refused (it used to mean 24 ms, silently).

    >>> parse_duration("1.5h")
    5400000
    >>> parse_duration("24")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: not a duration: '24' (a number and a unit: ms, s, m, h, d; e.g. 24h)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (a number and a unit: {DURATION_UNITS}; e.g. 24h)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_duration(ms: int) -> str:
    """A duration as a user would type it: the largest unit that divides it.

    >>> [format_duration(x) for x in (2_592_000_000, 86_400_000, 5_400_000, 90_000, 250)]
    ['30d', '24h', '90m', '90s', '250ms']
    """
    ms = int(ms)
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNITS[unit] == 0:
            n = ms // _UNITS[unit]
            if unit == "d" and n == 1:
                return "24h"
            return f"{n}{unit}"
    return f"{ms}ms"


def _bool(text: str) -> bool:
    t = str(text).lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (true or false)")


def _number(kind: type):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        return v
    parse.__name__ = kind.__name__
    return parse


def time_scale(text: str) -> float:
    """``--time_scale``: a finite number > 0 (0 used to mean 1, silently)."""
    try:
        return positive_number(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a number > 0 (every duration is divided by it; e.g. 24), got {text!r}"
        ) from None


def _described(field: str) -> str:
    """A policy field's meaning as argparse help (a literal % doubled)."""
    return described()[field].replace("%", "%%")


def option_help() -> dict:
    """{policy option as in a policy file (``hold``): its one-line meaning}."""
    return {flag_of(name)[2:]: text for name, text in described().items()}


def flag_of(field: str) -> str:
    """The command-line flag of a :class:`Policy` field: ``hold_ms`` -> ``--hold``."""
    if field == "blacklist_paths":
        return "--blacklist"
    return "--" + (field[:-3] if field.endswith("_ms") else field)


def flag_names(message: str) -> str:
    """``message`` with every Policy field name replaced by its flag."""
    for f in sorted(dataclasses.fields(Policy), key=lambda f: -len(f.name)):
        message = re.sub(rf"(?<![-\w]){re.escape(f.name)}\b", flag_of(f.name), message)
    return message


def add_shared_flags(parser) -> None:
    """The flags both drivers take, with one meaning each: the input guards' money bounds
    (:func:`pipelines.validate.add_input_options`), a state checkpoint to start from, a
    shadow policy."""
    from pipelines.validate import add_input_options

    add_input_options(parser, share=False)
    add_restore_state(parser)
    add_shadow_policy(parser)


def add_restore_state(parser) -> None:
    parser.add_argument("--restore_state", default=None, metavar="DIR",
                        help="start every step from a state checkpoint (a backtest's "
                             "--write_state DIR): payees, profiles, list state, pending "
                             "labels and model versions of the replayed history (a "
                             "backtest's replay must begin after the checkpoint's end)")


def add_shadow_policy(parser) -> None:
    parser.add_argument("--shadow_policy", default=None, metavar="FILE",
                        help="a JSON or YAML file of policy options (the flags' names) run "
                             "as a shadow beside the live policy, never acted on: its "
                             "decisions go to shadow_* files, which the report compares with "
                             "the live ones (backtest), or to safetynet-shadow-NAME topics, "
                             "with hourly disagreement counts on "
                             "safetynet-shadow-disagreements (stream)")


class CachedViews(PipelineOptions):
    """PipelineOptions that make each view once. Beam asks for a view (``view_as``) a few
    hundred times while it builds and runs one graph (each ``apply``, each stage), and each
    new view parses every flag again: about a sixth of a small backtest's CPU, and again
    for every chunk of a chunked one. A view holds no values of its own (it reads and
    writes the one option dict it shares with the options it came from), so handing out
    the same view again is the same as making a new one.

    >>> o = CachedViews(["--hold", "12h"])
    >>> o.view_as(SafetyNetOptions) is o.view_as(SafetyNetOptions)
    True
    >>> o.view_as(SafetyNetOptions).hold = "6h"
    >>> o.get_all_options()["hold"]
    '6h'
    """

    def view_as(self, cls):
        views = self.__dict__.setdefault("_views", {})
        view = views.get(cls)
        if view is None or view._all_options is not self._all_options:
            view = views[cls] = super().view_as(cls)
        return view


class SharedOptions(PipelineOptions):
    """The flags of :func:`add_shared_flags` (Beam gathers every options class on one
    parser: a flag both drivers take is declared once, here)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_shared_flags(parser)


class SafetyNetOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        for f in dataclasses.fields(Policy):
            name = f.name[:-3] if f.name.endswith("_ms") else f.name
            default = f.default
            help_ = _described(f.name)
            if f.name.endswith("_ms"):
                parser.add_argument(f"--{name}", type=parse_duration, default=None,
                                    metavar="DURATION",
                                    help=f"{help_} (default {format_duration(default)})")
            elif f.name == "blacklist_paths":
                parser.add_argument("--blacklist", dest="blacklist_paths", default=None,
                                    metavar="FILES", help=help_)
            elif f.name in ("warning_holdout", "escalation_holdout", "assessment_share"):
                parser.add_argument(f"--{name}", type=share, default=None,
                                    metavar="SHARE", help=help_)
            elif f.name in ("friction_budget", "friction_budget_usd"):
                parser.add_argument(f"--{name}", type=share, default=None,
                                    metavar="SHARE", help=f"{help_} (default {default})")
            elif isinstance(default, bool):
                parser.add_argument(f"--{name}", type=_bool, default=None,
                                    metavar="{true,false}",
                                    help=f"{help_} (default {str(default).lower()})")
            elif isinstance(default, (int, float)):
                parser.add_argument(f"--{name}", type=_number(type(default)), default=None,
                                    metavar="N" if type(default) is int else "X",
                                    help=f"{help_} (default {default})")
            elif f.name == "stream_ordering":
                parser.add_argument(f"--{name}", default=None, choices=("arrival", "event_time"),
                                    help=f"{help_} (default {default})")
            else:
                parser.add_argument(f"--{name}", default=None, help=help_,
                                    metavar="FILE" if "path" in name or "warm" in name
                                    else "TEXT")
        parser.add_argument("--time_scale", type=time_scale, default=1.0, metavar="F",
                            help="divide every duration by F > 0 (compressed clock; default 1)")
        if not any(a.dest == "policy" for a in getattr(parser, "_actions", ())):
            parser.add_argument("--policy", default=None, metavar="FILE",
                                help="a policy file (YAML or JSON) with these options by name "
                                     "(hold: 24h, hold_threshold: 0.8, ...), or a backtest's "
                                     "metrics.json to repeat its policy; flags given on the "
                                     "command line win")


def policy_changes(values: dict) -> dict:
    """Policy field -> value for every option ``values`` sets (parsed option values by
    option name: ``hold`` for ``hold_ms``; ``blacklist`` paths comma-separated)."""
    changes = {}
    for f in dataclasses.fields(Policy):
        name = f.name[:-3] if f.name.endswith("_ms") else f.name
        value = values.get(name)
        if value is None:
            continue
        if f.name == "blacklist_paths":
            value = tuple(x for x in str(value).split(",") if x)
        changes[f.name] = value
    return changes


def policy_from_options(options: PipelineOptions, **overrides) -> Policy:
    """The :class:`Policy` the options describe; ``overrides`` win (drivers set paths)."""
    o = options.view_as(SafetyNetOptions).get_all_options()
    policy = dataclasses.replace(Policy(), **policy_changes(o))
    scale = o.get("time_scale")
    scale = 1.0 if scale is None else float(scale)
    try:
        if scale != 1.0:
            policy = policy.scaled(scale)
        if overrides:
            policy = dataclasses.replace(policy, **overrides)
        return policy.validate()
    except ValueError as e:
        raise ValueError(flag_names(str(e))) from None


# ----------------------------------------------------------------------------- policy files
def _policy_parser() -> argparse.ArgumentParser:
    p = OneLineParser(add_help=False, allow_abbrev=False, raises=ValueError)
    SafetyNetOptions._add_argparse_args(p)
    return p


def policy_keys() -> dict:
    """{key as written in a policy file: its flag}: every policy option, generically (a
    field added to :class:`Policy` is a key at once). Dashes may stand for underscores."""
    out = {}
    for a in _policy_parser()._actions:
        for flag in a.option_strings:
            if flag.startswith("--") and flag != "--policy":
                out[flag[2:]] = flag
    return out


def read_policy_file(path: str, what: str = "--policy") -> list:
    """The flags a policy file stands for, in the CLI's names: ``--policy FILE`` expands to
    these, before the command line's own flags (which win); ``--shadow_policy FILE`` is
    the live policy with these changed (:func:`shadow_policy`). ``what`` names the flag in
    error messages.

    The file is YAML or JSON (``.json``), a mapping of option names to values as they are
    typed (``hold: 24h``, ``use_models: false``, ``blacklist: [a.avro, b.csv]``), or a
    backtest's ``metrics.json``: its ``run.policy_options`` are the effective policy of that
    run, so ``--policy OUT/metrics.json`` repeats it. Unknown names and bad values are errors
    that name the file and the option.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {path}: no such file")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - yaml / json syntax errors
        raise ValueError(f"{what} {path}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}"
                         f" ({str(e).splitlines()[0]})") from None
    if isinstance(data, dict) and isinstance(data.get("run"), dict) \
            and "policy_options" in data["run"]:
        data = data["run"]["policy_options"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: expected a mapping of option names to values")
    return policy_flags(data, f"{what} {path}")


def parse_policy_flags(flags: list) -> dict:
    """Policy flags (as :func:`policy_flags` gives them) -> {option dest: value}, every
    option present (None where not given)."""
    return vars(_policy_parser().parse_args(flags))


def policy_flags(options: dict, where: str) -> list:
    """A mapping of policy option names to values (as typed on the command line) as flags;
    an unknown name or a bad value is a ValueError naming ``where`` and the option."""
    keys = policy_keys()
    parser = _policy_parser()
    flags = []
    for k, v in options.items():
        name = str(k).lstrip("-").replace("-", "_")
        if name not in keys:
            raise ValueError(f"{where}: unknown option {k!r} (the names of the policy "
                             "options in --help, e.g. hold_threshold, hold)")
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            v = ",".join(str(x) for x in v)
        flag = [keys[name], str(v)]
        try:
            parser.parse_args(flag)
        except ValueError as e:
            why = str(e).split(": ", 1)[-1]
            raise ValueError(f"{where}: bad value for {name}: {why}") from None
        flags += flag
    return flags


def expand_policy_file(argv: list) -> list:
    """``argv`` with ``--policy FILE`` replaced by the file's flags, put first so that the
    command line's own flags win."""
    out, file_flags, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--policy":
            if i + 1 >= len(argv):
                raise ValueError("argument --policy: expected a FILE (YAML or JSON)")
            file_flags += read_policy_file(argv[i + 1])
            i += 2
            continue
        if a.startswith("--policy="):
            file_flags += read_policy_file(a.split("=", 1)[1])
        else:
            out.append(a)
        i += 1
    return file_flags + out


def policy_options(policy: Policy, automatic: tuple = ()) -> dict:
    """The effective ``policy`` in a policy file's format (the CLI's names, durations as
    typed): what ``metrics.json`` records, and ``--policy`` reads back. Paths in
    ``automatic`` (files a driver adds by itself, such as the replay's own blacklist
    snapshot) are left out."""
    out = {}
    for f in dataclasses.fields(Policy):
        v = getattr(policy, f.name)
        key = flag_of(f.name)[2:]
        if f.name.endswith("_ms"):
            v = format_duration(v)
        elif isinstance(v, tuple):
            v = [x for x in v if x not in automatic]
            if not v:
                continue
        elif v is None or (isinstance(v, str) and v in automatic):
            continue
        out[key] = v
    return out


# ------------------------------------------ shadow policy: a candidate as changes to the live one

def policy_with(live: Policy, options: dict, time_scale: float = 1.0,
                where: str = "shadow policy") -> Policy:
    """``live`` with the policy options of ``options`` (CLI names, CLI value syntax)
    changed; durations given there are divided by ``time_scale``, as the live ones were
    (unless ``options`` names its own ``time_scale``).

    >>> p = policy_with(Policy(), {"hold_threshold": 0.6, "hold": "12h"})
    >>> (p.hold_threshold, p.hold_ms, p.warn_threshold)
    (0.6, 43200000, 0.45)
    """
    return _changed(live, policy_flags(options, where), time_scale)


def shadow_policy(path: str | Path, live: Policy, time_scale: float = 1.0) -> Policy:
    """The policy a ``--shadow_policy`` file describes, on top of the live one. The file is
    read as ``--policy`` reads one (:func:`read_policy_file`); the live ``time_scale``
    divides its durations too."""
    return _changed(live, read_policy_file(str(path), "--shadow_policy"), time_scale)


def _changed(live: Policy, flags: list, time_scale: float) -> Policy:
    got = parse_policy_flags(flags)
    scale = float(got.get("time_scale") or 1.0) if "--time_scale" in flags[::2] \
        else time_scale
    changes = policy_changes(got)
    if scale != 1.0:
        changes = {k: max(1, int(v / scale)) if k.endswith("_ms") else v
                   for k, v in changes.items()}
    return dataclasses.replace(live, **changes).validate()
