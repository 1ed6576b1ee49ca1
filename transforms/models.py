"""The Models step (keyed by model name): score first, then learn from delayed labels.

Two models live in keyed state, each a River pipeline learning online:

* ``transfer_risk`` scores every featured transfer (0..1, the hold / warning score);
* ``scam_verdict`` scores every featured report; thresholds turn it into a verdict.

Until a model has learned from ``model_warmup_labels`` labels (or when models are off, the
rules-only baseline) the score comes from the documented rules below. Every decision
carries ``model_version`` naming what scored it.
"""

from __future__ import annotations

import math
from typing import Optional

import river
from river import compose, linear_model, optim, preprocessing

from transforms.events import (
    Example,
    FeaturedReport,
    FeaturedTransfer,
    ScoredReport,
    ScoredTransfer,
)
from transforms.labels import SCAM_VERDICT, TRANSFER_RISK
from transforms.machine import METRIC, Machine
from transforms.policy import Policy

SCORED_TRANSFERS, SCORED_REPORTS = "scored_transfers", "scored_reports"
RIVER_VERSION = river.__version__


# ------------------------------------------------------------------------------- the rules
def rules_transfer_score(f: dict, policy: Policy) -> tuple[float, tuple]:
    """Rules-only transfer risk: a fan-in threshold on young destinations.

    >>> rules_transfer_score({"fan_in_24h": 40.0, "dest_age_days": 0.5}, Policy())
    (0.8, ('fan_in_24h=40',))
    """
    fan_in = f.get("fan_in_24h", 0.0)
    if fan_in >= policy.fan_in_rule and f.get("dest_age_days", 99.0) < 2.0:
        return 0.8, (f"fan_in_24h={int(fan_in)}",)
    return 0.05, ()


def rules_verdict_score(f: dict) -> tuple[float, tuple]:
    """Rules-only report verdict: established reporters who paid the suspect count; fresh
    accounts and reporters who never paid it count for little (rule 4).

    >>> rules_verdict_score({"established_reporters_24h": 2.0})[0] >= 0.8
    True
    >>> rules_verdict_score({"reporters_24h": 30.0, "unestablished_reports_24h": 29.0})[0] < 0.5
    True
    """
    est = f.get("established_reporters_7d", f.get("established_reporters_24h", 0.0))
    est24 = f.get("established_reporters_24h", 0.0)
    paid = f.get("reporter_paid_suspect", 0.0) > 0 and not f.get("reporter_fresh", 0.0)
    listed = f.get("suspect_blacklisted", 0.0) > 0
    score = 0.1
    reasons = []
    if paid:
        score += 0.35
        reasons.append("reporter_paid_suspect")
    if est24 >= 2 or est >= 3:
        score += 0.45
        reasons.append(f"established_reporters_7d={int(est)}")
    elif est >= 1 and paid:
        score += 0.1
    if listed:
        score += 0.3
        reasons.append("suspect_blacklisted")
    return min(score, 0.99), tuple(reasons)


def verdict_of(score: float, policy: Policy) -> str:
    if score >= policy.scam_threshold:
        return "SCAM"
    if score >= policy.review_threshold:
        return "REVIEW"
    return "NOT_SCAM"


# ------------------------------------------------------------------------------ the models
def new_model():
    """A scaled logistic regression: ~30 µs per predict + learn (bench/)."""
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.02), l2=1e-4),
    )


class ModelState:
    __slots__ = ("model", "n_labels", "n_pos", "river_version")

    def __init__(self):
        self.model = new_model()
        self.n_labels = 0
        self.n_pos = 0
        self.river_version = RIVER_VERSION


def top_contributions(model, x: dict, k: int = 2) -> tuple:
    """The features that pushed a linear model's score up most, for a person to read."""
    try:
        scaler, lr = model.steps["StandardScaler"], model.steps["LogisticRegression"]
        xs = scaler.transform_one(x)
        contrib = sorted(((lr.weights.get(n, 0.0) * v, n) for n, v in xs.items()),
                         reverse=True)
        return tuple(f"{n}+{c:.2f}" for c, n in contrib[:k] if c > 0)
    except (KeyError, AttributeError):
        return ()


class Models(Machine):
    def __init__(self, policy: Policy):
        self.p = policy

    def new_state(self, key):
        return ModelState()

    def is_empty(self, s) -> bool:
        return False  # one key per model, kept for the life of the job

    def _score(self, s: ModelState, name: str, x: dict) -> tuple[float, str, tuple]:
        if not self.p.use_models or s.n_labels < self.p.model_warmup_labels:
            return -1.0, "rules", ()
        p = s.model.predict_proba_one(x).get(True, 0.0)
        return p, f"{name}:{s.n_labels}", top_contributions(s.model, x)

    def on_event(self, s: ModelState, ev, now: int) -> list:
        t = type(ev)
        if t is Example:
            s.model.learn_one(ev.x, ev.y)
            s.n_labels += 1
            s.n_pos += int(ev.y)
            return [(METRIC, now, ("labels_" + ev.model, 1))]
        if t is FeaturedTransfer:
            p, version, top = self._score(s, TRANSFER_RISK, ev.features)
            rule, why = rules_transfer_score(ev.features, self.p)
            if p < 0:
                p, reasons = rule, why
            else:
                reasons = (f"model:{TRANSFER_RISK}={p:.2f}",) + top + why
            return [(SCORED_TRANSFERS, now, ScoredTransfer(ev, now, round(p, 6), version,
                                                           reasons))]
        p, version, top = self._score(s, SCAM_VERDICT, ev.features)
        rule, why = rules_verdict_score(ev.features)
        if p < 0:
            p, reasons = rule, why
        else:
            reasons = (f"model:{SCAM_VERDICT}={p:.2f}",) + top + why
        p = round(p, 6)
        return [(SCORED_REPORTS, now, ScoredReport(ev, now, p, verdict_of(p, self.p),
                                                   version, reasons))]


def model_key(ev) -> str:
    """The Models step's key for an event."""
    t = type(ev)
    if t is Example:
        return ev.model
    return TRANSFER_RISK if t is FeaturedTransfer else SCAM_VERDICT


