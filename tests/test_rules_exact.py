"""Rules 1–9 of DESIGN.md, one hand-built scenario each, with the exact decisions written
down from the rule (who, what kind, which resolution, when): not lower bounds, not copied
from a run.

They run on ``core.reference`` (the whole graph's machines in plain Python, no Beam:
milliseconds), rules only (no models). ``tests/test_reference.py`` holds the Beam faces to
the reference; ``tests/test_rules.py`` runs the same rules on the Beam batch face.
"""

from __future__ import annotations

import hashlib

import pytest

from core.policy import HOUR, Policy
from core.reference import run_reference
from schemas.codecs import write_records
from tests.scenario import (
    at,
    listing,
    outcome,
    profile,
    report,
    split_inputs,
    transfer,
)
from transforms.side import load_side


def addr(tag: str) -> str:
    """A distinct EVM address per tag that imitates no other (``tests.scenario.addr`` pads
    with zeros, so two of its addresses with a common first letter are look-alikes)."""
    return "0x" + hashlib.sha1(tag.encode()).hexdigest()


SCAM = addr("exact-scam")  # in the snapshot, source ofac_sdn
LISTED = addr("exact-listed")  # in the snapshot, source ofac_sdn
H = 24 * HOUR  # the hold (rule 3)


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Policy:
    d = tmp_path_factory.mktemp("exact")
    snap = d / "snapshot.avro"
    write_records(snap, "BlacklistUpdate",
                  [listing(a, at(days=-1), source="ofac_sdn") for a in (SCAM, LISTED)], "avro")
    profs = d / "profiles.avro"
    rows = [profile(u, at(days=-400), vulnerable=(u == "vera"))
            for u in ["alice", "bob", "carol", "dave", "erin", "vera", "p1", "p2", "p3"]]
    rows += [profile(f"fresh{i}", at(hours=-3)) for i in range(30)]
    write_records(profs, "UserProfile", rows, "avro")
    p = Policy(use_models=False, blacklist_paths=(str(snap),), profiles_path=str(profs),
               assessments_per_day=0,  # rules 1-10 alone: no daily risk assessments
               hold_escalation=False)  # nor rule 14's stages (tests/test_pyramid.py)
    assert (p.hold_ms, p.cooldown_ms, p.lookback_ms, p.fan_in_rule) == (H, H, 30 * 24 * HOUR,
                                                                         25)
    return p


def _run(events, policy) -> dict:
    return run_reference(split_inputs(events), policy, side=load_side(policy))


def holds(out):
    return sorted((h.transfer_id, h.user_id, h.placed_at, h.expires_at) for h in out["holds"])


def resolutions(out):
    return sorted((r.transfer_id, r.resolution, r.resolved_at) for r in out["resolutions"])


def outreach(out):
    return sorted((o.user_id, o.kind, o.channel, o.created_at, o.transfer_id)
                  for o in out["outreach"])


# ----------------------------------------------------------------------------- rule 1
def test_rule1_blacklisted_destination_held_sender_warned_or_called(policy):
    scam2, scam3 = addr("exact-s2"), addr("exact-s3")
    events = [
        transfer("a1", at(0), "alice", SCAM),
        transfer("v1", at(1), "vera", SCAM),  # vulnerable
        # bob: two transfers confirmed as scams, then pays a blacklisted address
        transfer("b1", at(2), "bob", scam2), transfer("b2", at(3), "bob", scam3),
        outcome("c2", at(hours=1), "ADDRESS", scam2), outcome("c3", at(hours=2), "ADDRESS", scam3),
        transfer("b3", at(hours=3), "bob", LISTED),
    ]
    out = _run(events, policy)
    assert holds(out) == [("a1", "alice", at(0), at(0) + H),
                          ("b3", "bob", at(hours=3), at(hours=3) + H),
                          ("v1", "vera", at(1), at(1) + H)]
    assert all("blacklist:ofac_sdn" in h.reasons for h in out["holds"])
    assert resolutions(out) == [("a1", "RELEASED", at(0) + H),
                                ("b3", "RELEASED", at(hours=3) + H),
                                ("v1", "RELEASED", at(1) + H)]
    assert outreach(out) == [
        ("alice", "WARNING", "APP", at(0), "a1"),
        ("bob", "INTERVENTION", "CALL", at(hours=3), "b3"),
        # bob lost b1 and b2 without reporting: silent sufferer at each confirmation
        ("bob", "SILENT_SUFFERER", "CHAT", at(hours=1), "b1"),
        ("bob", "SILENT_SUFFERER", "CHAT", at(hours=2), "b2"),
        ("vera", "INTERVENTION", "CALL", at(1), "v1"),
    ]


# ----------------------------------------------------------------------------- rule 2
def test_rule2_score_at_hold_threshold_holds_below_passes(policy):
    """Rules only: the 25th distinct sender within the hour to a new address scores 0.8
    (>= 0.75: held, HOLD_NOTICE); the 24 before it score 0.05 (nothing)."""
    dest = addr("exact-burst")
    events = [transfer(f"f{i:02d}", at(i), f"p{i}", dest) for i in range(26)]
    out = _run(events, policy)
    assert holds(out) == [("f24", "p24", at(24), at(24) + H), ("f25", "p25", at(25), at(25) + H)]
    assert [h.reasons for h in sorted(out["holds"], key=lambda h: h.transfer_id)] == [
        ["fan_in_24h=25", "hold_test=rule"], ["fan_in_24h=26", "hold_test=rule"]]
    assert outreach(out) == [("p24", "HOLD_NOTICE", "APP", at(24), "f24"),
                             ("p25", "HOLD_NOTICE", "APP", at(25), "f25")]
    assert resolutions(out) == [("f24", "RELEASED", at(24) + H), ("f25", "RELEASED", at(25) + H)]


# ----------------------------------------------------------------------------- rule 3
def test_rule3_confirmed_during_the_hold_refunds_at_that_moment_else_released(policy):
    events = [
        transfer("a1", at(0), "alice", SCAM),
        transfer("e1", at(0), "erin", LISTED),
        outcome("c1", at(hours=2), "ADDRESS", SCAM),
        transfer("d1", at(hours=3), "dave", SCAM),  # already frozen
    ]
    out = _run(events, policy)
    assert holds(out) == [("a1", "alice", at(0), at(0) + H),
                          ("d1", "dave", at(hours=3), at(hours=3) + H),
                          ("e1", "erin", at(0), at(0) + H)]
    assert resolutions(out) == [("a1", "REFUNDED", at(hours=2)),
                                ("d1", "REFUNDED", at(hours=3)),
                                ("e1", "RELEASED", at(0) + H)]
    assert [(f.address, f.frozen_at) for f in out["freezes"]] == [(SCAM, at(hours=2))]
    assert outreach(out) == [("alice", "WARNING", "APP", at(0), "a1"),
                             ("dave", "WARNING", "APP", at(hours=3), "d1"),
                             ("erin", "WARNING", "APP", at(0), "e1")]


# ----------------------------------------------------------------------------- rule 4
def test_rule4_scam_verdict_freezes_fresh_burst_does_not(policy):
    sus, sus2 = addr("exact-suspect"), addr("exact-burst-target")
    events = [
        transfer("t1", at(0), "p1", sus), transfer("t2", at(1), "p2", sus),
        transfer("t3", at(2), "p3", sus),
        report("r1", at(hours=1), "p1", suspect=sus),
        report("r2", at(hours=2), "p2", suspect=sus),
    ]
    events += [report(f"x{i:02d}", at(hours=1, minutes=i), f"fresh{i}", suspect=sus2)
               for i in range(30)]
    out = _run(events, policy)
    v = {x.report_id: (x.verdict, x.decided_at) for x in out["verdicts"]}
    assert (v["r1"], v["r2"]) == (("REVIEW", at(hours=1)), ("SCAM", at(hours=2)))
    assert {v[f"x{i:02d}"][0] for i in range(30)} == {"NOT_SCAM"}
    assert [(f.address, f.frozen_at, f.report_ids) for f in out["freezes"]] == [
        (sus, at(hours=2), ["r1", "r2"])]
    # rule 5 at the freeze: p3 paid and never reported; p1 and p2 reported
    assert outreach(out) == [("p3", "SILENT_SUFFERER", "CHAT", at(hours=2), "t3")]
    assert holds(out) == []


# ----------------------------------------------------------------------------- rule 5
def test_rule5_listing_reaches_unreported_senders_within_the_lookback(policy):
    dest = addr("exact-late-listed")
    events = [
        transfer("o1", at(days=5), "alice", dest),  # 35 days before the listing
        transfer("o2", at(days=20), "bob", dest),
        transfer("o3", at(days=25), "carol", dest),
        report("r3", at(days=26), "carol", suspect=dest),
        listing(dest, at(days=40), source="chainalysis"),
    ]
    out = _run(events, policy)
    assert outreach(out) == [("bob", "SILENT_SUFFERER", "CHAT", at(days=40), "o2")]
    (o,) = out["outreach"]
    assert (o.address, o.reasons[0]) == (dest, "blacklisted:chainalysis")
    assert holds(out) == [] and out["freezes"] == []


# ----------------------------------------------------------------------------- rule 6
def test_rule6_one_outreach_of_a_kind_per_day_silent_sufferer_once_per_address(policy):
    dest = addr("exact-twice")
    events = [
        transfer("a1", at(0), "alice", SCAM), transfer("a2", at(hours=1), "alice", SCAM),
        transfer("a3", at(hours=25), "alice", SCAM),
        transfer("b1", at(0), "bob", dest),
        listing(dest, at(days=2), source="vendor_x"),
        outcome("c1", at(days=3), "ADDRESS", dest),  # frozen: a second sweep
    ]
    out = _run(events, policy)
    assert outreach(out) == [("alice", "WARNING", "APP", at(0), "a1"),
                             ("alice", "WARNING", "APP", at(hours=25), "a3"),
                             ("bob", "SILENT_SUFFERER", "CHAT", at(days=2), "b1")]
    assert len(out["holds"]) == 3


# ----------------------------------------------------------------------------- rule 7
def test_rule7_unusable_records_are_dead_letters_with_the_reason(policy):
    events = [
        report("nothing", at(0), "alice"),  # names neither a suspect nor a transfer
        outcome("c9", at(1), "TRANSFER", "never-seen"),
    ]
    out = _run(events, policy)
    got = sorted((d.source, d.at) for d in out["dead_letter"])
    assert got == [("outcomes", at(1) + H), ("reports", at(0))]
    assert all(d.error for d in out["dead_letter"])
    assert out["holds"] == out["freezes"] == out["outreach"] == out["verdicts"] == []


# ----------------------------------------------------------------------------- rule 8
def test_rule8_duplicate_deliveries_change_nothing(policy):
    sus = addr("exact-dup-suspect")
    once = [transfer("a1", at(0), "alice", SCAM),
            transfer("p1x", at(1), "p1", sus), report("r1", at(2), "p1", suspect=sus)]
    twice = once + [transfer("a1", at(0), "alice", SCAM),  # the same records again
                    transfer("a1", at(0), "alice", SCAM),
                    report("r1", at(2), "p1", suspect=sus)]
    a, b = _run(once, policy), _run(twice, policy)
    for name in ("holds", "resolutions", "freezes", "outreach", "verdicts", "dead_letter"):
        assert a[name] == b[name], name
    assert holds(b) == [("a1", "alice", at(0), at(0) + H)]
    assert [x.report_id for x in b["verdicts"]] == ["r1"]


# ----------------------------------------------------------------------------- rule 9
def test_rule9_lookalike_held_naming_the_payee_paid_again_held_again(policy):
    genuine = "0xabc" + "1" * 33 + "9f3e"
    fake = "0xabc" + "7" * 33 + "9f3e"
    events = [
        transfer("g1", at(0), "erin", genuine),
        transfer("f1", at(days=1), "erin", fake),
        transfer("g2", at(days=2), "erin", genuine),
        transfer("f2", at(days=3), "erin", fake),
    ]
    out = _run(events, policy)
    assert holds(out) == [("f1", "erin", at(days=1), at(days=2)),
                          ("f2", "erin", at(days=3), at(days=4))]
    assert all(f"lookalike_of={genuine}" in h.reasons for h in out["holds"])
    assert outreach(out) == [("erin", "WARNING", "APP", at(days=1), "f1"),
                             ("erin", "WARNING", "APP", at(days=3), "f2")]
    assert all(f"lookalike_of={genuine}" in o.reasons for o in out["outreach"])
    assert resolutions(out) == [("f1", "RELEASED", at(days=2)), ("f2", "RELEASED", at(days=4))]
