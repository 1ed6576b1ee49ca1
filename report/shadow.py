"""The report's side-by-side of the live and the shadow policy (``--shadow_policy``): each
one's headline figures from its decision files (``shadow_*`` beside the live ones), and the
transfers they decided differently (``shadow_disagreements.jsonl``, ``shadow_hourly.jsonl``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

from report.columns import TransferColumns, judged, positions, subset
from report.files import output_named, read_jsonl
from report.friction import ordered_sum
from report.html import iso, pct, render, short, usd
from report.sections import ORDERS, Page, section

SAMPLE_ROWS = 30


def decision_figures(transfers: dict, truth, holds: list, resolutions: list, freezes: list,
                     outreach: list) -> dict:
    """One policy's headline figures, with the report's definitions (:mod:`report.metrics`):
    holds, friction (legitimate transfers held), scam USD prevented / recovered / lost,
    freezes (on known scams), outreach by kind."""
    trs = TransferColumns.of(transfers)
    res = {r.transfer_id: r for r in resolutions}
    scam, laund = judged(truth.transfer, trs.tid)
    ridx = positions(trs.tid, list(res))
    resolved = ridx >= 0
    refunded = np.zeros(len(trs), dtype=bool)
    recovered = np.zeros(len(trs), dtype=bool)
    is_refund = np.fromiter((r.resolution == "REFUNDED" for r in res.values()), bool, len(res))
    by_freeze = np.fromiter((r.reason == "destination frozen" for r in res.values()), bool,
                            len(res))
    refunded[resolved] = is_refund[ridx[resolved]]
    recovered[resolved] = refunded[resolved] & by_freeze[ridx[resolved]]
    legit = ~scam & ~laund
    legit_held = legit & (positions(trs.tid, [h.transfer_id for h in holds]) >= 0)
    c: dict = defaultdict(float)  # counts and USD (added in the transfers' order)
    for key, m in (("recovered", recovered), ("prevented", refunded & ~recovered),
                   ("lost", ~refunded)):
        m = scam & m
        c[f"scam_{key}"] = float(np.count_nonzero(m))
        c[f"scam_usd_{key}"] = ordered_sum(trs.usd, m)
    c["legit"] = float(np.count_nonzero(legit))
    c["legit_held"] = float(np.count_nonzero(legit_held))
    c["legit_held_usd"] = ordered_sum(trs.usd, legit_held)
    kinds = Counter(o.kind for o in outreach)
    return {"holds": len(holds), "legit_held": int(c["legit_held"]),
            "legit_held_share": round(c["legit_held"] / c["legit"], 6) if c["legit"] else None,
            "legit_held_usd": round(c["legit_held_usd"], 2),
            "scam_usd_prevented": round(c["scam_usd_prevented"], 2),
            "scam_usd_recovered": round(c["scam_usd_recovered"], 2),
            "scam_usd_lost": round(c["scam_usd_lost"], 2),
            "scam_prevented": int(c["scam_prevented"]),
            "freezes": len(freezes),
            "freezes_on_scam_addresses": sum(1 for f in freezes if f.address in truth.addresses),
            "outreach_by_kind": dict(sorted(kinds.items()))}


def compare(out_dir: str | Path, extras: dict, live_policy: Optional[dict],
            shadow_policy_: Optional[dict]) -> Optional[dict]:
    """The report's side-by-side of the live and the shadow policy (None without a shadow
    in ``out_dir``)."""
    out_dir = Path(out_dir)
    if not any(out_dir.glob("shadow_holds.*")):
        return None
    transfers, truth = TransferColumns.of(extras["transfers"]), extras["truth"]
    sides = {}
    names = ("holds", "resolutions", "freezes", "outreach")
    for side in ("live", "shadow"):
        # the live decisions were read for the report already (extras); the shadow's here
        rows = ({n: extras[n] for n in names} if side == "live"
                else {n: output_named(out_dir, f"shadow_{n}", n) for n in names})
        sides[side] = decision_figures(transfers, truth, rows["holds"], rows["resolutions"],
                                       rows["freezes"], rows["outreach"])
    dis = read_jsonl(out_dir / "shadow_disagreements.jsonl")
    by_pair: dict = defaultdict(lambda: {"transfers": 0, "scam": 0, "legit": 0, "usd": 0.0})
    by_id = transfers.by_id(d["transfer_id"] for d in dis)
    truth_of = subset(truth.transfer, (d["transfer_id"] for d in dis))
    for d in dis:
        t = by_id.get(d["transfer_id"])
        scam = truth_of.get(d["transfer_id"], (False,))[0]
        usd = float(t.usd_value) if t is not None else float(d.get("usd_value") or 0.0)
        d["usd_value"], d["scam"] = usd, bool(scam)
        x = by_pair[d["pair"]]
        x["transfers"] += 1
        x["scam" if scam else "legit"] += 1
        x["usd"] += usd
    lp, sp = live_policy or {}, shadow_policy_ or {}
    diff = {k: [lp.get(k), sp.get(k)] for k in sorted(set(lp) | set(sp))
            if lp.get(k) != sp.get(k)}
    sample = sorted(dis, key=lambda d: (-d["usd_value"], d["event_time"], d["transfer_id"]))
    hourly = read_jsonl(out_dir / "shadow_hourly.jsonl")
    return {"live": sides["live"], "shadow": sides["shadow"], "policy_differences": diff,
            "disagreements": len(dis),
            "disagreements_by_pair": {k: {**v, "usd": round(v["usd"], 2)}
                                      for k, v in sorted(by_pair.items())},
            "hours_with_disagreements": len(hourly),
            "max_disagreements_per_hour": max((h["disagreements"] for h in hourly), default=0),
            "sample": sample[:SAMPLE_ROWS]}


def html_section(fig: Optional[dict]) -> str:
    """The report's "Shadow policy" section (empty without a shadow)."""
    if not fig:
        return ""
    lv, sh = fig["live"], fig["shadow"]
    rows = [("holds", lv["holds"], sh["holds"]),
            ("legitimate transfers held (friction)", lv["legit_held"], sh["legit_held"]),
            ("… share of legitimate transfers", pct(lv["legit_held_share"]),
             pct(sh["legit_held_share"])),
            ("… their USD", usd(lv["legit_held_usd"]), usd(sh["legit_held_usd"])),
            ("scam USD prevented (held → refunded)", usd(lv["scam_usd_prevented"]),
             usd(sh["scam_usd_prevented"])),
            ("scam USD recovered (sent to frozen)", usd(lv["scam_usd_recovered"]),
             usd(sh["scam_usd_recovered"])),
            ("scam USD lost", usd(lv["scam_usd_lost"]), usd(sh["scam_usd_lost"])),
            ("freezes", lv["freezes"], sh["freezes"]),
            ("… on known scams", lv["freezes_on_scam_addresses"],
             sh["freezes_on_scam_addresses"])]
    for k in sorted(set(lv["outreach_by_kind"]) | set(sh["outreach_by_kind"])):
        rows.append((f"outreach: {k}", lv["outreach_by_kind"].get(k, 0),
                     sh["outreach_by_kind"].get(k, 0)))
    pairs = [(k.replace(">", " → "), v["transfers"], v["scam"], v["legit"], usd(v["usd"]))
             for k, v in fig["disagreements_by_pair"].items()]
    sample = [(iso(d["event_time"]), d["transfer_id"], d["user_id"], short(d["address"], 24),
               usd(d["usd_value"]), "yes" if d["scam"] else "no", d["live"], d["shadow"],
               "; ".join(d["live_reasons"])[:120], "; ".join(d["shadow_reasons"])[:120])
              for d in fig["sample"]]
    diffs = "; ".join(f"{k}: {a} → {b}" for k, (a, b) in fig["policy_differences"].items())
    return render("shadow.html", fig=fig, diffs=diffs or "none", rows=rows, pairs=pairs,
                  sample=sample)


@section("Shadow policy", ORDERS["Shadow policy"])
def _section(p: Page) -> str:
    return html_section(p.metrics.get("shadow"))
