"""The report's first screen: in sentences and three numbers, how much scam money the policy
stopped, how much was lost and why, and what it cost honest users; with ``--compare``, the
trade-off against the other run in one sentence.

One definition of every figure, the summary's (:mod:`report.metrics`):
**stopped** = prevented (held, then refunded) + recovered (sent to an address already
frozen, refunded at once); **lost** = scam money paid and not refunded; **honest** = not a
scam by the ground truth.

>>> money_short(8218.0), money_short(-1_234_567.0), money_short(950.0)
('$8.2k', '−$1.23M', '$950')
"""

from __future__ import annotations

from typing import Optional

from report.html import pct, usd

LOST_WORDS = {
    "held_then_released": "held and then released (no scam confirmed within the hold)",
    "never_held": "never held (scored below the hold threshold, destination not flagged)",
    "sent_after_a_hold": "sent after an earlier hold on the same destination had been released",
}


def money_short(x: float) -> str:
    """USD in a few characters, signed only when negative."""
    sign = "−" if x < 0 else ""
    a = abs(x)
    if a >= 1e6:
        return f"{sign}${a / 1e6:.2f}M"
    if a >= 1e4:
        return f"{sign}${a / 1e3:.1f}k" if a < 1e5 else f"{sign}${a / 1e3:.0f}k"
    if a >= 1e3:
        return f"{sign}${a / 1e3:.1f}k"
    return f"{sign}${a:,.0f}"


def plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def run_name(m: dict) -> str:
    """A run as the comparison calls it: models on / rules only, else its directory."""
    pol = (m.get("run") or {}).get("policy") or {}
    if "use_models" in pol:
        return "models on" if pol["use_models"] else "rules only"
    return str((m.get("run") or {}).get("input") or "this run")


def stopped(s: dict) -> float:
    return (s.get("scam_usd_prevented") or 0.0) + (s.get("scam_usd_recovered") or 0.0)


def first_screen(metrics: dict, compare: Optional[dict] = None) -> dict:
    """The first screen's three figures and sentences (text; the template escapes it)."""
    s = metrics["summary"]
    f = metrics.get("friction") or {}
    total = s["scam_usd"] or 0.0
    stop = stopped(s)
    causes = sorted(((v["usd"], v["n"], k) for k, v in
                     (f.get("scam_lost_by_cause") or {}).items() if v["n"]), reverse=True)
    lost_why = [f"{usd(u)} ({pct(u / s['scam_usd_lost']) if s['scam_usd_lost'] else '–'}, "
                f"{plural(n, 'transfer', 'transfers')}) {LOST_WORDS.get(k, k)}"
                for u, n, k in causes]
    wrong = s.get("freezes_not_known_scam") or 0
    cleared = s.get("freezes_cleared_later") or 0
    out = {
        "stopped": usd(stop),
        "stopped_text": (f"{pct(stop / total) if total else '–'} of {usd(total)} scam money: "
                         f"{usd(s['scam_usd_prevented'])} prevented (held, then refunded "
                         f"when the scam was confirmed within the hold) + "
                         f"{usd(s['scam_usd_recovered'])} recovered (sent to an address "
                         "already frozen: held and refunded at once)."),
        "lost": usd(s["scam_usd_lost"]),
        "lost_text": (f"{pct(s['scam_usd_lost'] / total) if total else '–'} of scam money "
                      f"({s['scam_lost']:,} transfers) was paid and not refunded"
                      + (": " + "; ".join(lost_why) + "." if lost_why else ".")),
        "honest": f"{s['legit_held']:,} holds",
        "honest_text": (f"{s['legit_held']:,} honest transfers held "
                        f"({pct(s['legit_held_share'])} of {s['legit_transfers']:,}), "
                        f"{usd(s['legit_held_usd'])} held for "
                        f"{s['legit_hours_held_total'] or 0:,.0f} hours in all (median "
                        f"{s['legit_hours_held_median'] or 0:,.1f} h a hold); "
                        f"{s['legit_refunded']:,} honest transfers refunded "
                        f"({usd(s['legit_refunded_usd'])})."),
        "wrong_freezes": wrong,
        "wrong_text": (f"{wrong:,} of {s['freezes']:,} freezes hit addresses not known to be "
                       f"scams ({s['ground_truth']}), refunding "
                       f"{s['legit_refunded_by_false_freezes']:,} honest payments "
                       f"({usd(s.get('legit_refunded_usd_by_false_freezes'))})"
                       + (f"; {plural(cleared, 'frozen address was', 'frozen addresses were')} "
                          "cleared later (delisted or found not a scam)" if cleared else "")
                       + ". See Freezes."
                       if wrong or cleared else
                       f"No freeze hit an address not known to be a scam "
                       f"({s['freezes']:,} freezes)."),
        "compare": trade_off(metrics, compare) if compare else None,
    }
    return out


def trade_off(a: dict, b: dict) -> str:
    """The comparison in one sentence: what this run stops more (or less) for how many more
    (or fewer) honest holds."""
    sa, sb = a["summary"], b["summary"]
    d_stop = stopped(sa) - stopped(sb)
    d_share = (sa.get("scam_usd_prevented_or_recovered_share") or 0) - (
        sb.get("scam_usd_prevented_or_recovered_share") or 0)
    d_holds = sa["legit_held"] - sb["legit_held"]
    d_usd = (sa.get("legit_held_usd") or 0) - (sb.get("legit_held_usd") or 0)
    d_hours = (sa.get("legit_hours_held_total") or 0) - (sb.get("legit_hours_held_total") or 0)
    d_wrong = (sa.get("freezes_not_known_scam") or 0) - (sb.get("freezes_not_known_scam") or 0)
    sign = "+" if d_stop >= 0 else ""
    text = (f"{run_name(a)} against {run_name(b)}: {sign}{money_short(d_stop)} scam money "
            f"stopped ({100 * d_share:+.2f} pp) for {d_holds:+,} honest "
            f"hold{'' if abs(d_holds) == 1 else 's'} "
            f"({'+' if d_usd >= 0 else ''}{money_short(d_usd)} honest USD held, "
            f"{d_hours:+,.0f} hold-hours)")
    if d_wrong:
        text += f" and {d_wrong:+,} wrongful freeze{'' if abs(d_wrong) == 1 else 's'}"
    if d_stop > 0 and d_holds > 0:
        text += f": {money_short(d_stop / d_holds)} more stopped per extra honest hold."
    else:
        text += "."
    return text
