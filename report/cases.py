"""The case files in the report: each case's money split into scam and honest money with the
report's definitions, and one page per case (``cases/<case_id>.html``).

A case file (:class:`~schemas.rows.CaseFile`) is written by the job, which does not know
the truth: its totals count every transfer to the address in the lookback, and call every
sender a victim. The report knows which transfers were scams (the ground truth,
:mod:`report.truth`), so on the report's pages:

* **scam paid** = scam transfers to the address; **scam lost** = those not refunded (the
  summary's *lost*, so the cases' scam lost never exceeds all scam money lost);
  **victims** = distinct senders of scam transfers;
* **honest payers** = the others (payments to a merchant that was reported or wrongly
  frozen): their USD, how many were held, and how many were refunded by a wrong freeze.

A page leads with the incident (a wrong or later-cleared freeze in red, the freeze, the
money), then the holds and refunds, the transfers, the reports with their verdicts and a
timeline: each list newest first, cut at ``case_max_items`` (a policy option, default 50)
with the count left out.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa

from report.columns import TransferColumns, judged
from report.html import link, render, short
from report.numbers import stamp
from report.truth import suspect
from schemas import codecs

CASE_DIR = "cases"
DEFAULT_ITEMS = 50


def page_name(case_id: str) -> str:
    """A file name that is safe whatever the id holds."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", case_id)[:80] + ".html"


def case_links(cases: list) -> dict:
    """Normalised address -> the path of its case page (from the report)."""
    return {_n(c.address): f"{CASE_DIR}/{page_name(c.case_id)}" for c in cases}


def address_link(a: Optional[str], links: dict, n: int = 24):
    """An address shortened to ``n`` characters, linked to its case page if it has one."""
    href = links.get(_n(a))
    return link(href, short(a, n)) if href else short(a, n)


def iso_s(ms: Optional[int]) -> str:
    return "–" if ms is None else stamp(ms)


def _n(a: Optional[str]) -> str:
    return codecs.normalize_address(a or "")


@dataclass
class CaseData:
    """The report's rows, indexed by normalised destination address."""

    truth: object = None
    transfers: dict = field(default_factory=lambda: defaultdict(list))
    holds: dict = field(default_factory=dict)  # transfer id -> Hold
    res: dict = field(default_factory=dict)  # transfer id -> HoldResolution
    reports: dict = field(default_factory=lambda: defaultdict(list))
    verdicts: dict = field(default_factory=dict)  # report id -> Verdict
    freezes: dict = field(default_factory=dict)  # address -> freeze row (report.metrics)
    listings: dict = field(default_factory=lambda: defaultdict(list))
    outreach: dict = field(default_factory=lambda: defaultdict(list))
    max_items: int = DEFAULT_ITEMS
    monies: dict = field(default_factory=dict)  # address -> money(), once per case
    scam_ids: set = field(default_factory=set)  # the scams among the transfers above

    @classmethod
    def of(cls, extras: dict, cases: list, max_items: Optional[int] = None) -> "CaseData":
        """Index what the report read (``extras``) for the addresses of ``cases``."""
        want = {_n(c.address) for c in cases}
        d = cls(truth=extras["truth"], max_items=int(max_items or DEFAULT_ITEMS))
        norm: dict = {}  # address -> normalised (one normalisation per address)

        def n(x):
            a = norm.get(x)
            if a is None:
                a = norm[x] = _n(x)
            return a

        trs = TransferColumns.of(extras["transfers"])
        rows_of = _rows_to(trs, want)
        d.transfers = _ByAddress(trs, rows_of)
        if d.truth is not None:  # the scam transfers among those to the cases' addresses
            scam = judged(d.truth.transfer, trs.tid)[0]
            rows = np.concatenate(list(rows_of.values())) if rows_of else np.zeros(0, int)
            rows = rows[scam[rows]]
            d.scam_ids = set(trs.tid.take(pa.array(rows, type=pa.int64())).to_pylist())
        d.holds = {h.transfer_id: h for h in extras["holds"]}
        d.res = extras["res_by"]
        by_id = trs.by_id(rep.transfer_id for rep in extras["reports"].values())
        for rep in extras["reports"].values():
            a = n(suspect(rep, by_id))
            if a in want:
                d.reports[a].append(rep)
        d.verdicts = {v.report_id: v for v in extras["verdicts"]}
        d.freezes = {n(row[0].address): row for row in extras.get("freeze_rows", ())}
        for u in extras.get("blacklist", ()):
            if n(u.address) in want:
                d.listings[n(u.address)].append(u)
        for o in extras["outreach"]:
            if o.address and n(o.address) in want:
                d.outreach[n(o.address)].append(o)
        return d

    def scam(self, tid: str) -> bool:
        """Is ``tid`` (a transfer to a case's address) a scam by the truth?"""
        return self.truth is not None and tid in self.scam_ids

    def fate(self, tid: str) -> str:
        """REFUNDED / RELEASED / HELD (pending at the end) / NOT HELD."""
        x = self.res.get(tid)
        if x is not None:
            return x.resolution
        return "HELD" if tid in self.holds else "NOT HELD"


class _ByAddress:
    """Normalised address -> the transfers to it (:class:`report.columns.Paid` rows, in
    the transfers' order), made when asked and not kept: a busy address has many."""

    def __init__(self, trs: TransferColumns, rows_of: dict):
        self.trs, self.rows_of = trs, rows_of

    def get(self, address: str, default=()):
        rows = self.rows_of.get(address)
        return default if rows is None else self.trs.rows(rows)


def _rows_to(trs: TransferColumns, want: set) -> dict:
    """Normalised address (of ``want``) -> the rows of the transfers to it, in order."""
    to = trs.to
    flagged = np.flatnonzero(to.of_names(lambda x: _n(x) in want, bool))
    keys = [_n(x) for x in to.names.take(pa.array(flagged, type=pa.int64())).to_pylist()]
    names = list(dict.fromkeys(keys))
    index = {k: i for i, k in enumerate(names)}
    group_of = np.full(len(to.names) + 1, -1, dtype=np.int64)  # the last: no address
    group_of[flagged] = [index[k] for k in keys]
    group = group_of[to.codes]
    rows = np.flatnonzero(group >= 0)
    rows = rows[np.argsort(group[rows], kind="stable")]
    g = group[rows]
    starts = np.flatnonzero(np.diff(g)) + 1
    return {names[int(part[0])]: r for part, r in zip(np.split(g, starts),
                                                       np.split(rows, starts), strict=True)
            if len(r)}


def money(d: CaseData, address: str) -> dict:
    """A case's money, scam and honest apart (see the module doc); computed once per
    address (the totals, the table and the page read it)."""
    key = _n(address)
    got = d.monies.get(key)
    if got is None:
        got = d.monies[key] = _money(d, address)
    return got


def _money(d: CaseData, address: str) -> dict:
    m = defaultdict(float)
    victims, payers, lost_by = set(), set(), set()
    for t in d.transfers.get(_n(address), ()):
        usd, tid, fate = float(t.usd_value), t.transfer_id, d.fate(t.transfer_id)
        side = "scam" if d.scam(tid) else "honest"
        m[f"{side}_n"] += 1
        m[f"{side}_usd"] += usd
        (victims if side == "scam" else payers).add(t.user_id)
        if tid in d.holds:
            m[f"{side}_held_n"] += 1
            m[f"{side}_held_usd"] += usd
        if fate == "REFUNDED":
            m[f"{side}_refunded_n"] += 1
            m[f"{side}_refunded_usd"] += usd
        elif side == "scam" and fate != "HELD":
            m["scam_lost_n"] += 1
            m["scam_lost_usd"] += usd
            lost_by.add(t.user_id)
    out = {k: (round(v, 2) if k.endswith("_usd") else int(v)) for k, v in m.items()}
    for side in ("scam", "honest"):
        for k in ("n", "usd", "held_n", "held_usd", "refunded_n", "refunded_usd"):
            out.setdefault(f"{side}_{k}", 0)
    out.setdefault("scam_lost_n", 0)
    out.setdefault("scam_lost_usd", 0.0)
    out.update(victims=len(victims), victims_who_lost=len(lost_by), honest_payers=len(payers))
    return out


def freeze_flag(d: CaseData, address: str) -> Optional[str]:
    """Why this address's freeze was wrong (red on the pages), or None."""
    row = d.freezes.get(_n(address))
    if row is None:
        return None
    ok, refunds, cleared = row[3], row[4], row[5]
    why = []
    if not ok and d.truth is not None:
        why.append(f"The address is not a known scam ({d.truth.source}); {refunds[2]:,} honest "
                   f"payments (${refunds[3]:,.0f}) were refunded by the freeze")
    if cleared:
        why.append(f"{'cleared' if why else 'Cleared'} later: {cleared}")
    return "; ".join(why) or None


def summaries(d: CaseData, cases: list) -> dict:
    """metrics.json's ``proactive.cases`` totals with the report's definitions."""
    tot = defaultdict(float)
    wrong = 0
    for c in cases:
        m = money(d, c.address)
        for k in ("victims", "scam_usd", "scam_lost_usd", "scam_refunded_usd", "honest_payers",
                  "honest_usd", "honest_held_n", "honest_refunded_usd"):
            tot[k] += m[k]
        wrong += freeze_flag(d, c.address) is not None
    return {"victims": int(tot["victims"]), "scam_usd": round(tot["scam_usd"], 2),
            "usd_lost": round(tot["scam_lost_usd"], 2),
            "usd_refunded": round(tot["scam_refunded_usd"], 2),
            "honest_payers": int(tot["honest_payers"]),
            "honest_usd": round(tot["honest_usd"], 2),
            "honest_held": int(tot["honest_held_n"]),
            "honest_refunded_usd": round(tot["honest_refunded_usd"], 2),
            "wrong_or_cleared_freezes": wrong}


def verdict_of(d: CaseData, address: str, c) -> str:
    """The case's latest verdict (from the reports against it), else its triggers."""
    vs = [d.verdicts[r.report_id] for r in d.reports.get(_n(address), ())
          if r.report_id in d.verdicts]
    if vs:
        return max(vs, key=lambda v: (v.decided_at, v.report_id)).verdict
    return "–"


def case_rows(d: CaseData, cases: list) -> list:
    """The report's case table: one dict per case, the costliest scam first."""
    out = []
    for c in cases:
        m = money(d, c.address)
        reps = d.reports.get(_n(c.address))
        out.append({"case": c, "page": f"{CASE_DIR}/{page_name(c.case_id)}", "m": m,
                    "reports": len(reps) if reps else len(c.reports) + c.reports_omitted,
                    "verdict": verdict_of(d, c.address, c),
                    "why": ", ".join(t.replace("blacklisted:", "listed:").replace("verdict:", "")
                                     for t in c.triggers),
                    "frozen": "frozen" in c.triggers, "flag": freeze_flag(d, c.address)})
    out.sort(key=lambda x: (x["flag"] is None, -x["m"]["scam_lost_usd"], x["case"].opened_at,
                            x["case"].case_id))
    return out


def _cut(items: list, cap: int) -> tuple[list, int]:
    """Newest first, at most ``cap``; and how many older ones were left out."""
    items = sorted(items, key=lambda x: x[0], reverse=True)
    return items[:cap], max(0, len(items) - cap)


def _lists(d: CaseData, address: str) -> list:
    """(title, head, rows, left out) of a case page's lists, from the report's rows: each
    newest first, cut at ``max_items``; an empty list is left out."""
    a = _n(address)
    trs = d.transfers.get(a, ())
    holds = [(h, d.res.get(h.transfer_id)) for t in trs
             for h in [d.holds.get(t.transfer_id)] if h is not None]
    reps = [(r, d.verdicts.get(r.report_id)) for r in d.reports.get(a, ())]
    kind = lambda tid: "scam" if d.scam(tid) else "honest"  # noqa: E731
    lists = [
        ("Holds and refunds", ["placed (UTC)", "transfer", "sender", "USD", "scam or honest",
                               "score", "why held", "outcome"],
         [(h.placed_at, (iso_s(h.placed_at), h.transfer_id, h.user_id, h.usd_value,
                         kind(h.transfer_id), f"{h.risk_score:.2f}",
                         "; ".join(h.reasons)[:120],
                         f"{x.resolution} {iso_s(x.resolved_at)[5:16]}: {x.reason[:80]}" if x
                         else "HELD at the end of the replay"))
          for h, x in holds]),
        ("Transfers to the suspect", ["time (UTC)", "transfer", "sender", "amount", "USD",
                                      "scam or honest", "fate"],
         [(t.event_time, (iso_s(t.event_time), t.transfer_id, t.user_id,
                          f"{t.amount} {t.asset}", t.usd_value, kind(t.transfer_id),
                          _fate_word(d, t.transfer_id))) for t in trs]),
        ("Reports and verdicts", ["time (UTC)", "report", "reporter", "category", "text",
                                  "claimed USD", "verdict", "score"],
         [(r.event_time, (iso_s(r.event_time), r.report_id, r.reporter_user_id, r.category,
                          r.description, r.claimed_loss_usd, v.verdict if v else "–",
                          f"{v.score:.2f}" if v else "–")) for r, v in reps]),
        ("Timeline", ["time (UTC)", "event"],
         [(t, (iso_s(t), e)) for t, e in _timeline(d, a, trs, holds, reps)]),
    ]
    out = []
    for title, head, items in lists:
        kept, left = _cut(items, d.max_items)
        if kept:
            out.append((title, head, [row for _t, row in kept], left))
    return out


def _fate_word(d: CaseData, tid: str) -> str:
    f = d.fate(tid)
    if f == "NOT HELD":
        return "LOST (not held)" if d.scam(tid) else "paid"
    if f == "RELEASED" and d.scam(tid):
        return "LOST (held, released)"
    return f


def _timeline(d: CaseData, a: str, trs, holds, reps) -> list:
    ev = []
    for t in trs:
        ev.append((t.event_time, f"transfer {t.transfer_id} from {t.user_id}: "
                   f"${t.usd_value:,.2f} ({'scam' if d.scam(t.transfer_id) else 'honest'})"))
    for h, x in holds:
        ev.append((h.placed_at, f"hold on {h.transfer_id} (score {h.risk_score:.2f})"))
        if x is not None:
            ev.append((x.resolved_at, f"{h.transfer_id} {x.resolution.lower()}: {x.reason}"))
    for r, v in reps:
        ev.append((r.event_time, f"report {r.report_id} by {r.reporter_user_id} ({r.category})"
                   + (f": verdict {v.verdict} {v.score:.2f}" if v else "")))
    row = d.freezes.get(a)
    if row is not None:
        ev.append((row[0].frozen_at, "FROZEN: " + "; ".join(row[0].reasons)[:160]))
    for u in d.listings.get(a, ()):
        ev.append((u.event_time, f"list {u.action} by {u.source}: {u.reason or ''}"))
    for o in d.outreach.get(a, ()):
        ev.append((o.created_at, f"outreach {o.kind} on {o.channel} to {o.user_id}"))
    return ev


def case_page(c, d: Optional[CaseData] = None) -> str:
    """One case as a standalone HTML page (everything escaped)."""
    freeze = None
    if c.freeze:
        f = json.loads(c.freeze)
        freeze = [(iso_s(f.get("at")), f.get("verdict_score"),
                   ", ".join(f.get("report_ids", [])), "; ".join(f.get("reasons", [])))]
    row = d.freezes.get(_n(c.address)) if d is not None else None
    if freeze is None and row is not None:  # the freeze as the job's freezes file says
        f = row[0]
        freeze = [(iso_s(f.frozen_at), f.verdict_score, ", ".join(f.report_ids),
                   "; ".join(f.reasons))]
    if d is None or d.truth is None:  # the case file alone (no replay at hand)
        return render("case.html", c=c, freeze=freeze, flag=None, m=None,
                      lists=_file_lists(c), iso=iso_s, verdict=", ".join(c.triggers),
                      newest=False)
    return render("case.html", c=c, freeze=freeze, flag=freeze_flag(d, c.address),
                  m=money(d, c.address), lists=_lists(d, c.address), iso=iso_s,
                  verdict=verdict_of(d, c.address, c), newest=True)


# A case file's own lists, when the replay is not at hand: (title, field, head, item keys)
FILE_LISTS = (
    ("Reports", "reports", ["time", "report", "reporter", "category", "text", "claimed USD"],
     ("at", "report_id", "reporter", "category", "text", "claimed_loss_usd")),
    ("Timeline", "timeline", ["time", "event"], ("at", "event")),
)


def _file_lists(c) -> list:
    out = []
    for title, name, head, keys in FILE_LISTS:
        items = [json.loads(t) for t in getattr(c, name)]
        rows = [tuple(iso_s(it.get(k)) if k == "at" else it.get(k) for k in keys)
                for it in reversed(items)]
        if rows:
            out.append((title, head, rows, getattr(c, f"{name}_omitted")))
    return out


def write_case_pages(out_dir, cases: list, d: Optional[CaseData] = None) -> int:
    """One page per case under ``out_dir/cases/`` (the pages of an earlier run there are
    removed first); returns how many."""
    from pathlib import Path

    out = Path(out_dir) / CASE_DIR
    if out.is_dir():
        for old in out.glob("*.html"):
            old.unlink()
    if not cases:
        return 0
    out.mkdir(exist_ok=True)
    for c in cases:
        (out / page_name(c.case_id)).write_text(case_page(c, d), encoding="utf-8")
    return len(cases)
