"""Row types of the data contract (DESIGN.md, "Data contract").

One ``typing.NamedTuple`` per record. Field names and order follow the contract; fields
added beyond the contract come last and are nullable. Timestamps are ``int`` epoch
milliseconds (UTC), amounts are exact decimals held as ``str``, enums are ``str`` checked
against the constants below. ``FIELDS`` describes every record once, so the Avro schemas
(``schemas/*.avsc``), the Parquet schemas and the JSON codec all agree with these types.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

# --- enums -----------------------------------------------------------------------------
CHANNELS = ("WITHDRAWAL", "INTERNAL", "P2P")
CATEGORIES = ("INVESTMENT", "ROMANCE", "PHISHING", "IMPERSONATION", "FAKE_PLATFORM", "OTHER")
SUBJECT_TYPES = ("TRANSFER", "ADDRESS", "REPORT")
BLACKLIST_ACTIONS = ("ADD", "REMOVE")
RESOLUTIONS = ("RELEASED", "REFUNDED")
OUTREACH_KINDS = ("WARNING", "INTERVENTION", "SILENT_SUFFERER", "HOLD_NOTICE", "RECOVERY",
                  "RISK_ASSESSMENT",
                  # added with rule 14 (escalation inside the hold): the stage warning to the
                  # sender, the request for information to a destination account of ours
                  "HOLD_ESCALATION", "INFO_REQUEST")
OUTREACH_CHANNELS = ("APP", "CHAT", "CALL")
VERDICTS = ("SCAM", "NOT_SCAM", "REVIEW")


# --- inputs ----------------------------------------------------------------------------
class Transfer(NamedTuple):
    transfer_id: str
    event_time: int
    user_id: str
    to_address: str
    to_user_id: Optional[str]
    network: str
    asset: str
    amount: str
    usd_value: float
    channel: str


class ScamReport(NamedTuple):
    report_id: str
    event_time: int
    reporter_user_id: str
    transfer_id: Optional[str]
    suspect_address: Optional[str]
    suspect_user_id: Optional[str]
    category: str
    description: str
    claimed_loss_usd: Optional[float]


class CaseOutcome(NamedTuple):
    case_id: str
    event_time: int
    subject_type: str
    subject_id: str
    is_scam: bool


class BlacklistUpdate(NamedTuple):
    address: str
    network: Optional[str]
    action: str
    event_time: int
    source: str
    reason: Optional[str]


class UserProfile(NamedTuple):
    user_id: str
    created_time: int
    country: Optional[str]
    birth_year: Optional[int]
    vulnerable: bool


# --- outputs ---------------------------------------------------------------------------
class Hold(NamedTuple):
    hold_id: str
    transfer_id: str
    user_id: str
    to_address: str
    asset: str
    amount: str
    usd_value: float
    placed_at: int
    expires_at: int
    risk_score: float
    reasons: List[str]
    model_version: Optional[str] = None


class HoldResolution(NamedTuple):
    hold_id: str
    transfer_id: str
    resolution: str
    resolved_at: int
    reason: str
    user_id: Optional[str] = None
    to_address: Optional[str] = None
    usd_value: Optional[float] = None


class Freeze(NamedTuple):
    freeze_id: str
    address: str
    user_id: Optional[str]
    frozen_at: int
    verdict_score: float
    report_ids: List[str]
    reasons: List[str]


class Outreach(NamedTuple):
    outreach_id: str
    user_id: str
    kind: str
    channel: str
    created_at: int
    transfer_id: Optional[str]
    address: Optional[str]
    reasons: List[str]
    # What the call-capacity and assessment selections rank by (rules 11, 12): the USD at
    # risk weighted by its risk score; null where nothing ranks it.
    expected_loss_usd: Optional[float] = None


class Verdict(NamedTuple):
    report_id: str
    suspect: str
    score: float
    verdict: str
    decided_at: int
    model_version: str
    reporter_user_id: Optional[str] = None
    reasons: Optional[List[str]] = None


class DeadLetter(NamedTuple):
    source: str
    payload: str
    error: str
    at: int


class CaseFile(NamedTuple):
    """An investigation file on one suspect address: opened when the address is
    frozen or blacklisted or gets a SCAM or REVIEW verdict, re-issued whenever it changes
    (``version``: the events it has seen; the highest is the latest). Items are JSON
    objects as strings (one per transfer, report, verdict, list entry, outreach, timeline
    line), at most ``case_max_items`` per list; ``*_omitted`` count what was left out.
    Totals cover every transfer in the lookback."""

    case_id: str
    address: str
    network: Optional[str]
    user_id: Optional[str]
    opened_at: int
    updated_at: int
    version: int
    triggers: List[str]
    transfers: List[str]
    reports: List[str]
    verdicts: List[str]
    freeze: Optional[str]
    blacklist: List[str]
    outreach: List[str]
    timeline: List[str]
    victims: int
    usd_sent: float
    usd_lost: float
    usd_refunded: float
    usd_held: float
    transfers_omitted: int
    reports_omitted: int
    verdicts_omitted: int
    blacklist_omitted: int
    outreach_omitted: int
    timeline_omitted: int


class Truth(NamedTuple):
    """The simulator's ground truth (``truth.*`` beside a replay directory).

    subject_type: TRANSFER (every transfer), REPORT (every report), ADDRESS (every scam
    address), USER (every victim). ``detail`` says more: the reporting behaviour of a victim
    (``fast`` / ``late`` / ``silent`` / ``repeat``), ``false_report`` / ``bombing`` for a
    dishonest report, the imitated payee for address poisoning.
    """

    subject_type: str
    subject_id: str
    is_scam: bool
    typology: Optional[str]
    user_id: Optional[str]
    address: Optional[str]
    usd_value: Optional[float]
    event_time: int
    detail: Optional[str]


# --- field descriptions ----------------------------------------------------------------
# (name, kind, nullable). kind is one of: string, long, double, boolean, int, timestamp,
# enum:<TUPLE NAME>, decimal (a string holding an exact decimal), array<string>.
F = tuple[str, str, bool]
FIELDS: dict[str, list[F]] = {
    "Transfer": [
        ("transfer_id", "string", False), ("event_time", "timestamp", False),
        ("user_id", "string", False), ("to_address", "string", False),
        ("to_user_id", "string", True), ("network", "string", False),
        ("asset", "string", False), ("amount", "decimal", False),
        ("usd_value", "double", False), ("channel", "enum:CHANNELS", False),
    ],
    "ScamReport": [
        ("report_id", "string", False), ("event_time", "timestamp", False),
        ("reporter_user_id", "string", False), ("transfer_id", "string", True),
        ("suspect_address", "string", True), ("suspect_user_id", "string", True),
        ("category", "enum:CATEGORIES", False), ("description", "string", False),
        ("claimed_loss_usd", "double", True),
    ],
    "CaseOutcome": [
        ("case_id", "string", False), ("event_time", "timestamp", False),
        ("subject_type", "enum:SUBJECT_TYPES", False), ("subject_id", "string", False),
        ("is_scam", "boolean", False),
    ],
    "BlacklistUpdate": [
        ("address", "string", False), ("network", "string", True),
        ("action", "enum:BLACKLIST_ACTIONS", False), ("event_time", "timestamp", False),
        ("source", "string", False), ("reason", "string", True),
    ],
    "UserProfile": [
        ("user_id", "string", False), ("created_time", "timestamp", False),
        ("country", "string", True), ("birth_year", "int", True),
        ("vulnerable", "boolean", False),
    ],
    "Hold": [
        ("hold_id", "string", False), ("transfer_id", "string", False),
        ("user_id", "string", False), ("to_address", "string", False),
        ("asset", "string", False), ("amount", "decimal", False),
        ("usd_value", "double", False), ("placed_at", "timestamp", False),
        ("expires_at", "timestamp", False), ("risk_score", "double", False),
        ("reasons", "array<string>", False), ("model_version", "string", True),
    ],
    "HoldResolution": [
        ("hold_id", "string", False), ("transfer_id", "string", False),
        ("resolution", "enum:RESOLUTIONS", False), ("resolved_at", "timestamp", False),
        ("reason", "string", False), ("user_id", "string", True),
        ("to_address", "string", True), ("usd_value", "double", True),
    ],
    "Freeze": [
        ("freeze_id", "string", False), ("address", "string", False),
        ("user_id", "string", True), ("frozen_at", "timestamp", False),
        ("verdict_score", "double", False), ("report_ids", "array<string>", False),
        ("reasons", "array<string>", False),
    ],
    "Outreach": [
        ("outreach_id", "string", False), ("user_id", "string", False),
        ("kind", "enum:OUTREACH_KINDS", False), ("channel", "enum:OUTREACH_CHANNELS", False),
        ("created_at", "timestamp", False), ("transfer_id", "string", True),
        ("address", "string", True), ("reasons", "array<string>", False),
        ("expected_loss_usd", "double", True),
    ],
    "Verdict": [
        ("report_id", "string", False), ("suspect", "string", False),
        ("score", "double", False), ("verdict", "enum:VERDICTS", False),
        ("decided_at", "timestamp", False), ("model_version", "string", False),
        ("reporter_user_id", "string", True), ("reasons", "array<string>", True),
    ],
    "DeadLetter": [
        ("source", "string", False), ("payload", "string", False),
        ("error", "string", False), ("at", "timestamp", False),
    ],
    "CaseFile": [
        ("case_id", "string", False), ("address", "string", False),
        ("network", "string", True), ("user_id", "string", True),
        ("opened_at", "timestamp", False), ("updated_at", "timestamp", False),
        ("version", "long", False), ("triggers", "array<string>", False),
        ("transfers", "array<string>", False), ("reports", "array<string>", False),
        ("verdicts", "array<string>", False), ("freeze", "string", True),
        ("blacklist", "array<string>", False), ("outreach", "array<string>", False),
        ("timeline", "array<string>", False), ("victims", "long", False),
        ("usd_sent", "double", False), ("usd_lost", "double", False),
        ("usd_refunded", "double", False), ("usd_held", "double", False),
        ("transfers_omitted", "long", False), ("reports_omitted", "long", False),
        ("verdicts_omitted", "long", False), ("blacklist_omitted", "long", False),
        ("outreach_omitted", "long", False), ("timeline_omitted", "long", False),
    ],
    "Truth": [
        ("subject_type", "string", False), ("subject_id", "string", False),
        ("is_scam", "boolean", False), ("typology", "string", True),
        ("user_id", "string", True), ("address", "string", True),
        ("usd_value", "double", True), ("event_time", "timestamp", False),
        ("detail", "string", True),
    ],
}

ROW_TYPES: dict[str, type] = {
    "Transfer": Transfer, "ScamReport": ScamReport, "CaseOutcome": CaseOutcome,
    "BlacklistUpdate": BlacklistUpdate, "UserProfile": UserProfile, "Hold": Hold,
    "HoldResolution": HoldResolution, "Freeze": Freeze, "Outreach": Outreach,
    "Verdict": Verdict, "DeadLetter": DeadLetter, "Truth": Truth, "CaseFile": CaseFile,
}
