"""The report's comparison of this run with another backtest's ``metrics.json``
(``--compare``): the figures of the summary side by side, in words and units.

>>> delta("usd", 100.0, 250.0), delta("share", 0.1, 0.05), delta("hours", 12.0, 2.5)
('−$150', '+5.00 pp', '+9.5 h')
>>> delta("hours", 1.0, 8.6), delta("n", 3, 3)
('−7.6 h', '+0')
"""

from __future__ import annotations

from typing import Optional

from report.first import run_name
from report.html import pct, usd

# (summary key, label, unit): unit is n (a count), usd, share, hours
FIGURES = (
    ("scam_usd_stopped", "scam money stopped (prevented + recovered)", "usd"),
    ("scam_usd_prevented_or_recovered_share", "… share of all scam money", "share"),
    ("scam_usd_prevented", "scam money prevented (held, then refunded)", "usd"),
    ("scam_usd_recovered", "scam money recovered (sent to a frozen address)", "usd"),
    ("scam_usd_lost", "scam money lost (paid, not refunded)", "usd"),
    ("holds", "holds placed", "n"),
    ("legit_held", "honest transfers held", "n"),
    ("legit_held_share", "… share of honest transfers", "share"),
    ("legit_held_usd", "honest USD held", "usd"),
    ("legit_hours_held_total", "hours honest transfers were held", "hours"),
    ("legit_refunded", "honest transfers refunded (wrongly)", "n"),
    ("freezes", "freezes", "n"),
    ("freezes_not_known_scam", "… of addresses not known to be scams", "n"),
    ("freeze_delay_hours_median", "median hours from first report to freeze", "hours"),
    ("silent_sufferers_reached", "silent sufferers reached", "n"),
    ("outreach", "outreach messages", "n"),
)


def show(unit: str, x) -> str:
    """A figure in its unit."""
    if not isinstance(x, (int, float)):
        return "–"
    if unit == "usd":
        return usd(x)
    if unit == "share":
        return pct(x)
    if unit == "hours":
        return f"{x:,.1f} h"
    return f"{x:,}"


def delta(unit: str, x, y) -> str:
    """This run's figure minus the compared run's, in the figure's unit."""
    if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
        return "–"
    d = x - y
    sign = "+" if d >= 0 else "−"
    if unit == "share":
        return f"{sign}{abs(100 * d):.2f} pp"
    if unit == "usd":
        return f"{sign}${abs(d):,.0f}"
    if unit == "hours":
        return f"{sign}{abs(d):,.1f} h"
    return f"{sign}{abs(d):,.0f}"


def _figure(s: dict, k: str):
    if k == "scam_usd_stopped":
        return (s.get("scam_usd_prevented") or 0.0) + (s.get("scam_usd_recovered") or 0.0)
    return s.get(k)


def comparison(a: dict, b: dict) -> dict:
    """What the Comparison section shows: ``head`` (the columns, the runs named), ``rows``
    (figure, this, compared, difference), ``policy_differences`` (text, '' if none) and
    ``other_replay`` (the compared run's input when it read another replay, else None)."""
    sa, sb = a["summary"], b["summary"]
    rows = [(label, show(u, _figure(sa, k)), show(u, _figure(sb, k)),
             delta(u, _figure(sa, k), _figure(sb, k))) for k, label, u in FIGURES]
    pa = (a.get("run") or {}).get("policy", {})
    pb = (b.get("run") or {}).get("policy", {})
    diff = [k for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)]
    fa = ((a.get("run") or {}).get("input_fingerprint") or {}).get("sha256")
    fb = ((b.get("run") or {}).get("input_fingerprint") or {}).get("sha256")
    other: Optional[str] = str((b.get("run") or {}).get("input")) if fa != fb else None
    na, nb = run_name(a), run_name(b)
    if na == nb:
        na, nb = "this run", "compared run"
    return {"rows": rows, "other_replay": other,
            "head": ["", f"this run ({na})", f"compared run ({nb})", "difference"],
            "policy_differences": ", ".join(f"{k}: {pa.get(k)} vs {pb.get(k)}" for k in diff)}
