"""Efficacy campaigns: a known effect of warnings, to check the report's measurement.

The simulator writes its files before any pipeline runs, so the effect of a warning is
modelled here, where it is known. A *fake-platform campaign* recruits victims who pay
several times:

1. the first payment goes to the campaign's lure address, which is on the blacklist snapshot:
   by rule 1 it is held and the sender is warned (the victims are chosen so the warning is a
   WARNING, not an intervention: established accounts, not vulnerable, no earlier scam);
2. the later payments (2 to 4, between 2 hours and 6 days after the first) go to a fresh
   collection address per victim, which nothing lists or reports: they are lost.

A victim who is *not* in the warning holdout (:func:`core.holdout.in_holdout`, the
function the Outreach step uses, with the same share) heeds the warning with probability
``effect``: none of their later payments is made. Each cancelled payment is a ``Truth`` row
with ``subject_type`` ``CANCELLED`` (``user_id``, ``address``, ``usd_value``, the time it
would have been made), so the report knows the true effect of the warnings it measures.
Holdout victims never cancel: they were never warned.

Seeded (``random.Random`` of its own): enabling it changes nothing else the simulator plans.
"""

from __future__ import annotations

import random
from typing import Any

from core.holdout import in_holdout
from schemas.rows import BlacklistUpdate, Transfer, Truth
from simulator.addresses import fmt_address
from simulator.assets import make_amount

HOUR, DAY = 3_600_000, 86_400_000
TYPOLOGY = "fake_platform"
DETAIL = "efficacy_campaign"
VICTIMS_PER_CAMPAIGN = 5
FOLLOW_UP = 8 * DAY  # the report's 7-day window, and a day of margin


def plan(ex: Any, effect: float, holdout: float, victims: int) -> dict:
    """Add efficacy campaigns to the plan of ``ex`` (a ``simulator.exchange.Exchange``);
    return what was planned (the manifest's ``efficacy`` entry)."""

    rng = random.Random(f"safetynet-efficacy-{ex.seed}")
    summary = {"warning_effect": effect, "warning_holdout": holdout, "victims": 0,
               "holdout_victims": 0, "cancelling_victims": 0, "cancelled_payments": 0,
               "cancelled_usd": 0.0}
    if ex.end - ex.start < FOLLOW_UP + DAY or victims <= 0:
        return summary
    taken = {ep.user for ep in ex.episodes}
    pool = [int(u) for u in ex.established.tolist()
            if int(u) < ex.n and not ex.vulnerable[u] and not ex.mule[u] and int(u) not in taken]
    rng.shuffle(pool)
    chosen = pool[:victims]
    seq = [0]

    def tid(prefix: str) -> str:
        seq[0] += 1
        return f"{prefix}{rng.getrandbits(64):016x}"

    def script(t: int, user: int, address: str, usd: float) -> None:
        amount, usd_value = make_amount(usd, "USDT")
        row = Transfer(tid("te"), t, str(ex.uid[user]), address, None, "TRX", "USDT", amount,
                       usd_value, "WITHDRAWAL")
        truth = Truth("TRANSFER", row.transfer_id, True, TYPOLOGY, row.user_id, address,
                      usd_value, t, DETAIL)
        ex._seq += 1
        ex.scripted[(t - ex.start) // DAY].append((t, ex._seq, row, truth))

    lure = None
    for i, user in enumerate(chosen):
        if i % VICTIMS_PER_CAMPAIGN == 0:
            lure = fmt_address("TRX", rng.randbytes(44))
            ex.snapshot.append(BlacklistUpdate(lure, "TRX", "ADD", ex.start,
                                               "vendor_chainabuse", "fake platform"))
            ex.truth_other.append(Truth("ADDRESS", lure, True, TYPOLOGY, None, lure, None,
                                        ex.start, "snapshot;" + DETAIL))
        uid = str(ex.uid[user])
        t0 = ex.start + DAY + int(rng.random() * (ex.end - ex.start - FOLLOW_UP - DAY))
        t0 = max(t0, int(ex.created[user]) + HOUR)
        usd = rng.lognormvariate(6.0, 0.6)  # median ~$400
        script(t0, user, lure, usd)
        collect = fmt_address("TRX", rng.randbytes(44))
        later = sorted(t0 + int(rng.uniform(2 * HOUR, 6 * DAY))
                       for _ in range(rng.randint(2, 4)))
        held_out = in_holdout(uid, holdout)
        heeds = rng.random() < effect and not held_out
        summary["victims"] += 1
        summary["holdout_victims"] += held_out
        summary["cancelling_victims"] += heeds
        total = usd
        for t in later:
            usd *= rng.uniform(1.1, 1.8)
            if heeds:
                usd_value = make_amount(usd, "USDT")[1]
                ex.truth_other.append(Truth("CANCELLED", tid("tx"), True, TYPOLOGY, uid,
                                            collect, usd_value, t, "warned"))
                summary["cancelled_payments"] += 1
                summary["cancelled_usd"] += usd_value
            else:
                script(t, user, collect, usd)
                total += usd
        ex.truth_other.append(Truth("USER", uid, True, TYPOLOGY, uid, collect, round(total, 2),
                                    t0, DETAIL + (";heeded" if heeds else "")))
        if not heeds:
            ex.truth_other.append(Truth("ADDRESS", collect, True, TYPOLOGY, None, collect,
                                        None, later[0], "unlisted;" + DETAIL))
    summary["cancelled_usd"] = round(summary["cancelled_usd"], 2)
    return summary
