"""Ground truth as the report needs it: the ``Truth`` rows when there are any (simulator,
converted real data); otherwise the ``CaseOutcome`` rows (a transfer is a scam when an
outcome confirms it or its destination)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

from report.files import rows
from schemas import codecs
from schemas.rows import ScamReport, Truth

# Truth rows the report's other figures read: the simulator's payments a warning cancelled
# (report.efficacy) and the reports a contact prompted (report.pyramid).
KEPT_KINDS = ("CANCELLED", "PROMPTED")


class GroundTruth:
    """What is known to be a scam: transfers, addresses, victims, reports."""

    def __init__(self, source: str):
        self.source = source  # "truth" or "case outcomes"
        self.transfer: dict = {}  # tid -> (is_scam, typology, detail)
        self.addresses: set = set()
        self.silent: list = []  # (user, address, usd, t)
        self.victims: int = 0
        self.report: dict = {}  # report id -> is_scam
        # the truth file's rows of KEPT_KINDS (subject type -> rows, in file order), for
        # the efficacy and escalation figures, so that the file is read once (None: no
        # truth file was read)
        self.kept: Optional[dict] = None


def ground_truth(input_dir: Path, transfers: dict, reports: dict,
                 outcomes: list) -> GroundTruth:
    """From ``truth.*`` in ``input_dir`` when there is one, else from the case outcomes
    (then :attr:`GroundTruth.kept` is None: no truth rows were read)."""
    tp = codecs.find_input(input_dir, "truth")
    if tp is None:
        return _from_outcomes(transfers, reports, outcomes)
    g = GroundTruth("truth")
    g.kept = {}
    for r in rows(tp, Truth):
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
        elif r.subject_type in KEPT_KINDS:
            g.kept.setdefault(r.subject_type, []).append(r)
    for tid, v in g.transfer.items():
        if v[0] and tid in transfers:
            g.addresses.add(transfers[tid].to_address)
    return g


def kept_rows(truth, input_dir: Path, kind: str) -> list:
    """The truth file's rows of subject type ``kind`` (one of :data:`KEPT_KINDS`): kept by
    :func:`ground_truth` when ``truth`` came from it, else read from ``input_dir``."""
    kept = getattr(truth, "kept", None)
    if kept is not None:
        return kept.get(kind, [])
    tp = codecs.find_input(input_dir, "truth")
    return [] if tp is None else [r for r in rows(tp, Truth) if r.subject_type == kind]


def _from_outcomes(transfers: dict, reports: dict, outcomes: list) -> GroundTruth:
    g = GroundTruth("case outcomes")
    scam_tids = set()
    cats: dict = defaultdict(Counter)
    for rep in reports.values():
        s = suspect(rep, transfers)
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
            s = suspect(rep, transfers) if rep else None
            if s:
                g.addresses.add(s)
    for tid, t in transfers.items():
        scam = tid in scam_tids or t.to_address in g.addresses
        typ = cats[t.to_address].most_common(1)[0][0].lower() if cats.get(t.to_address) \
            else "unknown"
        g.transfer[tid] = (scam, typ if scam else None, None)
    return g


def suspect(rep: ScamReport, transfers: dict) -> Optional[str]:
    """Whom a report accuses: its suspect address, its transfer's destination, or a user."""
    if rep.suspect_address:
        return rep.suspect_address
    t = transfers.get(rep.transfer_id) if rep.transfer_id else None
    return t.to_address if t else rep.suspect_user_id


def kinds(transfers: dict):
    """``kind_of(transfer id)`` over a ground truth's ``transfer`` map: ``"scam"``,
    ``"legit"``, or None for laundering between scam addresses (neither a victim's loss nor
    an honest user's), for the honest-cost figures."""
    def kind_of(tid: str) -> Optional[str]:
        scam, _, detail = transfers.get(tid, (False, None, None))
        return "scam" if scam else (None if detail == "laundering" else "legit")

    return kind_of
