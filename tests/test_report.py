"""The report on hand-made decision files (no pipeline): money figures, escaping, the
threshold sweep, ground truth from case outcomes when there is no truth file."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path

import pytest

from pipelines.backtest import write_scores
from report import build
from report.scores import auc
from schemas import codecs
from schemas.rows import (
    CaseOutcome,
    DeadLetter,
    Freeze,
    Hold,
    HoldResolution,
    Outreach,
    ScamReport,
    Transfer,
    Truth,
    Verdict,
)

T0 = 1_767_225_600_000
H = 3_600_000
SCAM = "0x" + "5c" * 20
SHOP = "0x" + "a1" * 20
EVIL = '<script>alert("x")</script>'
EVIL_ADDR = "<b>0xbad</b>"


def tr(tid, h, user, to, usd):
    return Transfer(tid, T0 + int(h * H), user, to, None, "ETH", "ETH", "1", usd, "WITHDRAWAL")


def hold(tid, h, user, to, usd, score=0.9):
    t = T0 + int(h * H)
    return Hold("h" + tid, tid, user, to, "ETH", "1", usd, t, t + 24 * H, score, ["r"], "rules")


def res(tid, h_placed, h, kind, user, to, usd, reason="x"):
    return HoldResolution("h" + tid, tid, kind, T0 + int(h * H), reason, user, to, usd)


def scenario(tmp: Path, with_truth: bool = True):
    inp, out = tmp / "in", tmp / "out"
    inp.mkdir()
    out.mkdir()
    transfers = [
        tr("t1", 0, "alice", SCAM, 100.0),    # scam, held, refunded (prevented)
        tr("t2", 1, "bob", SCAM, 200.0),      # scam, not held (lost; bob stays silent)
        tr("t3", 2, "carol", SHOP, 50.0),     # legit, held, released after 24h (friction)
        tr("t4", 30, "dave", SCAM, 400.0),    # scam to a frozen address: recovered
        tr("t5", 3, "erin", EVIL_ADDR, 10.0),  # legit, markup in the address
    ]
    codecs.write_records(inp / "transfers.avro", "Transfer", transfers)
    reports = [ScamReport("r1", T0 + 5 * H, "alice", "t1", None, None, "PHISHING", EVIL, 100.0)]
    codecs.write_records(inp / "reports.avro", "ScamReport", reports)
    codecs.write_records(inp / "outcomes.avro", "CaseOutcome",
                         [CaseOutcome("c1", T0 + 40 * H, "ADDRESS", SCAM, True)])
    codecs.write_records(inp / "blacklist.avro", "BlacklistUpdate", [])
    if with_truth:
        truth = [Truth("TRANSFER", t.transfer_id, t.to_address == SCAM,
                       "phishing" if t.to_address == SCAM else None, t.user_id, t.to_address,
                       t.usd_value, t.event_time, None) for t in transfers]
        truth += [Truth("USER", "bob", True, "phishing", "bob", SCAM, 200.0, T0 + H, "silent"),
                  Truth("USER", "alice", True, "phishing", "alice", SCAM, 100.0, T0, "fast"),
                  Truth("ADDRESS", SCAM, True, "phishing", None, SCAM, 700.0, T0, None)]
        codecs.write_records(inp / "truth.avro", "Truth", truth)
    codecs.write_records(out / "holds.avro", "Hold", [
        hold("t1", 0, "alice", SCAM, 100.0), hold("t3", 2, "carol", SHOP, 50.0, 0.8),
        hold("t4", 30, "dave", SCAM, 400.0)])
    codecs.write_records(out / "resolutions.avro", "HoldResolution", [
        res("t1", 0, 6, "REFUNDED", "alice", SCAM, 100.0),
        res("t3", 2, 26, "RELEASED", "carol", SHOP, 50.0),
        res("t4", 30, 30, "REFUNDED", "dave", SCAM, 400.0, "destination frozen")])
    codecs.write_records(out / "freezes.avro", "Freeze", [
        Freeze("f1", SCAM, None, T0 + 6 * H, 0.95, ["r1"], ["verdict:SCAM"])])
    codecs.write_records(out / "outreach.avro", "Outreach", [
        Outreach("o1", "bob", "SILENT_SUFFERER", "CHAT", T0 + 6 * H, "t2", SCAM, ["frozen"]),
        Outreach("o2", EVIL_ADDR, "WARNING", "APP", T0, "t5", EVIL_ADDR, [EVIL])])
    codecs.write_records(out / "verdicts.avro", "Verdict", [
        Verdict("r1", SCAM, 0.95, "SCAM", T0 + 6 * H, "rules", "alice", [])])
    codecs.write_records(out / "dead_letter.avro", "DeadLetter", [
        DeadLetter("transfers", EVIL, "bad <enum>", T0)])
    write_scores(out / "scores.parquet", [
        (t.transfer_id, t.event_time, t.user_id, t.to_address, "ETH", "ETH", t.usd_value, s,
         "rules", False, None)
        for t, s in zip(transfers, (0.9, 0.5, 0.8, 0.2, 0.1), strict=True)])
    return inp, out


def test_money_figures_and_definitions(tmp_path):
    inp, out = scenario(tmp_path)
    m = build.build_report(inp, out, run={"policy": {"hold_ms": 24 * H,
                                                      "hold_threshold": 0.75}})
    s = m["summary"]
    assert (s["scam_transfers"], s["scam_usd"]) == (3, 700.0)
    assert (s["scam_prevented"], s["scam_usd_prevented"]) == (1, 100.0)
    assert (s["scam_recovered"], s["scam_usd_recovered"]) == (1, 400.0)
    assert (s["scam_lost"], s["scam_usd_lost"]) == (1, 200.0)
    assert (s["legit_held"], s["legit_held_usd"], s["legit_hours_held_total"]) == (1, 50.0, 24.0)
    assert s["legit_held_share"] == 0.5
    assert (s["freezes"], s["freezes_on_scam_addresses"]) == (1, 1)
    assert s["freeze_delay_hours_median"] == 1.0  # report at +5h, freeze at +6h
    assert (s["silent_sufferers_reached"], s["silent_sufferers_all"]) == (1, 1)
    assert m["outreach_by_kind"] == {"SILENT_SUFFERER": 1, "WARNING": 1}
    assert m["money_by_typology"]["phishing"]["lost_usd"] == 200.0
    assert json.loads((out / "metrics.json").read_text())["summary"] == s


def test_html_escapes_everything_from_data(tmp_path):
    inp, out = scenario(tmp_path)
    build.build_report(inp, out)
    page = (out / "report.html").read_text()
    assert EVIL not in page and "<b>0xbad</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    # the only script is the page's own (sorting, filtering), allowed by its hash alone
    from report.html import SCRIPT, SCRIPT_CSP

    assert page.count("<script") == 1 and f"<script>{SCRIPT}</script>" in page
    csp = html.unescape(re.search(r'Content-Security-Policy\' content="([^"]*)"', page)[1])
    assert csp.endswith(f"; script-src {SCRIPT_CSP}") and "default-src 'none'" in csp
    assert hashlib.sha256(str(SCRIPT).encode()).digest() == base64.b64decode(SCRIPT_CSP[8:-1])


def test_threshold_sweep_monotone_and_exact(tmp_path):
    inp, out = scenario(tmp_path)
    m = build.build_report(inp, out, html=False)
    sweep = {r["threshold"]: r for r in m["threshold_sweep"]}
    # t4's destination was frozen before it: held whatever the threshold, and *recovered*
    # (the summary's word), not prevented: one definition everywhere
    assert sweep[0.95]["held"] == 1 and sweep[0.95]["prevented"] == 0
    assert (sweep[0.95]["recovered"], sweep[0.95]["recovered_usd"]) == (
        m["summary"]["scam_recovered"], m["summary"]["scam_usd_recovered"]) == (1, 400.0)
    # at 0.5: t1 (0.9), t2 (0.5), t3 (0.8), t4 (frozen); t1 and t2 prevented (freeze at +6h)
    assert sweep[0.5]["held"] == 4 and sweep[0.5]["prevented"] == 2
    assert sweep[0.5]["recovered"] == 1
    assert sweep[0.5]["legit_held"] == 1
    rows = m["threshold_sweep"]
    for lo, hi in zip(rows, rows[1:], strict=False):
        assert hi["held"] <= lo["held"] and hi["prevented_usd"] <= lo["prevented_usd"]


def test_case_outcomes_are_the_truth_without_a_truth_file(tmp_path):
    inp, out = scenario(tmp_path, with_truth=False)
    m = build.build_report(inp, out, html=True)
    s = m["summary"]
    assert s["ground_truth"] == "case outcomes"
    assert s["scam_transfers"] == 3 and s["scam_usd_lost"] == 200.0
    assert s["silent_sufferers_all"] is None
    assert m["money_by_typology"]["phishing"]["scam_n"] == 3  # from the report's category


def test_compare_two_runs(tmp_path):
    inp, out = scenario(tmp_path)
    build.build_report(inp, out, run={"policy": {"use_models": True}})
    other = tmp_path / "other"
    other.mkdir()
    for f in out.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    build.build_report(inp, other, run={"policy": {"use_models": False}}, compare=out)
    page = (other / "report.html").read_text()
    assert "Comparison" in page and "use_models: False vs True" in page


@pytest.mark.parametrize("scores,labels,want", [
    ([0.1, 0.2, 0.3], [False, False, True], 1.0),
    ([0.3, 0.2, 0.1], [False, False, True], 0.0),
    ([0.5, 0.5], [False, True], 0.5),
    ([0.5, 0.5], [True, True], None),
])
def test_auc(scores, labels, want):
    assert auc(scores, labels) == want


# The tables' markup as the Jinja macros of _macros.html made it (report.html.table and
# text_table build it in Python now: the same bytes).
JINJA_TABLES = """{% macro table(head, rows, right=(), cls="", id="", flags=()) -%}
{% if rows %}
{% if rows|length > 15 %}<div class='scrollbox'>{% endif %}
<table{% if cls %} class='{{ cls }}'{% endif %}{% if id %} id='{{ id }}'{% endif %}>\
<thead><tr>{% for c in head %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{%- for row in rows %}{% set outer = loop %}\
<tr{% if flags and flags[outer.index0] %} class='bad'{% endif %}>{% for v in row %}\
<td class={{ v|cell_class(loop.index0, right) }}>{{ v|cell }}</td>{% endfor %}</tr>\
{% endfor -%}
</tbody></table>
{% if rows|length > 15 %}</div>{% endif %}
{% endif %}
{%- endmacro %}
{% macro text_table(head, rows) -%}
{% if rows %}
<table><thead><tr>{% for c in head %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{%- for row in rows %}<tr>{% for v in row %}<td class=l>{{ v|cell }}</td>{% endfor %}\
</tr>{% endfor -%}
</tbody></table>
{% endif %}
{%- endmacro %}"""


@pytest.mark.parametrize("n", [0, 1, 15, 16])
def test_tables_are_the_markup_the_jinja_macros_made(n):
    from markupsafe import Markup

    from report.html import ENV, table, text_table

    jinja = ENV.from_string(JINJA_TABLES.replace("\\\n", "")).module
    cells = [None, 7, 1234.5, True, "<b>'x'&", "2026-01-05 21:40", "two words", "−$1,250",
             Markup("<a href='x'>y</a>")]
    rows = [tuple(cells[(i + j) % len(cells)] for j in range(4)) for i in range(n)]
    head = ["a", "<b>", Markup("<i>c</i>"), 4]
    flags = [i % 3 == 0 for i in range(n)]
    for kw in ({}, {"right": (1,), "cls": "sortable", "id": "t'1", "flags": flags}):
        assert str(table(head, rows, **kw)) == str(jinja.table(head, rows, **kw))
    assert str(text_table(head, rows)) == str(jinja.text_table(head, rows))


def test_templates_escape_every_value_they_print():
    from report.html import ENV, render_string

    assert ENV.autoescape is True
    assert str(render_string("<td>{{ x }}</td>", x=EVIL)) == (
        "<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</td>")
    assert str(render_string("{{ x|usd }} {{ y|pct }}", x=None, y=0.5)) == "– 50.00%"


def test_truth_file_read_once_with_both_holdouts(tmp_path, monkeypatch):
    # the efficacy and escalation figures take their truth rows (CANCELLED, PROMPTED) from
    # the ground truth's read: truth.avro is read once
    inp, out = scenario(tmp_path)
    reads: list = []
    real = codecs.read_batches

    def counted(path, *a, **k):
        reads.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(codecs, "read_batches", counted)
    m = build.build_report(inp, out, run={"policy": {"warning_holdout": 0.5,
                                                      "escalation_holdout": 0.5}})
    assert m["warning_efficacy"] is not None and m["pyramid"]["holdout"] is not None
    assert reads.count("truth.avro") == 1
