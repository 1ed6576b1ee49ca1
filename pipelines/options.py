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
import math
import re

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.policy import Policy

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_HELP = {
    "hold_threshold": "risk score at or above which a transfer is held (rule 2)",
    "warn_threshold": "risk score at or above which the sender is warned (rule 2)",
    "hold": "how long a hold lasts before it is released (rule 3)",
    "scam_threshold": "verdict score at or above which a report is a SCAM (freeze, rule 4)",
    "review_threshold": "verdict score at or above which a report goes to REVIEW",
    "lookback": "silent-sufferer lookback before a blacklisting or freeze (rule 5)",
    "cooldown": "at most one outreach of a kind per user per this (rule 6)",
    "repeat_victim_losses": "confirmed scam losses that make a user a repeat victim (rule 1)",
    "short_window": "short velocity window (count / sum / fan-in)",
    "long_window": "long velocity window (count / sum / fan-in)",
    "reporter_window": "window for counting independent reporters of a suspect",
    "payee_memory": "how long a payee stays known (look-alike detection, rule 9)",
    "fresh_account": "accounts younger than this count as fresh (rule 4)",
    "fan_in_rule": "rules-only baseline: distinct senders in the long window that flag a "
                   "young destination",
    "label_horizon": "no case outcome within this makes an example negative",
    "dedup": "how long transfer and report ids are remembered for de-duplication (rule 8)",
    "resolve_wait": "how long a case outcome or report waits for the transfer it names",
    "use_models": "score with the River models (false: the rules-only baseline)",
    "fan_in_burst_share": "fan-in rule: share of the day's distinct senders that must have "
                          "come within the short window",
    "model_min_negatives": "negative labels a model needs before its scores are used",
    "model_min_positives": "positive labels a model needs before its scores are used",
    "model_sync_labels": "learn a positive only once its transfer is as old as the label "
                         "horizon, like the negatives (true/false)",
    "model_pos_weight": "weight of a positive example (0: automatic from the class balance)",
    "model_warmup_labels": "labels a model needs before its scores replace the rules",
    "model_snapshot_every": "snapshot the models every N labels (0: only at the end)",
    "model_snapshot_path": "where model snapshots go (local path or gs://)",
    "model_warm_start": "model snapshot to start from",
    "blacklist_paths": "blacklist snapshot files (Avro/Parquet or vendor formats), "
                       "comma-separated",
    "profiles_path": "UserProfile file (Avro/Parquet)",
    "stream_ordering": "streaming: event_time (wait for the watermark, decide in the "
                       "backtest's order) or arrival (decide on arrival, lower latency)",
}


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
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(
            f"must be a number > 0 (every duration is divided by it; e.g. 24), got {text!r}")
    return v


def flag_of(field: str) -> str:
    """The command-line flag of a :class:`Policy` field: ``hold_ms`` -> ``--hold``."""
    if field == "blacklist_paths":
        return "--blacklist"
    if field == "profiles_path":
        return "--profiles"
    return "--" + (field[:-3] if field.endswith("_ms") else field)


def flag_names(message: str) -> str:
    """``message`` with every Policy field name replaced by its flag."""
    for f in sorted(dataclasses.fields(Policy), key=lambda f: -len(f.name)):
        message = re.sub(rf"(?<![-\w]){re.escape(f.name)}\b", flag_of(f.name), message)
    return message


class SafetyNetOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        for f in dataclasses.fields(Policy):
            name = f.name[:-3] if f.name.endswith("_ms") else f.name
            default = f.default
            help_ = _HELP.get(name, name)
            if f.name.endswith("_ms"):
                parser.add_argument(f"--{name}", type=parse_duration, default=None,
                                    metavar="DURATION",
                                    help=f"{help_} (default {format_duration(default)})")
            elif f.name == "blacklist_paths":
                parser.add_argument("--blacklist", dest="blacklist_paths", default=None,
                                    help=help_)
            elif isinstance(default, bool):
                parser.add_argument(f"--{name}", type=_bool, default=None,
                                    metavar="{true,false}",
                                    help=f"{help_} (default {str(default).lower()})")
            elif isinstance(default, (int, float)):
                parser.add_argument(f"--{name}", type=_number(type(default)), default=None,
                                    metavar="N" if type(default) is int else "X",
                                    help=f"{help_} (default {default})")
            else:
                parser.add_argument(f"--{name}", default=None, help=help_)
        parser.add_argument("--time_scale", type=time_scale, default=1.0, metavar="F",
                            help="divide every duration by F > 0 (compressed clock; default 1)")


def policy_from_options(options: PipelineOptions, **overrides) -> Policy:
    """The :class:`Policy` the options describe; ``overrides`` win (drivers set paths)."""
    o = options.view_as(SafetyNetOptions).get_all_options()
    changes = {}
    for f in dataclasses.fields(Policy):
        name = f.name[:-3] if f.name.endswith("_ms") else f.name
        value = o.get(name)
        if value is None:
            continue
        if f.name == "blacklist_paths":
            value = tuple(x for x in str(value).split(",") if x)
        changes[f.name] = value
    policy = dataclasses.replace(Policy(), **changes)
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
