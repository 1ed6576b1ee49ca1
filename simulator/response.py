"""The response model of escalation inside the hold: a known effect, to check the measure.

The simulator writes its files before any pipeline runs, so it models who is contacted
during a hold from what it knows will be held. A scam transfer is *certainly held* when its
destination is on the list at its time (in the snapshot, or added live before it: rule 1)
or it pays a look-alike of a payee its sender paid before (address poisoning: rule 9).
Those are the holds the pyramid escalates (``core/pyramid.py``): a chat to the sender
``warn_after`` after placement (``--hold_warn_after`` of the backtest, default 1h), a call
for the riskiest.

**Response model.** A victim of a certainly-held scam transfer whose hold is not in the
escalation holdout (:func:`core.pyramid.in_escalation_holdout`, the function the
Actions step uses, same share) and who would not report within the hold anyway reports
the scam *because of the contact* with probability ``response``: one ScamReport naming the
transfer (and the destination), ``warn_after`` plus a delay (lognormal, median 1h) after
the transfer, always inside the 24h hold. At most one such report per victim episode (the
first held transfer that prompts one). The report then follows the same investigation as
any victim's report (80%: a case outcome confirms the transfer or the address, 2h to 10
days later, median ~30h). Holdout holds are never contacted, so never prompt a report.

Each prompted report is a ``Truth`` row of ``subject_type`` ``PROMPTED`` (``subject_id``: the
transfer id, ``event_time``: the report's time, ``usd_value``: the transfer's USD), beside
its ``REPORT`` row (detail ``prompted``): the report knows the true effect of the contacts
it measures (``report/pyramid.py``).

Seeded (``random.Random`` of its own), planned after everything else: ``response`` 0 changes
nothing the simulator writes.
"""

from __future__ import annotations

import math
import random
from typing import Any

from core.pyramid import in_escalation_holdout
from schemas.rows import CaseOutcome, ScamReport, Truth
from simulator import text

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
HOLD = 24 * HOUR
PROMPTED = "PROMPTED"


def _listed_at(ex: Any) -> dict:
    """address -> the time it is on the list from (snapshot: the start)."""
    out = {bu.address: ex.start for bu in ex.snapshot if bu.action == "ADD"}
    for t, bu in ex.live:
        if bu.action == "ADD":
            out.setdefault(bu.address, t)
    return out


def _natural_reports(ex: Any) -> dict:
    """reporter user id -> times of the reports the plan already has."""
    out: dict = {}
    for t, row in ex.reports:
        out.setdefault(row.reporter_user_id, []).append(t)
    return out


def certainly_held(ep: Any, t: int, listed: dict) -> bool:
    """Is a transfer of episode ``ep`` at ``t`` held whatever the models say?"""
    if ep.typology == "address_poisoning":
        return True
    at = listed.get(ep.address)
    return at is not None and at <= t


def plan(ex: Any, response: float, holdout: float, warn_after: int) -> dict:
    """Add the prompted reports to the plan of ``ex`` (a ``simulator.exchange.Exchange``);
    return what was planned (the manifest's ``escalation`` entry)."""
    rng = random.Random(f"safetynet-escalation-response-{ex.seed}")
    summary = {"response": response, "escalation_holdout": holdout, "warn_after_ms": warn_after,
               "certainly_held": 0, "holdout_holds": 0, "prompted_reports": 0,
               "prompted_usd": 0.0}
    if response <= 0:
        return summary
    listed, natural = _listed_at(ex), _natural_reports(ex)
    for ep in ex.episodes:
        uid = str(ex.uid[ep.user])
        for t, tid, usd, asset in ep.transfers:
            if not certainly_held(ep, t, listed):
                continue
            summary["certainly_held"] += 1
            if in_escalation_holdout(tid, holdout):
                summary["holdout_holds"] += 1
                continue
            if any(t <= r < t + HOLD for r in natural.get(uid, ())):
                continue  # reports within the hold anyway: the contact changes nothing
            if rng.random() >= response:
                continue
            lag = int(min(HOLD - warn_after - MINUTE,
                          rng.lognormvariate(math.log(HOUR), 0.8)))
            at = t + warn_after + max(MINUTE, lag)
            if not ex.start <= at < ex.end:
                continue
            _prompted_report(ex, rng, ep, uid, tid, usd, asset, at)
            summary["prompted_reports"] += 1
            summary["prompted_usd"] += usd
            break  # one prompted report per episode
    summary["prompted_usd"] = round(summary["prompted_usd"], 2)
    return summary


def _prompted_report(ex: Any, rng: random.Random, ep: Any, uid: str, tid: str, usd: float,
                     asset: str, at: int) -> None:
    from simulator.exchange import CATEGORY, _pick

    rid = f"rp{rng.getrandbits(64):016x}"
    loss = sum(x[2] for x in ep.transfers if x[0] <= at)
    suspect_user = None if ep.to_user is None else str(ex.uid[ep.to_user])
    row = ScamReport(rid, at, uid, tid, ep.address, suspect_user,
                     _pick(rng, CATEGORY[ep.typology]),
                     text.describe(ep.typology, rng, loss, asset), round(loss, 2))
    ex.reports.append((at, row))
    ex.truth_other.append(Truth("REPORT", rid, True, ep.typology, uid, ep.address,
                                round(loss, 2), at, "prompted"))
    ex.truth_other.append(Truth(PROMPTED, tid, True, ep.typology, uid, ep.address,
                                round(usd, 2), at, "escalation_contact"))
    if rng.random() < 0.8:  # an investigation confirms it, as for any victim's report
        to = at + int(min(10 * DAY, max(2 * HOUR, rng.lognormvariate(math.log(30 * HOUR),
                                                                      0.8))))
        if ex.start <= to < ex.end:
            kind, subject = (("TRANSFER", tid) if rng.random() < 0.55
                             else ("ADDRESS", ep.address))
            ex.outcomes.append((to, CaseOutcome(f"cp{rng.getrandbits(64):016x}", to, kind,
                                                subject, True)))
