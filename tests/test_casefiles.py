"""Case files (issue 12): every frozen or blacklisted address and every address with a SCAM
or REVIEW verdict gets a bounded case file: transfers with their fate, reports, verdicts,
the freeze, list entries, outreach, a timeline and the totals."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from core.actions import short_id
from core.casefiles import CASES, CaseBook, latest_cases
from core.events import (
    FeaturedReport,
    FeaturedTransfer,
    ReportIn,
    ScoredReport,
    ScoredTransfer,
)
from core.machine import END_OF_TIME, run_history, step
from core.policy import DAY, Policy
from core.reference import run_reference
from schemas.codecs import write_records
from schemas.rows import BlacklistUpdate, Freeze, Hold, HoldResolution, Outreach, ScamReport
from tests.scenario import addr, at, collect, decide, listing, outcome, profile, report, transfer
from transforms.side import load_side

X = addr("collector-x")
LISTED = addr("listed-later")
FRIEND = addr("friend")


@pytest.fixture
def policy(tmp_path) -> Policy:
    profs = tmp_path / "profiles.avro"
    rows = [profile(u, at(days=-400)) for u in ("alice", "bob", "carol", "dave", "erin")]
    write_records(profs, "UserProfile", rows, "avro")
    return Policy(use_models=False, profiles_path=str(profs), assessments_per_day=0,
                  hold_escalation=False)  # the plain 24h hold (rule 14: test_pyramid.py)


def _events():
    return [
        transfer("t1", at(hours=1), "alice", X, usd=100.0),
        transfer("t2", at(hours=2), "bob", X, usd=200.0),
        transfer("f1", at(hours=2), "dave", FRIEND, usd=50.0),  # no case for FRIEND
        report("r1", at(hours=3), "alice", transfer_id="t1", text="<b>fake</b> exchange"),
        outcome("c1", at(hours=4), "ADDRESS", X),  # confirmed: freeze
        transfer("t3", at(hours=5), "carol", X, usd=300.0),  # to a frozen address: refunded
        listing(LISTED, at(hours=6), source="vendor_q"),
        transfer("t4", at(hours=7), "erin", LISTED, usd=40.0),  # held, released at +24h
    ]


def _load(items):
    return [json.loads(x) for x in items]


def test_frozen_address_gets_a_case_file_with_fates_reports_outreach_and_totals(policy):
    out = decide(_events(), policy)
    cases = {c.address: c for c in out["cases"]}
    assert set(cases) == {X, LISTED}
    c = cases[X]
    # alice's report (she paid X) gets a REVIEW verdict from the rules: the case opens there
    assert c.triggers == ["frozen", "verdict:REVIEW"]
    assert c.opened_at == at(hours=3)
    assert [(t["transfer_id"], t["sender"], t["usd_value"], t["fate"])
            for t in _load(c.transfers)] == [
        ("t1", "alice", 100.0, "LOST"), ("t2", "bob", 200.0, "LOST"),
        ("t3", "carol", 300.0, "REFUNDED")]
    (rep,) = _load(c.reports)
    assert (rep["report_id"], rep["reporter"], rep["text"], rep["established"]) == (
        "r1", "alice", "<b>fake</b> exchange", True)  # alice paid X: established
    (ver,) = _load(c.verdicts)
    assert (ver["report_id"], ver["verdict"]) == ("r1", "REVIEW")
    assert ver["model_version"]
    assert json.loads(c.freeze)["at"] == at(hours=4)
    # bob lost money and never reported: a silent-sufferer chat; carol: a warning
    assert sorted((o["user"], o["kind"]) for o in _load(c.outreach)) == [
        ("bob", "SILENT_SUFFERER"), ("carol", "WARNING")]
    assert (c.victims, c.usd_sent, c.usd_lost, c.usd_refunded, c.usd_held) == (
        3, 600.0, 300.0, 300.0, 0.0)
    times = [e["at"] for e in _load(c.timeline)]
    assert times == sorted(times) and len(times) == len(c.timeline)
    assert c.transfers_omitted == c.timeline_omitted == 0


def test_listed_address_case_shows_the_list_entry_and_the_released_hold(policy):
    c = {c.address: c for c in decide(_events(), policy)["cases"]}[LISTED]
    assert c.triggers == ["blacklisted:vendor_q"]
    assert [(b["action"], b["source"]) for b in _load(c.blacklist)] == [("ADD", "vendor_q")]
    assert [(t["transfer_id"], t["fate"]) for t in _load(c.transfers)] == [("t4", "RELEASED")]
    assert (c.usd_lost, c.usd_refunded, c.updated_at) == (40.0, 0.0, at(hours=31))


def test_items_are_capped_with_counts_of_what_was_left_out(policy):
    p = dataclasses.replace(policy, case_max_items=2)
    events = [listing(LISTED, at(0), source="vendor_q")] + [
        transfer(f"t{i}", at(hours=1 + i), f"u{i}", LISTED, usd=10.0) for i in range(5)]
    (c,) = decide(events, p)["cases"]
    assert [t["transfer_id"] for t in _load(c.transfers)] == ["t0", "t1"]
    assert c.transfers_omitted == 3
    # timeline: the listing, then per transfer: itself, its hold, its release, its warning
    assert len(c.timeline) == 2 and c.timeline_omitted == 1 + 5 * 4 - 2
    assert len(c.outreach) == 2 and c.outreach_omitted == 3
    assert (c.victims, c.usd_sent) == (5, 50.0)  # totals cover every transfer


def test_review_verdict_opens_a_case():
    rep = report("r9", at(0), "zed", suspect=X, category="ROMANCE", text="met online")
    sr = ScoredReport(FeaturedReport(ReportIn(rep, at(0), X), at(0),
                                     {"reporter_paid_suspect": 0.0}), at(0), 0.6, "REVIEW",
                      "m-7", ("reporters_24h=1",))
    ((tag, t, c),) = run_history(CaseBook(Policy()), X, [sr])
    # issued case_update (10 min) after the change
    assert (tag, t, c.triggers, c.opened_at, c.updated_at) == (
        CASES, at(minutes=10), ["verdict:REVIEW"], at(0), at(0))
    (v,) = _load(c.verdicts)
    assert (v["verdict"], v["score"], v["model_version"]) == ("REVIEW", 0.6, "m-7")
    assert _load(c.reports)[0]["established"] is False


def test_the_case_does_not_depend_on_arrival_order(policy):
    """The stream face's 'arrival' ordering may feed a case's events in any order."""
    ref = run_reference(_split(_events()), policy, side=load_side(policy))
    events = [e for name in ("scored", "holds", "resolutions", "freezes", "outreach")
              for e in ref[name]]
    events += [e for e in _events() if type(e).__name__ == "BlacklistUpdate"]
    m = CaseBook(policy)
    ordered = latest_cases(v for tag, _t, v in _run_all(m, sorted(events, key=m.sort_key)))
    for seed in range(5):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        assert latest_cases(v for _tag, _t, v in _run_all(m, shuffled)) == ordered


def test_a_busy_case_is_reissued_at_most_once_per_case_update(policy):
    """Changes within ``case_update`` after the first are batched into one version."""
    events = [listing(LISTED, at(0), source="vendor_q")] + [
        transfer(f"t{i}", at(minutes=2 * i), f"u{i}", LISTED) for i in range(1, 9)]
    ref = run_reference(_split(events), policy, side=load_side(policy))
    issued = sorted((c.version, c.updated_at) for c in ref["cases"])
    # Each transfer brings 3 events (itself, its hold, its warning); a deadline fires
    # before the events at its time. Listing at 0 -> issued at 10 min with t1..t4 (13
    # events, last at 8 min); t5 at 10 -> issued at 20 with t5..t8 (25, last at 16); the
    # releases at 24h + 2..16 min: at 24h+12 with five of them (30), at 24h+22 with the
    # rest (33).
    assert issued == [
        (13, at(minutes=8)), (25, at(minutes=16)), (30, at(hours=24, minutes=10)),
        (33, at(hours=24, minutes=16))]


def test_both_faces_and_the_reference_agree(policy):
    """A last, unrelated event a day after the release: Beam's local runner lets the
    watermark jump to the end of input ahead of pending timers, and the case step's own
    expiry timer would then fire before the release reached it (README, "What the local
    runner does not give you"); on Dataflow / Flink timers hold the watermark."""
    events = _events() + [transfer("f2", at(hours=60), "dave", FRIEND, usd=5.0)]
    ref = latest_cases(run_reference(_split(events), policy, side=load_side(policy))["cases"])
    assert [c.address for c in ref] == sorted([X, LISTED], key=lambda a: _case_id(a))
    assert collect(events, policy, "batch")["cases"] == ref
    assert collect(events, policy, "stream")["cases"] == ref


def _case_id(address):
    from core.actions import short_id

    return short_id("case", address)


def _split(events):
    from tests.scenario import split_inputs

    return split_inputs(events)


def _run_all(m, events):
    """Events fed one by one as they come (no sorting), per address, like the stream face."""
    from core.casefiles import about_an_address, case_key

    states: dict = {}
    for e in events:
        if not about_an_address(e):
            continue
        k = case_key(e)
        s = states.get(k) or m.new_state(k)
        states[k], out = step(m, k, s, e)
        yield from out
    for s in states.values():  # the end of input: pending versions are issued
        yield from m.advance(s, END_OF_TIME)


def test_every_item_of_a_case_file_in_full():
    """The list entry, the reports (established: the reporter paid the suspect and is not
    a fresh account), the verdicts (score to 4 places), the freeze (verdict score to 4
    places) and the timeline lines, each written out from the event it records; the
    network from the first event that names one, the owner from the first that names a
    user behind the address."""
    p = Policy(case_max_items=10)
    lst = BlacklistUpdate(X, "TRON", "ADD", at(0), "vendor_q", "phishing kit")

    def scored(rid, t, reporter, paid, fresh, score, verdict, owner=None):
        rep = ScamReport(rid, t, reporter, None, X, owner, "ROMANCE", f"text {rid}", 250.0)
        feats = {"reporter_paid_suspect": paid, "reporter_fresh": fresh}
        return ScoredReport(FeaturedReport(ReportIn(rep, t, X), t, feats), t, score,
                            verdict, "m-3", ("reporters_24h=2",))

    r1 = scored("r1", at(1), "ann", 1.0, False, 0.612345, "REVIEW", owner="mallory")
    r2 = scored("r2", at(2), "bea", 1.0, True, 0.2, "NOT_SCAM")  # fresh: not established
    r3 = scored("r3", at(3), "cy", 0.0, False, 0.2, "NOT_SCAM")  # never paid: not established
    fr = Freeze("fz1", X, "someone-else", at(4), 0.876543, ["r1"], ["verdict=SCAM"])
    out = run_history(CaseBook(p), X, [lst, r1, r2, r3, fr])
    c = latest_cases(v for _tag, _t, v in out)[0]
    assert (c.network, c.user_id) == ("TRON", "mallory")
    assert c.triggers == ["blacklisted:vendor_q", "frozen", "verdict:REVIEW"]
    assert _load(c.blacklist) == [
        {"at": at(0), "action": "ADD", "source": "vendor_q", "reason": "phishing kit"}]
    assert _load(c.reports) == [
        {"report_id": rid, "at": t, "reporter": who, "category": "ROMANCE",
         "text": f"text {rid}", "claimed_loss_usd": 250.0, "established": est}
        for rid, t, who, est in (("r1", at(1), "ann", True), ("r2", at(2), "bea", False),
                                 ("r3", at(3), "cy", False))]
    assert _load(c.verdicts) == [
        {"report_id": "r1", "at": at(1), "verdict": "REVIEW", "score": 0.6123,
         "model_version": "m-3", "reasons": ["reporters_24h=2"]},
        {"report_id": "r2", "at": at(2), "verdict": "NOT_SCAM", "score": 0.2,
         "model_version": "m-3", "reasons": ["reporters_24h=2"]},
        {"report_id": "r3", "at": at(3), "verdict": "NOT_SCAM", "score": 0.2,
         "model_version": "m-3", "reasons": ["reporters_24h=2"]}]
    assert json.loads(c.freeze) == {"freeze_id": "fz1", "at": at(4), "verdict_score": 0.8765,
                                    "report_ids": ["r1"], "reasons": ["verdict=SCAM"]}
    assert _load(c.timeline) == [
        {"at": at(0), "event": "list ADD by vendor_q"},
        {"at": at(1), "event": "report r1 by ann (ROMANCE): verdict REVIEW 0.61"},
        {"at": at(2), "event": "report r2 by bea (ROMANCE): verdict NOT_SCAM 0.20"},
        {"at": at(3), "event": "report r3 by cy (ROMANCE): verdict NOT_SCAM 0.20"},
        {"at": at(4), "event": "frozen (verdict=SCAM)"}]


def test_the_owner_and_network_come_from_a_freeze_when_nothing_else_names_them():
    fr = Freeze("fz1", X, "mallory", at(0), 0.9, ["r1"], ["verdict=SCAM"])
    rm = BlacklistUpdate(X, "ETH", "REMOVE", at(1), "vendor_q", None)
    add = BlacklistUpdate(X, "ETH", "ADD", at(2), "vendor_z", None)
    out = run_history(CaseBook(Policy()), X, [add, fr, rm])
    c = latest_cases(v for _tag, _t, v in out)[0]
    assert (c.user_id, c.network) == ("mallory", "ETH")
    assert c.triggers == ["blacklisted:vendor_z", "frozen"]  # a REMOVE opens nothing
    assert _load(c.blacklist) == [
        {"at": at(1), "action": "REMOVE", "source": "vendor_q", "reason": None},
        {"at": at(2), "action": "ADD", "source": "vendor_z", "reason": None}]
    assert _load(c.timeline)[1:] == [{"at": at(1), "event": "list REMOVE by vendor_q"},
                                     {"at": at(2), "event": "list ADD by vendor_z"}]


def test_a_scam_verdict_opens_a_case_and_a_report_without_payment_facts_is_unestablished():
    rep = report("r9", at(0), "zed", suspect=X, category="ROMANCE", text="met online")
    sr = ScoredReport(FeaturedReport(ReportIn(rep, at(0), X), at(0), {}), at(0), 0.95,
                      "SCAM", "m-7", ())
    ((_tag, _t, c),) = run_history(CaseBook(Policy()), X, [sr])
    assert c.triggers == ["verdict:SCAM"] and c.opened_at == at(0)
    assert _load(c.reports)[0]["established"] is False


def test_a_case_is_forgotten_a_lookback_after_its_last_event_or_issued_first():
    p = Policy()
    m = CaseBook(p)
    s = m.new_state(X)
    assert m.next_deadline(s) is None
    s, _ = step(m, X, s, BlacklistUpdate(X, "ETH", "ADD", at(0), "vendor_q", None))
    assert m.next_deadline(s) == at(0) + p.case_update_ms  # the new version is due first
    assert [t for _tag, t, _c in m.advance(s, at(0) + p.case_update_ms)] == [
        at(0) + p.case_update_ms]
    assert m.next_deadline(s) == at(0) + p.lookback_ms  # then only the expiry
    m.advance(s, at(0) + p.lookback_ms - 1)
    assert not m.is_empty(s)
    m.advance(s, at(0) + p.lookback_ms)
    assert m.is_empty(s) and m.next_deadline(s) is None


def test_latest_cases_keeps_the_version_that_saw_most_then_the_latest():
    base = next(iter(decide(_events(), Policy(use_models=False, assessments_per_day=0,
                                              hold_escalation=False))["cases"]))
    v5, v7 = base._replace(version=5), base._replace(version=7)
    v7_later = base._replace(version=7, updated_at=base.updated_at + 1)
    other = base._replace(case_id="0", version=1)
    assert latest_cases([v7, v5]) == latest_cases([v5, v7]) == [v7]
    assert latest_cases([v7_later, v7, v5]) == [v7_later]
    assert latest_cases([v5, other]) == [other, v5]  # sorted by case id


def test_the_freeze_line_joins_its_reasons_and_keeps_their_first_120_characters():
    short = Freeze("fz1", X, None, at(0), 0.9, ["r1"], ["verdict=SCAM", "reporters=3"])
    long = Freeze("fz2", X, None, at(0), 0.9, ["r1"], ["x" * 100, "y" * 100])
    for fr, line in ((short, "frozen (verdict=SCAM; reporters=3)"),
                     (long, "frozen (" + "x" * 100 + "; " + "y" * 18 + ")")):
        c = latest_cases(v for _tag, _t, v in run_history(CaseBook(Policy()), X, [fr]))[0]
        assert _load(c.timeline) == [{"at": at(0), "event": line}]


def _st(tid, t, user, usd):
    tr = transfer(tid, t, user, X, usd=usd)
    return ScoredTransfer(FeaturedTransfer(tr, t, {}), t, 0.42, "rules")


def _hold(tid, t, user, usd, reasons):
    return Hold(f"h-{tid}", tid, user, X, "ETH", f"{usd / 2000:.6f}", usd, t, t + DAY, 0.42,
                reasons)


def test_transfers_fates_outreach_and_totals_of_a_case_in_full():
    """Each transfer item (in time order, not by sender), its fate, the outreach items, the
    timeline line of every kind of event and the totals, from the events themselves."""
    out_ = Outreach("o1", "amy", "WARNING", "APP", at(2), "t2", X, ["blacklist:v"], None)
    events = [_st("t1", at(1), "zoe", 100.0), _hold("t1", at(1), "zoe", 100.0,
                                                     ["destination_frozen"]),
              _st("t2", at(2), "amy", 50.0), _hold("t2", at(2), "amy", 50.0, ["blacklist:v"]),
              out_, HoldResolution("h-t1", "t1", "REFUNDED", at(3), "destination frozen",
                                   "zoe", X, 100.0)]
    p = Policy()
    out = run_history(CaseBook(p), X, events, until=at(4) + p.case_update_ms)
    c = latest_cases(v for _tag, _t, v in out)[0]
    assert c.case_id == short_id("case", X) and c.freeze is None
    assert (c.opened_at, c.triggers) == (at(1), ["frozen"])
    assert _load(c.transfers) == [
        {"transfer_id": "t1", "at": at(1), "sender": "zoe", "usd_value": 100.0,
         "amount": "0.050000", "asset": "ETH", "fate": "REFUNDED"},
        {"transfer_id": "t2", "at": at(2), "sender": "amy", "usd_value": 50.0,
         "amount": "0.025000", "asset": "ETH", "fate": "HELD"}]
    assert _load(c.outreach) == [
        {"outreach_id": "o1", "at": at(2), "user": "amy", "kind": "WARNING", "channel": "APP"}]
    assert [e["event"] for e in _load(c.timeline)] == [
        "transfer t1: 0.050000 ETH ($100.00) from zoe, risk 0.42", "hold h-t1 on transfer t1",
        "transfer t2: 0.025000 ETH ($50.00) from amy, risk 0.42", "hold h-t2 on transfer t2",
        "outreach WARNING on APP to amy", "transfer t1 refunded: destination frozen"]
    assert (c.victims, c.usd_sent, c.usd_lost, c.usd_refunded, c.usd_held) == (
        2, 150.0, 0.0, 100.0, 50.0)
    assert (c.transfers_omitted, c.reports_omitted, c.verdicts_omitted, c.blacklist_omitted,
            c.outreach_omitted, c.timeline_omitted) == (0, 0, 0, 0, 0, 0)


def test_a_hold_without_destination_frozen_opens_no_case_and_old_transfers_leave_it():
    p = Policy()
    quiet = run_history(CaseBook(p), X, [_st("t1", at(1), "zoe", 10.0),
                                         _hold("t1", at(1), "zoe", 10.0, ["blacklist:v"])])
    assert quiet == []  # no trigger: nothing issued
    late = at(1) + p.lookback_ms + 1
    out = run_history(CaseBook(p), X, [
        _st("t0", at(1), "old", 10.0), _st("tm", at(1) + p.lookback_ms // 2, "mid", 10.0),
        _st("t1", late - 1, "zoe", 10.0), _hold("t1", late, "zoe", 10.0,
                                                 ["destination_frozen"])],
        until=late + p.case_update_ms)
    c = latest_cases(v for _tag, _t, v in out)[0]
    # t0 is more than a lookback older than the case's last event: not in the file
    assert [t["transfer_id"] for t in _load(c.transfers)] == ["tm", "t1"]
    assert (c.victims, c.usd_sent) == (2, 20.0)
