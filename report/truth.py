"""Ground truth as the report needs it: the ``Truth`` rows when there are any (simulator,
converted real data); otherwise the ``CaseOutcome`` rows (a transfer is a scam when an
outcome confirms it or its destination)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa

from report.columns import Coded, TransferColumns, TransferTruth, judged, positions, subset
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
        # tid -> (is_scam, typology, detail): a report.columns.TransferTruth (or a dict)
        self.transfer = TransferTruth([], [], [], [], [])
        self.addresses: set = set()
        self.silent: list = []  # (user, address, usd, t)
        self.victims: int = 0
        self.report: dict = {}  # report id -> is_scam
        # the truth file's rows of KEPT_KINDS (subject type -> rows, in file order), for
        # the efficacy and escalation figures, so that the file is read once (None: no
        # truth file was read)
        self.kept: Optional[dict] = None


def ground_truth(input_dir: Path, transfers, reports: dict,
                 outcomes: list) -> GroundTruth:
    """From ``truth.*`` in ``input_dir`` when there is one, else from the case outcomes
    (then :attr:`GroundTruth.kept` is None: no truth rows were read). ``transfers``: the
    replay's (:class:`report.columns.TransferColumns`, or a dict of rows by id)."""
    transfers = TransferColumns.of(transfers)
    tp = codecs.find_input(input_dir, "truth")
    if tp is None:
        return _from_outcomes(transfers, reports, outcomes)
    g = GroundTruth("truth")
    g.kept = {}
    # the TRANSFER rows as columns (one batch at a time), the few others as before
    parts: list = [[], [], [], []]  # ids, is_scam, typology, detail (Arrow, per batch)
    for batch in codecs.read_batches(tp, "Truth"):
        rows = [r for r in batch if type(r) is Truth]
        trs = [r for r in rows if r.subject_type == "TRANSFER"]
        if trs:
            parts[0].append(pa.array([r.subject_id for r in trs], type=pa.string()))
            parts[1].append(np.fromiter((bool(r.is_scam) for r in trs), bool, len(trs)))
            parts[2].append(pa.array([r.typology or "unknown" for r in trs], type=pa.string()))
            parts[3].append(pa.array([r.detail for r in trs], type=pa.string()))
        if len(trs) == len(rows):
            continue
        for r in rows:
            if r.subject_type == "TRANSFER":
                continue
            if r.subject_type == "ADDRESS" and r.is_scam:
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
    empty = pa.array([], type=pa.string())
    ids = pa.chunked_array(parts[0] or [empty])
    scam = np.concatenate(parts[1]) if parts[1] else np.zeros(0, dtype=bool)
    typ = Coded.of(pa.chunked_array(parts[2] or [empty]))
    detail = pa.chunked_array(parts[3] or [empty])
    del parts
    # (the transfers' ids in their order, as the simulator writes them: shared)
    g.transfer = TransferTruth.last_of(ids, scam, typ.codes, typ.names.to_pylist(), detail,
                                       like=transfers.tid)
    del ids, detail
    # the destinations of the scam transfers (those of the replay)
    scam_ids = g.transfer.ids.filter(pa.array(g.transfer.scam))
    pos = transfers.positions(scam_ids)
    g.addresses.update(transfers.to.values(pos[pos >= 0]))
    return g


def kept_rows(truth, input_dir: Path, kind: str) -> list:
    """The truth file's rows of subject type ``kind`` (one of :data:`KEPT_KINDS`): kept by
    :func:`ground_truth` when ``truth`` came from it, else read from ``input_dir``."""
    kept = getattr(truth, "kept", None)
    if kept is not None:
        return kept.get(kind, [])
    tp = codecs.find_input(input_dir, "truth")
    return [] if tp is None else [r for r in rows(tp, Truth) if r.subject_type == kind]


def _from_outcomes(transfers: TransferColumns, reports: dict, outcomes: list) -> GroundTruth:
    g = GroundTruth("case outcomes")
    scam_tids = set()
    cats: dict = defaultdict(Counter)
    by_id = transfers.by_id(rep.transfer_id for rep in reports.values())
    by_id.update(transfers.by_id(o.subject_id for o in outcomes
                                 if o.is_scam and o.subject_type == "TRANSFER"))
    for rep in reports.values():
        s = suspect(rep, by_id)
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
            if o.subject_id in by_id:
                g.addresses.add(by_id[o.subject_id].to_address)
        elif o.subject_type == "REPORT":
            g.report[o.subject_id] = True
            rep = reports.get(o.subject_id)
            s = suspect(rep, by_id) if rep else None
            if s:
                g.addresses.add(s)
    # every transfer: a scam when an outcome confirms it or its destination; its typology
    # the category most reported against its destination
    to = transfers.to
    scam = (positions(transfers.tid, list(scam_tids)) >= 0) | \
        to.per_name(lambda a: a in g.addresses, bool, False)
    names = ["unknown"]
    of_cat: dict = {}

    def typ_code(a) -> int:
        c = cats.get(a)
        if not c:
            return 0
        name = c.most_common(1)[0][0].lower()
        if name not in of_cat:
            of_cat[name] = len(names)
            names.append(name)
        return of_cat[name]

    typ = np.where(scam, to.per_name(typ_code, np.int32, 0), -1)
    g.transfer = TransferTruth(transfers.tid, scam, typ, names,
                               pa.nulls(len(transfers), type=pa.string()))
    return g


def suspect(rep: ScamReport, transfers: dict) -> Optional[str]:
    """Whom a report accuses: its suspect address, its transfer's destination, or a user
    (``transfers``: rows by transfer id, at least the reports' own)."""
    if rep.suspect_address:
        return rep.suspect_address
    t = transfers.get(rep.transfer_id) if rep.transfer_id else None
    return t.to_address if t else rep.suspect_user_id


class kinds:  # noqa: N801 - a function that keeps its map for bulk use
    """``kind_of(transfer id)`` over a ground truth's ``transfer`` map: ``"scam"``,
    ``"legit"``, or None for laundering between scam addresses (neither a victim's loss nor
    an honest user's), for the honest-cost figures. :meth:`arrays` judges many ids at once
    (:func:`report.columns.judged`)."""

    def __init__(self, transfers):
        self.transfers = transfers

    def __call__(self, tid: str) -> Optional[str]:
        v = subset(self.transfers, [tid]).get(tid, (False, None, None))
        scam, _, detail = v
        return "scam" if scam else (None if detail == "laundering" else "legit")

    def arrays(self, tids) -> tuple:
        """(scam, legit) boolean arrays over ``tids``."""
        scam, laund = judged(self.transfers, tids)
        return scam, ~scam & ~laund


def kind_arrays(kind_of, tids) -> tuple:
    """(scam, legit) boolean arrays over ``tids`` (a list of ids or Arrow strings) by
    ``kind_of``: at once for :class:`kinds`, else one id at a time."""
    if isinstance(kind_of, kinds):
        return kind_of.arrays(tids)
    if isinstance(tids, (pa.Array, pa.ChunkedArray)):
        tids = tids.to_pylist()
    ks = [kind_of(t) for t in tids]
    return (np.fromiter((k == "scam" for k in ks), bool, len(ks)),
            np.fromiter((k == "legit" for k in ks), bool, len(ks)))
