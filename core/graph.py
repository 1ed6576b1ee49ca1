"""The Safety Net's graph, declared once: each keyed step's label, machine, key and inputs.

Both runners of the graph read :data:`STEPS`: the Beam composite
(:class:`transforms.safetynet.SafetyNet`, each step a :class:`~transforms.faces.RunMachine`)
and the Beam-free reference (:mod:`core.reference`, each step a dict of key
histories). A step's inputs are named streams: an input of the graph (``transfers``,
``blacklist``), a branch of a router (``reports:direct``), or another step's output
(``TransferLedger:facts``, ``Score:scored_transfers``). Steps are listed in topological
order (DESIGN.md, "Dataflow")::

    TransferLedger (transfer id) ─┐ de-duplication; outcomes and reports resolved
    ReportLedger   (report id)   ─┘ to the address they are about
    SenderProfile  (user)           sender features: velocity, payees, look-alikes
    CounterpartyProfile (address)   destination features, list state; fused with
      + LabelJoin                   LabelJoin: featured records wait for their label
    Learner (model name)            off the transfer path: labelled examples in,
                                    model versions out (a side input of Score)
    Score (user)                    risk score / verdict from the latest version; the
                                    per-user friction cap
    Actions (address)               holds + 24h timers, refunds, freezes, list state,
                                    silent-sufferer sweep, outreach requests
    LossMemory (user)               rule 11: scam losses within the lookback, per day
    Assessments (global, per day)   rule 11: daily risk assessments, top-K per day
    Outreach (user)                 cool-down, de-duplication, escalation
    CallCapacity (global, per day)  rule 12: calls past the capacity downgraded to CHAT
    CaseBook (address)              case files on frozen / listed / suspected addresses

On the transfer path every step is keyed by something with many values (transfer id,
user, address); the one key per model (Learner) sees labels only.
"""

from __future__ import annotations

import json
from typing import Any, Callable, NamedTuple, Optional

from core import actions as act
from core import ledger as led
from core.actions import Actions
from core.assessments import PAST_LOSSES, LossMemory, daily_assessments
from core.capacity import apply_capacity
from core.casefiles import CASES, CaseBook, case_key
from core.events import (
    AddressFact,
    FeaturedReport,
    FeaturedTransfer,
    LossConfirmed,
    OutreachRequest,
    ReportIn,
    ScoredReport,
    ScoredTransfer,
)
from core.labels import EXAMPLES, LabelJoin
from core.learner import MODEL_METRICS, SNAPSHOTS, VERSIONS, Learner, learner_key
from core.machine import Fused, Machine
from core.outreach import HOLDOUT, OUTREACH, OutreachStep
from core.policy import Policy
from core.profiles import FEATURED, CounterpartyProfile, SenderProfile
from core.scorer import SCORED_REPORTS, SCORED_TRANSFERS, Score
from schemas import streams
from schemas.codecs import normalize_address, to_wire
from schemas.rows import CaseOutcome, DeadLetter, ScamReport, Transfer, UserProfile, Verdict

INPUTS = tuple(streams.INPUTS)
OUTPUTS = tuple(streams.DECISIONS)
VERSIONS_KEPT_STREAMING = 8  # model versions per model a streaming scorer keeps


# ----------------------------------------------------------------------------- keys
def _ledger_key(ev) -> str:
    t = type(ev)
    if t is Transfer or t is ScamReport:
        return led.transfer_key(ev.transfer_id)
    if t is ReportIn:
        return led.report_key(ev.report.report_id)
    if t is CaseOutcome:
        if ev.subject_type == "TRANSFER":
            return led.transfer_key(ev.subject_id)
        return led.report_key(ev.subject_id)
    raise TypeError(f"no ledger key for {t.__name__}")


_ADDRESS_OF: dict[type, Callable[[Any], str]] = {
    FeaturedTransfer: lambda ev: ev.transfer.to_address,
    FeaturedReport: lambda ev: ev.report_in.suspect,
    ScoredTransfer: lambda ev: ev.featured.transfer.to_address,
    ScoredReport: lambda ev: ev.featured.report_in.suspect,
}


def address_of(ev) -> str:
    """The address an event is about (AddressFact and BlacklistUpdate: ``.address``)."""
    f = _ADDRESS_OF.get(type(ev))
    return ev.address if f is None else f(ev)


_USER_OF: dict[type, Callable[[Any], str]] = {
    Transfer: lambda ev: ev.user_id,
    ReportIn: lambda ev: ev.report.reporter_user_id,
    FeaturedTransfer: lambda ev: ev.transfer.user_id,
    FeaturedReport: lambda ev: ev.report_in.report.reporter_user_id,
    OutreachRequest: lambda ev: ev.user_id,
    LossConfirmed: lambda ev: ev.user_id,
}


def user_of(ev) -> str:
    """The user an event is about: the sender, the reporter, the user reached."""
    return _USER_OF[type(ev)](ev)


def is_fact(ev) -> bool:
    return type(ev) is AddressFact


# -------------------------------------------------------------------------- routers
def split_report(r) -> tuple:
    """(branch, value): reports naming a transfer go through the transfer ledger to learn
    their suspect ("via_transfer"); the others name their suspect themselves ("direct"), or
    are dead letters ("dead")."""
    if r.transfer_id:
        return "via_transfer", r
    if r.suspect_address or r.suspect_user_id:
        return "direct", ReportIn(r, r.event_time, r.suspect_address or r.suspect_user_id)
    return "dead", DeadLetter(
        "reports", json.dumps(to_wire(r), sort_keys=True, default=str),
        "report names neither a suspect (address or user) nor a transfer",
        r.event_time)


def split_outcome(o) -> tuple:
    """(branch, value): an ADDRESS outcome is already a fact ("address"); TRANSFER and
    REPORT outcomes go through their ledger ("transfer", "report")."""
    if o.subject_type == "ADDRESS":
        return "address", AddressFact(normalize_address(o.subject_id), o.event_time,
                                      o.is_scam, o.case_id, o.subject_type, o.subject_id)
    if o.subject_type == "TRANSFER":
        return "transfer", o
    return "report", o


class Router(NamedTuple):
    """A stateless split of one input into named branches (``INPUT:branch`` streams)."""

    input: str
    fn: Callable[[Any], tuple]
    branches: tuple[str, ...]


ROUTERS = (
    Router("reports", split_report, ("direct", "via_transfer", "dead")),
    Router("outcomes", split_outcome, ("address", "transfer", "report")),
)


def verdict_row(sr: ScoredReport) -> Verdict:
    r = sr.featured.report_in
    return Verdict(r.report.report_id, r.suspect, sr.score, sr.verdict, sr.event_time,
                   sr.model_version, r.report.reporter_user_id, list(sr.reasons))


# ---------------------------------------------------------------------------- steps
class Side(NamedTuple):
    """What a machine may read besides its events: the blacklist snapshot, the user
    profiles and the models' warm-start states (loaded by the shell, once per worker:
    :mod:`transforms.side`), and the mode it runs in."""

    snapshot: Callable[[], Any]
    profile: Callable[[], Callable[[str], Any]]
    mode: str
    warm: Callable[[], dict] = dict


class ProfileBook:
    """User profiles by id (weak-referenceable, so one copy per worker via ``Shared``)."""

    def __init__(self, profiles: Optional[dict] = None):
        self.by_id: dict = profiles or {}

    def get(self, user_id: str) -> Optional[UserProfile]:
        return self.by_id.get(user_id)



def _ledger(p: Policy, side: Side) -> Machine:
    return led.Ledger(p)


def _sender(p: Policy, side: Side) -> Machine:
    return SenderProfile(p, side.profile())


def _counterparty(p: Policy, side: Side) -> Machine:
    return Fused(CounterpartyProfile(p, side.snapshot()), LabelJoin(p), FEATURED, is_fact)


def _learner(p: Policy, side: Side) -> Machine:
    return Learner(p, side.warm())


def _score(p: Policy, side: Side) -> Machine:
    return Score(p, VERSIONS_KEPT_STREAMING if side.mode == "stream" else None)


def _actions(p: Policy, side: Side) -> Machine:
    return Actions(p)


def _outreach(p: Policy, side: Side) -> Machine:
    return OutreachStep(p, side.profile())


def _loss_memory(p: Policy, side: Side) -> Machine:
    return LossMemory(p)


def _casebook(p: Policy, side: Side) -> Machine:
    return CaseBook(p)


class Step(NamedTuple):
    label: str  # stable: Dataflow's --update and the state checkpoints name steps by it
    make: Callable[[Policy, Side], Machine]
    key: Callable[[Any], Any]
    inputs: tuple[str, ...]
    main: str
    tags: tuple[str, ...] = ()
    side: Optional[str] = None  # a stream this step reads as side data (Machine.bind)


_FACTS = ("outcomes:address", "TransferLedger:facts", "ReportLedger:facts")

STEPS = (
    Step("TransferLedger", _ledger, _ledger_key,
         ("transfers", "outcomes:transfer", "reports:via_transfer"),
         led.TRANSFERS, (led.REPORTS, led.FACTS, led.DEAD)),
    Step("ReportLedger", _ledger, _ledger_key,
         ("reports:direct", "TransferLedger:reports", "outcomes:report"),
         led.REPORTS, (led.FACTS, led.DEAD)),
    Step("SenderProfile", _sender, user_of,
         ("TransferLedger:transfers", "ReportLedger:reports"), FEATURED),
    Step("CounterpartyProfile", _counterparty, address_of,
         ("SenderProfile:featured", "blacklist") + _FACTS, FEATURED, (EXAMPLES,)),
    Step("Learner", _learner, learner_key, ("CounterpartyProfile:examples",),
         VERSIONS, (MODEL_METRICS, SNAPSHOTS)),
    Step("Score", _score, user_of, ("CounterpartyProfile:featured",),
         SCORED_TRANSFERS, (SCORED_REPORTS,), side="Learner:versions"),
    Step("Actions", _actions, address_of,
         ("Score:scored_transfers", "Score:scored_reports", "blacklist") + _FACTS,
         act.HOLDS, (act.RESOLUTIONS, act.FREEZES, act.REQUESTS, act.LOSSES)),
    # the scam losses within the lookback, per user and day (rule 11's signal)
    Step("LossMemory", _loss_memory, user_of, ("Actions:losses",), PAST_LOSSES),
    Step("Outreach", _outreach, user_of, ("Actions:outreach_requests", "Actions:losses",
                                          "Assessments:requests"), OUTREACH, (HOLDOUT,)),
    # case files, keyed by suspect address, downstream of every decision
    Step("CaseBook", _casebook, case_key,
         ("Score:scored_transfers", "Score:scored_reports", "Actions:holds",
          "Actions:resolutions", "Actions:freezes", "blacklist", "CallCapacity:outreach"),
         CASES),
)
STEP_LABELS = tuple(s.label for s in STEPS)


# ------------------------------------------------------- global selections
class Global(NamedTuple):
    """A global step, not keyed: a selection over all keys per event-time window (a daily
    top-K, rules 11 and 12). ``pure(policy, side, *input lists) -> list`` is the Beam-free
    reference; the shell's Beam composite of the same label (``transforms.daily``) runs
    over the tuple of input PCollections. Both runners run it right before the keyed step
    labelled ``before``; its output is the stream ``LABEL:output``. Off the transfer path
    (DESIGN.md, "Scale")."""

    label: str
    inputs: tuple[str, ...]
    output: str
    before: str
    pure: Callable[..., list]


def _assessments_pure(p: Policy, side: Side, scored: list, past_losses: list) -> list:
    return daily_assessments(scored, past_losses, p, side.profile())


def _capacity_pure(p: Policy, side: Side, outreach: list) -> list:
    return apply_capacity(outreach, p)


GLOBALS = (
    # rule 11: daily risk assessments (day windows, per-user signals, top-K per day),
    # into the Outreach step for its cool-down
    Global("Assessments", ("Score:scored_transfers", "LossMemory:past_losses"), "requests",
           "Outreach", _assessments_pure),
    # rule 12: call capacity (top-K calls per day window, the rest downgraded to CHAT)
    Global("CallCapacity", ("Outreach:outreach",), "outreach", "CaseBook",
           _capacity_pure),
)


def globals_before(label: str) -> tuple:
    """The global selections that run right before the keyed step ``label``."""
    return tuple(g for g in GLOBALS if g.before == label)

# The graph's outputs: name -> the stream that carries it (verdicts are verdict_row of
# Score:scored_reports; dead letters are the union of DEAD_LETTERS).
RESULTS = {
    "holds": "Actions:holds", "resolutions": "Actions:resolutions",
    "freezes": "Actions:freezes", "outreach": "CallCapacity:outreach",
    "cases": "CaseBook:cases",  # every version of every case file
    "scored": "Score:scored_transfers", "model_metrics": "Learner:model_metrics",
    "versions": "Learner:versions", "snapshots": "Learner:snapshots",
    "warning_holdout": "Outreach:warning_holdout",
}
DEAD_LETTERS = ("reports:dead", "TransferLedger:dead_letter", "ReportLedger:dead_letter")
