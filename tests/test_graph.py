"""The graph's routers and keys (``core/graph.py``), in plain Python: which branch
each input takes and what it carries there, and the verdict row of a scored report."""

from __future__ import annotations

from core.events import AddressFact, FeaturedReport, ReportIn, ScoredReport
from core.graph import ROUTERS, split_outcome, split_report, verdict_row
from schemas.rows import DeadLetter, Verdict
from tests.scenario import at, outcome, report

MIXED = "0xAbCd" + "e" * 36  # an EVM address as a case tool may type it


def test_a_report_naming_a_transfer_goes_through_the_transfer_ledger_as_it_is():
    r = report("r1", at(0), "ann", suspect=MIXED, transfer_id="t1")
    assert split_report(r) == ("via_transfer", r)  # the transfer names the suspect


def test_a_report_naming_its_suspect_goes_direct_with_that_suspect():
    r = report("r1", at(0), "ann", suspect=MIXED)
    assert split_report(r) == ("direct", ReportIn(r, at(0), MIXED))
    by_user = r._replace(suspect_address=None, suspect_user_id="mallory")
    assert split_report(by_user) == ("direct", ReportIn(by_user, at(0), "mallory"))


def test_a_report_naming_nothing_is_a_dead_letter_carrying_the_record_as_sorted_json():
    r = report("r9", at(0), "zed", text="gone", category="ROMANCE", loss=12.5)
    branch, dl = split_report(r)
    assert branch == "dead"
    assert dl == DeadLetter(
        "reports",
        '{"category": "ROMANCE", "claimed_loss_usd": 12.5, "description": "gone", '
        f'"event_time": {at(0)}, "report_id": "r9", "reporter_user_id": "zed", '
        '"suspect_address": null, "suspect_user_id": null, "transfer_id": null}',
        "report names neither a suspect (address or user) nor a transfer", at(0))


def test_an_address_outcome_is_a_fact_on_the_normalised_address_keeping_the_subject():
    o = outcome("c1", at(5), "ADDRESS", MIXED, is_scam=False)
    assert split_outcome(o) == ("address", AddressFact(MIXED.lower(), at(5), False, "c1",
                                                       "ADDRESS", MIXED))


def test_transfer_and_report_outcomes_go_to_their_ledgers_unchanged():
    t = outcome("c2", at(5), "TRANSFER", "t1")
    r = outcome("c3", at(5), "REPORT", "r1")
    assert split_outcome(t) == ("transfer", t)
    assert split_outcome(r) == ("report", r)


def test_every_branch_a_router_returns_is_one_it_declares():
    seen = {("reports", split_report(x)[0]) for x in (
        report("a", at(0), "u", transfer_id="t"), report("b", at(0), "u", suspect=MIXED),
        report("c", at(0), "u"))}
    seen |= {("outcomes", split_outcome(outcome("c", at(0), k, "x"))[0])
             for k in ("ADDRESS", "TRANSFER", "REPORT")}
    assert seen == {(r.input, b) for r in ROUTERS for b in r.branches}


def test_the_verdict_row_of_a_scored_report():
    rep = report("r1", at(0), "ann", suspect=MIXED)
    sr = ScoredReport(FeaturedReport(ReportIn(rep, at(0), MIXED.lower()), at(0), {}), at(1),
                      0.93, "SCAM", "m-7", ("reporters_24h=3", "paid=1"))
    assert verdict_row(sr) == Verdict("r1", MIXED.lower(), 0.93, "SCAM", at(1), "m-7", "ann",
                                      ["reporters_24h=3", "paid=1"])


def test_each_global_selection_builds_its_beam_composite_for_the_policy_and_side():
    """The Beam composites themselves run in the graph tests; here: each global step hands
    the policy (and the side data) to the composite it names, before the step it says."""
    from core.graph import GLOBALS, globals_before
    from core.policy import Policy
    from transforms.daily import Assessments, CallCapacity
    from transforms.safetynet import GLOBALS as COMPOSITES

    p, side = Policy(assessments_per_day=3), object()
    assert sorted(COMPOSITES) == sorted(g.label for g in GLOBALS)
    got = {g.label: COMPOSITES[g.label](p, side) for g in GLOBALS}
    assert isinstance(got["Assessments"], Assessments)
    assert (got["Assessments"].policy, got["Assessments"].side) == (p, side)
    assert isinstance(got["CallCapacity"], CallCapacity) and got["CallCapacity"].policy is p
    assert [g.label for g in globals_before("Outreach")] == ["Assessments"]
    assert [g.label for g in globals_before("CaseBook")] == ["CallCapacity"]
    assert globals_before("Score") == ()


def test_ledger_keys_of_every_input_and_a_refusal_naming_the_type():
    from core.graph import _ledger_key

    assert _ledger_key(outcome("c1", at(0), "TRANSFER", "t1")) == "T:t1"
    assert _ledger_key(outcome("c2", at(0), "REPORT", "r1")) == "R:r1"
    assert _ledger_key(report("r2", at(0), "ann", transfer_id="t9")) == "T:t9"
    assert _ledger_key(ReportIn(report("r3", at(0), "ann", suspect=MIXED), at(0), MIXED)) \
        == "R:r3"
    try:
        _ledger_key(DeadLetter("x", "{}", "e", 0))
    except TypeError as e:
        assert str(e) == "no ledger key for DeadLetter"
    else:
        raise AssertionError("a DeadLetter has no ledger key")


def test_side_data_and_step_factories_follow_the_mode():
    """A streaming scorer keeps the last 8 model versions per model, a batch one all; the
    side data says its mode (batch unless told); the counterparty step feeds its featured
    events into the label join."""
    from core.graph import STEPS, VERSIONS_KEPT_STREAMING
    from core.policy import Policy
    from core.profiles import FEATURED
    from transforms.side import load_side

    p = Policy()
    assert load_side(p).mode == "batch" and load_side(p, "stream").mode == "stream"
    make = {s.label: s.make for s in STEPS}
    assert make["Score"](p, load_side(p, "stream")).book.keep == VERSIONS_KEPT_STREAMING == 8
    assert make["Score"](p, load_side(p)).book.keep is None
    assert make["CounterpartyProfile"](p, load_side(p)).feed == FEATURED
