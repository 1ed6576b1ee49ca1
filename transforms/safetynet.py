"""The Safety Net: the whole decision logic as one composite PTransform.

``SafetyNet(policy, mode)`` takes a dict of PCollections of validated input rows
(``transfers``, ``reports``, ``outcomes``, ``blacklist``; any may be missing) and returns a
dict of PCollections of output rows (``holds``, ``resolutions``, ``freezes``, ``outreach``,
``verdicts``, ``dead_letter``, ``scored`` for the backtest's threshold sweep and
``model_metrics``, the models' prequential summaries). The
streaming job, the backtest and the tests all use it unchanged; ``mode`` only picks the
face of each keyed step ("stream": stateful DoFns with event-time timers; "batch":
GroupByKey by shard of the key space, then one call per key's sorted history; ``shards``
sets how many).

Steps, in order (DESIGN.md, "Dataflow")::

    TransferLedger (transfer id)  ─┐  de-duplication, case outcomes resolved to addresses
    ReportLedger   (report id)    ─┤
    SenderProfile  (user)          ├─ features
    CounterpartyProfile (address) ─┘
    LabelJoin (address) ─► Models (model name) ─► Actions (address) ─► Outreach (user)
"""

from __future__ import annotations

import json
from typing import Optional

import apache_beam as beam
from apache_beam.utils.shared import Shared

from schemas.blacklist import BlacklistSnapshot, load_many
from schemas.codecs import normalize_address, read_records, to_wire
from schemas.rows import DeadLetter, UserProfile, Verdict
from transforms import actions as act
from transforms import ledger as led
from transforms.actions import Actions
from transforms.assessments import Assessments  # issue 12
from transforms.capacity import CallCapacity  # issue 12
from transforms.casefiles import CaseFiles  # issue 12
from transforms.events import AddressFact, ReportIn
from transforms.labels import EXAMPLES, LabelJoin
from transforms.machine import DEFAULT_SHARDS, RunMachine, Then
from transforms.models import (
    MODEL_METRICS,
    SCORED_REPORTS,
    SCORED_TRANSFERS,
    Models,
    model_key,
)
from transforms.outreach import OUTREACH, OutreachStep
from transforms.policy import Policy
from transforms.profiles import FEATURED, CounterpartyProfile, SenderProfile

INPUTS = ("transfers", "reports", "outcomes", "blacklist")
OUTPUTS = ("holds", "resolutions", "freezes", "outreach", "verdicts", "dead_letter")


# ------------------------------------------------------------------------------ side data
class ProfileBook:
    """User profiles by id (weak-referenceable, so one copy per worker via ``Shared``)."""

    def __init__(self, profiles: Optional[dict] = None):
        self.by_id: dict = profiles or {}

    def get(self, user_id: str) -> Optional[UserProfile]:
        return self.by_id.get(user_id)

    @classmethod
    def load(cls, path: Optional[str]) -> "ProfileBook":
        if not path:
            return cls()
        rows = {}
        for r in read_records(path, "UserProfile", source="profiles"):
            if isinstance(r, UserProfile):
                rows[r.user_id] = r
        return cls(rows)


class _Ref:
    """A weak-referenceable box: ``Shared`` keeps what it shares by weak reference."""

    def __init__(self, value):
        self.value = value


class SideData:
    """Loads the blacklist snapshot and the profiles once per worker process."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._snapshot = Shared()
        self._profiles = Shared()

    def snapshot(self) -> BlacklistSnapshot:
        paths = tuple(self.policy.blacklist_paths)
        return self._snapshot.acquire(lambda: _Ref(load_many(paths)[0]), tag=repr(paths)).value

    def profiles(self) -> ProfileBook:
        path = self.policy.profiles_path
        return self._profiles.acquire(lambda: ProfileBook.load(path), tag=repr(path))


class _Factory:
    """Builds a step's machine in the DoFn's ``setup()`` (side data acquired there)."""

    def __init__(self, step: str, policy: Policy, side: SideData):
        self.step, self.policy, self.side = step, policy, side

    def __call__(self):
        p, side = self.policy, self.side
        if self.step == "ledger":
            return led.Ledger(p)
        if self.step == "sender":
            return SenderProfile(p, side.profiles().get)
        if self.step == "counterparty":
            return CounterpartyProfile(p, side.snapshot())
        if self.step == "labels":
            return LabelJoin(p)
        if self.step == "models":
            return Models(p)
        if self.step == "actions":
            return Actions(p)
        if self.step == "outreach":
            return OutreachStep(p, side.profiles().get)
        raise ValueError(self.step)


# --------------------------------------------------------------------------------- routing
def _ledger_key(ev) -> str:
    name = type(ev).__name__
    if name == "Transfer":
        return led.transfer_key(ev.transfer_id)
    if name == "ScamReport":
        return led.transfer_key(ev.transfer_id)
    if name == "ReportIn":
        return led.report_key(ev.report.report_id)
    # CaseOutcome
    if ev.subject_type == "TRANSFER":
        return led.transfer_key(ev.subject_id)
    return led.report_key(ev.subject_id)


def split_report(r) -> tuple:
    """(tag, value): reports naming a transfer go through the transfer ledger to learn
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
    """(tag, value): an ADDRESS outcome is already a fact ("address"); TRANSFER and
    REPORT outcomes go through their ledger ("transfer", "report")."""
    if o.subject_type == "ADDRESS":
        return "address", AddressFact(normalize_address(o.subject_id), o.event_time,
                                      o.is_scam, o.case_id, o.subject_type, o.subject_id)
    if o.subject_type == "TRANSFER":
        return "transfer", o
    return "report", o


class _SplitReports(beam.DoFn):
    """The Beam face of :func:`split_report` (main output: "direct")."""

    def process(self, r):
        tag, v = split_report(r)
        yield v if tag == "direct" else beam.pvalue.TaggedOutput(tag, v)


class _SplitOutcomes(beam.DoFn):
    """The Beam face of :func:`split_outcome` (main output: "address")."""

    def process(self, o):
        tag, v = split_outcome(o)
        yield v if tag == "address" else beam.pvalue.TaggedOutput(tag, v)


def _address_of(ev) -> str:
    name = type(ev).__name__
    if name == "FeaturedTransfer":
        return ev.transfer.to_address
    if name == "FeaturedReport":
        return ev.report_in.suspect
    if name == "ScoredTransfer":
        return ev.featured.transfer.to_address
    if name == "ScoredReport":
        return ev.featured.report_in.suspect
    return ev.address  # AddressFact, BlacklistUpdate


def _is_fact(ev) -> bool:
    return type(ev) is AddressFact


def _user_of(ev) -> str:
    name = type(ev).__name__
    if name == "Transfer":
        return ev.user_id
    if name == "ReportIn":
        return ev.report.reporter_user_id
    return ev.user_id  # OutreachRequest, LossConfirmed


def _verdict(sr) -> Verdict:
    r = sr.featured.report_in
    return Verdict(r.report.report_id, r.suspect, sr.score, sr.verdict, sr.event_time,
                   sr.model_version, r.report.reporter_user_id, list(sr.reasons))


# ----------------------------------------------------------------------------- the graph
class SafetyNet(beam.PTransform):
    """Inputs bundle -> outputs bundle; see the module docstring."""

    def __init__(self, policy: Optional[Policy] = None, mode: str = "batch",
                 label: Optional[str] = None, shards: int = DEFAULT_SHARDS):
        super().__init__(label)
        self.policy = (policy or Policy()).validate()
        self.mode = mode
        self.shards = shards

    def _run(self, name, key_fn, inputs, step, main, tags, then=None):
        factory = _Factory(step, self.policy, self.side)
        return inputs | name >> RunMachine(factory, self.mode, main, tags, label=name,
                                           ordering=self.policy.stream_ordering,
                                           shards=self.shards, key_fn=key_fn, then=then)

    def expand(self, inputs: dict):
        pipeline = next(iter(inputs.values())).pipeline
        self.side = SideData(self.policy)

        def get(name):
            if name in inputs:
                return inputs[name]
            return pipeline | f"No{name.title()}" >> beam.Create([])

        transfers, reports, outcomes, blacklist = (get(n) for n in INPUTS)

        split_r = reports | "SplitReports" >> beam.ParDo(_SplitReports()).with_outputs(
            "via_transfer", "dead", main="direct")
        split_o = outcomes | "SplitOutcomes" >> beam.ParDo(_SplitOutcomes()).with_outputs(
            "transfer", "report", main="address")

        # Ledgers: de-duplication and resolution.
        t_led = self._run("TransferLedger", _ledger_key,
                          (transfers, split_o.transfer, split_r.via_transfer),
                          "ledger", led.TRANSFERS, (led.REPORTS, led.FACTS, led.DEAD))
        r_led = self._run("ReportLedger", _ledger_key,
                          (split_r.direct, t_led[led.REPORTS], split_o.report),
                          "ledger", led.REPORTS, (led.FACTS, led.DEAD))
        facts = ((split_o.address, t_led[led.FACTS], r_led[led.FACTS])
                 | "Facts" >> beam.Flatten())

        # Features.
        sender = self._run("SenderProfile", _user_of,
                           (t_led[led.TRANSFERS], r_led[led.REPORTS]),
                           "sender", FEATURED, ())
        if self.mode == "batch":
            # LabelJoin has CounterpartyProfile's key: the batch face runs it right after,
            # on the same shuffle (identical outputs, one shuffle of the featured less).
            then = Then(_Factory("labels", self.policy, self.side), "LabelJoin", FEATURED,
                        _is_fact)
            counter = self._run("CounterpartyProfile", _address_of,
                                (sender[FEATURED], blacklist, facts), "counterparty",
                                FEATURED, (EXAMPLES,), then=then)
            featured, examples = counter[FEATURED], counter[EXAMPLES]
        else:
            counter = self._run("CounterpartyProfile", _address_of,
                                (sender[FEATURED], blacklist), "counterparty", FEATURED, ())
            featured = counter[FEATURED]
            labels = self._run("LabelJoin", _address_of, (featured, facts), "labels",
                               EXAMPLES, ())
            examples = labels[EXAMPLES]

        # Models.
        models = self._run("Models", model_key, (featured, examples), "models",
                           SCORED_TRANSFERS, (SCORED_REPORTS, MODEL_METRICS))

        # Actions and outreach.
        actions = self._run("Actions", _address_of,
                            (models[SCORED_TRANSFERS], models[SCORED_REPORTS], facts,
                             blacklist), "actions", act.HOLDS,
                            (act.RESOLUTIONS, act.FREEZES, act.REQUESTS, act.LOSSES))
        # --- issue 12 (rule 11): daily risk assessments, a global top-K per day window
        # from the scored transfers and the confirmed losses, into Outreach (cool-down).
        assessments = ((models[SCORED_TRANSFERS], actions[act.LOSSES])
                       | "Assessments" >> Assessments(self.policy, self.side))
        outreach = self._run("Outreach", _user_of, (actions[act.REQUESTS], actions[act.LOSSES],
                                                    assessments),
                             "outreach", OUTREACH, ())
        # --- issue 12 (rule 12): call capacity, a global selection per day window.
        outreach_out = outreach[OUTREACH] | "CallCapacity" >> CallCapacity(self.policy)

        # --- issue 12: case files, keyed by suspect address, downstream of every decision.
        cases = ((models[SCORED_TRANSFERS], models[SCORED_REPORTS], actions[act.HOLDS],
                  actions[act.RESOLUTIONS], actions[act.FREEZES], blacklist, outreach_out)
                 | "CaseFiles" >> CaseFiles(self.policy, self.mode, self.shards))

        verdicts = models[SCORED_REPORTS] | "Verdicts" >> beam.Map(_verdict)
        dead = ((split_r.dead, t_led[led.DEAD], r_led[led.DEAD])
                | "DeadLetters" >> beam.Flatten())
        return {
            "holds": actions[act.HOLDS],
            "resolutions": actions[act.RESOLUTIONS],
            "freezes": actions[act.FREEZES],
            "outreach": outreach_out,  # issue 12: after the call capacity
            "verdicts": verdicts,
            "dead_letter": dead,
            "scored": models[SCORED_TRANSFERS],
            "model_metrics": models[MODEL_METRICS],
            "cases": cases,  # issue 12: every version of every case file
        }
