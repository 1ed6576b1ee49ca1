"""The shadow policy and the warning holdout in the backtest, end to end (real files, the
FnApiRunner): the live outputs are byte-identical with and without a shadow, a shadow with
the live policy decides byte-identically to it, and the report shows both side by side; a
holdout withholds warnings and changes nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.holdout import in_holdout
from pipelines import backtest
from pipelines import simulate as simulate_cli
from report.files import read_jsonl
from schemas import codecs
from schemas.streams import OUTPUTS
from transforms.shadow import SHADOW_OUTPUTS

LIVE_FILES = [f"{n}.avro" for n in OUTPUTS] + [
    "scores.parquet", "hourly_metrics.jsonl", "fan_in_hourly.jsonl"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("shadow")
    inp = base / "in"
    assert simulate_cli.main(["--output", str(inp), "--users", "300", "--days", "5",
                              "--seed", "11"]) == 0
    candidate = base / "candidate.yaml"
    candidate.write_text("hold_threshold: 0.05\nwarn_threshold: 0.01\n")
    same = base / "same.json"
    same.write_text(json.dumps({"hold": "24h"}))  # the live value: the same policy
    out = {}
    # (no report.html where no test reads it: its plots are a quarter of a run's CPU)
    for name, extra in (("alone", ["--no_report"]),
                        ("candidate", ["--shadow_policy", str(candidate)]),
                        ("same", ["--shadow_policy", str(same), "--no_report"]),
                        ("holdout", ["--warning_holdout", "30%"])):
        out[name] = base / name
        assert backtest.run(["--input", str(inp), "--output", str(out[name]),
                             "--no_progress", *extra]) == 0
    return inp, out


def _rows(d: Path, file_name: str, name: str) -> list:
    return list(codecs.read_records(d / f"{file_name}.avro", OUTPUTS[name]))


def test_live_outputs_are_byte_identical_with_and_without_a_shadow(runs):
    _, out = runs
    for f in LIVE_FILES:
        alone = (out["alone"] / f).read_bytes()
        assert (out["candidate"] / f).read_bytes() == alone, f
        assert (out["same"] / f).read_bytes() == alone, f
    assert not list(out["alone"].glob("shadow_*"))


def test_a_shadow_of_the_live_policy_decides_byte_identically_and_never_disagrees(runs):
    _, out = runs
    for n in SHADOW_OUTPUTS:
        assert (out["same"] / f"shadow_{n}.avro").read_bytes() == \
            (out["same"] / f"{n}.avro").read_bytes(), n
    assert read_jsonl(out["same"] / "shadow_disagreements.jsonl") == []
    assert json.loads((out["same"] / "metrics.json").read_text())["shadow"][
        "disagreements"] == 0


def test_disagreements_are_exactly_the_transfers_the_two_decided_differently(runs):
    _, out = runs
    d = out["candidate"]

    def actions(prefix):
        acts = {}
        for o in _rows(d, prefix + "outreach", "outreach"):
            if o.kind in ("WARNING", "INTERVENTION") and o.transfer_id:
                acts[o.transfer_id] = "warn"
        for h in _rows(d, prefix + "holds", "holds"):
            acts[h.transfer_id] = "hold"
        return acts

    live, shadow = actions(""), actions("shadow_")
    expected = {t: f"{live.get(t, 'none')}>{shadow.get(t, 'none')}"
                for t in set(live) | set(shadow) if live.get(t) != shadow.get(t)}
    rows = read_jsonl(d / "shadow_disagreements.jsonl")
    assert expected and {r["transfer_id"]: r["pair"] for r in rows} == expected
    hourly = read_jsonl(d / "shadow_hourly.jsonl")
    assert sum(h["disagreements"] for h in hourly) == len(rows)
    for h in hourly:
        assert h["window_end"] - h["window_start"] == 3_600_000
        assert h["window_start"] % 3_600_000 == 0
        inside = [r for r in rows if h["window_start"] <= r["event_time"] < h["window_end"]]
        assert len(inside) == h["disagreements"]


def test_report_puts_live_and_shadow_side_by_side(runs):
    _, out = runs
    m = json.loads((out["candidate"] / "metrics.json").read_text())
    s = m["summary"]
    live = m["shadow"]["live"]
    # the side-by-side's live column uses the report's own definitions
    assert (live["holds"], live["legit_held"], live["scam_usd_prevented"],
            live["scam_usd_lost"], live["freezes"]) == \
        (s["holds"], s["legit_held"], s["scam_usd_prevented"], s["scam_usd_lost"],
         s["freezes"])
    assert live["outreach_by_kind"] == m["outreach_by_kind"]
    assert m["shadow"]["shadow"]["holds"] == len(_rows(out["candidate"], "shadow_holds",
                                                       "holds"))
    assert m["shadow"]["policy_differences"] == {"hold_threshold": [0.75, 0.05],
                                                 "warn_threshold": [0.45, 0.01]}
    page = (out["candidate"] / "report.html").read_text()
    assert "<h2 id='shadow-policy'>Shadow policy</h2>" in page and "live → shadow" in page


def test_bad_shadow_policy_file_is_a_one_line_error(runs, tmp_path, capsys):
    inp, _ = runs
    bad = tmp_path / "bad.json"
    bad.write_text('{"hold_treshold": 0.5}')
    assert backtest.run(["--input", str(inp), "--output", str(tmp_path / "o"),
                         "--shadow_policy", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"backtest: error: --shadow_policy {bad}: unknown option "
                          "'hold_treshold'")


def test_holdout_withholds_warnings_only_and_records_each_one(runs):
    _, out = runs
    a, h = out["alone"], out["holdout"]
    for n in ("holds", "resolutions", "freezes", "verdicts", "dead_letter"):
        assert (h / f"{n}.avro").read_bytes() == (a / f"{n}.avro").read_bytes(), n
    withheld = _rows(h, "warning_holdout", "outreach")
    sent = _rows(h, "outreach", "outreach")
    assert withheld and all(o.kind == "WARNING" and o.reasons[-1] == "warning_holdout"
                            for o in withheld)
    assert all(in_holdout(o.user_id, 0.3) for o in withheld)
    assert not any(o.kind == "WARNING" and in_holdout(o.user_id, 0.3) for o in sent)
    # what was sent plus what was withheld is exactly what the policy sends without holdout
    restored = [o._replace(reasons=o.reasons[:-1]) for o in withheld]
    key = lambda o: (o.created_at, o.outreach_id)  # noqa: E731
    assert sorted(sent + restored, key=key) == sorted(_rows(a, "outreach", "outreach"), key=key)
    m = json.loads((h / "metrics.json").read_text())
    assert m["warning_efficacy"]["holdout_share"] == 0.3
    assert m["counters"]["Outreach/warning_holdout_suppressed"] == len(withheld)
    # 5 days of history: no eligible user has the 7 days of follow-up; all are left out
    e = m["warning_efficacy"]
    assert e["left_out_short_follow_up"] == len({o.user_id for o in withheld} | {
        o.user_id for o in sent if o.kind == "WARNING"})
    assert e["effect"] is None
    page = (h / "report.html").read_text()
    assert "<h2 id='warning-efficacy-holdout'>Warning efficacy (holdout)</h2>" in page


def test_help_explains_the_new_options(capsys):
    from pipelines import stream

    with pytest.raises(SystemExit) as e:
        backtest.arg_parser().parse_args(["--help"])
    assert e.value.code == 0
    assert stream.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.count("--shadow_policy FILE") >= 2 and "5% or 0.05" in out


def test_shadow_and_holdout_refuse_a_chunked_replay_in_one_line(runs, tmp_path, capsys):
    inp, _ = runs
    for extra in (["--warning_holdout", "5%"], ["--shadow_policy", str(runs[0].parent /
                                                                       "same.json")]):
        assert backtest.run(["--input", str(inp), "--output", str(tmp_path / "o"),
                             "--chunk", "2d", *extra]) == 2
        assert capsys.readouterr().err.strip() == (
            "backtest: error: --shadow_policy and --warning_holdout need a replay in one run "
            "(no --chunk, --write_state or --restore_state yet)")
