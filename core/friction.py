"""The friction budget (rule 10): hold thresholds that adapt to recent legitimate scores.

A transfer is held by *score* when its risk score reaches the hold threshold, or by
*expected loss* when its score × USD reaches the expected-loss threshold
(``Policy.hold_expected_loss``, 0: that test off). The friction budget bounds what the two
tests together cost honest users, as two shares of recent legitimate transfers:

* ``Policy.friction_budget``: the share of legitimate transfers held (by count, 0: off);
* ``Policy.friction_budget_usd``: the share of legitimate USD held (0: off).

Only the Learner sees labels, so it keeps, in the model's state (``ModelState.budget``,
checkpointed with it), the *decision scores* of the most recent
``Policy.friction_budget_window`` legitimate (negative) examples — the score the step would
decide with at label time (``max(model, rule)`` once the model is on) — each with its
weight (a kept negative of a 1-in-k sample weighs k) and its USD; and as many recent
positives (score, USD). Each published :class:`~core.events.ModelVersion` carries the
two thresholds (:meth:`Budget.thresholds`):

* without the expected-loss test: the hold threshold is ``max(policy hold_threshold, q)``,
  where ``q`` is the lowest score such that the weight (and the weighted USD) of recent
  legitimate scores at or above ``q`` is at most the budget's share of their total;
* with it: among the pairs (score threshold, expected-loss threshold) that would have held
  at most the budget of these legitimate transfers, by count and by USD, never below the
  policy's two floors, the pair that would have held the most USD of the recent positives
  (then the most positives).

Scores are rounded to :data:`SCORE_DIGITS` digits, as the Score step rounds them; ``q`` is
the next such value above the first score that would overrun the budget. With fewer than
``1 / budget`` legitimate examples no score fits in the budget and ``q`` is above them all.

>>> b = Budget(4)
>>> for s in (0.1, 0.9, 0.3, 0.5, 0.7):      # the oldest (0.1) leaves the window
...     b.add(s, 1)
>>> b.threshold(0.25, floor=0.2)             # 1 of 4 may be held: 0.9 alone
0.700001
>>> b.threshold(0.5, floor=0.2)              # 2 of 4: 0.9 and 0.7
0.500001
>>> b.threshold(0.5, floor=0.8)              # never below the policy's floor
0.8
"""

from __future__ import annotations

from typing import Optional

import numpy as np

SCORE_DIGITS = 6  # the Score step's rounding (core/scorer.py)
STEP = 10.0 ** -SCORE_DIGITS
NEVER = 1.0 + STEP  # a score threshold no score reaches
CENT = 0.01
MAX_CANDIDATES = 12  # score thresholds tried per version with the expected-loss test


def held_by(score: float, usd: float, threshold: float, loss_threshold: float) -> Optional[str]:
    """Which test holds a transfer: ``"score"`` (score >= threshold), ``"expected_loss"``
    (score × USD >= loss_threshold, when that is > 0), or None.

    >>> held_by(0.8, 10.0, 0.75, 5000.0), held_by(0.3, 20000.0, 0.75, 5000.0)
    ('score', 'expected_loss')
    >>> held_by(0.3, 20.0, 0.75, 5000.0), held_by(0.3, 20000.0, 0.75, 0.0)
    (None, None)
    """
    if score >= threshold:
        return "score"
    if loss_threshold > 0 and score * usd >= loss_threshold:
        return "expected_loss"
    return None


class _Ring:
    """The last ``size`` rows of ``width`` floats, in a fixed numpy array (oldest
    overwritten first): adding is O(1) and the window is an array view, with no copy."""

    __slots__ = ("a", "n", "i")

    def __init__(self, size: int, width: int):
        self.a = np.zeros((max(1, int(size)), width))
        self.n = 0  # rows filled
        self.i = 0  # next row to write

    def add(self, row: tuple) -> None:
        self.a[self.i] = row
        self.i = (self.i + 1) % len(self.a)
        self.n = min(self.n + 1, len(self.a))

    def rows(self) -> np.ndarray:
        """The window's rows, in no particular order."""
        return self.a[: self.n]

    def ordered(self) -> list:
        """The window's rows as tuples, oldest first."""
        a = np.roll(self.a, -self.i, axis=0) if self.n == len(self.a) else self.a[: self.n]
        return [tuple(float(v) for v in r) for r in a]


class Budget:
    """Bounded windows of recent legitimate (score, weight, USD) and positive (score,
    USD) examples."""

    __slots__ = ("legit", "pos")

    def __init__(self, window: int):
        self.legit = _Ring(window, 3)
        self.pos = _Ring(window, 2)

    def __setstate__(self, state) -> None:
        slots = state[1] if isinstance(state, tuple) else state
        if "scores" in slots:  # a window pickled before USD and positives were kept
            old = slots["scores"]
            self.__init__(old.maxlen or len(old) or 1)
            for x in old:
                self.add(*x)
            return
        for k, v in slots.items():
            setattr(self, k, v)

    @property
    def scores(self) -> list:
        """The legitimate window, oldest first: (score, weight, USD)."""
        return self.legit.ordered()

    def add(self, score: float, weight: float = 1.0, usd: float = 0.0) -> None:
        self.legit.add((round(score, SCORE_DIGITS), weight, usd))

    def add_positive(self, score: float, usd: float) -> None:
        self.pos.add((round(score, SCORE_DIGITS), usd))

    def measurable(self, budget: float, budget_usd: float = 0.0) -> bool:
        """Does the window weigh enough for the budget to allow one held transfer
        (``1 / budget`` legitimate examples; with only a USD budget, ``1 / budget_usd``)?"""
        share = budget or budget_usd
        return bool(share) and float(self.legit.rows()[:, 1].sum()) * share >= 1.0

    def _legit(self) -> tuple:
        a = self.legit.rows()
        return a[:, 0], a[:, 1], a[:, 2]

    def quantile(self, budget: float, budget_usd: float = 0.0) -> Optional[float]:
        """The lowest score ``q`` (to :data:`SCORE_DIGITS`) with weight(scores >= q) <=
        ``budget`` × total weight (and, with ``budget_usd``, their weighted USD within that
        share of the total); None with no scores."""
        if not self.legit.n:
            return None
        s, w, u = self._legit()
        return _score_quantile(s, w, u, budget or 1.0, budget_usd or 1.0)

    def threshold(self, budget: float, floor: float, budget_usd: float = 0.0) -> float:
        """The hold threshold to publish: the budget's quantile, never below ``floor``."""
        q = self.quantile(budget, budget_usd)
        return floor if q is None or q < floor else q

    def thresholds(self, budget: float, budget_usd: float, floor: float,
                   loss_floor: float) -> tuple:
        """(score threshold, expected-loss threshold) to publish; see the module
        docstring. ``loss_floor`` 0: no expected-loss test (the threshold is 0)."""
        if loss_floor <= 0:
            return self.threshold(budget, floor, budget_usd), 0.0
        if not self.legit.n:
            return floor, loss_floor
        s, w, u = self._legit()
        return _joint(s, w, u, self.pos.rows(), budget or 1.0, budget_usd or 1.0, floor,
                      loss_floor)


def _score_quantile(s, w, u, budget: float, budget_usd: float) -> float:
    """The lowest score q with weight and weighted USD of scores >= q within the shares;
    equal scores are held together or not at all."""
    levels, inv = np.unique(s, return_inverse=True)
    wn = np.bincount(inv, weights=w, minlength=len(levels))[::-1].cumsum()
    wu = np.bincount(inv, weights=w * u, minlength=len(levels))[::-1].cumsum()
    over = (wn > budget * w.sum() + 1e-9) | (wu > budget_usd * (w * u).sum() + 1e-9)
    desc = levels[::-1]
    if not over.any():
        return float(desc[-1])  # every score fits in the budget
    return round(float(desc[int(np.argmax(over))]) + STEP, SCORE_DIGITS)


def _loss_threshold(e, w, wu, free, room_n: float, room_u: float, floor: float) -> float:
    """The lowest expected-loss threshold (to the cent, >= floor) such that the legitimate
    transfers it would add (``free``: not already held by score) fit in the room left.
    ``e``, ``w``, ``wu``, ``free``: by expected loss, highest first."""
    cn = np.cumsum(w * free)
    cu = np.cumsum(wu * free)
    over = free & ((cn > room_n + 1e-9) | (cu > room_u + 1e-9))
    if not over.any():
        return floor
    return max(floor, round(float(e[int(np.argmax(over))]) + CENT, 2))


def _joint(s, w, u, pos, budget: float, budget_usd: float, floor: float,
           loss_floor: float) -> tuple:
    """The (score threshold, expected-loss threshold) pair within both budgets that holds
    the most recent positive USD (ties: the most positives, then the higher score
    threshold)."""
    total_n, wu = w.sum(), w * u
    total_u = wu.sum()
    el = s * u
    top = np.unique(s[s >= floor])[::-1] + STEP
    cands = np.unique(np.concatenate([[NEVER, floor], top[: 4 * MAX_CANDIDATES]]))
    if len(cands) > MAX_CANDIDATES:
        cands = cands[np.linspace(0, len(cands) - 1, MAX_CANDIDATES).round().astype(int)]
    order = np.argsort(-el, kind="stable")  # by expected loss, highest first
    s, w, wu, el = s[order], w[order], wu[order], el[order]
    best = None
    for t in np.round(cands, SCORE_DIGITS)[::-1]:
        by_score = s >= t
        room_n = budget * total_n - w[by_score].sum()
        room_u = budget_usd * total_u - wu[by_score].sum()
        if room_n < -1e-9 or room_u < -1e-9:
            continue
        loss = _loss_threshold(el, w, wu, ~by_score, room_n, room_u, loss_floor)
        got = (0.0, 0)
        if len(pos):
            caught = (pos[:, 0] >= t) | (pos[:, 0] * pos[:, 1] >= loss)
            got = (round(float(pos[:, 1][caught].sum()), 2), int(caught.sum()))
        if best is None or got > best[0]:
            best = (got, float(t), loss)
    # NEVER (no score holds) always fits, so there is a best pair
    return min(best[1], NEVER), best[2]
