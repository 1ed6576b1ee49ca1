"""The report's issue-12 sections: assessments per day against the cap, calls asked for
against calls made, the case list and one escaped page per case."""

from __future__ import annotations

import json

from report import proactive as pr
from schemas.codecs import write_records
from schemas.rows import CaseFile, Outreach
from tests.scenario import at

EVIL = "<script>alert(1)</script>"


def _case(cid: str, address: str, text: str) -> CaseFile:
    rep = json.dumps({"report_id": "r1", "at": at(0), "reporter": "u1", "category": "OTHER",
                      "text": text, "claimed_loss_usd": None, "established": True})
    return CaseFile(cid, address, "ETH", None, at(0), at(1), 3, ["frozen"], [], [rep], [],
                    None, [], [], [json.dumps({"at": at(0), "event": text})], 2, 300.0,
                    100.0, 200.0, 0.0, 0, 0, 0, 0, 0, 4)


def _outreach():
    def o(i, kind, channel, t, reasons=()):
        return Outreach(f"o{i}", f"u{i}", kind, channel, t, None, None, list(reasons))
    return [
        o(1, "RISK_ASSESSMENT", "APP", at(days=1) - 1),
        o(2, "RISK_ASSESSMENT", "APP", at(days=1) - 1),
        o(3, "RISK_ASSESSMENT", "APP", at(days=2) - 1),
        o(4, "INTERVENTION", "CALL", at(hours=3)),
        o(5, "INTERVENTION", "CHAT", at(hours=4), ["vulnerable_user", "call_capacity:rank=2>1"]),
        o(6, "INTERVENTION", "CALL", at(days=1, hours=2)),
        o(7, "WARNING", "APP", at(hours=5)),
    ]


def test_metrics_count_assessments_against_the_cap_and_calls_asked_against_made(tmp_path):
    write_records(tmp_path / "outreach.avro", "Outreach", _outreach(), "avro")
    write_records(tmp_path / "cases.avro", "CaseFile", [_case("c1", "0xa", "x")], "avro")
    m = pr.proactive_metrics(tmp_path, {"assessments_per_day": 2, "calls_per_day": 1})
    a, c, k = m["assessments"], m["calls"], m["cases"]
    assert (a["total"], a["max_per_day"], a["days_at_cap"], a["cap_held"]) == (3, 2, 1, True)
    assert list(a["per_day"].values()) == [2, 1]
    assert (c["asked"], c["made"], c["downgraded_to_chat"], c["capacity_held"]) == (
        3, 2, 1, True)
    assert list(c["per_day"].values()) == [{"asked": 2, "made": 1}, {"asked": 1, "made": 1}]
    assert (k["count"], k["usd_lost"], k["usd_refunded"]) == (1, 100.0, 200.0)


def test_case_pages_are_escaped_and_linked_from_the_report_section(tmp_path):
    cases = [_case("c1", "0x" + "a" * 40, EVIL), _case("../evil", EVIL, "fine")]
    write_records(tmp_path / "cases.avro", "CaseFile", cases, "avro")
    assert pr.write_case_pages(tmp_path) == 2
    pages = sorted(p.name for p in (tmp_path / "cases").iterdir())
    assert pages == ["___evil.html", "c1.html"]  # a hostile id cannot leave the directory
    for name in pages:
        page = (tmp_path / "cases" / name).read_text()
        assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (tmp_path / "cases" / "c1.html").read_text()
    section = pr.proactive_html({"proactive": pr.proactive_metrics(tmp_path, {})}, tmp_path)
    assert "<script>" not in section
    assert "href='cases/c1.html'" in section and "href='cases/___evil.html'" in section
