"""The report's comparison of this run with another backtest's ``metrics.json``
(``--compare``).

>>> delta("scam_usd_lost", 100.0, 250.0), delta("legit_held_share", 0.1, 0.05)
('−$150', '+5.00 pp')
"""

from __future__ import annotations

from typing import Optional

FIGURES = ("holds", "scam_usd_prevented", "scam_usd_recovered", "scam_usd_lost",
           "scam_usd_prevented_or_recovered_share", "legit_held", "legit_held_share",
           "legit_hours_held_total", "freezes", "freezes_on_scam_addresses",
           "freeze_delay_hours_median", "silent_sufferers_reached", "outreach")


def delta(k: str, x, y) -> str:
    """This run's figure ``k`` minus the compared run's, in the figure's unit."""
    if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
        return "–"
    d = x - y
    if k.endswith("_share"):
        return f"{100 * d:+.2f} pp"
    if "usd" in k:
        return f"{'+' if d >= 0 else '−'}${abs(d):,.0f}"
    return f"{d:+,.2f}" if isinstance(d, float) else f"{d:+,}"


def comparison(a: dict, b: dict) -> dict:
    """What the Comparison section shows: ``rows`` (figure, this, compared, difference),
    ``policy_differences`` (text, '' if none) and ``other_replay`` (the compared run's
    input when it read another replay, else None)."""
    sa, sb = a["summary"], b["summary"]
    rows = [(k, sa.get(k), sb.get(k), delta(k, sa.get(k), sb.get(k))) for k in FIGURES]
    pa = (a.get("run") or {}).get("policy", {})
    pb = (b.get("run") or {}).get("policy", {})
    diff = [k for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)]
    fa = ((a.get("run") or {}).get("input_fingerprint") or {}).get("sha256")
    fb = ((b.get("run") or {}).get("input_fingerprint") or {}).get("sha256")
    other: Optional[str] = str((b.get("run") or {}).get("input")) if fa != fb else None
    return {"rows": rows, "other_replay": other,
            "policy_differences": ", ".join(f"{k}: {pa.get(k)} vs {pb.get(k)}" for k in diff)}
