"""Friction where people can see it: holds by reason, the legitimate transfers
held, the users who bear them, and why scam money was lost. Used by ``metrics.json`` /
``report.html`` (:mod:`report.build`) and by ``bench/friction_bench.py``.

A hold's reason is the first that applies, in this order: ``blacklist`` (a list source
named), ``frozen`` (the destination was already frozen), ``lookalike`` (address poisoning),
``rule`` (the fan-in rule set the score), ``model`` (the model's score reached the hold
threshold), ``expected_loss`` (score × USD reached the expected-loss threshold). Holds
record the test that held them (``hold_test=...``, see ``core/actions.py``); that is
used when present (``score`` is reported as ``model``).

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

from collections import Counter, defaultdict
from typing import Iterable, Optional

import numpy as np

from report.columns import TransferColumns, positions
from report.files import read_jsonl
from report.html import pct, render, usd
from report.numbers import DAY_MS, day
from report.sections import ORDERS, Page, section
from report.truth import kind_arrays, kinds

REASONS = ("blacklist", "frozen", "lookalike", "model", "rule", "expected_loss")
LOST_CAUSES = ("never_held", "sent_after_a_hold", "held_then_released")
TOP_USERS = 10
TABLE_ROWS = 50


def hold_reason(h) -> str:
    """Why a hold was placed (see the module docstring)."""
    rs = list(h.reasons or ())
    for r in rs:  # the test that held it, as Actions records it
        if r.startswith("hold_test="):
            test = r[len("hold_test="):]
            return "model" if test == "score" else test
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


def lost_cause(held: bool, destination_held_before: bool) -> str:
    """Why a scam transfer's money was lost (see the module docstring)."""
    if held:
        return "held_then_released"
    return "sent_after_a_hold" if destination_held_before else "never_held"


def friction_figures(transfers: Iterable, kind_of, holds: Iterable, resolutions: Iterable,
                     capped: Optional[set] = None, top: int = TOP_USERS,
                     rows: int = TABLE_ROWS) -> dict:
    """The friction figures of a run.

    ``transfers``: the replay's transfers; ``kind_of(transfer_id)``: ``"scam"``,
    ``"legit"`` or anything else (not judged, e.g. laundering); ``holds`` and
    ``resolutions``: the run's; ``capped``: ids of transfers the friction cap turned into a
    warning, when known. ``transfers`` may be :class:`report.columns.TransferColumns`
    (the report's): the figures are computed on its columns, the few held one by one."""
    trs = transfers if isinstance(transfers, TransferColumns) else \
        TransferColumns.of(transfers, unique=isinstance(transfers, dict))
    hold_by = {h.transfer_id: h for h in holds}
    res_by = {r.transfer_id: r for r in resolutions}
    n = len(trs)
    order = time_order(trs)  # the transfers by (event time, transfer id)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    scam, legit = kind_arrays(kind_of, trs.tid)
    hold_list = list(hold_by.values())
    hidx = positions(trs.tid, list(hold_by))  # each transfer's hold (-1: none)
    ridx = positions(trs.tid, list(res_by))
    is_refund = np.fromiter((x.resolution == "REFUNDED" for x in res_by.values()), bool,
                            len(res_by))
    refunded = np.zeros(n, dtype=bool)
    resolved = ridx >= 0
    refunded[resolved] = is_refund[ridx[resolved]]
    held = hidx >= 0
    by_reason: dict = {r: Counter() for r in REASONS}
    legit_held: list = []
    per_user: Counter = Counter()
    rows_held = np.flatnonzero(held)
    rows_held = rows_held[np.argsort(rank[rows_held], kind="stable")]  # in time order
    for i, t in zip(rows_held.tolist(), trs.rows(rows_held), strict=True):  # the few held
        kind = "scam" if scam[i] else "legit" if legit[i] else None
        h = hold_list[hidx[i]]
        usd = float(t.usd_value or 0.0)
        c = by_reason[hold_reason(h)]
        c["holds"] += 1
        c["usd"] += usd
        if kind in ("legit", "scam"):
            c[kind] += 1
        r = res_by.get(t.transfer_id)
        c["refunded"] += r is not None and r.resolution == "REFUNDED"
        if kind == "legit":
            legit_held.append((t, h, r))
            per_user[t.user_id] += 1
    legit_n = int(np.count_nonzero(legit))
    legit_usd = ordered_sum(trs.usd[order], legit[order])
    lost, capped_lost = _lost_by_cause(trs, scam & ~refunded, held, rows_held, order, rank, capped)
    return figures(by_reason, legit_held, per_user, legit_n, legit_usd, lost, capped_lost,
                   capped, top, rows)


def figures(by_reason: dict, legit_held: list, per_user: Counter, legit_n, legit_usd, lost: dict,
            capped_lost: Counter, capped: Optional[set], top: int, rows: int) -> dict:
    """The friction figures from their tallies: ``legit_held`` the honest holds as
    ``(transfer, hold, resolution)`` in time order, ``per_user`` their count per user,
    ``lost``/``capped_lost`` the lost scam money by cause."""
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
        "top_destinations_by_legit_holds": top_destinations(legit_held, top),
        "scam_lost_by_cause": {c: {"n": int(v["n"]), "usd": round(v["usd"], 2)}
                               for c, v in lost.items()},
        **({"scam_lost_capped": {"n": int(capped_lost["n"]),
                                 "usd": round(capped_lost["usd"], 2)}} if capped else {}),
    }


def _lost_by_cause(trs: TransferColumns, lost_rows, held, rows_held, order, rank,
                   capped: Optional[set]) -> tuple:
    """Scam money lost (``lost_rows``: scam, not refunded) by cause (:func:`lost_cause`):
    held; else sent after a hold on an earlier transfer (in time order: ``order``, and each
    row's place in it, ``rank``) to its destination; else never held. With the part the
    friction cap turned into warnings (``capped``), when known."""
    usd_in_order = trs.usd[order]
    to = trs.to.codes
    first_held = np.full(len(trs.to.names) + 1, len(trs), dtype=np.int64)  # last: None
    np.minimum.at(first_held, to[rows_held], rank[rows_held])
    after_a_hold = rank > first_held[to]
    lost: dict = {}
    for cause, m in (("never_held", ~held & ~after_a_hold), ("sent_after_a_hold",
                                                             ~held & after_a_hold),
                     ("held_then_released", held)):
        lost[cause] = _counted(usd_in_order, (lost_rows & m)[order])
    capped_lost = _counted(usd_in_order, (lost_rows & (positions(trs.tid, list(capped)) >= 0))
                           [order]) if capped else Counter()
    return lost, capped_lost


def time_order(trs: TransferColumns) -> np.ndarray:
    """The rows of ``trs`` by (event time, transfer id), as ``sorted`` orders them."""
    return trs.time_order().astype(np.int64)


def ordered_sum(x: np.ndarray, mask: np.ndarray) -> float:
    """The values of ``x`` under ``mask`` added one after another in order (a running
    total's float); 0.0 with none."""
    got = x[mask]
    return float(np.cumsum(got)[-1]) if len(got) else 0.0


def _counted(usd: np.ndarray, mask: np.ndarray) -> Counter:
    """{"n", "usd"} of the rows under ``mask`` (USD added in order), as a Counter counting
    them one by one has them (empty: none)."""
    c: Counter = Counter()
    k = int(np.count_nonzero(mask))
    if k:
        c["n"], c["usd"] = k, ordered_sum(usd, mask)
    return c


def top_destinations(legit_held: list, top: int) -> list:
    """The destinations of the most honest holds: address, holds, USD, share, reasons."""
    per: dict = defaultdict(lambda: [0, 0.0, set()])
    for t, h, _r in legit_held:
        x = per[t.to_address]
        x[0] += 1
        x[1] += float(t.usd_value or 0.0)
        x[2].add(hold_reason(h))
    n_held = len(legit_held)
    return [{"to_address": a, "legit_holds": n, "usd": round(u, 2), "share": n / n_held,
             "reasons": sorted(rs)}
            for a, (n, u, rs) in sorted(per.items(), key=lambda x: (-x[1][0], x[0]))[:top]]


def threshold_series(versions: Iterable[dict], model: str = "transfer_risk") -> list:
    """(valid from, hold threshold, n_labels) of ``model``'s published versions, in time
    order, from ``versions.jsonl`` rows."""
    rows = [v for v in versions if v.get("model") == model]
    return sorted((v["valid_from"], v["hold_threshold"], v["n_labels"]) for v in rows)


def by_day(series: list) -> list:
    """The last threshold published each day: (day start ms, threshold)."""
    last: dict = defaultdict(float)
    for t, thr, _ in series:
        last[t // DAY_MS * DAY_MS] = thr
    return sorted(last.items())


# ------------------------------------------------------------- metrics.json / report.html
def read_versions_jsonl(out_dir) -> list:
    """The rows of ``versions.jsonl`` a backtest wrote (none if absent)."""
    from pathlib import Path

    return read_jsonl(Path(out_dir) / "versions.jsonl")


def add_friction(metrics: dict, extras: dict, out_dir) -> dict:
    """Put the friction figures (and the hold threshold over time) into ``metrics``
    (section ``"friction"``), from what :func:`report.metrics.compute` gathered."""
    kind_of = kinds(extras["truth"].transfer)

    f = friction_figures(TransferColumns.of(extras["transfers"]), kind_of, extras["holds"],
                         extras["res_by"].values())
    series = threshold_series(read_versions_jsonl(out_dir))
    f["hold_threshold_versions"] = len(series)
    f["hold_threshold_by_day"] = [
        {"day": day(t), "hold_threshold": thr} for t, thr in by_day(series)]
    metrics["friction"] = f
    return f


REASON_WORDS = {"blacklist": "destination blacklisted", "frozen": "destination already frozen",
                "lookalike": "look-alike of a payee (address poisoning)",
                "rule": "risk rules (fan-in)", "model": "model risk score ≥ hold threshold",
                "expected_loss": "expected loss (score × USD) ≥ --hold_expected_loss"}
LOST_WORDS = {"held_then_released": "held, then released at the deadline (no scam confirmed "
                                    "within the hold)",
              "never_held": "never held (score below the threshold, destination not flagged)",
              "sent_after_a_hold": "not held, though an earlier transfer to the same "
                                   "destination had been held and released"}


def html_section(f: Optional[dict], policy: Optional[dict] = None,
                 links: Optional[dict] = None) -> str:
    """The report's "Friction: who bears the holds" section ('' without figures)."""
    if not f:
        return ""
    from report.plots import threshold_plot

    pol = policy or {}
    budget = pol.get("friction_budget") or 0.0
    changes = []
    for r in f.get("hold_threshold_by_day") or ():
        if not changes or changes[-1]["hold_threshold"] != r["hold_threshold"]:
            changes.append(r)
    from report.cases import address_link

    dest_rows = [(address_link(d["to_address"], links or {}, 48), d["legit_holds"],
                  pct(d["share"]), usd(d["usd"]),
                  ", ".join(REASON_WORDS.get(r, r) for r in d["reasons"]))
                 for d in f.get("top_destinations_by_legit_holds") or ()]
    user_rows = [(u["user_id"], u["legit_holds"], pct(u["share"]))
                 for u in f["top_users_by_legit_holds"]]
    held_rows = [(r["transfer_id"], r["user_id"], r["to_address"], usd(r["usd"]),
                  REASON_WORDS.get(r["reason"], r["reason"]), f"{r['risk_score']:.2f}",
                  r["resolution"] or "pending") for r in f["legit_held_table"]]
    change_rows = [(r["day"], f"{r['hold_threshold']:.3f}") for r in changes]
    return render("friction.html", f=f, reasons=REASONS, words=REASON_WORDS,
                  dest_rows=dest_rows, user_rows=user_rows, held_rows=held_rows,
                  change_rows=change_rows,
                  plot=threshold_plot(f) if budget and len(changes) > 1 else "",
                  budget=budget, changes=changes, threshold=pol.get("hold_threshold"),
                  cap=pol.get("friction_cap"))


def lost_section(f: Optional[dict], summary: dict) -> str:
    """The report's "Why scam money was lost" section ('' without figures)."""
    if not f:
        return ""
    lost = summary.get("scam_usd_lost") or 0.0
    rows = [(LOST_WORDS.get(c, c), v["n"], v["usd"], v["usd"] / lost if lost else None)
            for c, v in sorted(f["scam_lost_by_cause"].items(), key=lambda x: -x[1]["usd"])]
    return render("lost.html", rows=rows, s=summary, capped=f.get("scam_lost_capped"))


@section("Why scam money was lost", ORDERS["Why scam money was lost"])
def _lost(p: Page) -> str:
    return lost_section(p.metrics.get("friction"), p.metrics["summary"])


@section("Friction: who bears the holds", ORDERS["Friction: who bears the holds"])
def _friction(p: Page) -> str:
    from report.cases import case_links

    return html_section(p.metrics.get("friction"), (p.metrics.get("run") or {}).get("policy"),
                        case_links(p.extras.get("cases") or []))
