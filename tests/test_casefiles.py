"""Case files (issue 12): every frozen or blacklisted address and every address with a SCAM
or REVIEW verdict gets a bounded case file: transfers with their fate, reports, verdicts,
the freeze, list entries, outreach, a timeline and the totals."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from core.casefiles import CASES, CaseBook, latest_cases
from core.events import FeaturedReport, ReportIn, ScoredReport
from core.machine import END_OF_TIME, run_history, step
from core.policy import Policy
from core.reference import run_reference
from schemas.codecs import write_records
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
