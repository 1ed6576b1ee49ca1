"""Friction where people can see it (issue 11): holds by reason, the legitimate transfers
held, the users who bear them, and why scam money was lost. Used by ``metrics.json`` /
``report.html`` (``pipelines/report.py``) and by ``bench/friction_bench.py``.

A hold's reason is the first that applies, in this order: ``blacklist`` (a list source
named), ``frozen`` (the destination was already frozen), ``lookalike`` (address poisoning),
``rule`` (the fan-in rule set the score), ``model`` (the model's score reached the hold
threshold).

Scam money lost (not refunded), by cause:

* ``never_held``: the transfer was not held, and no earlier transfer to its destination was;
* ``sent_after_a_hold``: not held, though an earlier transfer to the same destination had
  been held (and released): the destination was flagged, later money went through;
* ``held_then_released``: held, and released at the deadline because no scam was
  confirmed within the hold.

>>> from schemas.rows import Hold
>>> hold_reason(Hold("h", "t", "u", "0x1", "ETH", "1", 1.0, 0, 1, 0.9,
...                  ["lookalike_of=0x2", "model:transfer_risk=0.90"]))
'lookalike'
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from typing import Iterable, Optional

REASONS = ("blacklist", "frozen", "lookalike", "model", "rule")
LOST_CAUSES = ("never_held", "sent_after_a_hold", "held_then_released")
TOP_USERS = 10
TABLE_ROWS = 50


def hold_reason(h) -> str:
    """Why a hold was placed (see the module docstring)."""
    rs = list(h.reasons or ())
    if any(r.startswith("blacklist:") for r in rs):
        return "blacklist"
    if "destination_frozen" in rs:
        return "frozen"
    if any(r.startswith("lookalike_of=") for r in rs):
        return "lookalike"
    model = None
    for r in rs:
        if r.startswith("model:transfer_risk="):
            model = float(r.split("=", 1)[1])
    if any(r.startswith("fan_in_24h=") for r in rs) and (model is None or model < 0.8):
        return "rule"
    return "model"


def friction_figures(transfers: Iterable, kind_of, holds: Iterable, resolutions: Iterable,
                     capped: Optional[set] = None, top: int = TOP_USERS,
                     rows: int = TABLE_ROWS) -> dict:
    """The friction figures of a run.

    ``transfers``: the replay's transfers; ``kind_of(transfer_id)``: ``"scam"``,
    ``"legit"`` or anything else (not judged, e.g. laundering); ``holds`` and
    ``resolutions``: the run's; ``capped``: ids of transfers the friction cap turned into a
    warning, when known."""
    trs = sorted(transfers, key=lambda t: (t.event_time, t.transfer_id))
    hold_by = {h.transfer_id: h for h in holds}
    res_by = {r.transfer_id: r for r in resolutions}
    by_reason: dict = {r: Counter() for r in REASONS}
    legit_n = legit_usd = 0.0
    legit_held: list = []
    per_user: Counter = Counter()
    lost: dict = {c: Counter() for c in LOST_CAUSES}
    capped_lost = Counter()
    held_before: set = set()  # destinations with a hold so far
    for t in trs:
        kind = kind_of(t.transfer_id)
        h = hold_by.get(t.transfer_id)
        usd = float(t.usd_value or 0.0)
        if h is not None:
            c = by_reason[hold_reason(h)]
            c["holds"] += 1
            c["usd"] += usd
            if kind in ("legit", "scam"):
                c[kind] += 1
        if kind == "legit":
            legit_n += 1
            legit_usd += usd
            if h is not None:
                r = res_by.get(t.transfer_id)
                legit_held.append((t, h, r))
                per_user[t.user_id] += 1
        elif kind == "scam":
            r = res_by.get(t.transfer_id)
            if r is None or r.resolution != "REFUNDED":
                if h is not None:
                    cause = "held_then_released"
                elif t.to_address in held_before:
                    cause = "sent_after_a_hold"
                else:
                    cause = "never_held"
                lost[cause]["n"] += 1
                lost[cause]["usd"] += usd
                if capped and t.transfer_id in capped:
                    capped_lost["n"] += 1
                    capped_lost["usd"] += usd
        if h is not None:
            held_before.add(t.to_address)
    n_held = len(legit_held)
    usd_held = sum(float(t.usd_value or 0.0) for t, _, _ in legit_held)
    table = sorted(legit_held, key=lambda x: (-float(x[0].usd_value or 0.0),
                                              x[0].transfer_id))[:rows]
    return {
        "holds_by_reason": {r: {k: round(v, 2) for k, v in sorted(c.items())}
                            for r, c in by_reason.items()},
        "legit_held": n_held,
        "legit_held_share": n_held / legit_n if legit_n else None,
        "legit_held_usd": round(usd_held, 2),
        "legit_held_usd_share": usd_held / legit_usd if legit_usd else None,
        "legit_held_table": [
            {"transfer_id": t.transfer_id, "user_id": t.user_id, "to_address": t.to_address,
             "usd": round(float(t.usd_value or 0.0), 2), "placed_at": h.placed_at,
             "reason": hold_reason(h), "risk_score": h.risk_score,
             "resolution": r.resolution if r is not None else None}
            for t, h, r in table],
        "top_users_by_legit_holds": [
            {"user_id": u, "legit_holds": n, "share": n / n_held}
            for u, n in sorted(per_user.items(), key=lambda x: (-x[1], x[0]))[:top]],
        "max_user_share_of_legit_holds": max(per_user.values()) / n_held if n_held else 0.0,
        "scam_lost_by_cause": {c: {"n": int(v["n"]), "usd": round(v["usd"], 2)}
                               for c, v in lost.items()},
        **({"scam_lost_capped": {"n": int(capped_lost["n"]),
                                 "usd": round(capped_lost["usd"], 2)}} if capped else {}),
    }


def _usd(x) -> str:
    return "—" if x is None else f"${x:,.0f}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def render_friction(f: dict) -> str:
    """The report's friction section (HTML; every value from data is escaped)."""
    e = html.escape
    P = ["<h2>Friction: who bears the holds</h2>"]
    P.append(f"<p>Legitimate transfers held: {f['legit_held']} "
             f"({_pct(f['legit_held_share'])} of legitimate transfers, "
             f"{_usd(f['legit_held_usd'])} = {_pct(f['legit_held_usd_share'])} of their "
             f"USD); the most-held user has "
             f"{_pct(f['max_user_share_of_legit_holds'])} of them.</p>")
    P.append("<h3>Holds by reason</h3><table><tr><th>reason</th><th>holds</th>"
             "<th>legitimate</th><th>scam</th><th>USD</th></tr>")
    for r in REASONS:
        c = f["holds_by_reason"].get(r, {})
        P.append(f"<tr><td>{e(r)}</td><td>{int(c.get('holds', 0))}</td>"
                 f"<td>{int(c.get('legit', 0))}</td><td>{int(c.get('scam', 0))}</td>"
                 f"<td>{_usd(c.get('usd', 0.0))}</td></tr>")
    P.append("</table>")
    P.append("<h3>Top users by legitimate holds</h3><table><tr><th>user</th>"
             "<th>legitimate holds</th><th>share of all</th></tr>")
    for u in f["top_users_by_legit_holds"]:
        P.append(f"<tr><td>{e(str(u['user_id']))}</td><td>{u['legit_holds']}</td>"
                 f"<td>{_pct(u['share'])}</td></tr>")
    P.append("</table>")
    P.append("<h3>Why scam money was lost</h3><table><tr><th>cause</th><th>transfers</th>"
             "<th>USD</th></tr>")
    for c, v in f["scam_lost_by_cause"].items():
        P.append(f"<tr><td>{e(c.replace('_', ' '))}</td><td>{v['n']}</td>"
                 f"<td>{_usd(v['usd'])}</td></tr>")
    P.append("</table>")
    P.append(f"<h3>Legitimate transfers held (largest {len(f['legit_held_table'])})</h3>"
             "<table><tr><th>transfer</th><th>user</th><th>to</th><th>USD</th>"
             "<th>reason</th><th>score</th><th>resolution</th></tr>")
    for row in f["legit_held_table"]:
        P.append("<tr>" + "".join(f"<td>{e(str(row[k]))}</td>" for k in (
            "transfer_id", "user_id", "to_address")) + f"<td>{_usd(row['usd'])}</td>"
                 f"<td>{e(row['reason'])}</td><td>{row['risk_score']}</td>"
                 f"<td>{e(str(row['resolution']))}</td></tr>")
    P.append("</table>")
    return "\n".join(P)


def threshold_series(versions: Iterable[dict], model: str = "transfer_risk") -> list:
    """(valid from, hold threshold, n_labels) of ``model``'s published versions, in time
    order, from ``versions.jsonl`` rows."""
    rows = [v for v in versions if v.get("model") == model]
    return sorted((v["valid_from"], v["hold_threshold"], v["n_labels"]) for v in rows)


def by_day(series: list) -> list:
    """The last threshold published each day: (day start ms, threshold)."""
    day = 86_400_000
    last: dict = defaultdict(float)
    for t, thr, _ in series:
        last[t // day * day] = thr
    return sorted(last.items())


# ------------------------------------------------------------- metrics.json / report.html
def read_versions_jsonl(out_dir) -> list:
    """The rows of ``versions.jsonl`` a backtest wrote (none if absent)."""
    import json
    from pathlib import Path

    p = Path(out_dir) / "versions.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]


def add_friction(metrics: dict, extras: dict, out_dir) -> dict:
    """Put the friction figures (and the hold threshold over time) into ``metrics``
    (section ``"friction"``), from what ``pipelines.report.compute`` gathered."""
    truth = extras["truth"].transfer

    def kind_of(tid):
        scam, _, detail = truth.get(tid, (False, None, None))
        return "scam" if scam else (None if detail == "laundering" else "legit")

    f = friction_figures(extras["transfers"].values(), kind_of, extras["holds"],
                         extras["res_by"].values())
    series = threshold_series(read_versions_jsonl(out_dir))
    f["hold_threshold_versions"] = len(series)
    f["hold_threshold_by_day"] = [
        {"day": _day(t), "hold_threshold": thr} for t, thr in by_day(series)]
    metrics["friction"] = f
    return f


def _day(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d")


def threshold_plot(f: dict) -> str:
    """The hold threshold of each day's last version, as a base64 PNG ('' if none)."""
    rows = f.get("hold_threshold_by_day") or []
    if not rows:
        return ""
    import base64
    import datetime as dt
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [dt.datetime.strptime(r["day"], "%Y-%m-%d") for r in rows]
    fig, ax = plt.subplots(figsize=(10, 3.0))
    ax.step(days, [r["hold_threshold"] for r in rows], where="post", color="#264653")
    ax.set_ylabel("hold threshold")
    ax.set_title("Hold threshold of the published transfer_risk versions (last of each day)")
    ax.grid(alpha=.3)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def with_friction(page: str, f: dict) -> str:
    """``page`` (the report's HTML) with the friction section and the threshold over time
    inserted before the reconciliation section (or at the end)."""
    part = [render_friction(f)]
    rows = f.get("hold_threshold_by_day") or []
    if rows:
        part.append("<h3>Hold threshold over time (friction budget)</h3>")
        img = threshold_plot(f)
        if img:
            part.append(f"<img alt='hold threshold per day' src='data:image/png;base64,"
                        f"{img}'>")
        part.append("<table><tr><th>day</th><th>hold threshold</th></tr>" + "".join(
            f"<tr><td>{html.escape(r['day'])}</td><td>{r['hold_threshold']:.6f}</td></tr>"
            for r in rows) + "</table>")
    block = "\n".join(part) + "\n"
    for mark in ("<h2>Reconciliation</h2>", "</body>"):
        if mark in page:
            return page.replace(mark, block + mark, 1)
    return page + block
