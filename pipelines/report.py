"""The backtest's ``metrics.json`` and ``report.html``: what a policy did, in money and people.

    python -m pipelines.report --input REPLAY_DIR --output BACKTEST_DIR [--compare OTHER_DIR]

Reads the replay directory (inputs, and ``truth.*`` when present) and the backtest's output
directory (decision files and ``scores.parquet``). Ground truth: the ``Truth`` rows when
there are any (simulator, converted real data); otherwise the ``CaseOutcome`` rows (a
transfer is a scam when an outcome confirms it or its destination) — then "lost" counts
only scams that someone confirmed.

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
* **threshold sweep** — for other hold thresholds, from the recorded scores: a transfer would
  be held when its score reaches the threshold, its destination was blacklisted or a
  look-alike, or already frozen; it would be prevented when a freeze of its destination came
  within the hold. An estimate: it assumes freezes (driven by reports, outcomes and verdicts,
  not by holds) stay as they were.

Everything shown that comes from data (addresses, ids, report text, reasons) is escaped.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import json
import math
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from pipelines.friction import add_friction, with_friction
from pipelines.htmlcell import cell
from pipelines.proactive_report import proactive_html, proactive_metrics, write_case_pages
from schemas import codecs
from schemas.rows import (
    CaseOutcome,
    ScamReport,
    Transfer,
    Truth,
    UserProfile,
)
from schemas.streams import OUTPUTS

SWEEP = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def policy_dict(policy) -> dict:
    d = dataclasses.asdict(policy)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _month(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m")


def _iso(ms: Optional[int]) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _quantile(xs: list, q: float) -> Optional[float]:
    if not xs:
        return None
    s = sorted(xs)
    i = (len(s) - 1) * q
    lo, hi = math.floor(i), math.ceil(i)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def _r(x: Optional[float], nd: int = 2) -> Optional[float]:
    return None if x is None else round(float(x), nd)


def _share(a: float, b: float) -> Optional[float]:
    return None if not b else round(a / b, 6)


def auc(scores: list, labels: list) -> Optional[float]:
    """Area under the ROC curve (ties averaged); None without both classes.

    >>> auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if not pos or not neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        r = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = r
        i = j + 1
    rp = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return round((rp - pos * (pos + 1) / 2) / (pos * neg), 4)


# ----------------------------------------------------------------------------- loading
def _rows(path: Optional[Path], row_type: type) -> list:
    if path is None:
        return []
    return [r for r in codecs.read_records(path, row_type.__name__) if type(r) is row_type]


def _output(out_dir: Path, name: str) -> list:
    p = codecs.find_input(out_dir, name)
    if p is None:
        return []
    rt = OUTPUTS[name]
    return [r for r in codecs.read_records(p, rt) if type(r).__name__ == rt]


def _output_named(out_dir: Path, file_name: str, name: str) -> list:
    """Rows of output ``name`` written under another file name (``shadow_holds``, ...)."""
    p = codecs.find_input(out_dir, file_name)
    if p is None:
        return []
    rt = OUTPUTS[name]
    return [r for r in codecs.read_records(p, rt) if type(r).__name__ == rt]


def read_scores(out_dir: Path) -> list:
    p = out_dir / "scores.parquet"
    if not p.exists():
        return []
    import pyarrow.parquet as pq

    t = pq.read_table(str(p))
    cols = {n: t.column(n) for n in t.column_names}
    ts = cols["event_time"].cast("int64").to_pylist()
    return list(zip(cols["transfer_id"].to_pylist(), ts, cols["to_address"].to_pylist(),
                    cols["usd_value"].to_pylist(), cols["score"].to_pylist(),
                    cols["model_version"].to_pylist(), cols["blacklisted"].to_pylist(),
                    cols["lookalike_of"].to_pylist(), strict=True))


# ----------------------------------------------------------------------------- figures
class _Truth:
    """Ground truth as the report needs it."""

    def __init__(self, source: str):
        self.source = source  # "truth" or "case outcomes"
        self.transfer: dict = {}  # tid -> (is_scam, typology, detail)
        self.addresses: set = set()
        self.silent: list = []  # (user, address, usd, t)
        self.victims: int = 0
        self.report: dict = {}  # report id -> is_scam


def _ground_truth(input_dir: Path, transfers: dict, reports: dict,
                  outcomes: list) -> _Truth:
    tp = codecs.find_input(input_dir, "truth")
    if tp is not None:
        g = _Truth("truth")
        for r in _rows(tp, Truth):
            if r.subject_type == "TRANSFER":
                g.transfer[r.subject_id] = (r.is_scam, r.typology or "unknown", r.detail)
            elif r.subject_type == "ADDRESS" and r.is_scam:
                g.addresses.add(codecs.normalize_address(r.subject_id))
            elif r.subject_type == "USER" and r.is_scam:
                g.victims += 1
                if (r.detail or "").split(";")[0] == "silent":
                    g.silent.append((r.subject_id, codecs.normalize_address(r.address or ""),
                                     r.usd_value or 0.0, r.event_time))
            elif r.subject_type == "REPORT":
                g.report[r.subject_id] = r.is_scam
        for tid, v in g.transfer.items():
            if v[0] and tid in transfers:
                g.addresses.add(transfers[tid].to_address)
        return g
    g = _Truth("case outcomes")
    scam_tids = set()
    cats: dict = defaultdict(Counter)
    for rep in reports.values():
        s = _suspect(rep, transfers)
        if s:
            cats[s][rep.category] += 1
    for o in outcomes:
        if not o.is_scam:
            if o.subject_type == "REPORT":
                g.report[o.subject_id] = False
            continue
        if o.subject_type == "ADDRESS":
            g.addresses.add(codecs.normalize_address(o.subject_id))
        elif o.subject_type == "TRANSFER":
            scam_tids.add(o.subject_id)
            if o.subject_id in transfers:
                g.addresses.add(transfers[o.subject_id].to_address)
        elif o.subject_type == "REPORT":
            g.report[o.subject_id] = True
            rep = reports.get(o.subject_id)
            s = _suspect(rep, transfers) if rep else None
            if s:
                g.addresses.add(s)
    for tid, t in transfers.items():
        scam = tid in scam_tids or t.to_address in g.addresses
        typ = cats[t.to_address].most_common(1)[0][0].lower() if cats.get(t.to_address) \
            else "unknown"
        g.transfer[tid] = (scam, typ if scam else None, None)
    return g


def _suspect(rep: ScamReport, transfers: dict) -> Optional[str]:
    if rep.suspect_address:
        return rep.suspect_address
    t = transfers.get(rep.transfer_id) if rep.transfer_id else None
    return t.to_address if t else rep.suspect_user_id


def compute(input_dir: str | Path, out_dir: str | Path, counters: Optional[dict] = None,
            run: Optional[dict] = None) -> tuple[dict, dict]:
    """(metrics, extras): the figures of metrics.json, and what only the HTML shows."""
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    counters = dict(counters or {})
    run = dict(run or {})
    hold_ms = (run.get("policy") or {}).get("hold_ms", DAY_MS)

    transfers: dict = {}
    n_read_transfers = 0
    tp = codecs.find_input(input_dir, "transfers")
    for t in _rows(tp, Transfer):
        n_read_transfers += 1
        transfers.setdefault(t.transfer_id, t)
    reports: dict = {}
    for r in _rows(codecs.find_input(input_dir, "reports"), ScamReport):
        reports.setdefault(r.report_id, r)
    outcomes = _rows(codecs.find_input(input_dir, "outcomes"), CaseOutcome)
    profiles_path = codecs.find_input(input_dir, "profiles")
    truth = _ground_truth(input_dir, transfers, reports, outcomes)

    holds = _output(out_dir, "holds")
    resolutions = _output(out_dir, "resolutions")
    freezes = _output(out_dir, "freezes")
    outreach = _output(out_dir, "outreach")
    verdicts = _output(out_dir, "verdicts")
    dead = _output(out_dir, "dead_letter")
    scores = read_scores(out_dir)

    hold_by = {h.transfer_id: h for h in holds}
    res_by = {r.transfer_id: r for r in resolutions}

    # --- money ---------------------------------------------------------------------------
    tot = Counter()
    by_typ: dict = defaultdict(Counter)
    by_month: dict = defaultdict(Counter)
    daily: dict = defaultdict(Counter)
    legit_hours: list = []
    for tid, t in transfers.items():
        scam, typ, detail = truth.transfer.get(tid, (False, None, None))
        usd = float(t.usd_value)
        h = hold_by.get(tid)
        r = res_by.get(tid)
        refunded = r is not None and r.resolution == "REFUNDED"
        recovered = refunded and r.reason == "destination frozen"
        m, d = _month(t.event_time), _day(t.event_time)
        mon = by_month[m]
        mon["transfers"] += 1
        mon["usd"] += usd
        if h is not None:
            daily[d]["held_usd"] += usd
            mon["holds"] += 1
        if scam:
            ty = by_typ[typ or "unknown"]
            for c in (tot, ty, mon):
                c["scam_n"] += 1
                c["scam_usd"] += usd
                if h is not None:
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
            if refunded:
                daily[d]["refunded_usd"] += usd
            else:
                daily[d]["lost_usd"] += usd
        elif detail == "laundering":
            tot["laundering_n"] += 1
            tot["laundering_usd"] += usd
            if h is not None:
                tot["laundering_held_n"] += 1
        else:
            for c in (tot, mon):
                c["legit_n"] += 1
                c["legit_usd"] += usd
            if h is not None:
                for c in (tot, mon):
                    c["legit_held_n"] += 1
                    c["legit_held_usd"] += usd
                daily[d]["legit_held_n"] += 1
                daily[d]["legit_held_usd"] += usd
                if r is not None:
                    legit_hours.append((r.resolved_at - h.placed_at) / HOUR_MS)
                if refunded:
                    tot["legit_refunded_n"] += 1
                    tot["legit_refunded_usd"] += usd

    # --- freezes -------------------------------------------------------------------------
    first_report: dict = {}
    for rep in reports.values():
        s = _suspect(rep, transfers)
        if s is None:
            continue
        s = codecs.normalize_address(s)
        if s not in first_report or rep.event_time < first_report[s]:
            first_report[s] = rep.event_time
    refunds_to: dict = defaultdict(lambda: [0, 0.0, 0])  # address -> [n, usd, legit n]
    for r in resolutions:
        if r.resolution == "REFUNDED" and r.to_address is not None:
            x = refunds_to[r.to_address]
            x[0] += 1
            x[1] += float(r.usd_value or 0.0)
            x[2] += not truth.transfer.get(r.transfer_id, (False,))[0]
    freeze_rows, delays = [], []
    before_report = no_report = correct = 0
    for f in sorted(freezes, key=lambda f: (f.frozen_at, f.freeze_id)):
        fr = first_report.get(f.address)
        delay = None
        if fr is None:
            no_report += 1
        elif fr > f.frozen_at:
            before_report += 1
        else:
            delay = (f.frozen_at - fr) / HOUR_MS
            delays.append(delay)
        ok = f.address in truth.addresses
        correct += ok
        by_month[_month(f.frozen_at)]["freezes"] += 1
        freeze_rows.append((f, fr, delay, ok, refunds_to.get(f.address, (0, 0.0, 0))))
    scam_addr_reported = sum(1 for a in truth.addresses if a in first_report)
    frozen_addrs = {f.address for f in freezes}

    # --- outreach, silent sufferers, verdicts -------------------------------------------
    kinds = Counter(o.kind for o in outreach)
    channels = Counter(o.channel for o in outreach)
    ss_pairs = {(o.user_id, o.address) for o in outreach if o.kind == "SILENT_SUFFERER"}
    ss_users = {u for u, _ in ss_pairs}
    silent = None
    if truth.source == "truth" and (truth.victims or truth.silent):
        reached = sum(1 for u, a, _, _ in truth.silent if (u, a) in ss_pairs)
        reached_any = sum(1 for u, _, _, _ in truth.silent if u in ss_users)
        victims_of = {(t.user_id, t.to_address) for tid, t in transfers.items()
                      if truth.transfer.get(tid, (False,))[0]}
        silent = {"silent_victims": len(truth.silent), "reached": reached,
                  "reached_any_address": reached_any,
                  "reached_share": _share(reached, len(truth.silent)),
                  "silent_victims_usd": _r(sum(x[2] for x in truth.silent)),
                  "all_victims": truth.victims,
                  "outreach_sent": len(ss_pairs),
                  "outreach_to_true_victims": sum(1 for p in ss_pairs if p in victims_of)}
    vcount = Counter(v.verdict for v in verdicts)
    vq = None
    if truth.report:
        tp_ = sum(1 for v in verdicts if v.verdict == "SCAM" and truth.report.get(v.report_id))
        fp_ = sum(1 for v in verdicts if v.verdict == "SCAM"
                  and truth.report.get(v.report_id) is False)
        pos = sum(1 for v in verdicts if truth.report.get(v.report_id))
        vq = {"scam_verdict_precision": _share(tp_, tp_ + fp_),
              "scam_verdict_recall": _share(tp_, pos), "true_scam_reports": pos}

    # --- threshold sweep, models ---------------------------------------------------------
    frozen_at: dict = {}
    for f in freezes:
        frozen_at[f.address] = min(frozen_at.get(f.address, f.frozen_at), f.frozen_at)
    sweep = threshold_sweep(scores, truth, frozen_at, hold_ms)
    model = model_figures(scores, truth)

    # --- reconciliation ------------------------------------------------------------------
    recon = {}
    for src in ("transfers", "reports", "outcomes", "blacklist"):
        rd = counters.get(f"Read/{src}_read")
        if rd is None:
            continue
        va = counters.get(f"Read/{src}_valid", 0)
        dl = counters.get(f"Read/{src}_dead_lettered", 0)
        recon[src] = {"read": rd, "valid": va, "dead_lettered": dl,
                      "reconciles": rd == va + dl}
    dl_by = Counter((d.source, d.error.split(":")[0][:60]) for d in dead)
    dl_src = Counter(d.source for d in dead)
    dups = {"transfers": counters.get("TransferLedger/duplicate_transfers", 0),
            "reports": counters.get("ReportLedger/duplicate_reports", 0)}
    prof = None
    if profiles_path is not None:
        n = bad = 0
        for r in codecs.read_records(profiles_path, "UserProfile", "profiles"):
            n += 1
            bad += type(r) is not UserProfile
        prof = {"read": n, "valid": n - bad, "invalid_ignored": bad}
    manifest = None
    mp = input_dir / "manifest.json"
    if mp.exists():
        try:
            manifest = json.loads(mp.read_text(encoding="utf-8"))
        except ValueError:
            manifest = None
    check = None
    if manifest and recon:
        mt = manifest.get("malformed_total", {})
        md = manifest.get("duplicates", {})
        check = {src: {"malformed_written": mt.get(src), "dead_lettered_at_read":
                       recon.get(src, {}).get("dead_lettered"),
                       "duplicates_written": md.get(src), "duplicates_seen": dups.get(src)}
                 for src in ("transfers", "reports", "outcomes", "blacklist")}

    wall = run.get("wall_seconds")
    summary = {
        "ground_truth": truth.source,
        "transfers_read": n_read_transfers,
        "transfers_unique": len(transfers),
        "holds": len(holds),
        "holds_usd": _r(sum(h.usd_value for h in holds)),
        "refunded": sum(1 for r in resolutions if r.resolution == "REFUNDED"),
        "released": sum(1 for r in resolutions if r.resolution == "RELEASED"),
        "scam_transfers": tot["scam_n"], "scam_usd": _r(tot["scam_usd"]),
        "scam_held": tot["scam_held_n"], "scam_usd_held": _r(tot["scam_held_usd"]),
        "scam_prevented": tot["prevented_n"], "scam_usd_prevented": _r(tot["prevented_usd"]),
        "scam_recovered": tot["recovered_n"], "scam_usd_recovered": _r(tot["recovered_usd"]),
        "scam_lost": tot["lost_n"], "scam_usd_lost": _r(tot["lost_usd"]),
        "scam_usd_prevented_or_recovered_share": _share(
            tot["prevented_usd"] + tot["recovered_usd"], tot["scam_usd"]),
        "scam_count_prevented_or_recovered_share": _share(
            tot["prevented_n"] + tot["recovered_n"], tot["scam_n"]),
        "legit_transfers": tot["legit_n"],
        "legit_held": tot["legit_held_n"],
        "legit_held_share": _share(tot["legit_held_n"], tot["legit_n"]),
        "legit_held_usd": _r(tot["legit_held_usd"]),
        "legit_held_usd_share": _share(tot["legit_held_usd"], tot["legit_usd"]),
        "legit_hours_held_total": _r(sum(legit_hours), 1),
        "legit_hours_held_median": _r(_quantile(legit_hours, 0.5), 2),
        "legit_refunded": tot["legit_refunded_n"],
        "legit_refunded_usd": _r(tot["legit_refunded_usd"]),
        "laundering_transfers": tot["laundering_n"],
        "laundering_held": tot["laundering_held_n"],
        "freezes": len(freezes),
        "freezes_on_scam_addresses": correct,
        "freezes_not_known_scam": len(freezes) - correct,
        "legit_refunded_by_false_freezes": sum(
            x[4][2] for x in freeze_rows if not x[3]),
        "freeze_delay_hours_median": _r(_quantile(delays, 0.5), 2),
        "freeze_delay_hours_p90": _r(_quantile(delays, 0.9), 2),
        "freezes_before_any_report": before_report,
        "freezes_without_report": no_report,
        "scam_addresses": len(truth.addresses),
        "scam_addresses_reported": scam_addr_reported,
        "scam_addresses_frozen": len(truth.addresses & frozen_addrs),
        "outreach": len(outreach),
        "silent_sufferers_reached": silent["reached"] if silent else None,
        "silent_sufferers_all": silent["silent_victims"] if silent else None,
        "dead_letters": len(dead),
        "transfers_per_second": _r(n_read_transfers / wall, 0) if wall else None,
    }
    metrics = {
        "summary": summary,
        "warnings": warnings(run, model, transfers, outcomes, recon),
        "holds_by_reason": holds_by_reason(holds, res_by, truth),
        "run": run,
        "money_by_typology": {k: _rounded(v) for k, v in sorted(by_typ.items())},
        "by_month": {k: _rounded(v) for k, v in sorted(by_month.items())},
        "daily": {k: _rounded(v) for k, v in sorted(daily.items())},
        "outreach_by_kind": dict(sorted(kinds.items())),
        "outreach_by_channel": dict(sorted(channels.items())),
        "silent_sufferers": silent,
        "verdicts": dict(sorted(vcount.items())),
        "verdict_quality": vq,
        "threshold_sweep": sweep,
        "models": model,
        "reconciliation": {
            "inputs": recon,
            "all_reconcile": all(v["reconciles"] for v in recon.values()) if recon else None,
            "dead_letters_by_source": dict(sorted(dl_src.items())),
            "duplicates_ignored": dups,
            "conflicts_dead_lettered": {
                "transfers": counters.get("TransferLedger/conflicting_transfers", 0),
                "reports": counters.get("ReportLedger/conflicting_reports", 0)},
            "profiles": prof,
            "simulator_manifest": check,
        },
        "counters": counters,
    }
    extras = {"freeze_rows": freeze_rows, "reports": reports, "verdicts": verdicts,
              "dead_by": dl_by, "holds": holds, "res_by": res_by, "transfers": transfers,
              "truth": truth}
    return metrics, extras


HOLD_CAUSES = (("destination_frozen", "destination already frozen"),
               ("blacklist", "destination blacklisted"),
               ("lookalike", "look-alike of a known payee"),
               ("model_score", "risk score ≥ hold threshold (model)"),
               ("rules_score", "risk score ≥ hold threshold (rules)"))


def hold_causes(h) -> list:
    """Why a hold was placed, as causes (a hold can have several)."""
    out = []
    rs = h.reasons or []
    if "destination_frozen" in rs:
        out.append("destination_frozen")
    if any(r.startswith("blacklist:") for r in rs):
        out.append("blacklist")
    if any(r.startswith("lookalike_of=") for r in rs):
        out.append("lookalike")
    if not out:
        out.append("rules_score" if (h.model_version or "rules") == "rules" else "model_score")
    return out


def holds_by_reason(holds: list, res_by: dict, truth) -> dict:
    """{cause: {holds, usd, scam, refunded}} over the holds (see :func:`hold_causes`)."""
    out = {k: Counter() for k, _ in HOLD_CAUSES}
    for h in holds:
        r = res_by.get(h.transfer_id)
        scam = truth.transfer.get(h.transfer_id, (False,))[0]
        for c in hold_causes(h):
            o = out[c]
            o["holds"] += 1
            o["usd"] += float(h.usd_value)
            o["scam"] += int(bool(scam))
            o["refunded"] += int(r is not None and r.resolution == "REFUNDED")
    return {k: _rounded(v) for k, v in out.items() if v}


def warnings(run: dict, model: Optional[dict], transfers: dict, outcomes: list,
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
        from transforms.policy import Policy

        d = Policy()
        need = {k: pol.get(k, getattr(d, k)) for k in (
            "model_warmup_labels", "model_min_positives", "model_min_negatives",
            "label_horizon_ms")}
        ts = [t.event_time for t in transfers.values()]
        span = (max(ts) - min(ts)) / DAY_MS if ts else 0.0
        out.append(
            "The models never switched on: every transfer was scored by the rules, so the "
            "model figures (AUC, 'by a model') and the threshold sweep say nothing about the "
            f"models. A model needs {need['model_warmup_labels']:,} labels, at least "
            f"{need['model_min_positives']:,} scams and {need['model_min_negatives']:,} "
            "legitimate transfers, and a transfer becomes a legitimate label only "
            f"{_duration(need['label_horizon_ms'])} after it (--label_horizon); this replay "
            f"spans {span:.1f} days with {len(outcomes):,} case outcomes. Replay more history "
            "(weeks, thousands of users), or read this run as the rules-only baseline.")
    return out


def _duration(ms: Optional[float]) -> str:
    """A duration as people read it: 30d, 24h, 90m, 45s."""
    if ms is None:
        return "–"
    from pipelines.options import format_duration

    return format_duration(int(ms))


def _rounded(c: Counter) -> dict:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in sorted(c.items())}


def threshold_sweep(scores: list, truth: _Truth, frozen_at: dict, hold_ms: int,
                    thresholds: tuple = SWEEP) -> list:
    """What alternative hold thresholds would have held and prevented (see module doc)."""
    rows = []
    base = []  # (score, always_held, scam, legit, prevented_if_held, usd)
    for tid, t, to, usd, score, _mv, listed, look in scores:
        scam, _typ, detail = truth.transfer.get(tid, (False, None, None))
        fa = frozen_at.get(to)
        already = fa is not None and fa <= t
        always = bool(listed) or bool(look) or already
        # The summary's definitions: prevented = held, then refunded by a freeze within the
        # hold; recovered = sent to an address already frozen (held and refunded at once).
        prevented = scam and fa is not None and t < fa <= t + hold_ms
        recovered = scam and already
        base.append((score, always, scam, (not scam) and detail != "laundering", prevented,
                     usd, recovered))
    n_legit = sum(1 for b in base if b[3])
    for th in thresholds:
        c = Counter()
        for score, always, scam, legit, prev, usd, rec in base:
            if not (always or score >= th):
                continue
            c["held"] += 1
            c["held_usd"] += usd
            if scam:
                c["scam_held"] += 1
                c["scam_held_usd"] += usd
                if prev:
                    c["prevented"] += 1
                    c["prevented_usd"] += usd
                elif rec:
                    c["recovered"] += 1
                    c["recovered_usd"] += usd
            elif legit:
                c["legit_held"] += 1
                c["legit_held_usd"] += usd
        rows.append({"threshold": th, "held": c["held"], "held_usd": _r(c["held_usd"]),
                     "scam_held": c["scam_held"], "scam_held_usd": _r(c["scam_held_usd"]),
                     "prevented": c["prevented"], "prevented_usd": _r(c["prevented_usd"]),
                     "recovered": c["recovered"], "recovered_usd": _r(c["recovered_usd"]),
                     "legit_held": c["legit_held"], "legit_held_usd": _r(c["legit_held_usd"]),
                     "legit_held_share": _share(c["legit_held"], n_legit),
                     "precision": _share(c["scam_held"], c["held"])})
    return rows


def model_figures(scores: list, truth: _Truth) -> Optional[dict]:
    """Prequential figures: every transfer is scored before any label about it is learned,
    so the AUC of the recorded scores against the truth is an honest out-of-sample figure."""
    if not scores:
        return None
    by_v = Counter("rules" if s[5] == "rules" else "model" for s in scores)
    out: dict = {"scored": len(scores), "scored_by": dict(by_v)}
    ys = [truth.transfer.get(s[0], (False,))[0] for s in scores]
    out["auc_all"] = auc([s[4] for s in scores], ys)
    m = [(s[4], y) for s, y in zip(scores, ys, strict=True) if s[5] != "rules"]
    out["auc_model_scored"] = auc([a for a, _ in m], [b for _, b in m]) if m else None
    weekly: dict = defaultdict(lambda: ([], []))
    for s, y in zip(scores, ys, strict=True):
        w = datetime.fromtimestamp(s[1] / 1000, tz=timezone.utc).strftime("%G-W%V")
        weekly[w][0].append(s[4])
        weekly[w][1].append(y)
    out["auc_by_week"] = {w: auc(a, b) for w, (a, b) in sorted(weekly.items())}
    return out


# ----------------------------------------------------------------------------- plots
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight",
                metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(metrics: dict, extras: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = {}
    daily = metrics["daily"]
    if daily:
        days = [datetime.strptime(d, "%Y-%m-%d") for d in daily]
        fig, ax = plt.subplots(figsize=(10, 3.6))
        for key, label, color in (("refunded_usd", "scam refunded", "#2a9d8f"),
                                  ("lost_usd", "scam lost", "#e63946")):
            ax.plot(days, [daily[d].get(key, 0) for d in daily], label=label, color=color,
                    marker="o" if len(days) < 40 else None, ms=3)
        ax.set_ylabel("USD per day")
        ax.set_title("Scam money refunded (prevented + recovered) and lost, per day (event time)")
        ax.legend()
        ax.grid(alpha=.3)
        fig.autofmt_xdate()
        out["money"] = _png(fig)
        fig, ax = plt.subplots(figsize=(10, 3.0))
        ax.bar(days, [daily[d].get("legit_held_n", 0) for d in daily], color="#f4a261",
               label="legitimate transfers held")
        ax.set_ylabel("legitimate transfers held")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax2 = ax.twinx()
        ax2.plot(days, [daily[d].get("legit_held_usd", 0) for d in daily], color="#6d597a",
                 label="their USD")
        ax2.set_ylabel("USD held")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper right")
        ax.set_title("Friction: legitimate transfers held per day")
        ax.grid(alpha=.3, axis="y")
        fig.autofmt_xdate()
        out["friction"] = _png(fig)
    sweep = metrics["threshold_sweep"]
    if sweep:
        th = [r["threshold"] for r in sweep]
        fig, ax = plt.subplots(figsize=(10, 3.6))
        ax.plot(th, [r["prevented_usd"] for r in sweep], marker="o", color="#2a9d8f",
                label="scam USD prevented (est.)")
        ax.plot(th, [r["scam_held_usd"] for r in sweep], marker=".", color="#264653",
                label="scam USD held")
        ax.set_xlabel("hold threshold")
        ax.set_ylabel("USD")
        ax2 = ax.twinx()
        ax2.plot(th, [r["legit_held"] for r in sweep], marker="s", color="#f4a261",
                 label="legitimate transfers held")
        ax2.set_ylabel("legitimate transfers held")
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
        cur = (metrics.get("run") or {}).get("policy", {}).get("hold_threshold")
        if cur is not None:
            ax.axvline(cur, color="#999", ls="--", lw=1)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper right")
        ax.set_title("Threshold sweep (from recorded scores; dashed: this run)")
        ax.grid(alpha=.3)
        out["sweep"] = _png(fig)
    delays = [row[2] for row in extras["freeze_rows"] if row[2] is not None]
    if delays:
        fig, ax = plt.subplots(figsize=(10, 3.0))
        ax.hist(delays, bins=min(40, max(5, len(delays) // 3)), color="#457b9d")
        ax.set_xlabel("hours from first report to freeze")
        ax.set_ylabel("freezes")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Freeze delay after the first report (event time)")
        ax.grid(alpha=.3)
        out["delay"] = _png(fig)
    return out


# ----------------------------------------------------------------------------- HTML
_e = cell  # a table cell's escaped text (pipelines/htmlcell.py)


def _usd(x: Optional[float]) -> str:
    return "–" if x is None else html.escape(f"${x:,.0f}")


def _pct(x: Optional[float]) -> str:
    return "–" if x is None else html.escape(f"{100 * x:.2f}%")


def _table(head: list, rows: list, raw_cols: tuple = ()) -> str:
    """An HTML table; every cell escaped except the columns named in raw_cols (which the
    caller built from escaped parts)."""
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = []
    for row in rows:
        cells = "".join(
            f"<td{'' if isinstance(v, (int, float)) or i in raw_cols else ' class=l'}>"
            f"{v if i in raw_cols else _e(v)}</td>" for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _short(a: Optional[str], n: int = 18) -> str:
    if a is None:
        return ""
    return a if len(a) <= n else a[: n - 6] + "…" + a[-5:]


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1150px;color:#222;line-height:1.4}
h1{margin-bottom:0}h2{border-bottom:2px solid #264653;padding-bottom:4px;margin-top:32px}
.sub{color:#666}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:170px;background:#fafafa}
.card b{display:block;font-size:1.35em}.card span{color:#666;font-size:.85em}
.good b{color:#2a9d8f}.bad b{color:#e63946}.warn b{color:#e76f51}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.88em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#264653;color:#fff}td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#f6f6f6}.note{color:#555;font-size:.9em;max-width:950px}
img{max-width:100%;border:1px solid #eee}code{background:#f1f1f1;padding:0 3px}
.txt td{text-align:left}td{overflow-wrap:anywhere;max-width:420px}
.alert{border:2px solid #e63946;background:#fff0f0;padding:8px 12px;border-radius:6px}
nav.toc{columns:3;font-size:.9em;margin:8px 0}nav.toc a{display:block}
"""


def _card(label: str, value: str, cls: str = "") -> str:
    return f'<div class="card {cls}"><b>{value}</b><span>{html.escape(label)}</span></div>'


def render_html(metrics: dict, extras: dict, compare: Optional[dict] = None) -> str:
    s = metrics["summary"]
    run = metrics.get("run") or {}
    imgs = plots(metrics, extras)
    P = []
    P.append("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
             "img-src data:; style-src 'unsafe-inline'\">"
             f"<title>Safety Net backtest</title><style>{CSS}</style></head><body>")
    P.append("<h1>Safety Net backtest</h1>")
    P.append(f"<p class='sub'>Input <code>{_e(run.get('input'))}</code> · runner "
             f"{_e(run.get('runner'))} · {_e(run.get('wall_seconds'))} s wall · "
             f"ground truth: <b>{_e(s['ground_truth'])}</b><br>safetynet "
             f"{_e(run.get('version'))} · commit <code>{_e(run.get('commit'))}</code> · run "
             f"at {_e(run.get('run_at'))}</p>")
    for w in metrics.get("warnings") or ():
        P.append(f"<p class='alert'><b>Warning.</b> {_e(w)}</p>")
    P.append("<div class='cards'>")
    P.append(_card("holds placed", _e(s["holds"])))
    P.append(_card("scam USD prevented (held → refunded)", _usd(s["scam_usd_prevented"]),
                   "good"))
    P.append(_card("scam USD recovered (sent to frozen)", _usd(s["scam_usd_recovered"]),
                   "good"))
    P.append(_card("scam USD lost", _usd(s["scam_usd_lost"]), "bad"))
    P.append(_card("scam USD stopped (share)", _pct(s["scam_usd_prevented_or_recovered_share"]),
                   "good"))
    P.append(_card("legitimate transfers held", f"{_e(s['legit_held'])} "
                   f"({_pct(s['legit_held_share'])})", "warn"))
    P.append(_card("freezes (on known scams)", f"{_e(s['freezes'])} "
                   f"({_e(s['freezes_on_scam_addresses'])})"))
    P.append(_card("median freeze delay after 1st report",
                   "–" if s["freeze_delay_hours_median"] is None
                   else _e(f"{s['freeze_delay_hours_median']:.2f} h")))
    if s["silent_sufferers_all"] is not None:
        P.append(_card("silent sufferers reached / all",
                       f"{_e(s['silent_sufferers_reached'])} / {_e(s['silent_sufferers_all'])}"))
    P.append("</div>")
    P.append("<p class='note'>Definitions: <b>prevented</b> = scam transfers held, then refunded "
             "when the scam was confirmed within the hold; <b>recovered</b> = scam transfers to "
             "an address already frozen (held and refunded at once); <b>lost</b> = scam "
             "transfers not refunded. <b>Legitimate</b> = not a scam by the ground truth "
             "(payments between two labelled fraud accounts excluded). Money is the "
             "transfers' <code>usd_value</code>; a few large transfers can dominate a USD "
             "figure, so counts are shown beside it.</p>")

    P.append("<!--toc-->")
    if compare:
        P.append("<h2>Comparison</h2>")
        P.append(_compare_table(metrics, compare))

    P.append("<h2>Money</h2>")
    P.append(_table(["", "transfers", "USD"], [
        ("scam transfers", s["scam_transfers"], _usd(s["scam_usd"])),
        ("… held", s["scam_held"], _usd(s["scam_usd_held"])),
        ("… prevented (held → refunded)", s["scam_prevented"], _usd(s["scam_usd_prevented"])),
        ("… recovered (to frozen address)", s["scam_recovered"],
         _usd(s["scam_usd_recovered"])),
        ("… lost", s["scam_lost"], _usd(s["scam_usd_lost"])),
        ("legitimate transfers", s["legit_transfers"], "–"),
        ("… held (friction)", s["legit_held"], _usd(s["legit_held_usd"])),
        ("… refunded (wrongly)", s["legit_refunded"], _usd(s["legit_refunded_usd"])),
    ], raw_cols=(2,)))
    P.append(f"<p class='note'>Friction: {_e(s['legit_held'])} legitimate transfers held "
             f"({_pct(s['legit_held_share'])} of legitimate transfers, "
             f"{_pct(s['legit_held_usd_share'])} of their USD), "
             f"{_e(s['legit_hours_held_total'])} hours held in all, median "
             f"{_e(s['legit_hours_held_median'])} h per hold.</p>")
    if "money" in imgs:
        P.append(f"<img alt='money per day' src='data:image/png;base64,{imgs['money']}'>")
    if "friction" in imgs:
        P.append(f"<img alt='friction per day' src='data:image/png;base64,{imgs['friction']}'>")

    P.append("<h2>Holds by reason</h2>")
    P.append("<p class='note'>Why each hold was placed; a hold with several causes (a "
             "blacklisted destination that is also a look-alike) counts under each.</p>")
    label = dict(HOLD_CAUSES)
    P.append(_table(["reason", "holds (transfers)", "held (USD)", "of which scams (transfers)",
                     "refunded (transfers)"],
                    [(label[k], v.get("holds", 0), _usd(v.get("usd", 0)), v.get("scam", 0),
                      v.get("refunded", 0)) for k, v in metrics.get("holds_by_reason",
                                                                     {}).items()],
                    raw_cols=(2,)))

    P.append("<h2>Per typology</h2>")
    rows = []
    for k, v in metrics["money_by_typology"].items():
        rows.append((k, v.get("scam_n", 0), _usd(v.get("scam_usd", 0)), v.get("scam_held_n", 0),
                     _usd(v.get("prevented_usd", 0)), _usd(v.get("recovered_usd", 0)),
                     _usd(v.get("lost_usd", 0)),
                     _pct(_share(v.get("prevented_usd", 0) + v.get("recovered_usd", 0),
                                 v.get("scam_usd", 0)))))
    P.append(_table(["typology", "scam (transfers)", "scam (USD)", "held (transfers)",
                     "prevented (USD)", "recovered (USD)", "lost (USD)", "stopped (share of USD)"],
                    rows, raw_cols=(2, 4, 5, 6, 7)))

    P.append("<h2>Per month</h2>")
    rows = []
    for k, v in metrics["by_month"].items():
        rows.append((k, v.get("transfers", 0), v.get("holds", 0), v.get("scam_n", 0),
                     _usd(v.get("scam_usd", 0)), _usd(v.get("prevented_usd", 0)),
                     _usd(v.get("recovered_usd", 0)), _usd(v.get("lost_usd", 0)),
                     v.get("legit_held_n", 0),
                     _pct(_share(v.get("legit_held_n", 0), v.get("legit_n", 0))),
                     v.get("freezes", 0)))
    P.append(_table(["month", "transfers", "holds (transfers)", "scam (transfers)", "scam (USD)",
                     "prevented (USD)", "recovered (USD)", "lost (USD)",
                     "legit held (transfers)", "legit held (share)", "freezes"], rows,
                    raw_cols=(4, 5, 6, 7, 9)))

    P.append("<h2>Threshold sweep</h2>")
    P.append("<p class='note'>From the recorded scores (<code>scores.parquet</code>), without "
             "re-running: held = score ≥ threshold, or blacklisted / look-alike / already "
             "frozen destination (held whatever the threshold); prevented and recovered as in "
             "the summary: prevented = held scam whose destination was frozen within the hold, "
             "recovered = scam sent to an address already frozen. Assumes freezes stay as they "
             "were.</p>")
    P.append(_table(["threshold", "held (transfers)", "scam held (transfers)", "scam held (USD)",
                     "prevented (transfers, est.)", "prevented (USD, est.)",
                     "recovered (USD)", "legit held (transfers)", "legit held (share)",
                     "precision"],
                    [(f"{r['threshold']:.2f}", r["held"], r["scam_held"],
                      _usd(r["scam_held_usd"]), r["prevented"], _usd(r["prevented_usd"]),
                      _usd(r.get("recovered_usd")), r["legit_held"],
                      _pct(r["legit_held_share"]), _pct(r["precision"]))
                     for r in metrics["threshold_sweep"]], raw_cols=(3, 5, 6, 8, 9)))
    if "sweep" in imgs:
        P.append(f"<img alt='threshold sweep' src='data:image/png;base64,{imgs['sweep']}'>")

    m = metrics.get("models")
    if m:
        P.append("<h2>Models (prequential)</h2>")
        P.append("<p class='note'>Every transfer is scored before any label about it is learned, "
                 "so these are out-of-sample figures. Until a model has seen enough labels the "
                 "documented rules score instead.</p>")
        P.append(_table(["", "value"], [
            ("transfers scored", m["scored"]),
            ("… by the rules", m["scored_by"].get("rules", 0)),
            ("… by a model", m["scored_by"].get("model", 0)),
            ("AUC, all scores", m["auc_all"]),
            ("AUC, model-scored only", m["auc_model_scored"])]))
        P.append(_table(["week", "AUC"], list(m["auc_by_week"].items())))

    P.append("<h2>Freezes</h2>")
    P.append(f"<p class='note'>{_e(s['freezes'])} freezes, {_e(s['freezes_on_scam_addresses'])} "
             f"on addresses known to be scams ({_e(s['scam_addresses_frozen'])} of "
             f"{_e(s['scam_addresses'])} scam addresses, {_e(s['scam_addresses_reported'])} of "
             f"which were reported). Delay after the first report: median "
             f"{_e(s['freeze_delay_hours_median'])} h, p90 {_e(s['freeze_delay_hours_p90'])} h; "
             f"{_e(s['freezes_before_any_report'])} came before any report and "
             f"{_e(s['freezes_without_report'])} without one (case outcomes, lists).</p>")
    if "delay" in imgs:
        P.append(f"<img alt='freeze delay' src='data:image/png;base64,{imgs['delay']}'>")
    def freeze_table(items):
        rows = []
        for f, _fr, delay, ok, (n_ref, usd_ref, n_legit) in items:
            rows.append((_iso(f.frozen_at), _short(f.address, 24), f.user_id,
                         "–" if delay is None else f"{delay:.2f}", "yes" if ok else "NO",
                         len(f.report_ids), n_ref, _usd(usd_ref), n_legit,
                         "; ".join(f.reasons)[:160]))
        return _table(["frozen at (UTC)", "address", "account", "hours after 1st report",
                       "known scam", "reports", "holds refunded", "USD refunded",
                       "… of legit transfers", "reasons"], rows, raw_cols=(7,))
    false = [x for x in extras["freeze_rows"] if not x[3]]
    if false and s["ground_truth"] == "truth":
        P.append(f"<p class='note'><b>Freezes of addresses not known to be scams: "
                 f"{_e(len(false))}</b>. Every later transfer to a frozen address is held and "
                 f"refunded, so a wrong freeze of a busy address (a merchant, an exchange) "
                 f"stops legitimate payments: {_e(s['legit_refunded_by_false_freezes'])} "
                 f"legitimate transfers here.</p>")
        P.append(freeze_table(sorted(false, key=lambda x: -x[4][0])))
    P.append("<p class='note'>The first 25 freezes:</p>")
    P.append(freeze_table(extras["freeze_rows"][:25]))

    P.append("<h2>Outreach</h2>")
    P.append(_table(["kind", "count"], list(metrics["outreach_by_kind"].items())))
    P.append(_table(["channel", "count"], list(metrics["outreach_by_channel"].items())))
    ss = metrics.get("silent_sufferers")
    if ss:
        P.append(f"<p class='note'>Silent sufferers (victims who never reported): "
                 f"{_e(ss['reached'])} of {_e(ss['silent_victims'])} reached "
                 f"({_pct(ss['reached_share'])}; {_e(ss['reached_any_address'])} reached about "
                 f"any address) — {_usd(ss['silent_victims_usd'])} of their losses. "
                 f"{_e(ss['outreach_sent'])} silent-sufferer messages were sent, "
                 f"{_e(ss['outreach_to_true_victims'])} to users who did pay a scam there. "
                 f"All victims: {_e(ss['all_victims'])}.</p>")

    P.append("<h2>Verdicts and reports</h2>")
    P.append(_table(["verdict", "count"], list(metrics["verdicts"].items())))
    vq = metrics.get("verdict_quality")
    if vq:
        P.append(f"<p class='note'>SCAM verdicts: precision {_pct(vq['scam_verdict_precision'])}, "
                 f"recall {_pct(vq['scam_verdict_recall'])} of "
                 f"{_e(vq['true_scam_reports'])} true scam reports.</p>")
    vby = {v.report_id: v for v in extras["verdicts"]}
    reps = sorted(extras["reports"].values(), key=lambda r: (r.event_time, r.report_id))[:30]
    rows = []
    for r in reps:
        v = vby.get(r.report_id)
        rows.append((_iso(r.event_time), r.report_id, r.reporter_user_id,
                     _short(r.suspect_address or r.suspect_user_id or r.transfer_id, 24),
                     r.category, (r.description or "")[:200],
                     v.verdict if v else "–", f"{v.score:.2f}" if v else "–"))
    P.append("<p class='note'>The first 30 reports (event time):</p>")
    P.append("<div class='txt'>" + _table(["time (UTC)", "report", "reporter", "suspect",
                                           "category", "description", "verdict", "score"],
                                          rows) + "</div>")

    from pipelines import efficacy, shadow

    P.append(shadow.html_section(metrics.get("shadow")))
    P.append(efficacy.html_section(metrics.get("warning_efficacy")))
    # issue 12: daily risk assessments, call capacity, case files
    P.append(proactive_html(metrics, extras.get("out_dir")))

    rec = metrics["reconciliation"]
    P.append("<h2>Reconciliation</h2>")
    P.append("<p class='note'>Every input record ends processed or dead-lettered (rule 7): "
             "records read = valid + dead-lettered at parsing; duplicates (rule 8) are "
             "processed once and counted.</p>")
    rows = [(k, v["read"], v["valid"], v["dead_lettered"], "yes" if v["reconciles"] else "NO")
            for k, v in rec["inputs"].items()]
    P.append(_table(["input", "read", "valid", "dead-lettered", "reconciles"], rows))
    P.append(_table(["duplicates ignored", "count"], list(rec["duplicates_ignored"].items())))
    P.append(_table(["conflicting deliveries (same id, other content), dead-lettered", "count"],
                    list((rec.get("conflicts_dead_lettered") or {}).items())))
    P.append(_table(["dead letters: source", "error", "count"],
                    [(a, b, n) for (a, b), n in sorted(extras["dead_by"].items())]))
    P.append("<h2>Run</h2>")
    P.append(_table(["", "value"], [
        ("safetynet version", run.get("version")), ("git commit", run.get("commit")),
        ("run at (UTC)", run.get("run_at")), ("runner", run.get("runner")),
        ("wall time (s)", run.get("wall_seconds")), ("input", run.get("input")),
        ("input fingerprint (SHA-256)", (run.get("input_fingerprint") or {}).get("sha256"))]))
    pol = run.get("policy_options") or _as_options(run.get("policy") or {})
    P.append("<p class='note'>The effective policy, as a policy file: <code>--policy "
             "metrics.json</code> repeats it.</p>")
    P.append(_table(["policy option", "value"], [(f"--{k}", _opt(v)) for k, v in pol.items()]))
    P.append("</body></html>")
    return _with_toc(P)


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def _with_toc(parts: list) -> str:
    """Give every <h2> an id and put a table of contents where ``<!--toc-->`` stands."""
    heads = []
    for i, x in enumerate(parts):
        if x.startswith("<h2>") and x.endswith("</h2>"):
            title = x[4:-5]
            heads.append((_slug(html.unescape(title)), title))
            parts[i] = f"<h2 id='{heads[-1][0]}'>{title}</h2>"
    toc = ("<nav class='toc'><b>Contents</b>" + "".join(
        f"<a href='#{a}'>{t}</a>" for a, t in heads) + "</nav>")
    return "\n".join(toc if x == "<!--toc-->" else x for x in parts)


def _opt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def _as_options(pol: dict) -> dict:
    """An older metrics.json's policy (field names, milliseconds) in the CLI's terms."""
    return {(k[:-3] if k.endswith("_ms") else k): (_duration(v) if k.endswith("_ms") else v)
            for k, v in pol.items()}


def _compare_table(a: dict, b: dict) -> str:
    keys = ("holds", "scam_usd_prevented", "scam_usd_recovered", "scam_usd_lost",
            "scam_usd_prevented_or_recovered_share", "legit_held", "legit_held_share",
            "legit_hours_held_total", "freezes", "freezes_on_scam_addresses",
            "freeze_delay_hours_median", "silent_sufferers_reached", "outreach")
    sa, sb = a["summary"], b["summary"]

    def delta(k, x, y):
        if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            return "–"
        d = x - y
        if k.endswith("_share"):
            return f"{100 * d:+.2f} pp"
        if "usd" in k:
            return f"{'+' if d >= 0 else '−'}${abs(d):,.0f}"
        return f"{d:+,.2f}" if isinstance(d, float) else f"{d:+,}"
    rows = []
    for k in keys:
        rows.append((k, sa.get(k), sb.get(k), delta(k, sa.get(k), sb.get(k))))
    pa = (a.get("run") or {}).get("policy", {})
    pb = (b.get("run") or {}).get("policy", {})
    diff = [k for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)]
    note = ("<p class='note'>Policy differences: " + html.escape(
        ", ".join(f"{k}: {pa.get(k)} vs {pb.get(k)}" for k in diff)) + "</p>") if diff else ""
    fa = ((a.get("run") or {}).get("input_fingerprint") or {}).get("sha256")
    fb = ((b.get("run") or {}).get("input_fingerprint") or {}).get("sha256")
    if fa != fb:
        note = ("<p class='alert'><b>Warning.</b> The compared run read another replay ("
                + html.escape(str((b.get("run") or {}).get("input"))) + "): its figures are "
                "not comparable one to one.</p>") + note
    return _table(["figure", "this run", "compared run", "this − compared"], rows) + note


def build_report(input_dir: str | Path, out_dir: str | Path, counters: Optional[dict] = None,
                 run: Optional[dict] = None, html: bool = True,
                 compare: Optional[str | Path] = None) -> dict:
    """Write ``metrics.json`` (and ``report.html``) into ``out_dir``; return the metrics."""
    out_dir = Path(out_dir)
    metrics, extras = compute(input_dir, out_dir, counters, run)
    add_friction(metrics, extras, out_dir)  # issue 11: pipelines/friction.py
    from pipelines import efficacy, shadow

    pol = (run or {}).get("policy") or {}
    metrics["shadow"] = shadow.compare(out_dir, extras, pol, (run or {}).get("shadow_policy"))
    metrics["warning_efficacy"] = efficacy.from_files(input_dir, out_dir, extras,
                                                      float(pol.get("warning_holdout") or 0.0))
    # issue 12: assessments and calls per day against their caps; the case files
    metrics["proactive"] = proactive_metrics(out_dir, (run or {}).get("policy"))
    extras["out_dir"] = out_dir
    cmp_metrics = None
    if compare is not None:
        cmp_metrics = json.loads((Path(compare) / "metrics.json").read_text(encoding="utf-8"))
        metrics["compared_with"] = str(compare)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False,
                                                     default=str) + "\n", encoding="utf-8")
    if html:
        page = with_friction(render_html(metrics, extras, cmp_metrics), metrics["friction"])
        (out_dir / "report.html").write_text(page, encoding="utf-8")
        write_case_pages(out_dir, CSS)  # issue 12: one page per case
    return metrics


def mismatch(input_dir: str | Path, out_dir: str | Path, prev: dict) -> Optional[str]:
    """Why ``out_dir`` (a backtest output, its metrics.json read as ``prev``) cannot be
    reported against the replay ``input_dir``; None when it can. The backtest records a
    fingerprint of the replay files it read; the report recomputes it and must find the
    same replay."""
    from pipelines.provenance import replay_fingerprint

    if not prev:
        return (f"--output {out_dir}: no metrics.json there; it is not the output of "
                "`safetynet backtest`")
    rec = (prev.get("run") or {}).get("input_fingerprint")
    if not rec:
        return (f"--output {out_dir}: its metrics.json does not say which replay it came from "
                "(written by an older version); rerun the backtest")
    now = replay_fingerprint(input_dir)
    if now["sha256"] == rec["sha256"]:
        return None
    old, new = rec.get("files", {}), now["files"]
    if not new:
        return (f"--input {input_dir} holds no replay files: it is not the replay "
                f"{(prev.get('run') or {}).get('input')} that {out_dir} came from")
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return (f"--input {input_dir} is not the replay {out_dir} came from "
            f"({(prev.get('run') or {}).get('input')}): {', '.join(differ)} differ")


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="safetynet report", description=__doc__.split("\n")[0]
                                .replace("``", ""))
    p.add_argument("--input", required=True, metavar="DIR",
                   help="the replay directory the backtest read (checked: the backtest "
                        "recorded a fingerprint of its files)")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="the backtest's output directory")
    p.add_argument("--compare", default=None, metavar="DIR",
                   help="another backtest output directory (e.g. rules-only) to compare with")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    for d in (a.input, a.output) + ((a.compare,) if a.compare else ()):
        if not Path(d).is_dir():
            print(f"report: error: {d} is not a directory", file=sys.stderr)
            return 2
    old = Path(a.output) / "metrics.json"
    prev = json.loads(old.read_text(encoding="utf-8")) if old.exists() else {}
    problem = mismatch(a.input, a.output, prev)
    if a.compare and not (Path(a.compare) / "metrics.json").is_file():
        problem = f"--compare {a.compare}: no metrics.json there (not a backtest's output)"
    if problem:
        print(f"report: error: {problem}", file=sys.stderr)
        return 2
    build_report(a.input, a.output, prev.get("counters"), prev.get("run"), compare=a.compare)
    print(Path(a.output) / "report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
