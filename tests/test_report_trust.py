"""A report an analyst can trust: one definition of "lost" in the summary and the case files
(a report-bombed merchant's honest payers are no victims), wrong freezes flagged in red on
the first screen and the case page, every section linked once from the table of contents,
the comparison's trade-off in words; and, on a small simulation run end to end, the
backtest's closing line counting recovered money and ``report`` writing where it is told.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import re
from pathlib import Path

import apache_beam as beam
import pytest

from pipelines import backtest
from pipelines import report as report_cli
from pipelines import simulate as simulate_cli
from pipelines.backtest import write_scores
from report import build, sections
from report.html import slug
from schemas import codecs
from schemas.rows import (
    BlacklistUpdate,
    CaseFile,
    CaseOutcome,
    Freeze,
    Hold,
    HoldResolution,
    ScamReport,
    Transfer,
    Truth,
    Verdict,
)
from tests.scenario import T0

H = 3_600_000
SCAM = "0x" + "5c" * 20
SHOP = "0x" + "a1" * 20


def _tr(tid, h, user, to, usd):
    return Transfer(tid, T0 + int(h * H), user, to, None, "ETH", "ETH", "1", usd, "WITHDRAWAL")


def _hold(t: Transfer, score=0.9):
    return Hold("h" + t.transfer_id, t.transfer_id, t.user_id, t.to_address, "ETH", "1",
                t.usd_value, t.event_time, t.event_time + 24 * H, score, ["r"], "rules")


def _res(t: Transfer, h, kind, reason="x"):
    return HoldResolution("h" + t.transfer_id, t.transfer_id, kind, T0 + int(h * H), reason,
                          t.user_id, t.to_address, t.usd_value)


def _case(cid, address, users, usd_all):
    """A case file as the job writes it: every sender a "victim", all money "lost"."""
    return CaseFile(cid, address, "ETH", None, T0, T0 + 50 * H, 9, ["frozen"], [], [], [],
                    None, [], [], [], users, usd_all, usd_all, 0.0, 0.0, 0, 0, 0, 0, 0, 0)


def merchant_scenario(tmp: Path, max_items: int = 50):
    """A scam address (3 scam payments: prevented, lost, recovered) and a busy merchant
    (SHOP: 6 honest payments) report-bombed, wrongly frozen at +10h and delisted at +12h;
    the 3 honest payments after the freeze are held and refunded."""
    inp, out = tmp / "in", tmp / "out"
    inp.mkdir()
    out.mkdir()
    scam = [_tr("s1", 0, "alice", SCAM, 100.0), _tr("s2", 1, "bob", SCAM, 200.0),
            _tr("s3", 30, "dave", SCAM, 400.0)]
    shop = [_tr(f"m{i}", 2 * i, f"buyer{i}", SHOP, 50.0 + i) for i in range(6)]
    codecs.write_records(inp / "transfers.avro", "Transfer", scam + shop)
    bomb = [ScamReport(f"b{i}", T0 + 9 * H + i, f"fresh{i}", None, SHOP, None, "OTHER",
                       "SCAM SCAM SCAM", None) for i in range(4)]
    codecs.write_records(inp / "reports.avro", "ScamReport", bomb)
    codecs.write_records(inp / "outcomes.avro", "CaseOutcome",
                         [CaseOutcome("c1", T0 + 40 * H, "ADDRESS", SCAM, True)])
    codecs.write_records(inp / "blacklist.avro", "BlacklistUpdate", [
        BlacklistUpdate(SHOP, "ETH", "REMOVE", T0 + 12 * H, "internal_investigation",
                        "false positive: verified merchant")])
    truth = [Truth("TRANSFER", t.transfer_id, t.to_address == SCAM,
                   "phishing" if t.to_address == SCAM else None, t.user_id, t.to_address,
                   t.usd_value, t.event_time, None) for t in scam + shop]
    truth.append(Truth("ADDRESS", SCAM, True, "phishing", None, SCAM, 700.0, T0, None))
    codecs.write_records(inp / "truth.avro", "Truth", truth)
    late = shop[3:]  # after the freeze: held and refunded at once
    codecs.write_records(out / "holds.avro", "Hold",
                         [_hold(scam[0]), _hold(scam[2])] + [_hold(t, 0.1) for t in late])
    codecs.write_records(out / "resolutions.avro", "HoldResolution", [
        _res(scam[0], 6, "REFUNDED"), _res(scam[2], 30, "REFUNDED", "destination frozen")]
        + [_res(t, t.event_time / H - T0 / H, "REFUNDED", "destination frozen")
           for t in late])
    codecs.write_records(out / "freezes.avro", "Freeze", [
        Freeze("f1", SCAM, None, T0 + 6 * H, 0.95, [], ["case confirmed"]),
        Freeze("f2", SHOP, None, T0 + 5 * H, 0.9, ["b0"], ["verdict:SCAM"])])
    codecs.write_records(out / "verdicts.avro", "Verdict", [
        Verdict(f"b{i}", SHOP, 0.5, "REVIEW", T0 + 9 * H + i, "rules", f"fresh{i}", [])
        for i in range(4)])
    codecs.write_records(out / "cases.avro", "CaseFile", [
        _case("case-scam", SCAM, 3, 700.0),
        _case("case-shop", SHOP, 6, sum(t.usd_value for t in shop))])
    for name in ("outreach", "dead_letter"):
        codecs.write_records(out / f"{name}.avro", codecs_type(name), [])
    write_scores(out / "scores.parquet", [
        (t.transfer_id, t.event_time, t.user_id, t.to_address, "ETH", "ETH", t.usd_value,
         0.9 if t.to_address == SCAM else 0.1, "rules", False, None) for t in scam + shop])
    run = {"policy": {"hold_ms": 24 * H, "hold_threshold": 0.75, "case_max_items": max_items,
                      "use_models": False}}
    return inp, out, run


def codecs_type(name: str) -> str:
    from schemas.streams import OUTPUTS

    return OUTPUTS[name]


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def toc_and_ids(page: str) -> tuple[list, list]:
    """The table of contents' links and the ids of the page's h2 headings, in order."""
    nav = re.search(r"<nav class='toc'>(.*?)</nav>", page, re.S)[1]
    return re.findall(r"href='#([^']+)'", nav), re.findall(r"<h2 id='([^']+)'", page)


def test_case_money_splits_scam_from_honest_and_never_exceeds_the_summary(tmp_path):
    inp, out, run = merchant_scenario(tmp_path)
    m = build.build_report(inp, out, run=run)
    s, k = m["summary"], m["proactive"]["cases"]
    assert (s["scam_usd"], s["scam_usd_lost"]) == (700.0, 200.0)
    # the job's own case totals called all 9 senders victims and all $1,015 lost
    assert (k["victims"], k["usd_lost"], k["usd_refunded"]) == (3, 200.0, 500.0)
    assert k["usd_lost"] <= s["scam_usd_lost"] <= s["scam_usd"]
    assert (k["honest_payers"], k["honest_held"], k["honest_refunded_usd"]) == (
        6, 3, 53.0 + 54.0 + 55.0)
    shop = _text((out / "cases" / "case-shop.html").read_text())
    assert "scam (0 victims) 0 $0 0 $0 $0" in shop
    assert "honest (6 payers) 6 $315 3 $162" in shop
    assert "No scam money went to this address (by the ground truth): its 6 payers are " \
        "honest payers, not victims" in shop


def test_a_wrong_freeze_is_red_on_the_first_screen_and_its_case_page(tmp_path):
    inp, out, run = merchant_scenario(tmp_path)
    build.build_report(inp, out, run=run)
    page = (out / "report.html").read_text()
    first = _text(page[:page.index("<nav class='toc'>")])
    assert ("Wrongful freezes: 1. 1 of 2 freezes hit addresses not known to be scams (truth), "
            "refunding 3 honest payments ($162); 1 frozen address was cleared later") in first
    shop = (out / "cases" / "case-shop.html").read_text()
    alert = _text(re.search(r"<p class='alert'>(.*?)</p>", shop, re.S)[1])
    assert "Wrong freeze" in alert and "not a known scam" in alert
    assert "cleared later: delisted by internal_investigation: false positive" in alert
    assert "<p class='alert'>" not in (out / "cases" / "case-scam.html").read_text()
    # the case table lists it first, in red
    table = page[page.index("<table id='case-table'"):]
    rows = re.findall(r"<tr( class='bad')?><td class=t><a href='cases/([^']+)'", table)
    assert rows[0] == (" class='bad'", "case-shop.html") and rows[1][0] == ""


def test_case_lists_show_the_newest_first_and_count_what_was_left_out(tmp_path):
    inp, out, run = merchant_scenario(tmp_path, max_items=2)
    build.build_report(inp, out, run=run)
    shop = (out / "cases" / "case-shop.html").read_text()
    part = shop[shop.index("<h2>Transfers to the suspect</h2>"):]
    part = part[:part.index("</table>")]
    assert re.findall(r"<td class=[lt]>(m\d)</td>", part) == ["m5", "m4"]
    assert "The newest 2; 4 older left out" in _text(part)
    assert "<h2>Freeze</h2>" in shop and shop.index("<h2>Freeze</h2>") < shop.index(
        "<h2>Holds and refunds</h2>") < shop.index("<h2>Transfers to the suspect</h2>")
    assert "<tbody></tbody>" not in shop  # no empty tables


def test_every_section_is_linked_once_from_the_table_of_contents(tmp_path):
    inp, out, run = merchant_scenario(tmp_path)

    @sections.section("A section from another module", order=66)
    def _extra(page) -> str:
        return "<p>joins the page and its contents by registering</p>"

    try:
        build.build_report(inp, out, run=run)
    finally:
        del sections.REGISTRY["A section from another module"]
    page = (out / "report.html").read_text()
    links, ids = toc_and_ids(page)
    assert links == ids and len(set(ids)) == len(ids)
    for title in ("Why scam money was lost", "Friction: who bears the holds", "Case files",
                  "Daily risk assessments", "Call capacity", "Threshold sweep",
                  "A section from another module"):
        assert slug(title) in ids, title
    assert ids.index("why-scam-money-was-lost") < ids.index("per-typology")
    assert page.count("Holds by reason") == 1


def test_the_comparison_says_the_trade_off_in_words(tmp_path):
    inp, out, run = merchant_scenario(tmp_path)
    build.build_report(inp, out, run=run)
    other = tmp_path / "models"
    other.mkdir()
    for f in out.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    # the other run holds one more honest transfer and prevents bob's $200 too
    b = next(t for t in codecs.read_records(inp / "transfers.avro", "Transfer")
             if t.transfer_id == "s2")
    m0 = next(t for t in codecs.read_records(inp / "transfers.avro", "Transfer")
              if t.transfer_id == "m0")
    holds = list(codecs.read_records(out / "holds.avro", "Hold")) + [_hold(b), _hold(m0)]
    res = list(codecs.read_records(out / "resolutions.avro", "HoldResolution")) + [
        _res(b, 5, "REFUNDED"), _res(m0, 24, "RELEASED")]
    codecs.write_records(other / "holds.avro", "Hold", holds)
    codecs.write_records(other / "resolutions.avro", "HoldResolution", res)
    run2 = {"policy": {**run["policy"], "use_models": True}}
    build.build_report(inp, other, run=run2, compare=out)
    page = (other / "report.html").read_text()
    assert ("Trade-off. models on against rules only: +$200 scam money stopped (+28.57 pp) "
            "for +1 honest hold (+$50 honest USD held, +24 hold-hours)") in _text(page)
    table = page[page.index("id='comparison'"):page.index("id='money'")]
    assert "this run (models on)" in table and "compared run (rules only)" in table
    assert "honest USD held" in table and "legit_held" not in table


def test_did_you_mean_for_a_mistyped_flag(capsys):
    assert report_cli.main(["--input", "a", "--output", "b", "--compre", "c"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean --compare?" in err


def test_progress_ends_at_100_percent(capfd):
    from connectors.reader import CountProgress

    # 25,000 rows of an estimated 27,000 (duplicates and dead letters never reach a stage)
    with beam.Pipeline("FnApiRunner") as p:
        _ = p | beam.Create(range(25_000)) | beam.ParDo(CountProgress("scored", 27_000, True))
    lines = [x for x in capfd.readouterr().err.splitlines() if "scored" in x]
    assert "100.0%" in lines[-1] and "25,000" in lines[-1]


# ------------------------------------------------------------- a small simulation, end to end
@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("trust")
    inp = base / "in"
    assert simulate_cli.main(["--output", str(inp), "--users", "400", "--days", "6",
                              "--seed", "5"]) == 0
    out = base / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # a cap of labels waiting per address that binds
        assert backtest.run(["--input", str(inp), "--output", str(out),
                             "--label_max_waiting", str(LABEL_CAP)]) == 0
    return inp, out, err.getvalue()


LABEL_CAP = 3


def test_records_dropped_at_the_label_cap_are_counted_in_metrics_and_the_report(sim_run):
    _inp, out, _err = sim_run
    m = json.loads((out / "metrics.json").read_text())
    dropped = m["reconciliation"]["dropped_at_caps"]["label records (--label_max_waiting)"]
    assert dropped > 0, "400 users in 6 days pay some address more than 3 times within a week"
    assert dropped == m["counters"]["CounterpartyProfile/label_records_dropped"]
    assert m["run"]["policy"]["label_max_waiting"] == LABEL_CAP
    page = (out / "report.html").read_text()
    row = re.search(r"label records \(--label_max_waiting\)</td>\s*<td[^>]*>([\d,]+)<", page)
    assert row and int(row.group(1).replace(",", "")) == dropped


def test_closing_line_counts_recovered_money(sim_run):
    _inp, out, err = sim_run
    s = json.loads((out / "metrics.json").read_text())["summary"]
    last = err.strip().splitlines()[-1]
    stopped = s["scam_usd_prevented"] + s["scam_usd_recovered"]
    assert s["scam_usd_recovered"] > 0, "the small simulation has money sent to frozen addresses"
    assert (f"${stopped:,.0f} of ${s['scam_usd']:,.0f} scam money stopped "
            f"({stopped / s['scam_usd']:.1%}: ${s['scam_usd_prevented']:,.0f} prevented + "
            f"${s['scam_usd_recovered']:,.0f} recovered), ${s['scam_usd_lost']:,.0f} lost") in last


def test_simulated_report_links_every_section_and_cases_stay_within_scam_money(sim_run):
    _inp, out, _err = sim_run
    page = (out / "report.html").read_text()
    links, ids = toc_and_ids(page)
    assert links == ids and len(set(ids)) == len(ids) and "case-files" in ids
    m = json.loads((out / "metrics.json").read_text())
    s, k = m["summary"], m["proactive"]["cases"]
    assert k["count"] > 0
    assert k["usd_lost"] <= s["scam_usd_lost"] <= s["scam_usd"]
    assert k["scam_usd"] <= s["scam_usd"]


def test_report_writes_where_it_is_told_and_says_what_it_wrote(sim_run, tmp_path, capsys):
    inp, out, _err = sim_run
    before = (out / "report.html").stat().st_mtime_ns
    dest = tmp_path / "rep"
    assert report_cli.main(["--input", str(inp), "--output", str(out),
                            "--report_dir", str(dest)]) == 0
    said = capsys.readouterr().out
    assert f"report: wrote {dest / 'report.html'}, {dest / 'metrics.json'}" in said
    assert (dest / "report.html").is_file() and (dest / "cases").is_dir()
    assert (out / "report.html").stat().st_mtime_ns == before
    assert report_cli.main(["--input", str(inp), "--output", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "--output is the backtest's output directory" in err and "--report_dir" in err


def test_simulated_report_texts_agree_with_the_money_they_are_about(sim_run):
    from simulator.assets import ASSETS, price

    inp, _out, _err = sim_run
    loss = {t.subject_id: t.usd_value for t in codecs.read_records(inp / "truth.avro", "Truth")
            if t.subject_type == "REPORT" and t.is_scam}
    said = re.compile(r"([\d,]+(?:\.\d+)?) (" + "|".join(ASSETS) + r"|USD)\b")
    checked = 0
    for r in codecs.read_records(inp / "reports.avro", "ScamReport"):
        if type(r) is not ScamReport or r.report_id not in loss:
            continue
        for amount, unit in said.findall(r.description):
            usd = float(amount.replace(",", "")) * (1.0 if unit == "USD" else price(unit))
            assert abs(usd - loss[r.report_id]) <= 0.02 * loss[r.report_id] + 0.01, r
            checked += 1
    assert checked >= 1


@pytest.mark.parametrize("asset", ["BTC", "ETH", "USDT", "TRX", "SOL"])
def test_every_report_template_states_the_amount_in_its_unit(asset):
    import random

    from simulator import text
    from simulator.assets import price

    said = re.compile(r"([\d,]+(?:\.\d+)?) (" + asset + r"|USD)\b")
    for i in range(300):
        rng, usd = random.Random(i), 20.0 + 37.3 * i
        typ = sorted(text.HONEST)[i % len(text.HONEST)]
        for words in (text.describe(typ, rng, usd, asset), text.describe_false(rng, usd, asset)):
            for amount, unit in said.findall(words):
                got = float(amount.replace(",", "")) * (1.0 if unit == "USD" else price(unit))
                assert abs(got - usd) <= 0.01 * usd, (words, usd)


def test_readme_figures_are_those_of_the_commands_it_shows(tmp_path):
    """The README's figures are rendered from the metrics they record, and those metrics came
    from the replay `safetynet simulate --users 20000 --days 30 --seed 7` makes (the same
    fingerprint); bench/readme_figures.py --write makes them from the two backtests."""
    from bench import readme_figures as rf
    from pipelines.provenance import replay_fingerprint

    data, prose = rf.in_readme(rf.README.read_text(encoding="utf-8"))
    assert prose == rf.render(data["models"], data["rules"])
    assert data["models"]["fingerprint"] == data["rules"]["fingerprint"]
    assert simulate_cli.main(["--output", str(tmp_path / "sim"), "--users", "20000", "--days",
                              "30", "--seed", "7"]) == 0
    assert replay_fingerprint(tmp_path / "sim")["sha256"] == data["models"]["fingerprint"]
