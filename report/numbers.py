"""Small helpers for the report's figures: days and months of event time, quantiles,
rounding, shares, durations.

>>> quantile([1, 2, 3, 4], 0.5), share(1, 3), share(1, 0), duration(90 * 60_000)
(2.5, 0.333333, None, '90m')
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from datetime import datetime, timezone
from typing import Optional

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def day(ms: int) -> str:
    return _day(ms // DAY_MS)


def month(ms: int) -> str:
    return _day(ms // DAY_MS)[:7]


@functools.lru_cache(maxsize=4096)
def _day(d: int) -> str:
    """The UTC date of day ``d`` since the epoch (a report formats one per transfer)."""
    return datetime.fromtimestamp(d * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")


def stamp(ms, seconds: bool = True) -> str:
    """``ms`` (epoch milliseconds) as UTC ``YYYY-MM-DD HH:MM:SS`` (``HH:MM`` without
    ``seconds``): what ``datetime.fromtimestamp(ms / 1000, timezone.utc).strftime`` gives,
    without a datetime per call for an int (the date once per day).

    >>> stamp(1_767_571_199_999), stamp(1_767_571_200_000, seconds=False)
    ('2026-01-04 23:59:59', '2026-01-05 00:00')
    """
    if type(ms) is not int or ms < 0:
        fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime(fmt)
    d, rest = divmod(ms, DAY_MS)
    s = rest // 1000
    if seconds:
        return f"{_day(d)} {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{_day(d)} {s // 3600:02d}:{s // 60 % 60:02d}"


def quantile(xs: list, q: float) -> Optional[float]:
    if not xs:
        return None
    s = sorted(xs)
    i = (len(s) - 1) * q
    lo, hi = math.floor(i), math.ceil(i)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def r(x: Optional[float], nd: int = 2) -> Optional[float]:
    return None if x is None else round(float(x), nd)


def share(a: float, b: float) -> Optional[float]:
    return None if not b else round(a / b, 6)


def rounded(c: Counter) -> dict:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in sorted(c.items())}


def duration(ms: Optional[float]) -> str:
    """A duration as people read it: 30d, 24h, 90m, 45s."""
    if ms is None:
        return "–"
    from pipelines.options import format_duration

    return format_duration(int(ms))
