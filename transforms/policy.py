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
from typing import Optional

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True)
class Policy:
    # Holds and warnings (rules 2, 3)
    hold_threshold: float = 0.75
    warn_threshold: float = 0.45
    hold_ms: int = 24 * HOUR
    # Verdicts (rule 4)
    scam_threshold: float = 0.80
    review_threshold: float = 0.50
    # Silent sufferers and outreach (rules 5, 6)
    lookback_ms: int = 30 * DAY
    cooldown_ms: int = 24 * HOUR
    repeat_victim_losses: int = 2
    # Features (DESIGN.md, "Windows")
    short_window_ms: int = 1 * HOUR
    long_window_ms: int = 24 * HOUR
    reporter_window_ms: int = 7 * DAY
    # ... and the reports against a suspect within this (reporters_24h,
    # established_reporters_24h, unestablished_reports_24h), of those reporter_window_ms keeps
    reporter_short_window_ms: int = 24 * HOUR
    payee_memory_ms: int = 180 * DAY
    # ... payees older than payee_memory_ms are dropped at every this many transfers of a
    # sender (an idle sender forgets all of them at once, at payee_memory_ms)
    payee_sweep_every: int = 64
    fresh_account_ms: int = 7 * DAY
    # Rules-only baseline: fan-in threshold (distinct senders in the long window)
    fan_in_rule: int = 25
    # ... arriving as a burst: this share of them within the last hour (short window)
    fan_in_burst_share: float = 0.5
    # ... to a young destination: first seen by this job less than this ago (also the
    # transfer model's young_dest feature)
    young_dest_ms: int = 2 * DAY
    # Labels (LabelJoin)
    label_horizon_ms: int = 7 * DAY
    # ... the featured records whose horizon ends within this are in the state every event
    # of their address reads; the later ones wait in a log read once per this much time
    label_near_ms: int = 1 * DAY
    # ... at most this many records wait per address; the rest are dropped and counted
    # (metric label_records_dropped)
    label_max_waiting: int = 50_000
    # Dedup memory and outcome resolution (Ledger)
    dedup_ms: int = 30 * DAY
    resolve_wait_ms: int = 24 * HOUR
    # Models
    use_models: bool = True
    model_warmup_labels: int = 200
    # ... and until it has seen this many of each class (positives come within hours,
    # negatives only after label_horizon_ms: a label count alone is nearly all positives)
    model_min_negatives: int = 200
    model_min_positives: int = 50
    # learn a positive only once its event is label_horizon_ms old, as its negatives are
    # (both classes learned at the same age: see transforms/models.py, Models._learn)
    model_sync_labels: bool = True
    # weight of a positive example when learning; 0: sqrt(negatives / positives so far)
    model_pos_weight: float = 0.0
    # ... the same three for the Scam Verdict Model (reports are far rarer than transfers:
    # a simulated month gives ~440 labelled reports, ~150 of them negative; measured in
    # bench/MODELS.md, "Issue 11": warm-started from a month, the model decides every
    # verdict of the next at SCAM precision 0.99; cold, from mid-month)
    verdict_warmup_labels: int = 100
    verdict_min_negatives: int = 30
    verdict_min_positives: int = 30
    # Learner: publish a model version every N labels, or at the first label this long
    # after the last version (event time); scorers use the latest version before an event
    model_publish_labels: int = 500
    model_publish_ms: int = 1 * HOUR
    # learn 1 in k negative examples (chosen by a hash of the transfer / report id), each
    # weighing k: the learner's work and the labels shuffled to it shrink k-fold
    model_negative_sample: int = 1
    # Friction cap (rule 10): at most this many model-driven holds per user per window;
    # past it a model-only hold becomes a warning (0: no cap). 5: measured on the 2018 H1
    # Ethereum tune half (bench/MODELS.md, "Issue 11"): it bounds a bulk payer to 5 model
    # holds a day for ~0.5 points of victim USD prevented; no effect on the simulator's month
    friction_cap: int = 5
    friction_window_ms: int = 24 * HOUR
    # Friction budget (rule 10): the share of legitimate transfers a risk team accepts to
    # hold (0.005 = 0.5%; 0: off). The Learner publishes with each version of transfer_risk
    # the hold threshold that would have held at most this share of its recent legitimate
    # scores, never below hold_threshold (transforms/friction.py)
    friction_budget: float = 0.004
    # ... over the decision scores of this many recent legitimate examples
    friction_budget_window: int = 10000
    # The friction defaults below (budget 0.4% of legitimate transfers and 2% of their USD,
    # expected-loss floor $1,000, caps 5 a day and 10 in 30 days) were chosen on the 2018 H1
    # Ethereum tune half (Jan-Mar) and reported on Apr-Jun: bench/MODELS.md, "Decisions by
    # expected loss"
    # Decisions by expected loss (rules 2, 10): a transfer is also held when its score x USD
    # reaches this many USD (0: off), whatever its score. Under a friction budget the
    # Learner raises it (and the score threshold) so that both tests together stay within
    # the budget; this is the floor
    hold_expected_loss: float = 1000.0
    # ... and the share of legitimate USD the risk team accepts to hold (0.05 = 5%; 0:
    # off), learned online beside friction_budget's share of legitimate transfers
    friction_budget_usd: float = 0.02
    # Drift in view (transforms/drift.py): the score distribution of each week (backtest
    # report) or day (streaming job's drift topic) is compared with that of the first
    # drift_baseline of event time by its population stability index; past drift_psi_warn
    # the report warns at its top (0.25: the usual "large shift" reading of PSI)
    # Per-user friction cap over a longer window (rule 10): at most this many model-driven
    # holds per user per friction_long_window (0: off), beside friction_cap's daily count:
    # a bulk payer (a mining pool's payouts, an exchange's withdrawals) held a few times
    # every day stays under a daily cap and bears a large share of all honest holds
    friction_cap_long: int = 10
    friction_long_window_ms: int = 30 * DAY
    drift_baseline_ms: int = 14 * DAY
    drift_psi_warn: float = 0.25
    model_snapshot_every: int = 0
    model_snapshot_path: Optional[str] = None
    model_warm_start: Optional[str] = None
    # Streaming face: "arrival" (decide each event when it arrives: lowest latency; an event
    # that overtakes an earlier one on a shorter path is decided first) or "event_time"
    # (each step waits for the watermark and decides in the backtest's order; needs a
    # runner whose timers hold the watermark, as Dataflow and Flink do and Beam's local
    # runner does not)
    stream_ordering: str = "arrival"
    # Look-alikes (rule 9): characters a wallet shows of an address, per family, from the
    # start (fixed prefix such as 0x, T, bc1 included) and from the end; defaults and their
    # sources in transforms/lookalike.py
    lookalike_evm_head: int = 5
    lookalike_evm_tail: int = 4
    lookalike_tron_head: int = 4
    lookalike_tron_tail: int = 4
    lookalike_btc_head: int = 4
    lookalike_btc_tail: int = 4
    lookalike_bech32_head: int = 6
    lookalike_bech32_tail: int = 4
    lookalike_sol_head: int = 4
    lookalike_sol_tail: int = 4
    # Warning efficacy (transforms/holdout.py): this share of users, chosen by a hash of
    # the user id, gets no WARNING (holds, freezes, interventions unchanged); the suppressed
    # warnings go to the ``warning_holdout`` output so a report can compare the two groups
    warning_holdout: float = 0.0
    # Daily selections (rules 11, 12): the event-time day they count in (Beam fixed
    # windows aligned to the epoch, UTC days by default)
    day_ms: int = 24 * HOUR
    # Call capacity (rule 12): CALL interventions per day; past it the highest expected
    # losses are called and the rest downgraded to CHAT. The streaming job ranks the calls
    # of each slot at the slot's end (a call waits up to a slot); a slot shorter than the
    # day gets its share of the day's capacity
    calls_per_day: int = 10
    call_slot_ms: int = 24 * HOUR
    # Daily risk assessments (rules 11, 15): a day's number is assessment_share of the day's
    # active users (senders of a transfer that day), rounded up, never more than the team's
    # capacity assessments_per_day; highest expected loss first, from assessment_min_loss
    # USD. A user assessed is assessed again only after assessment_cooldown, or earlier (once,
    # and not within the day-long cooldown) on a new signal: one the last assessment did not
    # name. 0.25% of ~2,900 daily senders on the simulator's month: ~8 a day, ~0.6% of a
    # week's active users
    assessments_per_day: int = 50
    assessment_share: float = 0.0025
    assessment_min_loss: float = 250.0
    assessment_cooldown_ms: int = 7 * DAY
    # ... signals: a sudden rise in amount (z-score of log USD vs the sender's history),
    # many new payees in a day, a destination paid by many senders in 24h
    assessment_amount_z: float = 3.0
    assessment_new_payees: int = 3
    assessment_fan_in: int = 10
    # Escalation inside the hold (rule 14, transforms/pyramid.py; durations from placement):
    # a HOLD_ESCALATION chat to the sender at hold_warn_after, a CALL at hold_call_after for
    # holds whose expected loss is at least hold_call_min_loss (within calls_per_day), an
    # INFO_REQUEST at placement to a destination that is an account of ours, unanswered after
    # info_answer: evidence. At the deadline, evidence against the destination since the
    # placement (a report, a REVIEW verdict, fan-in up by extension_fan_in_rise senders, an
    # unanswered request) extends the hold by hold_extension, up to hold_max in all
    # (false: the plain hold of rule 3, released at hold_ms, no stage contact)
    hold_escalation: bool = True
    hold_warn_after_ms: int = 1 * HOUR
    hold_call_after_ms: int = 3 * HOUR
    hold_call_min_loss: float = 2000.0
    info_answer_ms: int = 12 * HOUR
    info_request_evidence: bool = True
    hold_extension_ms: int = 24 * HOUR
    hold_max_ms: int = 72 * HOUR
    extension_fan_in_rise: int = 3
    # ... and this share of holds (a salted hash of the transfer id) gets no stage contact:
    # the control group that measures them (report: "Escalation inside the hold")
    escalation_holdout: float = 0.0
    # Case files: items kept per list of a case (transfers, reports, verdicts, list
    # entries, outreach, timeline); the rest are counted as left out
    case_max_items: int = 50
    # ... and a changed case file is re-issued this long after its first change
    case_update_ms: int = 10 * MINUTE
    # Files read at start (side data)
    blacklist_paths: tuple = ()
    profiles_path: Optional[str] = None

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
