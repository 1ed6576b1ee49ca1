"""The records that flow between the keyed steps (inputs and outputs are in schemas.rows).

Every one has an ``event_time`` (epoch ms). ``rank_of`` gives the order of kinds at equal
event time (DESIGN.md): blacklist updates, case outcomes, reports, transfers, then records
derived from them (model examples).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from schemas.rows import BlacklistUpdate, CaseOutcome, ScamReport, Transfer

# Kind ranks at equal event time (DESIGN.md, "Core and shell"): a state seed (a checkpoint's
# state for the key) before anything, then blacklist updates, case outcomes, reports,
# transfers, and records derived from them.
RANK_SEED, RANK_BLACKLIST, RANK_OUTCOME, RANK_REPORT, RANK_TRANSFER, RANK_DERIVED = (
    -1, 0, 1, 2, 3, 4)


class AddressFact(NamedTuple):
    """A case outcome resolved to the address it is about (the destination of a TRANSFER,
    the suspect of a REPORT, or the ADDRESS itself)."""

    address: str
    event_time: int
    is_scam: bool
    case_id: str
    subject_type: str
    subject_id: str
    user_id: Optional[str] = None  # the sender, for a TRANSFER outcome


class ReportIn(NamedTuple):
    """A report with its suspect resolved and, when it names a transfer of the reporter's,
    when and how much the reporter paid."""

    report: ScamReport
    event_time: int
    suspect: str
    paid_at: Optional[int] = None
    paid_usd: Optional[float] = None


class FeaturedTransfer(NamedTuple):
    transfer: Transfer
    event_time: int
    features: dict
    reasons: tuple = ()
    blacklist: Optional[tuple] = None  # list sources that hold the destination, or None
    list_version: Optional[str] = None
    lookalike_of: Optional[str] = None


# The non-numeric keys of a report's features (SenderProfile adds them; the Scam Verdict
# Model reads them): its description and its category
TEXT, CATEGORY = "_text", "_category"


class FeaturedReport(NamedTuple):
    report_in: ReportIn
    event_time: int
    features: dict
    reasons: tuple = ()


class Example(NamedTuple):
    """A labelled example for ``model``, stamped with the time its label became known.
    ``weight``: how many examples it stands for (a kept negative of a 1-in-k sample: k)."""

    model: str
    event_time: int
    subject_id: str
    x: dict
    y: bool
    scored_at: int
    weight: int = 1


class ModelVersion(NamedTuple):
    """An immutable, published version of a model: what the scorers use for every event
    *after* ``event_time`` (the time of the last label it learned), until a newer one.

    ``params`` is the pickled River pipeline; ``hold_threshold`` the hold threshold that
    goes with it (the policy's, or adapted to the friction budget); ``version`` the id every
    decision it scores records."""

    model: str
    event_time: int
    version: str
    n_labels: int
    params: bytes
    hold_threshold: float
    # the expected-loss threshold (USD) that goes with it; None: the policy's
    hold_expected_loss: Optional[float] = None


class Seed(NamedTuple):
    """A keyed step's saved state for one key (from a state checkpoint): the step starts
    the key from it instead of from nothing. ``waiting``: events at or after the checkpoint's
    end that the step had received but not yet processed."""

    key: object
    event_time: int
    state: object
    waiting: tuple = ()


class ScoredTransfer(NamedTuple):
    """A scored transfer. ``hold_threshold``: the threshold in force for it (the policy's,
    or the model version's under a friction budget); ``capped``: the score reached it but
    the sender's friction cap (model-driven holds per rolling window) turned the hold into
    a warning."""

    featured: FeaturedTransfer
    event_time: int
    score: float
    model_version: str
    reasons: tuple = ()
    hold_threshold: Optional[float] = None  # None: the policy's
    capped: bool = False
    # the test that holds it, if any: "score", "rule" (the fan-in rule set the score) or
    # "expected_loss" (score x USD reached the expected-loss threshold)
    held_by: Optional[str] = None


class ScoredReport(NamedTuple):
    featured: FeaturedReport
    event_time: int
    score: float
    verdict: str
    model_version: str
    reasons: tuple = ()


class OutreachRequest(NamedTuple):
    user_id: str
    event_time: int
    kind: str
    channel: str
    transfer_id: Optional[str]
    address: Optional[str]
    reasons: tuple = ()
    losses: tuple = ()  # transfer ids this request itself confirms lost (to a frozen address)
    expected_loss: Optional[float] = None  # USD at risk x risk (ranks calls, rule 12)


class LossConfirmed(NamedTuple):
    """A transfer of ``user_id`` went to an address confirmed as a scam."""

    user_id: str
    event_time: int
    transfer_id: str
    address: str


_RANKS = {
    BlacklistUpdate: RANK_BLACKLIST,
    CaseOutcome: RANK_OUTCOME,
    AddressFact: RANK_OUTCOME,
    LossConfirmed: RANK_OUTCOME,
    ScamReport: RANK_REPORT,
    ReportIn: RANK_REPORT,
    FeaturedReport: RANK_REPORT,
    ScoredReport: RANK_REPORT,
    Transfer: RANK_TRANSFER,
    FeaturedTransfer: RANK_TRANSFER,
    ScoredTransfer: RANK_TRANSFER,
    OutreachRequest: RANK_TRANSFER,
    Example: RANK_DERIVED,
    ModelVersion: RANK_DERIVED,
    Seed: RANK_SEED,
}


def rank_of(event) -> int:
    return _RANKS.get(type(event), RANK_DERIVED)


def id_of(event) -> str:
    """A stable tie-breaker among events of one kind at one time."""
    t = type(event)
    if t is Transfer:
        return event.transfer_id
    if t is ScamReport:
        return event.report_id
    if t is CaseOutcome:
        return event.case_id
    if t is BlacklistUpdate:
        return event.source + event.action
    if t is AddressFact:
        return event.case_id
    if t is ReportIn:
        return event.report.report_id
    if t is FeaturedTransfer:
        return event.transfer.transfer_id
    if t is FeaturedReport:
        return event.report_in.report.report_id
    if t is ScoredTransfer:
        return event.featured.transfer.transfer_id
    if t is ScoredReport:
        return event.featured.report_in.report.report_id
    if t is Example:
        return event.subject_id
    if t is OutreachRequest:
        return f"{event.kind}:{event.transfer_id}:{event.address}"
    if t is LossConfirmed:
        return event.transfer_id
    if t is ModelVersion:
        return event.version
    return ""


def sort_key(event) -> tuple:
    return (event.event_time, rank_of(event), id_of(event))
