"""Figures from the recorded scores (``scores.parquet``): the threshold sweep and the
models' prequential AUC.

**Threshold sweep**: for other hold thresholds, a transfer would be held when its score
reaches the threshold, its destination was blacklisted or a look-alike, or already frozen;
it would be prevented when a freeze of its destination came within the hold. An estimate:
it assumes freezes (driven by reports, outcomes and verdicts, not by holds) stay as they
were.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from datetime import datetime, timezone
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from report.columns import Coded, _strings, judged, positions
from report.numbers import r, share
from report.truth import GroundTruth

SWEEP = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95


class ScoreColumns:
    """``scores.parquet`` as columns (:func:`report.files.read_scores`): ``tid`` (Arrow
    strings), ``to`` (:class:`report.columns.Coded`, or a function that reads the column:
    :meth:`to_among`) and ``mv`` (model version, coded), ``look``
    (a look-alike: ``lookalike_of`` set) a boolean array; ``t`` (event time, ms), ``usd``,
    ``score`` and ``listed`` (blacklisted) as numpy arrays; one row per scored transfer, in
    the file's order. Iterating gives the rows as tuples (transfer_id, event_time,
    to_address, usd_value, score, model_version, blacklisted, lookalike_of is set)."""

    def __init__(self, tid, t, to, usd, score, mv, listed, look):
        self.tid = _strings(tid)
        # the destinations: coded, or a function reading their column when asked (the
        # threshold sweep alone asks, for a few addresses)
        self.to = to if isinstance(to, Coded) or callable(to) else Coded.of(to)
        self.mv = mv if isinstance(mv, Coded) else Coded.of(mv)
        if isinstance(look, (pa.Array, pa.ChunkedArray)):  # bool(x): set and not ''
            look = pc.greater(pc.utf8_length(_strings(look)), 0).fill_null(False) \
                .to_numpy(zero_copy_only=False)
        else:
            look = np.fromiter((bool(x) for x in look), bool, len(look))
        self.look = np.asarray(look, dtype=bool)
        self.t = np.asarray(t, dtype=np.int64)
        self.usd = np.asarray(usd, dtype=np.float64)
        self.score = np.asarray(score, dtype=np.float64)
        self.listed = np.asarray(listed, dtype=bool)
        self._truth: tuple = (None, None)

    @classmethod
    def of(cls, scores) -> "ScoreColumns":
        """``scores`` as columns (rows as tuples, or columns already)."""
        if isinstance(scores, cls):
            return scores
        cols = list(zip(*scores, strict=True)) if scores else [()] * 8
        tid, t, to, usd, score, mv, listed, look = (list(c) for c in cols)
        return cls(tid, t, to, usd, score, mv, [bool(x) for x in listed], look)

    def __len__(self) -> int:
        return len(self.t)

    def __bool__(self) -> bool:
        return len(self.t) > 0

    def __iter__(self):
        n = len(self)
        to = self.to().to_pylist() if callable(self.to) else self.to.values(range(n))
        return iter(zip(self.tid.to_pylist(), self.t.tolist(), to,
                        self.usd.tolist(), self.score.tolist(), self.mv.values(range(n)),
                        self.listed.tolist(), self.look.tolist(), strict=True))

    def judged(self, truth: GroundTruth) -> tuple:
        """(scam, legit) boolean arrays by ``truth`` (legit: not a scam and not laundering,
        :func:`report.truth.kinds`); computed once per ground truth."""
        if self._truth[0] is not truth:
            scam, laund = judged(truth.transfer, self.tid)
            self._truth = (truth, (scam, ~scam & ~laund))
        return self._truth[1]

    def to_among(self, keys: list) -> np.ndarray:
        """Each row's destination's position among ``keys`` (-1: none of them)."""
        if not callable(self.to):
            return np.append(positions(self.to.names, keys), -1)[self.to.codes]
        col = self.to()  # read now, a chunk at a time, and let go
        return np.concatenate([positions(c, keys) for c in col.chunks] or
                              [np.zeros(0, dtype=np.int64)])

    def models(self):
        """A boolean array: scored by a model (not the rules)."""
        return self.mv.per_name(lambda v: v != "rules", bool, True)


def auc(scores, labels) -> Optional[float]:
    """Area under the ROC curve (ties averaged); None without both classes.

    >>> auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    y = np.asarray(labels, dtype=bool)
    pos = int(np.count_nonzero(y))
    neg = len(y) - pos
    if not pos or not neg:
        return None
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    ss = s[order]
    first = np.empty(len(ss), dtype=bool)  # the first of each run of equal scores
    first[0] = True
    np.not_equal(ss[1:], ss[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(ss)) - 1
    ranks = np.empty(len(ss))
    ranks[order] = ((starts + ends) / 2 + 1)[np.cumsum(first) - 1]  # ties: the mean rank
    rp = float(ranks[y].sum())  # halves of integers: the sum is exact in any order
    return round((rp - pos * (pos + 1) / 2) / (pos * neg), 4)


def _sweep_base(scores: ScoreColumns, truth: GroundTruth, frozen_at: dict,
                hold_ms: int) -> dict:
    """Per scored transfer (arrays): always held, scam, legit, prevented if held, usd,
    recovered."""
    scam, legit = scores.judged(truth)
    n = len(scores)
    already = np.zeros(n, dtype=bool)
    prevented = np.zeros(n, dtype=bool)
    t = scores.t
    # the first freeze of each destination (rows without one: none)
    at = scores.to_among(list(frozen_at))
    has = at >= 0
    fa = np.append(np.fromiter(frozen_at.values(), np.int64, len(frozen_at)), 0)[at]
    # The summary's definitions: prevented = held, then refunded by a freeze within the
    # hold; recovered = sent to an address already frozen (held and refunded at once).
    np.logical_and(has, fa <= t, out=already)
    np.logical_and(has, (t < fa) & (fa <= t + hold_ms), out=prevented)
    del fa, has
    look = scores.look
    return {"score": scores.score, "always": scores.listed | look | already, "scam": scam,
            "legit": legit, "prevented": scam & prevented, "recovered": scam & already,
            "usd": scores.usd}


def _usd(usd, mask) -> float:
    """The USD of ``mask``'s rows added one after another in row order (as a running
    total would: the same float to the last bit)."""
    x = usd[mask]
    return float(np.cumsum(x)[-1]) if len(x) else 0


def _at_threshold(base: dict, th: float, n_legit: int) -> dict:
    held = base["always"] | (base["score"] >= th)
    scam_held = held & base["scam"]
    prevented = scam_held & base["prevented"]
    recovered = scam_held & ~base["prevented"] & base["recovered"]
    legit_held = held & ~base["scam"] & base["legit"]
    usd = base["usd"]
    c = {}
    for name, m in (("held", held), ("scam_held", scam_held), ("prevented", prevented),
                    ("recovered", recovered), ("legit_held", legit_held)):
        c[name] = int(np.count_nonzero(m))
        c[name + "_usd"] = _usd(usd, m)
    return {"threshold": th, "held": c["held"], "held_usd": r(c["held_usd"]),
            "scam_held": c["scam_held"], "scam_held_usd": r(c["scam_held_usd"]),
            "prevented": c["prevented"], "prevented_usd": r(c["prevented_usd"]),
            "recovered": c["recovered"], "recovered_usd": r(c["recovered_usd"]),
            "legit_held": c["legit_held"], "legit_held_usd": r(c["legit_held_usd"]),
            "legit_held_share": share(c["legit_held"], n_legit),
            "precision": share(c["scam_held"], c["held"])}


def threshold_sweep(scores, truth: GroundTruth, frozen_at: dict, hold_ms: int,
                    thresholds: tuple = SWEEP) -> list:
    """What alternative hold thresholds would have held and prevented (see module doc)."""
    base = _sweep_base(ScoreColumns.of(scores), truth, frozen_at, hold_ms)
    n_legit = int(np.count_nonzero(base["legit"]))
    return [_at_threshold(base, th, n_legit) for th in thresholds]


@functools.lru_cache(maxsize=4096)
def _iso_week(day: int) -> str:
    """The ISO week (``2026-W02``) of day ``day`` since the epoch (UTC)."""
    return datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%G-W%V")


def model_figures(scores, truth: GroundTruth) -> Optional[dict]:
    """Prequential figures: every transfer is scored before any label about it is learned,
    so the AUC of the recorded scores against the truth is an honest out-of-sample figure."""
    if not scores:
        return None
    cols = ScoreColumns.of(scores)
    model = cols.models()
    n_model = int(np.count_nonzero(model))
    # each version's count, in the order each first appears (as a Counter of the rows)
    counts = {"model": n_model, "rules": len(cols) - n_model}
    order = ("model", "rules") if model[0] else ("rules", "model")
    by_v = {k: counts[k] for k in order if counts[k]}
    out: dict = {"scored": len(cols), "scored_by": by_v}
    ys, _legit = cols.judged(truth)
    out["auc_all"] = auc(cols.score, ys)
    out["auc_model_scored"] = auc(cols.score[model], ys[model]) if n_model else None
    days = cols.t // 86_400_000  # the week of each score, by its day
    weeks: dict = defaultdict(list)
    uniq, inverse = np.unique(days, return_inverse=True)
    for k, d in enumerate(uniq.tolist()):
        weeks[_iso_week(d)].append(k)
    weekly = {}
    for w, ks in sorted(weeks.items()):
        m = np.isin(inverse, ks)
        weekly[w] = auc(cols.score[m], ys[m])
    out["auc_by_week"] = weekly
    return out
