"""Warning efficacy: do warnings stop users from losing money? (the report's section)

With ``--warning_holdout S`` a hashed share S of users gets no ``WARNING``
(:mod:`core.holdout`); the warnings withheld are written to ``warning_holdout.*``.
Two groups of *warning-eligible* users follow:

* **warned**: users who got a WARNING (``outreach``), from their first one;
* **holdout**: users whose WARNING was withheld (``warning_holdout``), from the first one.

The groups are chosen by a hash of the user id, before anything happens, so they differ
only by chance and by the warning. For each eligible user the outcome is whether they then
(strictly after that first warning, within ``window_ms``, default 7 days) lost money to a
scam — a scam transfer by the ground truth that was not refunded — and how many USD. Users
whose follow-up window runs past the end of the replay are left out (both groups alike).

* share who lost, per group, with a Wilson 95% interval;
* **effect** = holdout share - warned share (the losses warnings prevent, per eligible
  user), with Newcombe's hybrid score interval (method 10) for a difference of proportions;
* USD lost per eligible user, per group, and the difference with a Welch normal interval.

On the simulator the true effect is known: a warned victim of an efficacy campaign cancels
their later payments with a set probability, and ``truth`` records every cancelled payment
(``subject_type`` ``CANCELLED``). The *true effect on the warned* is the share of warned
eligible users who would have lost within the window but cancelled every such payment.

>>> [round(x, 4) for x in wilson(15, 148)]  # Newcombe (1998), single proportion, table I
[0.0624, 0.1605]
>>> [round(x, 4) for x in newcombe(56, 70, 48, 80)]  # Newcombe (1998), table II, example (b)
[0.0524, 0.3339]
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional

import numpy as np

from report.columns import TransferColumns, judged, positions
from report.html import pct, render, usd
from report.numbers import DAY_MS, r
from report.sections import ORDERS, Page, section

Z95 = 1.959963984540054
WINDOW_MS = 7 * DAY_MS
CANCELLED = "CANCELLED"


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 - p2 (method 10), from Wilson intervals."""
    p1, p2 = (k1 / n1 if n1 else 0.0), (k2 / n2 if n2 else 0.0)
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def mean_diff(a: list, b: list, z: float = Z95) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): Welch's normal interval."""
    def mv(x):
        if not x:
            return 0.0, 0.0
        m = sum(x) / len(x)
        v = sum((y - m) ** 2 for y in x) / (len(x) - 1) if len(x) > 1 else 0.0
        return m, v / len(x)
    ma, va = mv(a)
    mb, vb = mv(b)
    d, se = ma - mb, math.sqrt(va + vb)
    return d, d - z * se, d + z * se


def first_warnings(rows: list) -> dict:
    """user -> event time of their first WARNING among ``rows`` (Outreach rows)."""
    out: dict = {}
    for o in rows:
        if o.kind == "WARNING" and (o.user_id not in out or o.created_at < out[o.user_id]):
            out[o.user_id] = o.created_at
    return out


def follow_up(index: dict, losses: dict, end_ms: int, window_ms: int = WINDOW_MS) -> dict:
    """user -> USD lost in (t0, t0 + window] for every user whose window ends by
    ``end_ms``; ``losses``: user -> [(t, usd)] of scam transfers not refunded."""
    out = {}
    for user, t0 in index.items():
        if t0 + window_ms > end_ms:
            continue
        out[user] = sum(usd for t, usd in losses.get(user, ()) if t0 < t <= t0 + window_ms)
    return out


def group(usd_lost: dict) -> dict:
    n = len(usd_lost)
    k = sum(1 for v in usd_lost.values() if v > 0)
    lo, hi = wilson(k, n)
    return {"eligible_users": n, "lost_users": k, "lost_share": r(k / n if n else None, 6),
            "lost_share_ci95": [r(lo, 6), r(hi, 6)] if n else None,
            "usd_lost": round(sum(usd_lost.values()), 2),
            "usd_lost_per_user": r(sum(usd_lost.values()) / n if n else None, 2)}


def estimate(warned: dict, holdout: dict) -> dict:
    """The two groups and the effect of a warning; ``warned`` / ``holdout``: user -> USD
    lost in the follow-up window (see :func:`follow_up`)."""
    gw, gh = group(warned), group(holdout)
    out = {"warned": gw, "holdout": gh, "effect": None}
    if gw["eligible_users"] and gh["eligible_users"]:
        lo, hi = newcombe(gh["lost_users"], gh["eligible_users"],
                          gw["lost_users"], gw["eligible_users"])
        d, ulo, uhi = mean_diff(list(holdout.values()), list(warned.values()))
        out["effect"] = {"lost_share_reduction": r(gh["lost_share"] - gw["lost_share"], 6),
                         "lost_share_reduction_ci95": [r(lo, 6), r(hi, 6)],
                         "usd_per_user_reduction": r(d, 2),
                         "usd_per_user_reduction_ci95": [r(ulo, 2), r(uhi, 2)]}
    return out


def measure(transfers: dict, truth, resolutions: list, outreach: list, holdout_rows: list,
            truth_rows: list, share: float, window_ms: int = WINDOW_MS) -> Optional[dict]:
    """The report's figures (None when the run had no holdout). ``truth``: the report's
    ground truth (``transfer`` tid -> (is_scam, ...)); ``truth_rows``: the raw Truth rows
    (for the simulator's cancelled payments, when any)."""
    if share <= 0 and not holdout_rows:
        return None
    refunded = {r.transfer_id for r in resolutions if r.resolution == "REFUNDED"}
    losses: dict = defaultdict(list)
    trs = TransferColumns.of(transfers)
    end = max(0, int(trs.t.max())) if len(trs) else 0
    scam, _laund = judged(truth.transfer, trs.tid)
    lost = scam & ~(positions(trs.tid, list(refunded)) >= 0)
    for t in trs.rows(np.flatnonzero(lost)):  # scam transfers not refunded, in order
        losses[t.user_id].append((t.event_time, float(t.usd_value)))
    iw, ih = first_warnings(outreach), first_warnings(holdout_rows)
    both = set(iw) & set(ih)  # only if the share changed within the run: left out
    iw = {u: t for u, t in iw.items() if u not in both}
    ih = {u: t for u, t in ih.items() if u not in both}
    warned, hold = follow_up(iw, losses, end, window_ms), follow_up(ih, losses, end, window_ms)
    out = estimate(warned, hold)
    out.update({"holdout_share": share, "window_days": window_ms / DAY_MS,
                "left_out_short_follow_up": len(iw) + len(ih) - len(warned) - len(hold)})
    cancelled: dict = defaultdict(list)
    for row in truth_rows:
        if row.subject_type == CANCELLED and row.user_id:
            cancelled[row.user_id].append(row.event_time)
    if cancelled and warned:
        averted = sum(1 for u, usd in warned.items() if usd == 0 and any(
            iw[u] < t <= iw[u] + window_ms for t in cancelled.get(u, ())))
        truth_eff = averted / len(warned)
        ci = (out["effect"] or {}).get("lost_share_reduction_ci95")
        out["true_effect"] = {
            "averted_users": averted, "lost_share_reduction": r(truth_eff, 6),
            "within_ci95": None if ci is None else bool(ci[0] <= truth_eff <= ci[1]),
            "cancelled_payments": sum(len(v) for v in cancelled.values())}
    return out


def html_section(fig: Optional[dict]) -> str:
    """The report's "Warning efficacy" section (empty without a holdout)."""
    if not fig:
        return ""
    groups = []
    for name in ("warned", "holdout"):
        g = fig[name]
        ci = g["lost_share_ci95"]
        groups.append((name, g["eligible_users"], g["lost_users"], pct(g["lost_share"]),
                       "–" if ci is None else f"{pct(ci[0])} – {pct(ci[1])}",
                       usd(g["usd_lost"]), usd(g["usd_lost_per_user"])))
    return render("efficacy.html", fig=fig, groups=groups)


def from_files(input_dir, out_dir, extras: dict, share: float) -> Optional[dict]:
    """:func:`measure` on a backtest's files (``warning_holdout.*`` beside the decisions;
    the replay's ``truth.*`` for the simulator's cancelled payments); the decisions and
    transfers already read are in ``extras`` (:func:`report.metrics.compute`)."""
    from pathlib import Path

    from report.files import output_named
    from report.truth import kept_rows

    out_dir, input_dir = Path(out_dir), Path(input_dir)
    holdout_rows = output_named(out_dir, "warning_holdout", "outreach")
    if share <= 0 and not holdout_rows:
        return None
    truth_rows = kept_rows(extras["truth"], input_dir, CANCELLED)  # read with the truth
    return measure(extras["transfers"], extras["truth"], extras["resolutions"],
                   extras["outreach"], holdout_rows, truth_rows, share)


@section("Warning efficacy (holdout)", ORDERS["Warning efficacy"])
def _section(p: Page) -> str:
    return html_section(p.metrics.get("warning_efficacy"))
