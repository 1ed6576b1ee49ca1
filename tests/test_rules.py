"""The nine decision rules of DESIGN.md, each pinned on the whole graph: its machines run
in plain Python by ``tests.scenario.decide`` (``core.reference``: the batch face's
steps, keys and order, without Beam). That both faces decide exactly as the reference is
pinned once, on a data set that takes every decision path, in test_reference.py;
event-time behaviour on the streaming face (TestStream) is in test_event_time.py. The
snapshot of real vendor lists (the last test) still goes through the batch face's side
input.
"""

from __future__ import annotations

import dataclasses

import pytest

from core.policy import HOUR, Policy
from schemas.codecs import write_records
from tests.scenario import (
    addr,
    at,
    collect,
    decide,
    listing,
    outcome,
    profile,
    report,
    transfer,
)

SCAM = addr("scam-collector")
FRIEND = addr("friend-of-alice")
SHOP = addr("big-merchant")


@pytest.fixture
def policy(tmp_path) -> Policy:
    """Rules only (no models), a snapshot listing SCAM (source ofac_sdn), and profiles:
    everyone old and not vulnerable except ``vera`` (vulnerable) and ``fresh*``."""
    snap = tmp_path / "snapshot.avro"
    write_records(snap, "BlacklistUpdate", [listing(SCAM, at(days=-1), source="ofac_sdn")],
                  "avro")
    profs = tmp_path / "profiles.avro"
    users = ["alice", "bob", "carol", "dave", "erin", "vera"] + [f"p{i}" for i in range(40)]
    rows = [profile(u, at(days=-400), vulnerable=(u == "vera")) for u in users]
    rows += [profile(f"fresh{i}", at(hours=-3)) for i in range(30)]
    write_records(profs, "UserProfile", rows, "avro")
    # Rules 1-10 alone: no daily risk assessments (rule 11, tests/test_assessments.py).
    return Policy(use_models=False, blacklist_paths=(str(snap),), profiles_path=str(profs),
                  assessments_per_day=0, hold_escalation=False)  # rule 14: test_pyramid.py


def by(rows, field):
    return {getattr(r, field): r for r in rows}


# ----------------------------------------------------------------------------- rule 1
def test_transfer_to_blacklisted_address_is_held_with_list_source_and_warning(policy):
    out = decide([transfer("t1", at(0), "alice", SCAM)], policy)
    (hold,) = out["holds"]
    assert hold.transfer_id == "t1"
    assert "blacklist:ofac_sdn" in hold.reasons
    assert any(r.startswith("list_version=") for r in hold.reasons)
    assert [(o.user_id, o.kind, o.channel) for o in out["outreach"]] == [
        ("alice", "WARNING", "APP")]


def test_vulnerable_sender_to_blacklisted_address_gets_intervention_call(policy):
    out = decide([transfer("t1", at(0), "vera", SCAM)], policy)
    assert len(out["holds"]) == 1
    assert [(o.kind, o.channel) for o in out["outreach"]] == [("INTERVENTION", "CALL")]


def test_repeat_victim_gets_intervention_call(policy):
    scam2, scam3 = addr("scam-two"), addr("scam-three")
    events = [
        transfer("a1", at(0), "bob", scam2), transfer("a2", at(1), "bob", scam3),
        outcome("c1", at(hours=2), "ADDRESS", scam2),
        outcome("c2", at(hours=3), "ADDRESS", scam3),
        transfer("a3", at(days=3), "bob", SCAM),
    ]
    out = decide(events, policy)
    warn = [o for o in out["outreach"] if o.transfer_id == "a3"]
    assert [(o.kind, o.channel) for o in warn] == [("INTERVENTION", "CALL")]
    assert any("repeat_victim" in r for r in warn[0].reasons)


# ----------------------------------------------------------------------------- rule 2
def _fan_in_burst(dest, n=30):
    """n distinct senders into a brand-new destination within an hour: the fan-in rule."""
    return [transfer(f"f{i}", at(i), f"p{i}", dest) for i in range(n)]


def test_score_at_or_above_hold_threshold_is_held(policy):
    dest = addr("young-collector")
    out = decide(_fan_in_burst(dest), policy)
    held = {h.transfer_id for h in out["holds"]}
    assert held == {f"f{i}" for i in range(24, 30)}  # from the 25th distinct sender on
    assert all(any(r.startswith("fan_in_24h=") for r in h.reasons) for h in out["holds"])


def test_score_between_warning_and_hold_threshold_warns_only(policy):
    dest = addr("young-collector")
    p = dataclasses.replace(policy, hold_threshold=0.9, warn_threshold=0.5)
    out = decide(_fan_in_burst(dest), p)
    assert out["holds"] == []
    assert {o.transfer_id for o in out["outreach"] if o.kind == "WARNING"} == {
        f"f{i}" for i in range(24, 30)}


# ----------------------------------------------------------------------------- rule 3
def test_hold_released_exactly_at_its_deadline(policy):
    out = decide([transfer("t1", at(0), "alice", SCAM)], policy)
    (hold,), (res,) = out["holds"], out["resolutions"]
    assert hold.expires_at - hold.placed_at == 24 * HOUR
    assert (res.resolution, res.resolved_at) == ("RELEASED", hold.expires_at)


def test_hold_refunded_when_case_outcome_confirms_transfer_and_never_released(policy):
    events = [transfer("t1", at(0), "alice", SCAM),
              outcome("c1", at(hours=5), "TRANSFER", "t1")]
    out = decide(events, policy)
    assert [(r.transfer_id, r.resolution, r.resolved_at) for r in out["resolutions"]] == [
        ("t1", "REFUNDED", at(hours=5))]


def test_transfer_to_frozen_address_is_held_and_refunded_at_once(policy):
    dest = addr("frozen-one")
    events = [outcome("c1", at(0), "ADDRESS", dest), transfer("t9", at(hours=1), "carol", dest)]
    out = decide(events, policy)
    (hold,), (res,) = out["holds"], out["resolutions"]
    assert (res.transfer_id, res.resolution, res.resolved_at) == ("t9", "REFUNDED", at(hours=1))
    assert "destination_frozen" in hold.reasons


def test_every_hold_ends_in_exactly_one_resolution(policy):
    dest = addr("young-collector")
    events = _fan_in_burst(dest) + [transfer("t1", at(0), "alice", SCAM),
                                    outcome("c1", at(hours=30), "ADDRESS", dest)]
    out = decide(events, policy)
    assert sorted(r.hold_id for r in out["resolutions"]) == sorted(
        h.hold_id for h in out["holds"])


# ----------------------------------------------------------------------------- rule 4
def _paid_reports(dest, reporters, t0):
    """Established users pay ``dest`` and then report it."""
    ev = []
    for i, u in enumerate(reporters):
        ev.append(transfer(f"pay-{u}", at(hours=t0) - HOUR + i, u, dest, usd=900))
        ev.append(report(f"rep-{u}", at(hours=t0) + i * 60_000, u, transfer_id=f"pay-{u}"))
    return ev


def test_scam_verdict_freezes_suspect_and_refunds_every_pending_hold(policy):
    dest = addr("romance-scammer")
    p = dataclasses.replace(policy, hold_threshold=0.0, warn_threshold=0.0)  # hold all
    events = _paid_reports(dest, ["alice", "bob"], t0=5)
    out = decide(events, p)
    (freeze,) = out["freezes"]
    assert freeze.address == dest
    assert set(freeze.report_ids) >= {"rep-alice", "rep-bob"}
    assert {v.report_id: v.verdict for v in out["verdicts"]}["rep-bob"] == "SCAM"
    refunded = {r.transfer_id for r in out["resolutions"] if r.resolution == "REFUNDED"}
    assert refunded == {"pay-alice", "pay-bob"}
    assert all(r.resolved_at == freeze.frozen_at for r in out["resolutions"]
               if r.to_address == dest)


def test_case_outcome_on_address_freezes_it_and_blacklists_it_live(policy):
    dest = addr("drainer")
    events = [outcome("c1", at(0), "ADDRESS", dest), transfer("t1", at(hours=2), "dave", dest)]
    out = decide(events, policy)
    assert [f.address for f in out["freezes"]] == [dest]
    assert [h.transfer_id for h in out["holds"]] == ["t1"]


def test_report_bombing_from_fresh_accounts_does_not_freeze_merchant(policy):
    # The merchant has real fan-in from established customers...
    events = [transfer(f"buy{i}", at(i), f"p{i}", SHOP, usd=40) for i in range(40)]
    # ...then 30 brand-new accounts that never paid it report it within the hour.
    events += [report(f"bomb{i}", at(hours=3) + i * 60_000, f"fresh{i}", suspect=SHOP,
                      category="FAKE_PLATFORM", text="scam scam scam") for i in range(30)]
    out = decide(events, policy)
    assert out["freezes"] == []
    assert all(v.verdict != "SCAM" for v in out["verdicts"])
    assert len(out["verdicts"]) == 30


# ----------------------------------------------------------------------------- rule 5
def test_silent_sufferers_are_exactly_non_reporting_unrefunded_senders_in_lookback(policy):
    dest = addr("pig-butcher")
    p = dataclasses.replace(policy, hold_threshold=0.99)
    events = [
        transfer("old", at(days=-40), "erin", dest),  # outside the 30-day lookback
        transfer("b1", at(days=-3), "bob", dest),  # silent, not held: a silent sufferer
        transfer("c1", at(days=-2), "carol", dest),  # reports it: not silent
        report("rc", at(days=-1), "carol", transfer_id="c1"),
        transfer("d1", at(hours=-1), "dave", dest),  # still held when confirmed: refunded
        outcome("case", at(0), "ADDRESS", dest),
    ]
    # Make dave's transfer held: list the destination live just before he pays.
    events.append(listing(dest, at(hours=-2), source="vendor_chainabuse"))
    out = decide(events, p)
    silent = sorted((o.user_id, o.channel) for o in out["outreach"]
                    if o.kind == "SILENT_SUFFERER")
    assert silent == [("bob", "CHAT")]
    assert {r.transfer_id: r.resolution for r in out["resolutions"]}["d1"] == "REFUNDED"


def test_blacklisting_alone_triggers_silent_sufferer_outreach(policy):
    dest = addr("later-listed")
    events = [transfer("b1", at(0), "bob", dest),
              listing(dest, at(days=2), source="vendor_chainabuse")]
    out = decide(events, policy)
    assert [(o.user_id, o.kind, o.address) for o in out["outreach"]] == [
        ("bob", "SILENT_SUFFERER", dest)]


# ----------------------------------------------------------------------------- rule 6
def test_outreach_cooldown_one_warning_per_user_per_24h(policy):
    events = [transfer("t1", at(0), "alice", SCAM), transfer("t2", at(hours=3), "alice", SCAM),
              transfer("t3", at(hours=25), "alice", SCAM)]
    out = decide(events, policy)
    assert len(out["holds"]) == 3
    assert sorted(o.transfer_id for o in out["outreach"] if o.kind == "WARNING") == ["t1", "t3"]


def test_silent_sufferer_outreach_once_per_user_and_address(policy):
    dest = addr("twice-flagged")
    events = [transfer("b1", at(0), "bob", dest), transfer("b2", at(1), "bob", dest),
              listing(dest, at(days=1), source="vendor_a"),
              outcome("c1", at(days=3), "ADDRESS", dest)]
    out = decide(events, policy)
    assert [o.user_id for o in out["outreach"] if o.kind == "SILENT_SUFFERER"] == ["bob"]


# ----------------------------------------------------------------------------- rule 7
def test_report_without_suspect_or_transfer_is_dead_lettered(policy):
    out = decide([report("r0", at(0), "alice")], policy)
    (dl,) = out["dead_letter"]
    assert dl.source == "reports" and "neither a suspect" in dl.error
    assert out["verdicts"] == []


def test_outcome_for_unknown_transfer_is_dead_lettered_after_waiting(policy):
    out = decide([outcome("c1", at(0), "TRANSFER", "never-seen")], policy)
    (dl,) = out["dead_letter"]
    assert dl.source == "outcomes" and "never-seen" in dl.error
    assert dl.at == at(0) + policy.resolve_wait_ms


def test_outcome_arriving_before_its_transfer_still_applies(policy):
    events = [outcome("c1", at(0), "TRANSFER", "t1"), transfer("t1", at(5), "alice", SCAM)]
    out = decide(events, policy)
    assert out["dead_letter"] == []
    assert [f.address for f in out["freezes"]] == [SCAM]


# ----------------------------------------------------------------------------- rule 8
def test_duplicate_deliveries_change_nothing(policy):
    once = [transfer("t1", at(0), "alice", SCAM),
            report("r1", at(5), "alice", transfer_id="t1")]
    twice = once + [transfer("t1", at(0), "alice", SCAM),
                    report("r1", at(5), "alice", transfer_id="t1")]
    assert decide(twice, policy) == decide(once, policy)


# ----------------------------------------------------------------------------- rule 9
def test_lookalike_of_known_payee_is_held_naming_the_payee(policy):
    genuine = "0xabc" + "1" * 33 + "9f3e"
    fake = "0xabc" + "7" * 33 + "9f3e"
    stranger = "0xdef" + "2" * 33 + "0000"
    events = [transfer("g1", at(0), "alice", genuine), transfer("g2", at(days=1), "alice", genuine),
              transfer("x1", at(days=2), "alice", fake),
              transfer("n1", at(days=3), "alice", stranger),
              transfer("x2", at(days=4), "alice", fake)]
    out = decide(events, policy)
    held = by(out["holds"], "transfer_id")
    assert set(held) == {"x1", "x2"}  # paying the imitation again is held again
    assert f"lookalike_of={genuine}" in held["x1"].reasons
    warn = [o for o in out["outreach"] if o.transfer_id == "x1"]
    assert warn and warn[0].kind == "WARNING"
    assert any(genuine in r for r in warn[0].reasons)


# ----------------------------------------------------------------------- live blacklist
def test_blacklist_remove_takes_effect(policy):
    events = [listing(SCAM, at(0), action="REMOVE", source="ofac_sdn"),
              transfer("t1", at(5), "alice", SCAM)]
    assert decide(events, policy)["holds"] == []


def test_blacklist_add_on_the_stream_holds_later_transfers(policy):
    dest = addr("newly-listed")
    events = [transfer("t0", at(0), "alice", dest), listing(dest, at(5), source="vendor_x"),
              transfer("t1", at(10), "bob", dest)]
    out = decide(events, policy)
    assert [h.transfer_id for h in out["holds"]] == ["t1"]
    assert "blacklist:vendor_x" in out["holds"][0].reasons


# ------------------------------------------------------------- the real 64k blacklist
def test_real_union_blacklist_as_snapshot_holds_a_listed_address(tmp_path):
    """The 64,234-address union of real vendor lists (../shared/data) as the snapshot side
    input: a payment to one of its addresses is held, the reason naming its sources."""
    from pathlib import Path

    union = Path(__file__).resolve().parents[2] / "shared" / "data" / "blacklist_union_evm.csv"
    if not union.exists():
        pytest.skip(f"real data not found at {union} (a fresh clone has no ../shared)")
    with open(union) as f:
        next(f)
        address, _, sources = next(f).strip().split(",")[:3]
    p = Policy(use_models=False, blacklist_paths=(str(union),))
    out = collect([transfer("t1", at(0), "alice", address),
                   transfer("t2", at(1), "bob", addr("not-listed"))], p)
    (hold,) = out["holds"]
    assert hold.transfer_id == "t1"
    assert {f"blacklist:{s}" for s in sources.split(";")} <= set(hold.reasons)
