"""The figures of ``metrics.json``, computed from a replay and a backtest's output files.

Definitions (also in the report):

* **prevented** — scam transfers held and then REFUNDED (a scam confirmed within the hold);
* **recovered** — scam transfers to an address already frozen: held and refunded at once;
* **lost** — scam transfers not refunded (not held, or held and released);
* **friction** — legitimate transfers held: count, share of legitimate transfers, USD, hours
  held (payments between two labelled fraud accounts, ``detail`` = ``laundering``, are
  neither scam nor legitimate);
* **freeze delay** — event time from the first report against an address to its freeze;
* **silent sufferers** — victims (``Truth`` USER rows with ``detail`` ``silent``) who never
  reported; *reached* when they got a SILENT_SUFFERER outreach;
* **threshold sweep** — see :mod:`report.scores`.

Without ``truth.*`` the case outcomes are the ground truth (:mod:`report.truth`): then
"lost" counts only scams that someone confirmed.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa

from report.columns import TransferColumns, TransferTruth, judged, positions, subset
from report.files import output, read_scores, rows
from report.numbers import DAY_MS, HOUR_MS, day, duration, month, quantile, r, rounded, share
from report.scores import ScoreColumns, model_figures, threshold_sweep
from report.truth import GroundTruth, ground_truth, suspect
from schemas import codecs
from schemas.rows import BlacklistUpdate, CaseOutcome, ScamReport, UserProfile

HOLD_CAUSES = (("destination_frozen", "destination already frozen"),
               ("blacklist", "destination blacklisted"),
               ("lookalike", "look-alike of a known payee"),
               ("model_score", "risk score ≥ hold threshold (model)"),
               ("rules_score", "risk score ≥ hold threshold (rules)"))
SOURCES = ("transfers", "reports", "outcomes", "blacklist")


def policy_dict(policy) -> dict:
    """A Policy as metrics.json records it (tuples as lists)."""
    d = dataclasses.asdict(policy)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclasses.dataclass
class Backtest:
    """The replay's inputs and the backtest's decisions, as read from their files."""

    input_dir: Path
    transfers: TransferColumns
    n_read_transfers: int
    reports: dict
    outcomes: list
    truth: GroundTruth
    holds: list
    resolutions: list
    freezes: list
    outreach: list
    verdicts: list
    dead: list
    scores: ScoreColumns
    blacklist: list = dataclasses.field(default_factory=list)

    @classmethod
    def read(cls, input_dir: Path, out_dir: Path) -> "Backtest":
        transfers = TransferColumns.read(codecs.find_input(input_dir, "transfers"))
        n = transfers.n_read
        reports: dict = {}
        for rep in rows(codecs.find_input(input_dir, "reports"), ScamReport):
            reports.setdefault(rep.report_id, rep)
        outcomes = rows(codecs.find_input(input_dir, "outcomes"), CaseOutcome)
        b = cls(input_dir, transfers, n, reports, outcomes,
                ground_truth(input_dir, transfers, reports, outcomes),
                output(out_dir, "holds"), output(out_dir, "resolutions"),
                output(out_dir, "freezes"), output(out_dir, "outreach"),
                output(out_dir, "verdicts"), output(out_dir, "dead_letter"),
                read_scores(out_dir),
                rows(codecs.find_input(input_dir, "blacklist"), BlacklistUpdate))
        b.place_scores()
        return b

    def place_scores(self) -> None:
        """Where the scores' ids are in the ground truth's map, without hashing them, when
        it can be seen: the map shares the transfers' ids and the scores are the transfers
        in (event time, transfer id) order, as a backtest writes them."""
        tt, trs, sc = self.truth.transfer, self.transfers, self.scores
        if not (isinstance(tt, TransferTruth) and tt.ids is trs.tid and len(sc) == len(trs)):
            return
        order = trs.time_order()
        step = 1 << 20  # compared a slice at a time (no copy of every id)
        if np.array_equal(sc.t, trs.t[order]) and all(
                trs.tid.take(pa.array(order[i:i + step])).equals(sc.tid.slice(i, step))
                for i in range(0, len(order), step)):
            tt.know(sc.tid, order)


def _count_scam(c: Counter, usd: float, held: bool, refunded: bool, recovered: bool) -> None:
    c["scam_n"] += 1
    c["scam_usd"] += usd
    if held:
        c["scam_held_n"] += 1
        c["scam_held_usd"] += usd
    if refunded and not recovered:
        c["prevented_n"] += 1
        c["prevented_usd"] += usd
    elif recovered:
        c["recovered_n"] += 1
        c["recovered_usd"] += usd
    else:
        c["lost_n"] += 1
        c["lost_usd"] += usd


def money(b: Backtest) -> dict:
    """Scam and legitimate money: totals, per typology, per month, per day; hours held.

    Computed per column: each figure is a count and a USD total over the transfers that
    meet its condition, the USD added in the transfers' order (as a running total adds
    them: the same float); a figure nobody met is absent (as from a Counter)."""
    hold_by = {h.transfer_id: h for h in b.holds}
    res_by = {x.transfer_id: x for x in b.resolutions}
    trs = b.transfers
    scam, laund, typ_code, typ_names = _judged(trs, b.truth.transfer)
    legit = ~scam & ~laund
    usd = trs.usd
    days = trs.t // DAY_MS
    held, refunded, recovered = _fates(trs, hold_by, res_by)
    scam_figures = (("scam_n", "scam_usd", scam), ("scam_held_n", "scam_held_usd", scam & held),
                    ("prevented_n", "prevented_usd", scam & refunded & ~recovered),
                    ("recovered_n", "recovered_usd", scam & recovered),
                    ("lost_n", "lost_usd", scam & ~refunded))
    legit_held = legit & held
    legit_figures = (("legit_n", "legit_usd", legit), ("legit_held_n", "legit_held_usd",
                                                       legit_held))
    tot = Counter()
    _add(tot, usd, None, scam_figures + legit_figures + (
        ("laundering_n", "laundering_usd", laund), ("laundering_held_n", None, laund & held),
        ("legit_refunded_n", "legit_refunded_usd", legit_held & refunded)))
    by_typ: dict = defaultdict(Counter)
    # each scam transfer's typology ("unknown" for none), in the order each first appears
    scam_typ = np.where(scam, typ_code, -2)
    codes, first = np.unique(scam_typ[scam], return_index=True)
    names: dict = {}
    for c in codes[np.argsort(first, kind="stable")].tolist():
        name = (typ_names[c] if c >= 0 else None) or "unknown"
        names.setdefault(name, []).append(c)
    for typ, cs in names.items():
        _add(by_typ[typ], usd, np.isin(scam_typ, cs), scam_figures)
    by_month: dict = defaultdict(Counter)
    daily: dict = defaultdict(Counter)
    uniq, inverse = np.unique(days, return_inverse=True)
    in_month: dict = defaultdict(list)
    for k, d in enumerate(uniq.tolist()):
        in_month[month(d * DAY_MS)].append(k)
        on = inverse == k
        figures = (("held", None, "held_usd", held),
                   ("refunded", None, "refunded_usd", scam & refunded),
                   ("lost", None, "lost_usd", scam & ~refunded),
                   ("legit_held", "legit_held_n", "legit_held_usd", legit_held))
        if any(m[on].any() for *_, m in figures):
            _add(daily[day(d * DAY_MS)], usd, on, [(a, b, m) for _k, a, b, m in figures])
    for mon, ks in in_month.items():
        _add(by_month[mon], usd, np.isin(inverse, ks), (
            ("transfers", "usd", None), ("holds", None, held)) + scam_figures
            + legit_figures)
    legit_hours: list = []
    for tid in trs.tid.take(pa.array(np.flatnonzero(legit_held))).to_pylist():  # in order
        x = res_by.get(tid)
        if x is not None:
            legit_hours.append((x.resolved_at - hold_by[tid].placed_at) / HOUR_MS)
    return {"tot": tot, "by_typ": by_typ, "by_month": by_month, "daily": daily,
            "legit_hours": legit_hours, "res_by": res_by}


def _judged(trs: TransferColumns, tt) -> tuple:
    """(scam, laundering, typology code) arrays over the transfers by the ground truth's
    map ``tt``, and the typologies the codes stand for."""
    n = len(trs)
    if isinstance(tt, TransferTruth):
        scam, laund, typ_code = tt.at(tt.positions(trs.tid))
        return scam, laund, typ_code, tt.typ_names
    none = (False, None, None)  # a plain map (tests)
    vals = [tt.get(x, none) for x in trs.tid.to_pylist()]
    scam = np.fromiter((bool(v[0]) for v in vals), bool, n)
    laund = np.fromiter((not v[0] and v[2] == "laundering" for v in vals), bool, n)
    typ_names = list(dict.fromkeys(v[1] for v in vals))
    of = {x: i for i, x in enumerate(typ_names)}
    return scam, laund, np.fromiter((of[v[1]] for v in vals), np.int32, n), typ_names


def _fates(trs: TransferColumns, hold_by: dict, res_by: dict) -> tuple:
    """(held, refunded, recovered: refunded as sent to a frozen destination) arrays over
    the transfers, from the holds and resolutions by transfer id."""
    n = len(trs)
    held = positions(trs.tid, list(hold_by)) >= 0
    refunded = np.zeros(n, dtype=bool)
    recovered = np.zeros(n, dtype=bool)
    res_list = list(res_by.values())
    ridx = positions(trs.tid, list(res_by))  # each transfer's resolution (-1: none)
    for i in np.flatnonzero(ridx >= 0).tolist():  # the few resolved
        x = res_list[ridx[i]]
        if x.resolution == "REFUNDED":
            refunded[i] = True
            recovered[i] = x.reason == "destination frozen"
    return held, refunded, recovered


def _add(c: Counter, usd, within, figures) -> None:
    """Into ``c``, per (count key, USD key, mask) of ``figures`` (``within`` and the mask
    both; None: every row): how many rows, and their USD added in row order; a figure
    with no row is left out (a key is None: not counted)."""
    for n_key, usd_key, mask in figures:
        m = within if mask is None else mask if within is None else within & mask
        if m is None:
            x = usd
        else:
            x = usd[m]
        if not len(x):
            continue
        if n_key is not None:
            c[n_key] += len(x)
        if usd_key is not None:
            c[usd_key] += float(np.cumsum(x)[-1])


def first_reports(b: Backtest) -> dict:
    """Normalised suspect address -> event time of the first report against it."""
    first: dict = {}
    by_id = report_transfers(b.reports, b.transfers)
    for rep in b.reports.values():
        s = suspect(rep, by_id)
        if s is None:
            continue
        s = codecs.normalize_address(s)
        if s not in first or rep.event_time < first[s]:
            first[s] = rep.event_time
    return first


def report_transfers(reports: dict, transfers) -> dict:
    """transfer id -> transfer, for the transfers the reports name (what :func:`suspect`
    looks up)."""
    return TransferColumns.of(transfers).by_id(rep.transfer_id for rep in reports.values())


def clearances(b: Backtest) -> dict:
    """Normalised address -> [(event time, why)] of what later said it is no scam: a
    blacklist REMOVE (its source and reason) or a case outcome clearing the address."""
    out: dict = defaultdict(list)
    for u in b.blacklist:
        if u.action == "REMOVE":
            out[codecs.normalize_address(u.address)].append(
                (u.event_time, f"delisted by {u.source}: {u.reason}"))
    for o in b.outcomes:
        if o.subject_type == "ADDRESS" and not o.is_scam:
            out[codecs.normalize_address(o.subject_id)].append(
                (o.event_time, f"case {o.case_id}: investigated, not a scam"))
    return out


def cleared_after(clear: dict, address: str, frozen_at: int) -> Optional[str]:
    """Why a freeze at ``frozen_at`` was wrong by a later clearance ('' none: None)."""
    later = sorted(x for x in clear.get(codecs.normalize_address(address), ())
                   if x[0] >= frozen_at)
    if not later:
        return None
    t, why = later[0]
    return f"{why} ({(t - frozen_at) / HOUR_MS:,.1f} h after the freeze)"


def freezes(b: Backtest, by_month: dict) -> dict:
    """Each freeze with its first report, delay, correctness, the refunds it caused and what
    cleared it later (a delisting or a not-scam outcome; None if nothing did)."""
    first_report = first_reports(b)
    clear = clearances(b)
    # address -> [n, usd, honest n, honest usd] of the transfers refunded
    refunds_to: dict = defaultdict(lambda: [0, 0.0, 0, 0.0])
    refunded = [x for x in b.resolutions if x.resolution == "REFUNDED" and x.to_address
                is not None]
    truth_of = subset(b.truth.transfer, (x.transfer_id for x in refunded))
    for x in refunded:
        y = refunds_to[x.to_address]
        y[0] += 1
        y[1] += float(x.usd_value or 0.0)
        if not truth_of.get(x.transfer_id, (False,))[0]:
            y[2] += 1
            y[3] += float(x.usd_value or 0.0)
    out = {"rows": [], "delays": [], "before_report": 0, "no_report": 0, "correct": 0}
    for f in sorted(b.freezes, key=lambda f: (f.frozen_at, f.freeze_id)):
        fr = first_report.get(f.address)
        delay = None
        if fr is None:
            out["no_report"] += 1
        elif fr > f.frozen_at:
            out["before_report"] += 1
        else:
            delay = (f.frozen_at - fr) / HOUR_MS
            out["delays"].append(delay)
        ok = f.address in b.truth.addresses
        out["correct"] += ok
        by_month[month(f.frozen_at)]["freezes"] += 1
        out["rows"].append((f, fr, delay, ok, refunds_to.get(f.address, (0, 0.0, 0, 0.0)),
                            cleared_after(clear, f.address, f.frozen_at)))
    out["scam_addr_reported"] = sum(1 for a in b.truth.addresses if a in first_report)
    out["frozen_addrs"] = {f.address for f in b.freezes}
    return out


def silent_sufferers(b: Backtest) -> Optional[dict]:
    """Silent victims reached by SILENT_SUFFERER outreach (only with a truth file)."""
    truth = b.truth
    if not (truth.source == "truth" and (truth.victims or truth.silent)):
        return None
    ss_pairs = {(o.user_id, o.address) for o in b.outreach if o.kind == "SILENT_SUFFERER"}
    ss_users = {u for u, _ in ss_pairs}
    reached = sum(1 for u, a, _, _ in truth.silent if (u, a) in ss_pairs)
    reached_any = sum(1 for u, _, _, _ in truth.silent if u in ss_users)
    trs = b.transfers
    scam, _laund = judged(truth.transfer, trs.tid)
    at = np.flatnonzero(scam)
    victims_of = set(zip(trs.user.values(at), trs.to.values(at), strict=True))
    return {"silent_victims": len(truth.silent), "reached": reached,
            "reached_any_address": reached_any,
            "reached_share": share(reached, len(truth.silent)),
            "silent_victims_usd": r(sum(x[2] for x in truth.silent)),
            "all_victims": truth.victims,
            "outreach_sent": len(ss_pairs),
            "outreach_to_true_victims": sum(1 for p in ss_pairs if p in victims_of)}


def verdict_quality(b: Backtest) -> Optional[dict]:
    """Precision and recall of SCAM verdicts against the truth about reports."""
    rep = b.truth.report
    if not rep:
        return None
    tp_ = sum(1 for v in b.verdicts if v.verdict == "SCAM" and rep.get(v.report_id))
    fp_ = sum(1 for v in b.verdicts if v.verdict == "SCAM" and rep.get(v.report_id) is False)
    pos = sum(1 for v in b.verdicts if rep.get(v.report_id))
    return {"scam_verdict_precision": share(tp_, tp_ + fp_),
            "scam_verdict_recall": share(tp_, pos), "true_scam_reports": pos}


def _profiles(input_dir: Path) -> Optional[dict]:
    path = codecs.find_input(input_dir, "profiles")
    if path is None:
        return None
    n = bad = 0
    for x in codecs.read_records(path, "UserProfile", "profiles"):
        n += 1
        bad += type(x) is not UserProfile
    return {"read": n, "valid": n - bad, "invalid_ignored": bad}


def _manifest_check(input_dir: Path, recon: dict, dups: dict) -> Optional[dict]:
    """The simulator's manifest (malformed and duplicate records written) beside what the
    backtest saw."""
    manifest = None
    mp = input_dir / "manifest.json"
    if mp.exists():
        try:
            manifest = json.loads(mp.read_text(encoding="utf-8"))
        except ValueError:
            manifest = None
    if not (manifest and recon):
        return None
    mt = manifest.get("malformed_total", {})
    md = manifest.get("duplicates", {})
    return {src: {"malformed_written": mt.get(src), "dead_lettered_at_read":
                  recon.get(src, {}).get("dead_lettered"),
                  "duplicates_written": md.get(src), "duplicates_seen": dups.get(src)}
            for src in SOURCES}


def read_counts(counters: dict) -> dict:
    """Per input: records read, valid, dead-lettered, and whether they add up."""
    recon = {}
    for src in SOURCES:
        rd = counters.get(f"Read/{src}_read")
        if rd is None:
            continue
        va = counters.get(f"Read/{src}_valid", 0)
        dl = counters.get(f"Read/{src}_dead_lettered", 0)
        recon[src] = {"read": rd, "valid": va, "dead_lettered": dl,
                      "reconciles": rd == va + dl}
    return recon


def reconciliation(b: Backtest, counters: dict, recon: dict) -> dict:
    """metrics.json's ``reconciliation``: every input record processed or dead-lettered."""
    dl_src = Counter(d.source for d in b.dead)
    dups = {"transfers": counters.get("TransferLedger/duplicate_transfers", 0),
            "reports": counters.get("ReportLedger/duplicate_reports", 0)}
    return {
        "inputs": recon,
        "all_reconcile": all(v["reconciles"] for v in recon.values()) if recon else None,
        "dead_letters_by_source": dict(sorted(dl_src.items())),
        "duplicates_ignored": dups,
        "conflicts_dead_lettered": {
            "transfers": counters.get("TransferLedger/conflicting_transfers", 0),
            "reports": counters.get("ReportLedger/conflicting_reports", 0)},
        "dropped_at_caps": {
            "label records (--label_max_waiting)":
                counters.get("CounterpartyProfile/label_records_dropped", 0)},
        "profiles": _profiles(b.input_dir),
        "simulator_manifest": _manifest_check(b.input_dir, recon, dups),
    }


def summary(b: Backtest, mo: dict, fz: dict, silent: Optional[dict], wall) -> dict:
    """metrics.json's ``summary``: the headline figures."""
    tot, legit_hours = mo["tot"], mo["legit_hours"]
    return {
        "ground_truth": b.truth.source,
        "transfers_read": b.n_read_transfers,
        "transfers_unique": len(b.transfers),
        "holds": len(b.holds),
        "holds_usd": r(sum(h.usd_value for h in b.holds)),
        "refunded": sum(1 for x in b.resolutions if x.resolution == "REFUNDED"),
        "released": sum(1 for x in b.resolutions if x.resolution == "RELEASED"),
        "scam_transfers": tot["scam_n"], "scam_usd": r(tot["scam_usd"]),
        "scam_held": tot["scam_held_n"], "scam_usd_held": r(tot["scam_held_usd"]),
        "scam_prevented": tot["prevented_n"], "scam_usd_prevented": r(tot["prevented_usd"]),
        "scam_recovered": tot["recovered_n"], "scam_usd_recovered": r(tot["recovered_usd"]),
        "scam_lost": tot["lost_n"], "scam_usd_lost": r(tot["lost_usd"]),
        "scam_usd_prevented_or_recovered_share": share(
            tot["prevented_usd"] + tot["recovered_usd"], tot["scam_usd"]),
        "scam_count_prevented_or_recovered_share": share(
            tot["prevented_n"] + tot["recovered_n"], tot["scam_n"]),
        "legit_transfers": tot["legit_n"],
        "legit_held": tot["legit_held_n"],
        "legit_held_share": share(tot["legit_held_n"], tot["legit_n"]),
        "legit_held_usd": r(tot["legit_held_usd"]),
        "legit_held_usd_share": share(tot["legit_held_usd"], tot["legit_usd"]),
        "legit_hours_held_total": r(sum(legit_hours), 1),
        "legit_hours_held_median": r(quantile(legit_hours, 0.5), 2),
        "legit_refunded": tot["legit_refunded_n"],
        "legit_refunded_usd": r(tot["legit_refunded_usd"]),
        "laundering_transfers": tot["laundering_n"],
        "laundering_held": tot["laundering_held_n"],
        "freezes": len(b.freezes),
        "freezes_on_scam_addresses": fz["correct"],
        "freezes_not_known_scam": len(b.freezes) - fz["correct"],
        "legit_refunded_by_false_freezes": sum(x[4][2] for x in fz["rows"] if not x[3]),
        "legit_refunded_usd_by_false_freezes": r(sum(x[4][3] for x in fz["rows"]
                                                      if not x[3])),
        "freezes_cleared_later": sum(1 for x in fz["rows"] if x[5]),
        "freeze_delay_hours_median": r(quantile(fz["delays"], 0.5), 2),
        "freeze_delay_hours_p90": r(quantile(fz["delays"], 0.9), 2),
        "freezes_before_any_report": fz["before_report"],
        "freezes_without_report": fz["no_report"],
        "scam_addresses": len(b.truth.addresses),
        "scam_addresses_reported": fz["scam_addr_reported"],
        "scam_addresses_frozen": len(b.truth.addresses & fz["frozen_addrs"]),
        "outreach": len(b.outreach),
        "silent_sufferers_reached": silent["reached"] if silent else None,
        "silent_sufferers_all": silent["silent_victims"] if silent else None,
        "dead_letters": len(b.dead),
        "transfers_per_second": r(b.n_read_transfers / wall, 0) if wall else None,
    }


def compute(input_dir: str | Path, out_dir: str | Path, counters: Optional[dict] = None,
            run: Optional[dict] = None) -> tuple[dict, dict]:
    """(metrics, extras): the figures of metrics.json, and what only the HTML shows."""
    counters = dict(counters or {})
    run = dict(run or {})
    hold_ms = (run.get("policy") or {}).get("hold_ms", DAY_MS)
    b = Backtest.read(Path(input_dir), Path(out_dir))
    mo = money(b)
    fz = freezes(b, mo["by_month"])
    silent = silent_sufferers(b)
    frozen_at: dict = {}
    for f in b.freezes:
        frozen_at[f.address] = min(frozen_at.get(f.address, f.frozen_at), f.frozen_at)
    model = model_figures(b.scores, b.truth)
    recon = read_counts(counters)
    metrics = {
        "summary": summary(b, mo, fz, silent, run.get("wall_seconds")),
        "warnings": warnings(run, model, b.transfers, b.outcomes, recon),
        "holds_by_reason": holds_by_reason(b.holds, mo["res_by"], b.truth),
        "run": run,
        "money_by_typology": {k: rounded(v) for k, v in sorted(mo["by_typ"].items())},
        "by_month": {k: rounded(v) for k, v in sorted(mo["by_month"].items())},
        "daily": {k: rounded(v) for k, v in sorted(mo["daily"].items())},
        "outreach_by_kind": dict(sorted(Counter(o.kind for o in b.outreach).items())),
        "outreach_by_channel": dict(sorted(Counter(o.channel for o in b.outreach).items())),
        "silent_sufferers": silent,
        "verdicts": dict(sorted(Counter(v.verdict for v in b.verdicts).items())),
        "verdict_quality": verdict_quality(b),
        "threshold_sweep": threshold_sweep(b.scores, b.truth, frozen_at, hold_ms),
        "models": model,
        "reconciliation": reconciliation(b, counters, recon),
        "counters": counters,
    }
    extras = {"freeze_rows": fz["rows"], "reports": b.reports, "verdicts": b.verdicts,
              "dead_by": Counter((d.source, d.error.split(":")[0][:160]) for d in b.dead),
              "holds": b.holds, "res_by": mo["res_by"], "transfers": b.transfers,
              "truth": b.truth, "resolutions": b.resolutions, "outreach": b.outreach,
              "freezes": b.freezes, "blacklist": b.blacklist, "scores": b.scores}
    return metrics, extras


def hold_causes(h) -> list:
    """Why a hold was placed, as causes (a hold can have several)."""
    out = []
    rs = h.reasons or []
    if "destination_frozen" in rs:
        out.append("destination_frozen")
    if any(x.startswith("blacklist:") for x in rs):
        out.append("blacklist")
    if any(x.startswith("lookalike_of=") for x in rs):
        out.append("lookalike")
    if not out:
        out.append("rules_score" if (h.model_version or "rules") == "rules" else "model_score")
    return out


def holds_by_reason(holds: list, res_by: dict, truth) -> dict:
    """{cause: {holds, usd, scam, refunded}} over the holds (see :func:`hold_causes`)."""
    out = {k: Counter() for k, _ in HOLD_CAUSES}
    truth_of = subset(truth.transfer, (h.transfer_id for h in holds))
    for h in holds:
        x = res_by.get(h.transfer_id)
        scam = truth_of.get(h.transfer_id, (False,))[0]
        for c in hold_causes(h):
            o = out[c]
            o["holds"] += 1
            o["usd"] += float(h.usd_value)
            o["scam"] += int(bool(scam))
            o["refunded"] += int(x is not None and x.resolution == "REFUNDED")
    return {k: rounded(v) for k, v in out.items() if v}


def warnings(run: dict, model: Optional[dict], transfers, outcomes: list,
             recon: Optional[dict] = None) -> list:
    """What a reader must know before trusting the figures, said plainly (report top)."""
    out = []
    for src, v in (recon or {}).items():
        if v.get("read") and v["dead_lettered"] / v["read"] > 0.5:
            out.append(f"{v['dead_lettered']:,} of {v['read']:,} {src} records "
                       f"({v['dead_lettered'] / v['read']:.1%}) were dead-lettered: the figures "
                       f"below describe only the rest. See the dead-letter reasons under "
                       "Reconciliation.")
    pol = run.get("policy") or {}
    if pol.get("use_models", True) and model and not model["scored_by"].get("model"):
        from core.policy import Policy

        d = Policy()
        need = {k: pol.get(k, getattr(d, k)) for k in (
            "model_warmup_labels", "model_min_positives", "model_min_negatives",
            "label_horizon_ms")}
        ts = TransferColumns.of(transfers).t
        span = (int(ts.max()) - int(ts.min())) / DAY_MS if len(ts) else 0.0
        out.append(
            "The models never switched on: every transfer was scored by the rules, so the "
            "model figures (AUC, 'by a model') and the threshold sweep say nothing about the "
            f"models. A model needs {need['model_warmup_labels']:,} labels, at least "
            f"{need['model_min_positives']:,} scams and {need['model_min_negatives']:,} "
            "legitimate transfers, and a transfer becomes a legitimate label only "
            f"{duration(need['label_horizon_ms'])} after it (--label_horizon); this replay "
            f"spans {span:.1f} days with {len(outcomes):,} case outcomes. Replay more history "
            "(weeks, thousands of users), or read this run as the rules-only baseline.")
    return out
