"""Hold precision by reason: of the holds each test placed (blacklist, frozen destination,
look-alike, model score, fan-in rule, expected loss), the scam share by count and by USD.
Used by ``metrics.json`` (section ``"hold_precision"``), ``report.html`` and
``bench/friction_bench.py``.

A reason whose holds are mostly honest money is flagged (``mostly_honest``: under half of
its judged USD is scam): that test costs honest users more than it protects, and is the
one to tune (its threshold, or the friction budget).

>>> from schemas.rows import Hold, Transfer
>>> t = [Transfer("a", 0, "u", "0x1", None, "ETH", "ETH", "1", 900.0, "WITHDRAWAL"),
...      Transfer("b", 0, "v", "0x2", None, "ETH", "ETH", "1", 100.0, "WITHDRAWAL")]
>>> h = [Hold("h" + x.transfer_id, x.transfer_id, x.user_id, x.to_address, "ETH", "1",
...           x.usd_value, 0, 1, 0.9, ["hold_test=expected_loss"]) for x in t]
>>> p = precision_by_reason(t, {"a": "legit", "b": "scam"}.get, h)["expected_loss"]
>>> (p["holds"], p["precision"], p["precision_usd"], p["mostly_honest"])
(2, 0.5, 0.1, True)
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional

from report.columns import TransferColumns
from report.friction import REASONS, hold_reason
from report.html import render
from report.sections import ORDERS, Page, section
from report.truth import kind_arrays, kinds


def precision_by_reason(transfers: Iterable, kind_of, holds: Iterable) -> dict:
    """Per hold reason: holds, judged (scam or legit) holds, scam and legitimate counts and
    USD, and the precision by count and by USD (None with nothing judged). ``transfers``:
    the transfers, a dict of them by transfer id, or the report's
    :class:`report.columns.TransferColumns`."""
    holds = list(holds)
    # transfer id -> transfer: the report's map as it is (the held ones of its columns),
    # else made from the transfers
    if isinstance(transfers, TransferColumns):
        by_id = transfers.by_id(h.transfer_id for h in holds)
    else:
        by_id = transfers if isinstance(transfers, dict) else {t.transfer_id: t
                                                               for t in transfers}
    scam, legit = kind_arrays(kind_of, [h.transfer_id for h in holds])
    by: dict = {r: Counter() for r in REASONS}
    for i, h in enumerate(holds):
        t = by_id.get(h.transfer_id)
        if t is None:
            continue
        c = by.setdefault(hold_reason(h), Counter())
        kind = "scam" if scam[i] else "legit" if legit[i] else None
        usd = float(t.usd_value or 0.0)
        c["holds"] += 1
        if kind in ("scam", "legit"):
            c[kind] += 1
            c[kind + "_usd"] += usd
    out = {}
    for r, c in by.items():
        judged, judged_usd = c["scam"] + c["legit"], c["scam_usd"] + c["legit_usd"]
        prec_usd = c["scam_usd"] / judged_usd if judged_usd else None
        out[r] = {"holds": c["holds"], "scam": c["scam"], "legit": c["legit"],
                  "scam_usd": round(c["scam_usd"], 2), "legit_usd": round(c["legit_usd"], 2),
                  "precision": c["scam"] / judged if judged else None,
                  "precision_usd": prec_usd,
                  "mostly_honest": prec_usd is not None and prec_usd < 0.5}
    return out


def add_precision(metrics: dict, extras: dict) -> dict:
    """Put the per-reason precision into ``metrics["hold_precision"]`` from what
    :func:`report.metrics.compute` gathered; a warning names each reason that holds mostly
    honest money."""
    kind_of = kinds(extras["truth"].transfer)

    p = precision_by_reason(extras["transfers"], kind_of, extras["holds"])
    metrics["hold_precision"] = p
    honest = [r for r, v in p.items() if v["mostly_honest"]]
    if honest:
        named = [f"{r} ({p[r]['precision_usd']:.0%} of "
                 f"{p[r]['scam_usd'] + p[r]['legit_usd']:,.0f} USD)" for r in honest]
        metrics.setdefault("warnings", []).append(
            "holds mostly on honest money (scam share of held USD under 50%): "
            + ", ".join(named))
    return p


def active_controls(policy: Optional[dict]) -> list:
    """The friction controls a run's policy turns on, as lines for the report."""
    pol = policy or {}
    out = []
    if pol.get("friction_budget"):
        out.append(f"friction budget: at most {float(pol['friction_budget']):.2%} of recent "
                   "legitimate transfers held")
    if pol.get("friction_budget_usd"):
        out.append(f"friction budget: at most {float(pol['friction_budget_usd']):.2%} of "
                   "recent legitimate USD held")
    if pol.get("friction_cap"):
        hours = float(pol.get("friction_window_ms") or 86_400_000) / 3_600_000
        out.append(f"per-user cap: {pol['friction_cap']} model holds per {hours:g}h")
    if pol.get("friction_cap_long"):
        days = float(pol.get("friction_long_window_ms") or 30 * 86_400_000) / 86_400_000
        out.append(f"per-user cap: {pol['friction_cap_long']} model holds per {days:g} days")
    if pol.get("hold_expected_loss"):
        out.append(f"expected-loss hold: score x USD >= {float(pol['hold_expected_loss']):,.0f}"
                   " USD (raised by the budget)")
    return out or ["none: every model hold stands, whoever bears it"]


def html_section(p: Optional[dict], policy: Optional[dict] = None) -> str:
    """The report's section: precision per hold reason and the active friction controls."""
    if not p:
        return ""
    return render("precision.html", p=p, controls=active_controls(policy))


@section("Hold precision by reason", ORDERS["Hold precision by reason"])
def _section(p: Page) -> str:
    return html_section(p.metrics.get("hold_precision"), (p.metrics.get("run") or {}).get("policy"))
