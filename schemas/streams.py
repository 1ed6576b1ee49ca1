"""Every input and output of safetynet, named once.

A stream has one name everywhere: the graph's input or output (``core.graph``), the
replay / backtest file stem's record (``<Record>.avro``), the Pub/Sub topic
(``safetynet-<name>``) and the report's tables. Add a stream here and every driver knows it.

* :data:`INPUTS` — the graph's inputs, name -> record type (``schemas/*.avsc``).
* :data:`REPLAY_FILES` — what a replay directory holds: the inputs plus the optional user
  profiles (a side input).
* :data:`DECISIONS` — the graph's decision outputs; :data:`OUTPUTS` adds the case files.
* :data:`FILE_ORDER` — the sort key (time field, id field) of each output file.
* :data:`PUBLISH_ORDER` — at equal event times, which input goes first (DESIGN.md: lists
  before outcomes before reports before transfers; ``core.events`` ranks alike).
* :func:`record_id` / :func:`event_time` — the ``record_id`` and ``event_time`` attributes of
  a Pub/Sub message (Dataflow's ``id_label`` / ``timestamp_attribute``), one definition for
  the simulator's publisher and the streaming job's writers.
"""

from __future__ import annotations

import hashlib
from typing import Any

from schemas.rows import (
    ROW_TYPES,
    BlacklistUpdate,
    CaseFile,
    CaseOutcome,
    DeadLetter,
    Freeze,
    Hold,
    HoldResolution,
    Outreach,
    ScamReport,
    Transfer,
    UserProfile,
    Verdict,
)

INPUTS: dict[str, str] = {"transfers": "Transfer", "reports": "ScamReport",
                          "outcomes": "CaseOutcome", "blacklist": "BlacklistUpdate"}
PROFILES = "profiles"
REPLAY_FILES: dict[str, str] = {**INPUTS, PROFILES: "UserProfile"}
DECISIONS: dict[str, str] = {"holds": "Hold", "resolutions": "HoldResolution",
                             "freezes": "Freeze", "outreach": "Outreach",
                             "verdicts": "Verdict", "dead_letter": "DeadLetter"}
CASES = "cases"  # every version of every case file
OUTPUTS: dict[str, str] = {**DECISIONS, CASES: "CaseFile"}
# What one decision on a transfer, an address or a report produces (no dead letters, no
# cases): the streams a shadow policy mirrors and a demo summarises.
ACTIONS = ("holds", "resolutions", "freezes", "outreach")
# What a shadow policy decides (never acted on): its own files (``shadow_NAME``) and
# topics (``safetynet-shadow-NAME``), beside the hourly disagreements.
SHADOWED = (*ACTIONS, "verdicts")
SHADOW_DISAGREEMENTS = "shadow-disagreements"
SHADOW_TOPICS = tuple(f"shadow-{n}" for n in SHADOWED) + (SHADOW_DISAGREEMENTS,)
# The streaming job's daily drift figures (transforms/drift.py): one JSON row per day of
# event time (score PSI against the first days, hold threshold, precision of resolved holds)
DRIFT = "drift"
FILE_ORDER: dict[str, tuple[str, str]] = {
    "holds": ("placed_at", "hold_id"), "resolutions": ("resolved_at", "hold_id"),
    "freezes": ("frozen_at", "freeze_id"), "outreach": ("created_at", "outreach_id"),
    "verdicts": ("decided_at", "report_id"), "dead_letter": ("at", "source"),
    "cases": ("opened_at", "case_id")}
PUBLISH_ORDER = (PROFILES, "blacklist", "outcomes", "reports", "transfers")

HEALTH = "health"  # the streaming job's health records (connectors.health)
TOPIC_PREFIX = "safetynet-"
ALL_TOPICS = tuple(INPUTS) + tuple(OUTPUTS) + (HEALTH, DRIFT)


def topic_path(project: str, name: str) -> str:
    return f"projects/{project}/topics/{TOPIC_PREFIX}{name}"


def subscription_path(project: str, name: str) -> str:
    return f"projects/{project}/subscriptions/{TOPIC_PREFIX}{name}"


_TIME_FIELDS = ("event_time", "placed_at", "resolved_at", "frozen_at", "created_at",
                "decided_at", "at", "updated_at", "created_time")
_ID_FIELD = {Transfer: "transfer_id", ScamReport: "report_id", CaseOutcome: "case_id",
             Hold: "hold_id", Freeze: "freeze_id", Outreach: "outreach_id",
             Verdict: "report_id", UserProfile: "user_id"}
INPUT_OF_TYPE = {ROW_TYPES[record]: name for name, record in INPUTS.items()}


def _dead_letter_id(row: DeadLetter) -> str:
    h = hashlib.sha1(f"{row.source}|{row.payload}|{row.error}".encode()).hexdigest()
    return f"dl-{h[:16]}"


# records with no single id field: what tells two of them apart
_COMPOSITE_ID = {
    HoldResolution: lambda r: f"{r.hold_id}:{r.resolution}",
    BlacklistUpdate: lambda r: f"{r.address}:{r.action}:{r.event_time}",
    CaseFile: lambda r: f"{r.case_id}:{r.version}",  # one message per version of a case
    DeadLetter: _dead_letter_id,
}


def event_time(row: Any) -> int:
    """Epoch ms of a row's event / decision time (the ``event_time`` attribute)."""
    for f in _TIME_FIELDS:
        v = getattr(row, f, None)
        if v is not None:
            return int(v)
    raise ValueError(f"{type(row).__name__} has no time field")


def record_id(row: Any) -> str:
    """A stable id per record (the ``record_id`` attribute): a duplicate delivery of a
    record has its original's id, two different records never share one."""
    t = type(row)
    composite = _COMPOSITE_ID.get(t)
    if composite is not None:
        return composite(row)
    f = _ID_FIELD.get(t)
    if f and getattr(row, f, None):
        return str(getattr(row, f))
    return hashlib.sha1(repr(row).encode()).hexdigest()[:16]
