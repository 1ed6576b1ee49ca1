"""The friction budget (rule 10): a hold threshold that adapts to recent legitimate scores.

``Policy.friction_budget`` is the share of legitimate transfers a risk team accepts to hold
(``0.005``: 0.5%). Only the Learner sees labels, so it keeps, in the model's state
(``ModelState.budget``, checkpointed with it), the *decision scores* of the most recent
``Policy.friction_budget_window`` legitimate (negative) examples — the score the step would
decide with at label time (``max(model, rule)`` once the model is on) — each with its
weight (a kept negative of a 1-in-k sample weighs k). Each published
:class:`~transforms.events.ModelVersion` carries the threshold

    ``max(policy hold_threshold, q)``, where ``q`` is the lowest score such that the
    weight of recent legitimate scores at or above ``q`` is at most ``budget`` times
    their total weight,

so that, had these legitimate transfers been scored with it, at most the budget of them
(by weight) would have been held. Scores are rounded to :data:`SCORE_DIGITS` digits, as
the Score step rounds them; ``q`` is the next such value above the first score that would
overrun the budget. With fewer than ``1 / budget`` legitimate examples no score fits in
the budget and ``q`` is above them all.

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

from collections import deque
from typing import Optional

SCORE_DIGITS = 6  # the Score step's rounding (transforms/scorer.py)
STEP = 10.0 ** -SCORE_DIGITS


class Budget:
    """A bounded window of recent legitimate decision scores and their weights."""

    __slots__ = ("scores",)

    def __init__(self, window: int):
        self.scores: deque = deque(maxlen=max(1, int(window)))

    def add(self, score: float, weight: float = 1.0) -> None:
        self.scores.append((round(score, SCORE_DIGITS), weight))

    def quantile(self, budget: float) -> Optional[float]:
        """The lowest score ``q`` (to :data:`SCORE_DIGITS`) with weight(scores >= q) <=
        ``budget`` × total weight; None with no scores."""
        if not self.scores:
            return None
        allowed = budget * sum(w for _, w in self.scores)
        held = 0.0
        # descending by score; equal scores are held together or not at all
        by_score: dict = {}
        for s, w in self.scores:
            by_score[s] = by_score.get(s, 0.0) + w
        for s in sorted(by_score, reverse=True):
            held += by_score[s]
            if held > allowed + 1e-9:
                return round(s + STEP, SCORE_DIGITS)
        return min(by_score)  # every score fits in the budget

    def threshold(self, budget: float, floor: float) -> float:
        """The hold threshold to publish: the budget's quantile, never below ``floor``."""
        q = self.quantile(budget)
        return floor if q is None or q < floor else q
