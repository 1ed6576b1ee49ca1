"""Pipeline options: every threshold, window and duration of :class:`Policy`, with defaults.

Durations accept a unit: ``90s``, ``15m``, ``24h``, ``30d`` (plain numbers are
milliseconds). ``--time_scale F`` divides every duration by F (the local demo's compressed
clock).

>>> o = SafetyNetOptions(["--hold", "12h", "--hold_threshold", "0.9"])
>>> p = policy_from_options(o)
>>> (p.hold_ms, p.hold_threshold)
(43200000, 0.9)
"""

from __future__ import annotations

import dataclasses
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
    "verdict_warmup_labels": "labels the Scam Verdict Model needs before its verdicts "
                             "replace the rules",
    "verdict_min_negatives": "negative labels the Scam Verdict Model needs",
    "verdict_min_positives": "positive labels the Scam Verdict Model needs",
    "model_publish_labels": "the learner publishes a new model version every N labels",
    "model_publish": "... or at the first label this long after the last version",
    "model_negative_sample": "learn 1 in k negative examples, each weighing k (1: all)",
    "friction_cap": "rule 10: model-driven holds per user per friction window; past it a "
                    "model-only hold becomes a warning (0: no cap)",
    "friction_window": "rule 10: the rolling window of the friction cap",
    "model_snapshot_every": "snapshot the models every N labels (0: only at the end)",
    "model_snapshot_path": "where model snapshots go (local path or gs://)",
    "model_warm_start": "model snapshot to start from",
    "blacklist_paths": "blacklist snapshot files (Avro/Parquet or vendor formats), "
                       "comma-separated",
    "profiles_path": "UserProfile file (Avro/Parquet)",
    "lookalike_evm_head": "look-alikes, EVM (0x hex): characters compared from the start, "
                          "0x included (rule 9; MetaMask shows 5)",
    "lookalike_evm_tail": "look-alikes, EVM: characters compared from the end (MetaMask: 4)",
    "lookalike_tron_head": "look-alikes, TRON (T... base58, case-sensitive): characters "
                           "compared from the start, T included",
    "lookalike_tron_tail": "look-alikes, TRON: characters compared from the end",
    "lookalike_btc_head": "look-alikes, BTC base58 (1... / 3..., case-sensitive): characters "
                          "compared from the start",
    "lookalike_btc_tail": "look-alikes, BTC base58: characters compared from the end",
    "lookalike_bech32_head": "look-alikes, BTC bech32 (bc1..., case-free): characters compared "
                             "from the start, bc1 included",
    "lookalike_bech32_tail": "look-alikes, BTC bech32: characters compared from the end",
    "lookalike_sol_head": "look-alikes, SOL (base58, case-sensitive): characters compared "
                          "from the start (Solana wallet adapter shows 4)",
    "lookalike_sol_tail": "look-alikes, SOL: characters compared from the end",
    "stream_ordering": "streaming: event_time (wait for the watermark, decide in the "
                       "backtest's order) or arrival (decide on arrival, lower latency)",
}


def parse_duration(text: str) -> int:
    """Milliseconds from ``"24h"``, ``"30d"``, ``"15m"``, ``"90s"``, ``"250ms"`` or ms.

    >>> parse_duration("1.5h")
    5400000
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*", str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 24h, 30d)")
    return int(float(m.group(1)) * _UNITS[m.group(2) or "ms"])


def _bool(text: str) -> bool:
    t = str(text).lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


class SafetyNetOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        for f in dataclasses.fields(Policy):
            name = f.name[:-3] if f.name.endswith("_ms") else f.name
            default = f.default
            help_ = _HELP.get(name, name)
            if f.name.endswith("_ms"):
                parser.add_argument(f"--{name}", type=parse_duration, default=None,
                                    help=f"{help_} (default {default // 3_600_000}h)"
                                    if default % 3_600_000 == 0 else help_)
            elif f.name == "blacklist_paths":
                parser.add_argument("--blacklist", dest="blacklist_paths", default=None,
                                    help=help_)
            elif isinstance(default, bool):
                parser.add_argument(f"--{name}", type=_bool, default=None,
                                    help=f"{help_} (default {default})")
            elif isinstance(default, (int, float)):
                parser.add_argument(f"--{name}", type=type(default), default=None,
                                    help=f"{help_} (default {default})")
            else:
                parser.add_argument(f"--{name}", default=None, help=help_)
        parser.add_argument("--time_scale", type=float, default=1.0,
                            help="divide every duration by this (compressed clock)")


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
    scale = o.get("time_scale") or 1.0
    if scale != 1.0:
        policy = policy.scaled(scale)
    if overrides:
        policy = dataclasses.replace(policy, **overrides)
    return policy.validate()
