"""Every threshold, window and duration of the decision logic, with its default.

:class:`Policy` is what the machines read; ``pipelines/options.py`` maps command-line
options onto it. Durations are event-time milliseconds. ``scaled(f)`` divides every
duration by ``f``: the local demo compresses a week into minutes this way.

>>> p = Policy().scaled(24)
>>> p.hold_ms == HOUR
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def option(default: Any, help: str) -> Any:
    """A policy field with its one-line meaning: the text of its flag's ``--help`` and of
    the report's policy table (:func:`described`)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Policy:
    # Holds and warnings (rules 2, 3)
    hold_threshold: float = option(0.75, "risk score at or above which a transfer is held (rule 2)")
    warn_threshold: float = option(
        0.45, "risk score at or above which the sender is warned (rule 2)")
    hold_ms: int = option(24 * HOUR, "how long a hold lasts before it is released (rule 3)")
    # Verdicts (rule 4)
    scam_threshold: float = option(
        0.80, "verdict score at or above which a report is a SCAM (freeze, rule 4)")
    review_threshold: float = option(
        0.50, "verdict score at or above which a report goes to REVIEW")
    # Silent sufferers and outreach (rules 5, 6)
    lookback_ms: int = option(
        30 * DAY, "silent-sufferer lookback before a blacklisting or freeze (rule 5)")
    cooldown_ms: int = option(
        24 * HOUR, "at most one outreach of a kind per user per this (rule 6)")
    repeat_victim_losses: int = option(
        2, "confirmed scam losses that make a user a repeat victim (rule 1)")
    # Features (DESIGN.md, "Windows")
    short_window_ms: int = option(1 * HOUR, "short velocity window (count / sum / fan-in)")
    long_window_ms: int = option(24 * HOUR, "long velocity window (count / sum / fan-in)")
    reporter_window_ms: int = option(
        7 * DAY, "window for counting independent reporters of a suspect")
    reporter_short_window_ms: int = option(
        24 * HOUR, "shorter window for counting the reporters of a suspect (reporters_24h, "
        "established_reporters_24h, unestablished_reports_24h), within --reporter_window")
    payee_memory_ms: int = option(
        180 * DAY, "how long a payee stays known (look-alike detection, rule 9)")
    # (an idle sender forgets all of its payees at once, at payee_memory_ms)
    payee_sweep_every: int = option(
        64, "drop the payees older than --payee_memory at every N transfers of a sender")
    fresh_account_ms: int = option(7 * DAY, "accounts younger than this count as fresh (rule 4)")
    # Rules-only baseline: fan-in, as a burst, into a young destination
    fan_in_rule: int = option(
        25, "rules-only baseline: distinct senders in the long window that flag a young "
        "destination")
    fan_in_burst_share: float = option(
        0.5, "fan-in rule: share of the day's distinct senders that must have come within the "
        "short window")
    young_dest_ms: int = option(
        2 * DAY, "a destination first seen by this job less than this ago is young: the fan-in "
        "rule needs one, the transfer model's young_dest feature marks one")
    # Labels (LabelJoin)
    label_horizon_ms: int = option(7 * DAY, "no case outcome within this makes an example negative")
    # (the nearer records sit in the state every event reads, the later ones in a log)
    label_near_ms: int = option(
        1 * DAY, "labels: the waiting records whose horizon ends within this are read by every "
        "event of their address, the later ones once per this (state size against reads)")
    label_max_waiting: int = option(
        50_000, "labels: featured records waiting per address at most; the rest are dropped and "
        "counted (label_records_dropped)")
    # Dedup memory and outcome resolution (Ledger)
    dedup_ms: int = option(
        30 * DAY, "how long transfer and report ids are remembered for de-duplication (rule 8)")
    resolve_wait_ms: int = option(
        24 * HOUR, "how long a case outcome or report waits for the transfer it names")
    # Models
    use_models: bool = option(True, "score with the River models (false: the rules-only baseline)")
    model_warmup_labels: int = option(
        200, "labels a model needs before its scores replace the rules")
    # ... and of each class: positives come within hours, negatives only after
    # label_horizon_ms, so a label count alone is nearly all positives
    model_min_negatives: int = option(
        200, "negative labels a model needs before its scores are used")
    model_min_positives: int = option(
        50, "positive labels a model needs before its scores are used")
    # both classes learned at the same age (core/learner.py, Learner._learn)
    model_sync_labels: bool = option(
        True, "learn a positive only once its transfer is as old as the label horizon, like the "
        "negatives (true/false)")
    # automatic: sqrt(negatives / positives so far)
    model_pos_weight: float = option(
        0.0, "weight of a positive example (0: automatic from the class balance)")
    # ... the same three for the Scam Verdict Model: reports are far rarer than transfers
    # (defaults measured in bench/MODELS.md)
    verdict_warmup_labels: int = option(
        100, "labels the Scam Verdict Model needs before its verdicts replace the rules")
    verdict_min_negatives: int = option(30, "negative labels the Scam Verdict Model needs")
    verdict_min_positives: int = option(30, "positive labels the Scam Verdict Model needs")
    # Learner: scorers use the latest model version published before an event
    model_publish_labels: int = option(
        500, "the learner publishes a new model version every N labels")
    model_publish_ms: int = option(
        1 * HOUR, "... or at the first label this long after the last version")
    # (chosen by a hash of the transfer / report id: the learner's work and the labels
    # shuffled to it shrink k-fold)
    model_negative_sample: int = option(
        1, "learn 1 in k negative examples, each weighing k (1: all)")
    # Friction (rule 10): the defaults of the caps, budgets and expected-loss floor were
    # measured on real data (bench/MODELS.md, "Policy defaults and where they come from")
    friction_cap: int = option(
        5, "rule 10: model-driven holds per user per friction window; past it a model-only hold "
        "becomes a warning (0: no cap)")
    friction_window_ms: int = option(24 * HOUR, "rule 10: the rolling window of the friction cap")
    # The Learner publishes with each version of transfer_risk the hold threshold that
    # would have held at most this share of its recent legitimate scores
    # (core/friction.py)
    friction_budget: float = option(
        0.004, "rule 10: share of legitimate transfers the risk team accepts to hold, e.g. 0.5% or "
        "0.005; the hold threshold adapts to it, never below --hold_threshold (0: off)")
    friction_budget_window: int = option(
        10000, "friction budget: recent legitimate examples whose scores set the threshold")
    # Decisions by expected loss: held whatever the score; under a friction budget the
    # Learner raises it (and the score threshold) so that both tests together stay within
    # the budget: this is the floor
    hold_expected_loss: float = option(
        1000.0, "also hold a transfer whose risk score x USD reaches this many USD (rule 2; raised "
        "under a friction budget; 0: off)")
    friction_budget_usd: float = option(
        0.02, "rule 10: share of legitimate USD the risk team accepts to hold, e.g. 5% or 0.05; "
        "learned online with --friction_budget (0: off)")
    # A bulk payer (a mining pool's payouts, an exchange's withdrawals) held a few times
    # every day stays under a daily cap and bears a large share of all honest holds
    friction_cap_long: int = option(
        10, "rule 10: model-driven holds per user per --friction_long_window (a bulk payer under "
        "the daily cap; 0: no cap)")
    friction_long_window_ms: int = option(
        30 * DAY, "rule 10: the rolling window of --friction_cap_long")
    # Drift in view (transforms/drift.py): population stability index (0.25: the usual
    # "large shift" reading of PSI)
    drift_baseline_ms: int = option(
        14 * DAY, "drift: the first stretch of event time whose score distribution later weeks "
        "(report) and days (stream's drift topic) are compared with")
    drift_psi_warn: float = option(
        0.25, "drift: population stability index of a week's scores against the baseline past "
        "which the report warns at its top")
    model_snapshot_every: int = option(0, "snapshot the models every N labels (0: only at the end)")
    model_snapshot_path: Optional[str] = option(
        None, "where model snapshots go (local path or gs://)")
    model_warm_start: Optional[str] = option(None, "model snapshot to start from")
    # Streaming face: with "arrival" an event that overtakes an earlier one on a shorter
    # path is decided first; "event_time" needs a runner whose timers hold the watermark,
    # as Dataflow and Flink do and Beam's local runner does not
    stream_ordering: str = option(
        "arrival", "streaming: event_time (wait for the watermark, decide in the backtest's order) "
        "or arrival (decide on arrival, lower latency)")
    # Look-alikes (rule 9): characters a wallet shows of an address, per family; defaults
    # and their sources in core/lookalike.py
    lookalike_evm_head: int = option(
        5, "look-alikes, EVM (0x hex): characters compared from the start, 0x included (rule 9; "
        "MetaMask shows 5)")
    lookalike_evm_tail: int = option(
        4, "look-alikes, EVM: characters compared from the end (MetaMask: 4)")
    lookalike_tron_head: int = option(
        4, "look-alikes, TRON (T... base58, case-sensitive): characters compared from the start, T "
        "included")
    lookalike_tron_tail: int = option(4, "look-alikes, TRON: characters compared from the end")
    lookalike_btc_head: int = option(
        4, "look-alikes, BTC base58 (1... / 3..., case-sensitive): characters compared from the "
        "start")
    lookalike_btc_tail: int = option(4, "look-alikes, BTC base58: characters compared from the end")
    lookalike_bech32_head: int = option(
        6, "look-alikes, BTC bech32 (bc1..., case-free): characters compared from the start, bc1 "
        "included")
    lookalike_bech32_tail: int = option(
        4, "look-alikes, BTC bech32: characters compared from the end")
    lookalike_sol_head: int = option(
        4, "look-alikes, SOL (base58, case-sensitive): characters compared from the start (Solana "
        "wallet adapter shows 4)")
    lookalike_sol_tail: int = option(4, "look-alikes, SOL: characters compared from the end")
    # Warning efficacy (core/holdout.py): holds, freezes, interventions unchanged;
    # the suppressed warnings go to the ``warning_holdout`` output so a report can compare
    # the two groups
    warning_holdout: float = option(
        0.0, "share of users (a hash of the user id; 5% or 0.05) who get no WARNING, to measure "
        "warning efficacy (default 0)")
    # Daily selections (rules 11, 12): Beam fixed windows aligned to the epoch, UTC days by
    # default
    day_ms: int = option(
        24 * HOUR, "the event-time day that rules 11 and 12 count in (fixed windows)")
    # Call capacity (rule 12)
    calls_per_day: int = option(
        10, "CALL interventions the team can make per day; past it the highest expected losses are "
        "called, the rest get a CHAT (rule 12)")
    call_slot_ms: int = option(
        24 * HOUR, "streaming: calls are ranked at the end of each slot of this length, which gets "
        "its share of calls_per_day (default the whole day: exact, but a call waits until the day "
        "ends)")
    # Daily risk assessments (rules 11, 15): active users are the senders of a transfer
    # that day; highest expected loss first; a new signal is one the last assessment did
    # not name
    assessments_per_day: int = option(
        50, "the team's capacity of daily risk assessments: a day's number (--assessment_share of "
        "its active users) never exceeds it (rules 11, 15)")
    assessment_share: float = option(
        0.0025, "rule 15: the day's number of risk assessments is this share of the day's active "
        "users (rounded up), at most --assessments_per_day")
    assessment_min_loss: float = option(
        250.0, "rule 15: the least expected loss (USD) a risk assessment is sent for")
    assessment_cooldown_ms: int = option(
        7 * DAY, "rule 15: a user is risk-assessed again only after this, or on a new signal "
        "(once, after --cooldown)")
    # ... signals (the amount's is a z-score of log USD against the sender's history)
    assessment_amount_z: float = option(
        3.0, "risk assessment signal: amount this many standard deviations above the sender's "
        "usual")
    assessment_new_payees: int = option(3, "risk assessment signal: this many new payees in a day")
    assessment_fan_in: int = option(
        10, "risk assessment signal: a destination paid by this many senders in 24h")
    # Escalation inside the hold (rule 14, core/pyramid.py; durations from placement).
    # At the deadline, evidence against the destination since the placement (a report, a
    # REVIEW verdict, fan-in up by extension_fan_in_rise senders, an unanswered request)
    # extends the hold by hold_extension, up to hold_max in all
    hold_escalation: bool = option(
        True, "rule 14: escalate pending holds in stages and extend them on evidence against the "
        "destination (false: a plain 24h hold, rule 3)")
    hold_warn_after_ms: int = option(
        1 * HOUR, "rule 14: a HOLD_ESCALATION chat to the sender of a hold still pending this long "
        "after placement")
    hold_call_after_ms: int = option(
        3 * HOUR, "rule 14: a CALL to the sender of a risky hold still pending this long after "
        "placement (within --calls_per_day)")
    hold_call_min_loss: float = option(
        2000.0, "rule 14: expected loss (USD x risk) from which a hold gets the call")
    info_answer_ms: int = option(
        12 * HOUR, "rule 14: a destination account asked for information (INFO_REQUEST) that has "
        "not answered within this: evidence that extends its holds")
    info_request_evidence: bool = option(
        True, "rule 14: send INFO_REQUESTs to destination accounts and count no answer as evidence "
        "(true/false)")
    hold_extension_ms: int = option(
        24 * HOUR, "rule 14: what one extension adds to a hold when evidence against its "
        "destination grew")
    hold_max_ms: int = option(72 * HOUR, "rule 14: the longest a hold lasts, extensions included")
    extension_fan_in_rise: int = option(
        3, "rule 14: senders into a young destination (24h) above the hold's own count that extend "
        "it")
    # ... and this share of holds (a salted hash of the transfer id) gets no stage contact:
    # the control group that measures them (report: "Escalation inside the hold")
    escalation_holdout: float = option(
        0.0, "rule 14: share of holds (a hash of the transfer id; 5% or 0.05) that get no stage "
        "contact, to measure escalation (default 0)")
    # Case files: items kept per list of a case (transfers, reports, verdicts, list
    # entries, outreach, timeline); the rest are counted as left out
    case_max_items: int = option(
        50, "case files: items kept per list (transfers, reports, verdicts, list entries, "
        "outreach, timeline); the rest are counted")
    # ... and a changed case file is re-issued this long after its first change
    case_update_ms: int = option(
        10 * MINUTE, "case files: a changed case is re-issued this long after its first change "
        "(changes within it are batched; default 10m)")
    # Files read at start (side data)
    blacklist_paths: tuple = option(
        (), "blacklist snapshot files (Avro/Parquet or vendor formats), comma-separated")
    profiles_path: Optional[str] = option(None, "UserProfile file (Avro/Parquet)")

    def warmed_up(self, model: str, labels: int, positives: int, negatives: int) -> bool:
        """Has ``model`` seen enough labels of both classes for its scores to be used?"""
        if model == "scam_verdict":
            need = (self.verdict_warmup_labels, self.verdict_min_positives,
                    self.verdict_min_negatives)
        else:
            need = (self.model_warmup_labels, self.model_min_positives,
                    self.model_min_negatives)
        return labels >= need[0] and positives >= need[1] and negatives >= need[2]

    def scaled(self, factor: float) -> "Policy":
        """The same policy with every duration divided by ``factor`` (>= 1)."""
        if factor <= 0:
            raise ValueError("time scale factor must be positive")
        changes = {f.name: max(1, int(getattr(self, f.name) / factor))
                   for f in dataclasses.fields(self) if f.name.endswith("_ms")}
        return dataclasses.replace(self, **changes)

    def validate(self) -> "Policy":
        if self.stream_ordering not in ("event_time", "arrival"):
            raise ValueError("stream_ordering must be event_time or arrival")
        if not 0.0 <= self.warn_threshold <= self.hold_threshold <= 1.0:
            raise ValueError("need 0 <= warn_threshold <= hold_threshold <= 1")
        if not 0.0 <= self.review_threshold <= self.scam_threshold <= 1.0:
            raise ValueError("need 0 <= review_threshold <= scam_threshold <= 1")
        if not 0.0 <= self.warning_holdout <= 1.0:
            raise ValueError("warning_holdout must be between 0 and 100%")
        if not 0.0 <= self.escalation_holdout <= 1.0:
            raise ValueError("escalation_holdout must be between 0 and 100%")
        if self.hold_max_ms < self.hold_ms:
            raise ValueError("hold_max must be at least hold (the extensions add to it)")
        for f in dataclasses.fields(self):
            if f.name.endswith("_ms") and getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be positive")
            if f.name.startswith("lookalike_") and getattr(self, f.name) < 1:
                raise ValueError(f"{f.name} must be at least 1")
        if self.label_max_waiting < 1:
            raise ValueError("label_max_waiting must be >= 1")
        if self.payee_sweep_every < 1:
            raise ValueError("payee_sweep_every must be >= 1")
        if self.model_publish_labels < 1 or self.model_negative_sample < 1:
            raise ValueError("model_publish_labels and model_negative_sample must be >= 1")
        if self.friction_cap < 0 or self.friction_cap_long < 0:
            raise ValueError("friction_cap and friction_cap_long must be >= 0")
        if not 0.0 <= self.friction_budget < 1.0:
            raise ValueError("friction_budget must be a share in [0, 1), e.g. 0.005 or 0.5%")
        if not 0.0 <= self.friction_budget_usd < 1.0:
            raise ValueError("friction_budget_usd must be a share in [0, 1), e.g. 0.05 or 5%")
        if self.drift_psi_warn <= 0:
            raise ValueError("drift_psi_warn must be positive")
        if self.hold_expected_loss < 0:
            raise ValueError("hold_expected_loss must be >= 0 (USD; 0: off)")
        if self.friction_budget_window < 1:
            raise ValueError("friction_budget_window must be >= 1")
        if not 0.0 <= self.assessment_share <= 1.0:
            raise ValueError("assessment_share must be between 0 and 100%")
        if self.calls_per_day < 0 or self.assessments_per_day < 0:
            raise ValueError("calls_per_day and assessments_per_day must be >= 0")
        if self.call_slot_ms > self.day_ms or self.day_ms % self.call_slot_ms:
            raise ValueError("call_slot must divide the day (e.g. 1h, 6h, 24h)")
        return self


def described() -> dict:
    """{field name: its one-line meaning} of every :class:`Policy` field."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(Policy)}
