"""The two models: their features, rules, River pipelines, prequential metrics and snapshots.

The Learner (:mod:`core.learner`, keyed by model name) learns them from delayed labels
and publishes model versions; the scorers (:mod:`core.scorer`) score every event with
the latest version published before it, first, so every event is scored before any label
about it is learned. Each model is a River pipeline learning online:

* ``transfer_risk`` scores every featured transfer (0..1, the hold / warning score): a
  :class:`~river.preprocessing.StandardScaler` and a logistic regression on the profile
  features plus a few crossed ones (fan-in on a young destination, a large payment to a new
  one). Scams are rare, so a positive example weighs ``sqrt(negatives / positives)`` (capped
  at :data:`MAX_POS_WEIGHT`), passed as ``learn_one``'s ``w``.
* ``scam_verdict`` (the Scam Verdict Model) scores every featured report from its text
  (River's TF-IDF on the description, unigrams and bigrams), its category (one-hot), the
  claimed loss, and the context features (did the reporter pay the suspect and when, its
  account age and record, established / unestablished reporters, the suspect's fan-in and
  list status); thresholds turn the score into ``SCAM`` / ``REVIEW`` / ``NOT_SCAM``.

Decisions:

* Until a model has learned from ``Policy.model_warmup_labels`` labels, of which at least
  ``model_min_negatives`` negatives and ``model_min_positives`` positives, or when
  ``Policy.use_models`` is false (the rules-only baseline; the model still learns, in
  shadow), the score is the documented rule below and ``model_version`` is ``"rules"``.
* With ``Policy.model_sync_labels`` a positive is learned only once its event is
  ``label_horizon_ms`` old, like the negatives of its time (see ``Learner._learn``).
* After warm-up, a transfer's score is ``max(model, rule)``: the rules stay a floor, so a
  young destination with a large fan-in is still held (and a blacklisted one is held by
  Actions whatever the score).
* Report-bombing guard (rule 4), structural and model-independent: unless at least one
  *established* reporter (not a fresh account, and paid the suspect) names the suspect
  within the reporter window — and for a busy address one per 100 of its incoming
  transfers (:data:`BUSY_SHARE`) — the verdict score is capped below ``scam_threshold`` and
  the verdict is never ``SCAM``.

Score before learn: the key's events are ordered (event time, kind) and an
:class:`~core.events.Example` is stamped at least 1 ms after the event it describes,
so no label can reach the model before that event is scored (core/labels.py).

Cost: the transfer model is driven step by step (:func:`linear_parts`: scaler, then
regression, no pipeline plumbing; each example featurised and scaled once per use; model
contributions read from the regression's weights without copying them, and only for scores
that reach the warning threshold).

Prequential metrics (test-then-train at label time): just before the regression learns the
model scores the example; the Learner keeps a score histogram (ROC AUC) and the confusion counts of
the *decision* score (rules or model, as the step would decide now) at the hold threshold
(``transfer_risk``) or the SCAM threshold (``scam_verdict``), counts and USD. Counts go to
Beam counters (``<model>_tp`` …, step ``Learner``); a summary dict goes to the
``model_metrics`` output every :data:`METRICS_EVERY` labels and once at the end of a bounded
run (``final=True``).

Lifecycle: ``Policy.model_warm_start`` (a snapshot file or a directory of them, local or any
Beam filesystem such as ``gs://``) seeds the state; every ``Policy.model_snapshot_every``
labels and at the end of a bounded run each model's snapshot goes out as bytes and the
shell writes ``<model_snapshot_path>/<model>.pkl`` (:mod:`transforms.snapshots` reads and
writes the files). A snapshot is a pickle of ``{"format", "river_version", "models",
"n_labels", "written_at", "snapshot_id"}``; one written by another River version is refused
(:class:`SnapshotError`).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import pickle
from typing import Optional

import river
from river import compose, feature_extraction, linear_model, optim, preprocessing

from core.events import CATEGORY, TEXT
from core.labels import SCAM_VERDICT, TRANSFER_RISK
from core.policy import DAY, Policy
from schemas.rows import CATEGORIES

RIVER_VERSION = river.__version__
SNAPSHOT_FORMAT = 1
METRICS_EVERY = 1000  # labels between two model_metrics summaries
MAX_POS_WEIGHT = 30.0
BUSY_SHARE = 0.01  # established reporters needed per incoming transfer of a busy suspect

# The numeric context a report is scored on (missing ones are 0).
REPORT_NUMERIC = (
    "reporter_age_days", "reporter_fresh", "reporter_log_tx_count", "reporter_paid_suspect",
    "hours_since_paid", "reporter_reports_7d", "reporter_reports_total", "log_claimed_loss",
    "claimed_loss_missing", "log_paid_usd", "suspect_fan_in_24h", "suspect_log_transfers",
    "suspect_blacklisted", "reporters_24h", "established_reporters_24h",
    "established_reporters_7d", "unestablished_reports_24h", "text_len",
)


# ------------------------------------------------------------------------------- the rules
def is_young_dest(f: dict, policy: Policy) -> bool:
    """Was the destination first seen by this job less than ``young_dest_ms`` ago?

    >>> is_young_dest({"dest_age_days": 1.99}, Policy()), is_young_dest({}, Policy())
    (True, False)
    """
    return f.get("dest_age_days", 99.0) < policy.young_dest_ms / DAY


def rules_transfer_score(f: dict, policy: Policy) -> tuple[float, tuple]:
    """Rules-only transfer risk: a fan-in threshold on young destinations, for a *burst*:
    at least ``fan_in_rule`` distinct senders in 24h to a destination first seen less than
    ``young_dest_ms`` (2 days) ago, of which at least ``fan_in_burst_share`` came within
    the last hour.

    "First seen" can only mean first seen by this job: at the start of a replay every busy
    merchant is "young" and passes 25 distinct senders within hours, at its usual pace. A
    scam collection address being hit by a campaign gets them in a burst.

    >>> rules_transfer_score({"fan_in_24h": 40.0, "fan_in_1h": 30.0, "dest_age_days": 0.5},
    ...                      Policy())
    (0.8, ('fan_in_24h=40',))
    >>> rules_transfer_score({"fan_in_24h": 40.0, "fan_in_1h": 6.0, "dest_age_days": 0.5},
    ...                      Policy())[0]
    0.05
    """
    fan_in = f.get("fan_in_24h", 0.0)
    if fan_in >= policy.fan_in_rule and is_young_dest(f, policy) \
            and f.get("fan_in_1h", fan_in) >= policy.fan_in_burst_share * fan_in:
        return 0.8, (f"fan_in_24h={int(fan_in)}",)
    return 0.05, ()


def rules_verdict_score(f: dict) -> tuple[float, tuple]:
    """Rules-only report verdict: established reporters who paid the suspect count; fresh
    accounts and reporters who never paid it count for little (rule 4).

    >>> two = {"established_reporters_24h": 2.0, "reporter_paid_suspect": 1.0}
    >>> rules_verdict_score(two)[0] >= 0.8
    True
    >>> rules_verdict_score({"reporters_24h": 30.0, "unestablished_reports_24h": 29.0})[0] < 0.5
    True
    >>> busy = {"established_reporters_7d": 3.0, "reporter_paid_suspect": 1.0,
    ...         "suspect_log_transfers": math.log1p(900)}
    >>> rules_verdict_score(busy)[0] < 0.8
    True
    """
    est = f.get("established_reporters_7d", f.get("established_reporters_24h", 0.0))
    est24 = f.get("established_reporters_24h", 0.0)
    paid = f.get("reporter_paid_suspect", 0.0) > 0 and not f.get("reporter_fresh", 0.0)
    listed = f.get("suspect_blacklisted", 0.0) > 0
    # A busy address (a merchant with hundreds of payers) collects disputes from genuine
    # customers: it needs established reporters in proportion to its volume (1%).
    n_in = math.expm1(f.get("suspect_log_transfers", 0.0))
    need = max(0.0, math.ceil(BUSY_SHARE * n_in) - 2.0)
    score = 0.1
    reasons = []
    if paid:
        score += 0.35
        reasons.append("reporter_paid_suspect")
    if est24 >= 2 + need or est >= 3 + need:
        score += 0.45
        reasons.append(f"established_reporters_7d={int(est)}")
    elif est >= 1 and paid:
        score += 0.1
    if listed:
        score += 0.3
        reasons.append("suspect_blacklisted")
    return min(score, 0.99), tuple(reasons)


def has_established_reporter(f: dict) -> bool:
    """The guard's condition for a SCAM verdict: at least one reporter that is not a fresh
    account and paid the suspect names it (this report's reporter included) — and, for a
    busy address, one per 100 of its incoming transfers (a merchant's disputes are not a
    scam).

    >>> has_established_reporter({"established_reporters_7d": 1.0})
    True
    >>> has_established_reporter({"established_reporters_7d": 3.0,
    ...                           "suspect_log_transfers": math.log1p(900)})
    False
    """
    est = max(f.get("established_reporters_7d", 0.0), f.get("established_reporters_24h", 0.0))
    n_in = math.expm1(f.get("suspect_log_transfers", 0.0))
    return est >= max(1.0, math.ceil(BUSY_SHARE * n_in - 1e-9))


def verdict_of(score: float, policy: Policy) -> str:
    if score >= policy.scam_threshold:
        return "SCAM"
    if score >= policy.review_threshold:
        return "REVIEW"
    return "NOT_SCAM"


def guarded_verdict(score: float, f: dict, policy: Policy) -> tuple[float, str, tuple]:
    """Rule 4's guard on any verdict score (rules or model): without an established
    reporter the score is capped below ``scam_threshold`` and the verdict is at most REVIEW.

    >>> guarded_verdict(0.97, {"unestablished_reports_24h": 20.0}, Policy())[1]
    'REVIEW'
    >>> guarded_verdict(0.97, {"established_reporters_7d": 1.0}, Policy())[1]
    'SCAM'
    """
    if has_established_reporter(f):
        return score, verdict_of(score, policy), ()
    capped = min(score, max(policy.review_threshold, policy.scam_threshold - 0.01))
    verdict = verdict_of(capped, policy)
    if verdict == "SCAM":
        verdict = "REVIEW"
    return capped, verdict, ("no_established_reporter",) if capped < score else ()


# --------------------------------------------------------------------------- model inputs
def transfer_x(f: dict, policy: Policy) -> dict:
    """The transfer model's input: the numeric profile features plus crossed ones a linear
    model cannot make itself. Scoring and learning both call this on the same features.

    >>> x = transfer_x({"fan_in_24h": 3.0, "new_dest": 1.0, "log_usd": 5.0, "_note": "x"},
    ...                Policy())
    >>> x["new_dest_log_usd"], "_note" in x
    (5.0, False)
    """
    x = {k: v for k, v in f.items() if k[0] != "_"}
    get = f.get
    fan_in = get("fan_in_24h", 0.0)
    fan = math.log1p(fan_in) if fan_in > 0 else 0.0
    young = 1.0 if is_young_dest(f, policy) else 0.0
    new = get("new_dest", 0.0)
    fan1 = get("fan_in_1h", 0.0)
    x["log_fan_in_24h"] = fan
    x["log_fan_in_1h"] = math.log1p(fan1) if fan1 > 0 else 0.0
    x["young_dest"] = young
    x["fan_in_young"] = fan * young
    x["new_dest_log_usd"] = new * get("log_usd", 0.0)
    x["new_dest_young"] = new * young
    x["fresh_new_dest"] = new * get("fresh_account", 0.0)
    x["reported_dest"] = 1.0 if get("reports_7d", 0.0) > 0 else 0.0
    return x


def report_x(f: dict) -> dict:
    """The verdict model's input: text, category and the numeric context."""
    x = {k: float(f.get(k, 0.0)) for k in REPORT_NUMERIC}
    x[TEXT] = str(f.get(TEXT) or "")
    cat = f.get(CATEGORY)
    x[CATEGORY] = cat if cat in CATEGORIES else "OTHER"
    return x


# ------------------------------------------------------------------------------ the models
def new_transfer_model():
    """A scaled logistic regression: ~30 µs per predict + learn (bench/models_bench.py)."""
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.02), l2=1e-4),
    )


def new_verdict_model():
    """TF-IDF of the description (1-2-grams) + one-hot category + scaled context -> LR."""
    return compose.Pipeline(
        compose.TransformerUnion(
            compose.Select(*REPORT_NUMERIC) | preprocessing.StandardScaler(),
            feature_extraction.TFIDF(on=TEXT, ngram_range=(1, 2)),
            compose.Select(CATEGORY) | preprocessing.OneHotEncoder(),
        ),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4),
    )


def new_model(name: str = TRANSFER_RISK):
    return new_verdict_model() if name == SCAM_VERDICT else new_transfer_model()


# ------------------------------------------------------------------- prequential metrics
class Prequential:
    """Test-then-train metrics: a 1000-bin histogram of model scores per class (ROC AUC to
    the bin, and recall at any false-positive rate), and confusion counts (and USD) of the
    decision score at one threshold.

    >>> m = Prequential(0.5)
    >>> for p, y in [(0.9, True), (0.8, False), (0.2, False), (0.7, True)]:
    ...     _ = m.update(p, p, y)
    >>> round(m.auc(), 3), m.tp, m.fp, m.fn, m.tn
    (0.75, 2, 1, 0, 1)
    """

    BINS = 1000

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.pos = [0] * self.BINS
        self.neg = [0] * self.BINS
        self.pos_usd = [0.0] * self.BINS
        self.tp = self.fp = self.fn = self.tn = 0
        self.usd_pos = self.usd_tp = self.usd_neg = self.usd_fp = 0.0

    def update(self, model_p: float, decision: float, y: bool, usd: float = 0.0,
               w: int = 1) -> str:
        """Record one example (``w``: how many it stands for, e.g. a sampled negative)."""
        b = min(self.BINS - 1, max(0, int(model_p * self.BINS)))
        flagged = decision >= self.threshold
        if w != 1:
            usd *= w
        if y:
            self.pos[b] += w
            self.pos_usd[b] += usd
            self.usd_pos += usd
            if flagged:
                self.tp += w
                self.usd_tp += usd
                return "tp"
            self.fn += w
            return "fn"
        self.neg[b] += w
        self.usd_neg += usd
        if flagged:
            self.fp += w
            self.usd_fp += usd
            return "fp"
        self.tn += w
        return "tn"

    def auc(self) -> Optional[float]:
        """Probability that a positive outranks a negative (ties count one half)."""
        n_pos, n_neg = sum(self.pos), sum(self.neg)
        if not n_pos or not n_neg:
            return None
        below = 0
        total = 0.0
        for b in range(self.BINS):
            total += self.pos[b] * (below + 0.5 * self.neg[b])
            below += self.neg[b]
        return total / (n_pos * n_neg)

    def at_fpr(self, max_fpr: float) -> dict:
        """Recall (count and USD) of the model score at the lowest bin threshold whose
        false-positive rate is at most ``max_fpr``."""
        n_pos, n_neg = sum(self.pos), sum(self.neg)
        fp = tp = 0
        usd = 0.0
        best = {"threshold": 1.0, "fpr": 0.0, "recall": 0.0, "usd_recall": 0.0}
        for b in range(self.BINS - 1, -1, -1):
            fp += self.neg[b]
            tp += self.pos[b]
            usd += self.pos_usd[b]
            if n_neg and fp / n_neg > max_fpr:
                break
            best = {"threshold": b / self.BINS, "fpr": fp / n_neg if n_neg else 0.0,
                    "recall": tp / n_pos if n_pos else 0.0,
                    "usd_recall": usd / self.usd_pos if self.usd_pos else 0.0}
        return best

    def summary(self) -> dict:
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        auc = self.auc()
        return {
            "threshold": self.threshold, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "false_positive_rate": fp / (fp + tn) if fp + tn else None,
            "usd_positive": round(self.usd_pos, 2), "usd_true_positive": round(self.usd_tp, 2),
            "usd_recall": self.usd_tp / self.usd_pos if self.usd_pos else None,
            "roc_auc": None if auc is None else round(auc, 4),
            "model_at_fpr_0.005": self.at_fpr(0.005),
            "model_at_fpr_0.01": self.at_fpr(0.01),
        }


# ------------------------------------------------------------------------------- the state
class ModelState:
    """One model's keyed state: the River pipeline, label counts, metrics, provenance."""

    __slots__ = ("name", "model", "n_labels", "n_pos", "river_version", "origin", "metrics",
                 "last_t", "finished", "waiting", "w_neg", "published_at", "published_labels",
                 "budget")

    def __init__(self, name: str = TRANSFER_RISK, threshold: float = 0.5):
        self.name = name
        self.model = new_model(name)
        self.n_labels = 0
        self.n_pos = 0
        self.river_version = RIVER_VERSION
        self.origin: Optional[str] = None  # snapshot id this state was warm-started from
        self.metrics = Prequential(threshold)
        self.last_t: Optional[int] = None
        self.finished = False
        # positives waiting to be learned: a heap of (due, subject id, seq, Example); see
        # Policy.model_sync_labels
        self.waiting: list = []
        self.w_neg = 0.0  # negatives learned, weighted (a 1-in-k sample weighs k)
        self.published_at: Optional[int] = None  # event time of the last published version
        self.published_labels = 0  # n_labels at that version
        self.budget = None  # the friction budget's recent legitimate scores (friction.py)

    def fill_defaults(self) -> "ModelState":
        """Fields a state pickled by an older release lacks get their defaults."""
        for name, value in (("waiting", []), ("w_neg", None), ("published_at", None),
                            ("published_labels", 0), ("budget", None)):
            if not hasattr(self, name):
                setattr(self, name, value)
        if self.w_neg is None:
            self.w_neg = float(self.n_labels - self.n_pos)
        return self

    def version(self) -> str:
        v = f"{self.name}:{self.n_labels}"
        return f"{v}@{self.origin}" if self.origin else v


def pos_weight(s: ModelState) -> float:
    """Weight of a positive example: sqrt(negatives / positives), within [1, MAX]
    (negatives weighted: a 1-in-k sample's negative counts k)."""
    neg = s.w_neg
    return max(1.0, min(MAX_POS_WEIGHT, math.sqrt((neg + 1) / (s.n_pos + 1))))


def linear_parts(model) -> Optional[tuple]:
    """``(scaler, logistic regression)`` when ``model`` is the plain two-step pipeline of
    :func:`new_transfer_model` (the Learner and the scorers then drive the two steps
    themselves, without River's per-call pipeline plumbing), else None (any other model
    goes through River's pipeline API)."""
    steps = getattr(model, "steps", None)
    if steps is None or len(steps) != 2:
        return None
    sc, lr = steps.get("StandardScaler"), steps.get("LogisticRegression")
    if type(sc) is preprocessing.StandardScaler and sc.window_size is None \
            and type(lr) is linear_model.LogisticRegression and lr.l1 == 0:
        return sc, lr
    return None


def regression_weights(lr):
    """The live weights of River's linear regression ``lr`` (read, never copied: River's
    ``weights`` property copies every weight on each access). The one place that reads
    River's private ``_weights``."""
    return lr._weights


def _top(pairs, k: int) -> tuple:
    best = heapq.nlargest(k, pairs)
    return tuple(f"{n}+{c:.2f}" for c, n in best if c > 0)


def top_contributions(model, x: dict, k: int = 2, scaled: Optional[dict] = None) -> tuple:
    """The features that pushed a linear model's score up most, for a person to read.
    ``scaled`` is ``x`` already through the steps before the regression, when known.

    >>> m = new_transfer_model()
    >>> regression_weights(m.steps["LogisticRegression"]).update({"a": 2.0, "b": -1.0})
    >>> top_contributions(m, {"a": 1.0, "b": 1.0}, scaled={"a": 1.0, "b": 1.0})
    ('a+2.00',)
    """
    try:
        w = regression_weights(model.steps["LogisticRegression"])
        xs = scaled
        if xs is None:
            xs = x
            for name, stepper in model.steps.items():
                if name == "LogisticRegression":
                    break
                xs = stepper.transform_one(xs)
        get = w.get
        return _top([(get(n, 0.0) * v, n) for n, v in xs.items()], k)
    except (KeyError, AttributeError, TypeError):
        return ()


# ---------------------------------------------------------------------------- snapshots
class SnapshotError(ValueError):
    """A snapshot that cannot be loaded (another River version, a bad file)."""


def snapshot_bytes(states: dict, at: Optional[int] = None) -> bytes:
    """A snapshot of ``{model name: ModelState}`` as bytes."""
    body = {name: s for name, s in sorted(states.items())}
    payload = pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)
    sid = hashlib.sha1(payload).hexdigest()[:10]
    return pickle.dumps({
        "format": SNAPSHOT_FORMAT,
        "river_version": RIVER_VERSION,
        "models": payload,
        "n_labels": {name: s.n_labels for name, s in body.items()},
        "written_at": at,
        "snapshot_id": sid,
    }, protocol=pickle.HIGHEST_PROTOCOL)


def snapshot_order(data: bytes) -> tuple:
    """(written at, labels learned): which of two snapshots of a model is the later."""
    head = pickle.loads(data)
    return (head.get("written_at") or 0, sum(head.get("n_labels", {}).values()))


def read_snapshot(data: bytes, where: str = "snapshot") -> tuple[dict, str]:
    """``({model name: ModelState}, snapshot id)`` from a snapshot's bytes; refuses one
    written by another River version before unpickling any model."""
    try:
        head = pickle.loads(data)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise SnapshotError(f"{where}: not a model snapshot ({e})") from e
    if not isinstance(head, dict) or head.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{where}: not a model snapshot (format "
                            f"{head.get('format') if isinstance(head, dict) else '?'})")
    if head.get("river_version") != RIVER_VERSION:
        raise SnapshotError(
            f"{where}: snapshot was written by River {head.get('river_version')}, this is "
            f"River {RIVER_VERSION}; retrain, or run the version that wrote it")
    return pickle.loads(head["models"]), head["snapshot_id"]


# ------------------------------------------------------------------------------ scoring
def transfer_proba(model, x: dict) -> tuple[float, Optional[dict]]:
    """(model probability, ``x`` scaled) — the scaled dict when the model is the plain
    scaler + regression (see :func:`linear_parts`), else None."""
    parts = linear_parts(model)
    if parts is None:
        return model.predict_proba_one(x).get(True, 0.0), None
    xs = parts[0].transform_one(x)
    return parts[1].predict_proba_one(xs)[True], xs


def score_transfer(model, version: str, f: dict, policy: Policy) -> tuple[float, str, tuple]:
    """A transfer's risk score, the version that scored it and why: the rule alone when
    ``model`` is None (no version published yet, or the rules-only baseline), else
    ``max(model, rule)`` — the rules stay a floor."""
    rule, why = rules_transfer_score(f, policy)
    if model is None:
        return rule, "rules", why
    x = transfer_x(f, policy)
    pm, xs = transfer_proba(model, x)
    score = pm if pm > rule else rule
    reasons = (f"model:{TRANSFER_RISK}={pm:.2f}",)
    if score >= policy.warn_threshold:  # someone will read why: name the features
        reasons += top_contributions(model, x, scaled=xs)
    return score, version, reasons + why


def score_report(model, version: str, f: dict, policy: Policy) -> tuple[float, str, str, tuple]:
    """A report's verdict score, verdict, version and reasons (rules when ``model`` is
    None), always under rule 4's guard (:func:`guarded_verdict`)."""
    rule, why = rules_verdict_score(f)
    if model is not None:
        x = report_x(f)
        p = model.predict_proba_one(x).get(True, 0.0)
        why = (f"model:{SCAM_VERDICT}={p:.2f}",) + top_contributions(model, x) + why
    else:
        p, version = rule, "rules"
    p, verdict, guard = guarded_verdict(p, f, policy)
    return p, verdict, version, why + guard
