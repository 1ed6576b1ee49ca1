"""The reference (plain Python) and the Beam faces decide identically.

One small data set: the simulator's output (300 users, 5 days) merged with a hand-built
scenario laid inside the same days that covers every decision path (blacklist holds from the
snapshot and the live list, rule holds on fan-in, look-alike holds, refunds by case outcome
and by freeze, releases at the deadline, freezes by verdict and by case outcome, a report
burst from fresh accounts that must not freeze, silent sufferers, repeat victims, vulnerable
users, duplicates, dead letters). Where the simulator is absent, the hand-built part alone.

Compared: holds, resolutions, freezes, outreach, verdicts, dead letters, and every transfer's
score, between the reference, the batch face on the FnApiRunner (one worker, and two worker
processes), and the stream face on the BundleBasedDirectRunner fed by a TestStream.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from core.policy import DAY, HOUR, MINUTE, Policy
from core.reference import Stats, decisions, run_reference
from schemas.codecs import write_records
from schemas.rows import DeadLetter
from tests.scenario import collect, listing, outcome, profile, report, transfer
from transforms.side import load_replay, load_side, replay_policy

try:
    import simulator
except ImportError:  # the simulator lands separately
    simulator = None

SIM_START = 1_767_571_200_000  # the simulator's default start (2026-01-05T00:00Z)
S = SIM_START + DAY  # the hand-built scenario starts a day in


def a(tag: str) -> str:
    """A distinct EVM address per tag (no accidental look-alikes)."""
    return "0x" + hashlib.sha1(tag.encode()).hexdigest()[:40]


def h(hours: float = 0, minutes: float = 0) -> int:
    return S + int(hours * HOUR + minutes * MINUTE)


GEN = "0xabc" + "1" * 33 + "1234"  # a genuine payee
LOOK = "0xabc" + "2" * 33 + "1234"  # its look-alike


# When each step of the hand-built scenario happens. SPREAD, as first written: every step
# at an hour (or minutes) of its own. COMPACT, for the stream face, where each distinct
# event time is a watermark step through the whole graph: the independent stories share
# times (they have no user and no address in common, so no step sees two of them under one
# key), and only the steps of one story that meet under one key (a user, an address) keep
# times of their own, in the same order as in SPREAD: 10 distinct times instead of 31.
# A series ``(first, minutes)`` puts its i-th event ``i * minutes`` after the first.
SPREAD = {
    "bl": h(1), "blv": h(2), "rvbl": h(20),  # the snapshot-listed BL
    "fan": (h(3), 3), "rvfan": h(3, 1), "fan_report": h(4, 40), "fan_case": h(5),
    "sus": (h(6), 5), "rep1": h(7), "rep2": h(7, 5), "sus4": h(8),
    "bomb": (h(7, 30), 1), "bomb_case": h(9),
    "c1": h(9), "c1_case": h(10),
    "gen": h(1), "look1": h(12), "look2": h(13), "gen2": h(14),
    "live1": h(2), "add": h(14), "live2": h(15), "remove": h(16), "live3": h(17),
    "dead": h(3), "dead_case": h(4),
}
COMPACT = {
    "bl": h(1), "blv": h(1, 1), "rvbl": h(4),
    "fan": (h(1), 3), "rvfan": h(1, 1), "fan_report": h(2), "fan_case": h(3),
    "sus": (h(1), 3), "rep1": h(1, 12), "rep2": h(1, 15), "sus4": h(2),
    "bomb": (h(1, 3), 3), "bomb_case": h(2),
    "c1": h(1), "c1_case": h(2),
    "gen": h(1), "look1": h(1, 3), "look2": h(1, 6), "gen2": h(1, 9),
    "live1": h(1), "add": h(1, 3), "live2": h(1, 6), "remove": h(1, 9), "live3": h(1, 12),
    "dead": h(1, 1), "dead_case": h(1, 3),
}


def hand_events(n_fan: int = 30, n_bomb: int = 10, when: dict = SPREAD) -> tuple[list, list,
                                                                                   list]:
    """(events, snapshot rows, profile rows) of the hand-built scenario: ``n_fan`` senders
    into the fan-in address (more than ``Policy.fan_in_rule``), ``n_bomb`` fresh reporters;
    the times of its steps from ``when``."""
    BL, FAN, SUS, MERCH, C, LIVE = (a(x) for x in ("bl", "fan", "sus", "merch", "c", "live"))
    old, fresh = S - 400 * DAY, S - DAY

    def series(name: str, i: int) -> int:
        first, minutes = when[name]
        return first + i * minutes * MINUTE

    ev = []
    # Rule 1: snapshot blacklist -> hold + WARNING; vulnerable -> INTERVENTION; released.
    t1 = transfer("h-t-bl1", when["bl"], "h-u1", BL)
    ev += [t1, t1]  # a duplicate delivery (rule 8)
    ev.append(transfer("h-t-blv", when["blv"], "h-uv", BL))
    # Rule 2 + 5: 30 fresh senders into one new address within 90 min -> fan-in rule holds;
    # then a case outcome confirms it: refunds, freeze, silent sufferers (not the reporter).
    for i in range(n_fan):
        ev.append(transfer(f"h-t-fan{i:02d}", series("fan", i), f"h-f{i:02d}", FAN,
                           usd=50 + i))
    ev.append(transfer("h-t-rvfan", when["rvfan"], "h-rv", FAN, usd=900))
    ev.append(report("h-r-fan03", when["fan_report"], "h-f03", transfer_id="h-t-fan03"))
    ev.append(outcome("h-c-fan", when["fan_case"], "ADDRESS", FAN))
    # Rule 4: two established reporters who paid the suspect -> SCAM verdict -> freeze;
    # a third payer never reports -> silent sufferer; later transfer to it -> held, refunded.
    ev += [transfer("h-t-sus1", series("sus", 0), "h-r1", SUS, usd=700),
           transfer("h-t-sus2", series("sus", 1), "h-r2", SUS, usd=800),
           transfer("h-t-sus3", series("sus", 2), "h-r3", SUS, usd=300),
           transfer("h-t-susrv", series("sus", 3), "h-rv", SUS, usd=400)]
    rep1 = report("h-r-sus1", when["rep1"], "h-r1", transfer_id="h-t-sus1")
    ev += [rep1, rep1, report("h-r-sus2", when["rep2"], "h-r2", transfer_id="h-t-sus2")]
    ev.append(transfer("h-t-sus4", when["sus4"], "h-r4", SUS))
    # Rule 4: a burst of reports from fresh accounts that never paid -> no freeze.
    for i in range(n_bomb):
        ev.append(report(f"h-r-bomb{i}", series("bomb", i), f"h-b{i}", suspect=MERCH,
                         category="FAKE_PLATFORM"))
    ev.append(outcome("h-c-bomb0", when["bomb_case"], "REPORT", "h-r-bomb0", is_scam=False))
    # Rule 3: a held transfer confirmed as a scam by a TRANSFER case outcome -> refunded.
    ev.append(transfer("h-t-c1", when["c1"], "h-c1", C))
    ev.append(outcome("h-c-c1", when["c1_case"], "TRANSFER", "h-t-c1"))
    # Rule 9: look-alike of a known payee -> held (twice), warning once (cool-down).
    ev += [transfer("h-t-gen", when["gen"], "h-l1", GEN),
           transfer("h-t-look1", when["look1"], "h-l1", LOOK),
           transfer("h-t-look2", when["look2"], "h-l1", LOOK),
           transfer("h-t-gen2", when["gen2"], "h-l1", GEN)]
    # Live list: a sender before the ADD is a silent sufferer; after it, held; after the
    # REMOVE, passed.
    ev.append(transfer("h-t-live1", when["live1"], "h-lv1", LIVE))
    ev.append(listing(LIVE, when["add"], "ADD", "live_vendor"))
    ev.append(transfer("h-t-live2", when["live2"], "h-lv2", LIVE))
    ev.append(listing(LIVE, when["remove"], "REMOVE", "live_vendor"))
    ev.append(transfer("h-t-live3", when["live3"], "h-lv3", LIVE))
    # Rule 1: a repeat victim (two confirmed losses above) -> INTERVENTION on CALL.
    ev.append(transfer("h-t-rvbl", when["rvbl"], "h-rv", BL))
    # Rule 7: dead letters.
    ev.append(report("h-r-none", when["dead"], "h-u1"))  # names neither suspect nor transfer
    ev.append(report("h-r-ghost", when["dead"], "h-u1", transfer_id="h-t-never"))
    ev.append(outcome("h-c-ghost", when["dead_case"], "TRANSFER", "h-t-never-either"))
    snapshot = [listing(BL, S - 10 * DAY, "ADD", "hand_vendor"),
                listing(C, S - 10 * DAY, "ADD", "hand_vendor")]
    profiles = [profile("h-uv", old, vulnerable=True), profile("h-r1", old),
                profile("h-r2", old), profile("h-r3", old)]
    profiles += [profile(f"h-b{i}", fresh) for i in range(n_bomb)]
    profiles += [profile(f"h-f{i:02d}", fresh) for i in range(n_fan)]
    return ev, snapshot, profiles


def _make_case(d, with_simulator: bool, small: bool = False):
    """(events, policy, reference decisions) of the hand-built scenario, merged with the
    simulator's output when asked and available."""
    from schemas.codecs import read_records
    from tests.scenario import split_inputs

    events, snapshot, profiles = hand_events(6, 3, COMPACT) if small else hand_events()
    snap_paths = []
    if with_simulator and simulator is not None:
        sim = d / "sim"
        simulator.generate(sim, users=300, days=5, seed=7)
        pol = replay_policy(sim)
        snap_paths += list(pol.blacklist_paths)
        for rows in load_replay(sim).values():
            events += [r for r in rows if not isinstance(r, DeadLetter)]
        if pol.profiles_path:
            profiles += list(read_records(pol.profiles_path, "UserProfile"))
    write_records(d / "hand_snapshot.avro", "BlacklistUpdate", snapshot)
    write_records(d / "profiles.avro", "UserProfile", profiles)
    policy = Policy(blacklist_paths=tuple(snap_paths) + (str(d / "hand_snapshot.avro"),),
                    profiles_path=str(d / "profiles.avro"),
                    fan_in_rule=4 if small else Policy.fan_in_rule)
    ref = decisions(run_reference(split_inputs(events), policy, Stats(), load_side(policy)))
    return events, policy, ref


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The merged data set (simulator + hand-built)."""
    return _make_case(tmp_path_factory.mktemp("reference_case"), with_simulator=True)


@pytest.fixture(scope="module")
def hand_case(tmp_path_factory):
    """The hand-built scenario alone, shrunk (6 fan-in senders against a fan-in rule of 4,
    3 fresh reporters), small enough for a TestStream run: each distinct event time is one
    watermark step through nine stateful steps, ~1-2 s each on the direct runner."""
    return _make_case(tmp_path_factory.mktemp("reference_hand"), with_simulator=False,
                      small=True)


def test_reference_covers_every_decision_path(case):
    _, _, ref = case
    res = Counter(r.resolution for r in ref["resolutions"])
    assert res["REFUNDED"] >= 3 and res["RELEASED"] >= 2
    kinds = Counter(o.kind for o in ref["outreach"])
    assert kinds["SILENT_SUFFERER"] >= 20 and kinds["INTERVENTION"] >= 2
    assert kinds["WARNING"] >= 2 and kinds["HOLD_NOTICE"] >= 1
    reasons = {r.split(":")[0].split("=")[0] for hh in ref["holds"] for r in hh.reasons}
    assert {"blacklist", "lookalike_of", "destination_frozen", "fan_in_24h"} <= reasons
    frozen = {f.address for f in ref["freezes"]}
    assert {a("fan"), a("sus"), a("c")} <= frozen and a("merch") not in frozen
    assert any(v.verdict == "SCAM" for v in ref["verdicts"])
    assert len(ref["dead_letter"]) >= 3
    held = {hh.transfer_id for hh in ref["holds"]}
    assert held.isdisjoint({"h-t-live1", "h-t-live3", "h-t-gen", "h-t-gen2"})
    assert {"h-t-live2", "h-t-look1", "h-t-look2", "h-t-sus4", "h-t-c1"} <= held
    # Every hold ends in exactly one resolution (rule 3).
    assert sorted(r.hold_id for r in ref["resolutions"]) == sorted(hh.hold_id
                                                                   for hh in ref["holds"])


def _assert_same(got: dict, ref: dict):
    got = decisions(got)
    for name in ref:
        assert got[name] == ref[name], f"{name} differ"


def test_batch_face_matches_reference(case):
    events, policy, ref = case
    _assert_same(collect(events, policy, "batch"), ref)


def test_batch_two_worker_processes_match_one(case):
    events, policy, ref = case
    got = collect(events, policy, "batch",
                  extra=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    _assert_same(got, ref)


def test_small_case_covers_the_main_paths(hand_case):
    _, _, ref = hand_case
    reasons = {r.split(":")[0].split("=")[0] for hh in ref["holds"] for r in hh.reasons}
    assert {"blacklist", "lookalike_of", "destination_frozen", "fan_in_24h"} <= reasons
    assert {r.resolution for r in ref["resolutions"]} == {"REFUNDED", "RELEASED"}
    assert {"SILENT_SUFFERER", "INTERVENTION", "WARNING"} <= {o.kind for o in ref["outreach"]}
    assert len(ref["freezes"]) >= 3 and len(ref["dead_letter"]) >= 3


@pytest.mark.timeout(1800)
def test_stream_face_with_test_stream_matches_reference(hand_case):
    """The streaming job's runner: BundleBasedDirectRunner, TestStream, the watermark
    following event time (the hand-built data set: a TestStream run costs ~1 s per distinct
    event time here)."""
    events, policy, ref = hand_case
    _assert_same(collect(events, policy, "stream"), ref)
