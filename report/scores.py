"""Figures from the recorded scores (``scores.parquet``): the threshold sweep and the
models' prequential AUC.

**Threshold sweep**: for other hold thresholds, a transfer would be held when its score
reaches the threshold, its destination was blacklisted or a look-alike, or already frozen;
it would be prevented when a freeze of its destination came within the hold. An estimate:
it assumes freezes (driven by reports, outcomes and verdicts, not by holds) stay as they
were.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Optional

from report.numbers import r, share
from report.truth import GroundTruth

SWEEP = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95


def auc(scores: list, labels: list) -> Optional[float]:
    """Area under the ROC curve (ties averaged); None without both classes.

    >>> auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if not pos or not neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        i = j + 1
    rp = sum(x for x, y in zip(ranks, labels, strict=True) if y)
    return round((rp - pos * (pos + 1) / 2) / (pos * neg), 4)


def _sweep_base(scores: list, truth: GroundTruth, frozen_at: dict, hold_ms: int) -> list:
    """Per scored transfer: (score, always held, scam, legit, prevented if held, usd,
    recovered)."""
    base = []
    for tid, t, to, usd, score, _mv, listed, look in scores:
        scam, _typ, detail = truth.transfer.get(tid, (False, None, None))
        fa = frozen_at.get(to)
        already = fa is not None and fa <= t
        always = bool(listed) or bool(look) or already
        # The summary's definitions: prevented = held, then refunded by a freeze within the
        # hold; recovered = sent to an address already frozen (held and refunded at once).
        prevented = scam and fa is not None and t < fa <= t + hold_ms
        recovered = scam and already
        base.append((score, always, scam, (not scam) and detail != "laundering", prevented,
                     usd, recovered))
    return base


def _at_threshold(base: list, th: float, n_legit: int) -> dict:
    c = Counter()

    def count(name: str, usd: float) -> None:
        c[name] += 1
        c[name + "_usd"] += usd

    for score, always, scam, legit, prev, usd, rec in base:
        if not (always or score >= th):
            continue
        count("held", usd)
        if scam:
            count("scam_held", usd)
            if prev:
                count("prevented", usd)
            elif rec:
                count("recovered", usd)
        elif legit:
            count("legit_held", usd)
    return {"threshold": th, "held": c["held"], "held_usd": r(c["held_usd"]),
            "scam_held": c["scam_held"], "scam_held_usd": r(c["scam_held_usd"]),
            "prevented": c["prevented"], "prevented_usd": r(c["prevented_usd"]),
            "recovered": c["recovered"], "recovered_usd": r(c["recovered_usd"]),
            "legit_held": c["legit_held"], "legit_held_usd": r(c["legit_held_usd"]),
            "legit_held_share": share(c["legit_held"], n_legit),
            "precision": share(c["scam_held"], c["held"])}


def threshold_sweep(scores: list, truth: GroundTruth, frozen_at: dict, hold_ms: int,
                    thresholds: tuple = SWEEP) -> list:
    """What alternative hold thresholds would have held and prevented (see module doc)."""
    base = _sweep_base(scores, truth, frozen_at, hold_ms)
    n_legit = sum(1 for b in base if b[3])
    return [_at_threshold(base, th, n_legit) for th in thresholds]


def model_figures(scores: list, truth: GroundTruth) -> Optional[dict]:
    """Prequential figures: every transfer is scored before any label about it is learned,
    so the AUC of the recorded scores against the truth is an honest out-of-sample figure."""
    if not scores:
        return None
    by_v = Counter("rules" if s[5] == "rules" else "model" for s in scores)
    out: dict = {"scored": len(scores), "scored_by": dict(by_v)}
    ys = [truth.transfer.get(s[0], (False,))[0] for s in scores]
    out["auc_all"] = auc([s[4] for s in scores], ys)
    m = [(s[4], y) for s, y in zip(scores, ys, strict=True) if s[5] != "rules"]
    out["auc_model_scored"] = auc([a for a, _ in m], [b for _, b in m]) if m else None
    weekly: dict = defaultdict(lambda: ([], []))
    for s, y in zip(scores, ys, strict=True):
        w = datetime.fromtimestamp(s[1] / 1000, tz=timezone.utc).strftime("%G-W%V")
        weekly[w][0].append(s[4])
        weekly[w][1].append(y)
    out["auc_by_week"] = {w: auc(a, b) for w, (a, b) in sorted(weekly.items())}
    return out
