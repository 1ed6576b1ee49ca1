"""Escalation inside the hold (rule 14): the report's figures and section.

* **Holds and their hours**: holds extended (a resolution naming ``extended``, or a hold
  that lasted past ``hold_ms``), the hours extensions added, the honest hold-hours in all
  (legitimate transfers by the ground truth), scam money held and then released, and scam
  holds refunded only after the 24h (what the extensions bought).
* **Measured, not assumed** (with ``--escalation_holdout S``): a salted hash of the transfer
  id puts a share S of holds in a control group that gets no stage contact
  (:func:`core.pyramid.in_escalation_holdout`). Among the holds of scam transfers:
  the share released (lost) and the USD lost per hold, per group; the effect = holdout
  minus escalated, with Newcombe's interval (shares) and Welch's (USD). The honest
  hold-hours per honest hold, per group: what the contacts cost.
* **Victim reports within the hold**: the share of scam holds whose sender reported the
  scam (a report naming the transfer or the destination) while the hold was pending, per
  group; the effect = escalated minus holdout (Newcombe). On the simulator the true effect
  is known (``simulator/response.py`` writes a ``PROMPTED`` truth row per report a contact
  caused): the share of escalated scam holds with a prompted report within the pending
  hold, shown beside the measured interval.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

from core.pyramid import in_escalation_holdout
from report.columns import subset
from report.efficacy import group, mean_diff, newcombe, wilson
from report.html import pct, render, usd
from report.numbers import r
from report.sections import ORDERS, Page, section

HOUR_MS = 3_600_000
PROMPTED = "PROMPTED"


def _is_scam(known: dict, tid: str) -> Optional[bool]:
    """``known``: the truth's map about the holds (:func:`_known`); None: not in it."""
    v = known.get(tid)
    return None if v is None else bool(v[0])


def _known(truth, holds: list) -> dict:
    """The ground truth's map restricted to the transfers of ``holds``."""
    return subset(truth.transfer, (h.transfer_id for h in holds))


def _victim_reports(reports: dict) -> dict:
    """reporter -> [(t, transfer id, suspect address)]."""
    out: dict = defaultdict(list)
    for rep in reports.values():
        out[rep.reporter_user_id].append((rep.event_time, rep.transfer_id, rep.suspect_address))
    return out


def reported_in_hold(h, resolved_at: int, by_reporter: dict) -> bool:
    """Did the sender report the scam (naming the transfer or the destination) while the
    hold was pending?"""
    return any(h.placed_at < t <= resolved_at and (tid == h.transfer_id or sus == h.to_address)
               for t, tid, sus in by_reporter.get(h.user_id, ()))


def hours_figures(holds: list, res_by: dict, truth, hold_ms: int) -> dict:
    """Extensions, honest hold-hours, scam money held and released, late refunds."""
    out = defaultdict(float)
    known = _known(truth, holds)
    for h in holds:
        res = res_by.get(h.transfer_id)
        if res is None:
            continue
        hours = (res.resolved_at - h.placed_at) / HOUR_MS
        extra = max(0.0, (res.resolved_at - h.placed_at - hold_ms) / HOUR_MS)
        scam = _is_scam(known, h.transfer_id)
        who = "scam" if scam else "honest"
        out[f"{who}_holds"] += 1
        out[f"{who}_hold_hours"] += hours
        if extra > 0 or "extended" in (res.reason or ""):
            out[f"{who}_holds_extended"] += 1
            out[f"{who}_extension_hours"] += extra
        if scam and res.resolution == "RELEASED":
            out["scam_held_then_released"] += 1
            out["scam_usd_held_then_released"] += float(h.usd_value)
        if scam and res.resolution == "REFUNDED" and extra > 0:
            out["scam_refunded_after_extension"] += 1
            out["scam_usd_refunded_after_extension"] += float(h.usd_value)
    return {k: (r(v, 2) if ("usd" in k or "hours" in k) else int(v))
            for k, v in sorted(out.items())}


def _scam_group(lost: dict) -> dict:
    """:func:`report.efficacy.group` in this section's terms (a scam hold, released)."""
    g = group(lost)
    return {"scam_holds": g["eligible_users"], "released": g["lost_users"],
            "released_share": g["lost_share"], "released_share_ci95": g["lost_share_ci95"],
            "usd_lost": g["usd_lost"], "usd_lost_per_scam_hold": g["usd_lost_per_user"]}


def _groups(holds: list, res_by: dict, truth, share: float, by_reporter: dict,
            prompted: dict) -> dict:
    g: dict = {k: {"lost": {}, "reported": [], "prompted": 0, "honest_hours": []}
               for k in ("escalated", "holdout")}
    known = _known(truth, holds)
    for h in holds:
        res = res_by.get(h.transfer_id)
        scam = _is_scam(known, h.transfer_id)
        if res is None or scam is None:
            continue
        d = g["holdout" if in_escalation_holdout(h.transfer_id, share) else "escalated"]
        if not scam:
            d["honest_hours"].append((res.resolved_at - h.placed_at) / HOUR_MS)
            continue
        lost = float(h.usd_value) if res.resolution == "RELEASED" else 0.0
        d["lost"][h.transfer_id] = lost
        d["reported"].append(reported_in_hold(h, res.resolved_at, by_reporter))
        t = prompted.get(h.transfer_id)
        d["prompted"] += t is not None and h.placed_at < t <= res.resolved_at
    return g


def measure(holds: list, res_by: dict, truth, reports: dict, share: float,
            prompted: dict) -> Optional[dict]:
    """The holdout comparison (None without a holdout)."""
    if share <= 0:
        return None
    g = _groups(holds, res_by, truth, share, _victim_reports(reports), prompted)
    e, h = g["escalated"], g["holdout"]
    out = {"holdout_share": share}
    for name, d in g.items():
        rep = d["reported"]
        lo, hi = wilson(sum(rep), len(rep))
        hh = d["honest_hours"]
        out[name] = dict(_scam_group(d["lost"]), reported_in_hold=sum(rep),
                         reported_share=r(sum(rep) / len(rep), 6) if rep else None,
                         reported_share_ci95=[r(lo, 6), r(hi, 6)] if rep else None,
                         honest_holds=len(hh), honest_hold_hours=r(sum(hh), 1),
                         honest_hours_per_hold=r(sum(hh) / len(hh), 2) if hh else None)
    ne, nh = len(e["reported"]), len(h["reported"])
    if not (ne and nh):
        return out
    lo, hi = newcombe(out["holdout"]["released"], nh, out["escalated"]["released"], ne)
    d, ulo, uhi = mean_diff(list(h["lost"].values()), list(e["lost"].values()))
    rlo, rhi = newcombe(sum(e["reported"]), ne, sum(h["reported"]), nh)
    measured = sum(e["reported"]) / ne - sum(h["reported"]) / nh
    out["effect"] = {"released_share_reduction": r(out["holdout"]["released_share"]
                                                   - out["escalated"]["released_share"], 6),
                     "released_share_reduction_ci95": [r(lo, 6), r(hi, 6)],
                     "usd_lost_per_scam_hold_reduction": r(d, 2),
                     "usd_lost_per_scam_hold_reduction_ci95": [r(ulo, 2), r(uhi, 2)],
                     "reported_share_increase": r(measured, 6),
                     "reported_share_increase_ci95": [r(rlo, 6), r(rhi, 6)]}
    hh_e, hh_h = out["escalated"]["honest_hours_per_hold"], out["holdout"][
        "honest_hours_per_hold"]
    if hh_e is not None and hh_h is not None:
        out["effect"]["honest_hours_per_hold_cost"] = r(hh_e - hh_h, 2)
    if prompted:
        true = e["prompted"] / ne
        out["true_effect"] = {"prompted_in_hold": e["prompted"],
                              "reported_share_increase": r(true, 6),
                              "within_ci95": bool(rlo <= true <= rhi)}
    return out


def from_files(input_dir, extras: dict, policy: dict) -> dict:
    """The figures for metrics.json (``pyramid``), from what the report already read."""
    from report.truth import kept_rows

    hold_ms = int(policy.get("hold_ms") or 24 * HOUR_MS)
    share = float(policy.get("escalation_holdout") or 0.0)
    res_by = {x.transfer_id: x for x in extras["resolutions"]}
    out = {"hold_escalation": policy.get("hold_escalation", True),
           "holds": hours_figures(extras["holds"], res_by, extras["truth"], hold_ms)}
    prompted: dict = {}
    if share > 0:  # the truth file's PROMPTED rows, read with the ground truth
        for row in kept_rows(extras["truth"], Path(input_dir), PROMPTED):
            prompted[row.subject_id] = row.event_time
    out["holdout"] = measure(extras["holds"], res_by, extras["truth"], extras["reports"],
                             share, prompted)
    return out


def html_section(fig: Optional[dict]) -> str:
    """The report's "Escalation inside the hold" section."""
    if not fig:
        return ""
    rows = []
    ho = fig.get("holdout")
    for name in ("escalated", "holdout"):
        g = (ho or {}).get(name)
        if g:
            rows.append((name, g["scam_holds"], g["released"], pct(g["released_share"]),
                         usd(g["usd_lost_per_scam_hold"]), g["reported_in_hold"],
                         pct(g["reported_share"]),
                         g["honest_holds"], g["honest_hours_per_hold"]))
    return render("pyramid.html", fig=fig, h=fig["holds"], ho=ho, rows=rows)


@section("Escalation inside the hold", ORDERS["Escalation inside the hold"])
def _section(p: Page) -> str:
    return html_section(p.metrics.get("pyramid"))
