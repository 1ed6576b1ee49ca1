"""The CLI as a risk analyst meets it: no silent footguns, one-line errors, honest figures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.ledger import DEAD, REPORTS, TRANSFERS, Ledger
from core.machine import METRIC, step
from core.policy import Policy
from pipelines import backtest, cli, provenance
from pipelines import report as report_cli
from pipelines import simulate as simulate_cli
from pipelines import validate as validate_cli
from schemas import codecs
from tests.scenario import at, report, transfer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim") / "in"
    assert simulate_cli.main(["--output", str(d), "--users", "300", "--days", "5",
                              "--seed", "11"]) == 0
    return d


@pytest.fixture(scope="module")
def run_out(sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("bt") / "out"
    assert backtest.run(["--input", str(sim), "--output", str(out), "--no_progress"]) == 0
    return out


@pytest.fixture(scope="module")
def rules_out(sim, tmp_path_factory):
    """A rules-only run (``--use_models false``) of the same replay, quiet."""
    out = tmp_path_factory.mktemp("rules") / "out"
    assert backtest.run(["--input", str(sim), "--output", str(out), "--quiet",
                         "--use_models", "false"]) == 0
    return out


def _one_line(capsys, rc, want_rc=2) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == want_rc, err
    assert len(err.splitlines()) == 1, err
    return err


def _bt(capsys, sim, out, *flags, want_rc=2) -> str:
    rc = backtest.run(["--input", str(sim), "--output", str(out), "--no_progress", *flags])
    return _one_line(capsys, rc, want_rc)


# ------------------------------------------------------------------ durations and scales
@pytest.mark.parametrize("flag,value", [("--hold", "24"), ("--lookback", "1"),
                                        ("--cooldown", "1 week")])
def test_duration_without_a_unit_is_refused_naming_flag_units_and_example(
        capsys, sim, tmp_path, flag, value):
    err = _bt(capsys, sim, tmp_path / "o", flag, value)
    assert f"argument {flag}" in err
    assert "ms, s, m, h, d" in err and "24h" in err
    assert "parse_duration" not in err and "_ms" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize("value,want", [("abc", "not a duration"), ("90m", "whole hours"),
                                        ("36h", "whole days")])
def test_chunk_that_is_not_whole_days_is_one_line(capsys, sim, tmp_path, value, want):
    err = _bt(capsys, sim, tmp_path / "o", "--chunk", value)
    assert f"--chunk {value}" in err.replace("'", "") and want in err
    assert not (tmp_path / "o").exists()


def test_stream_and_backtest_options_in_one_process_either_order():
    """Both drivers take --restore_state, --shadow_policy and the money bounds (declared
    once, SharedOptions); Beam puts every options class on one parser, whichever module was
    imported first."""
    for first, second in (("stream", "backtest"), ("backtest", "stream")):
        code = (f"from pipelines import {first}, {second}\n"
                "from pipelines import backtest, stream\n"
                "o = backtest.parse(['--input', 'i', '--output', 'o', '--restore_state', 'r'])\n"
                "assert o.get_all_options()['restore_state'] == 'r'\n"
                "s = stream.build_options(['--project', 'p', '--max_usd_value', '5'])\n"
                "assert s.get_all_options()['max_usd_value'] == 5.0\n")
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr[-2000:]


def test_time_scale_zero_is_refused(capsys, sim, tmp_path):
    err = _bt(capsys, sim, tmp_path / "o", "--time_scale", "0")
    assert "--time_scale" in err and "> 0" in err


def test_policy_errors_name_the_flags_not_the_fields(capsys, sim, tmp_path):
    err = _bt(capsys, sim, tmp_path / "o", "--lookback", "0s")
    assert "--lookback" in err and "lookback_ms" not in err
    err = _bt(capsys, sim, tmp_path / "o", "--warn_threshold", "0.9")
    assert "--warn_threshold" in err and "--hold_threshold" in err


def test_help_shows_placeholders_and_durations_as_typed(capsys):
    with pytest.raises(SystemExit):
        backtest.arg_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--hold DURATION" in out and "--use_models {true,false}" in out
    assert "default 30d" in out and "default 180d" in out and "720h" not in out
    assert "``" not in out  # no reST markup


# ------------------------------------------------------------------ runner, output dir
def test_unknown_runner_is_one_line_before_running(capsys, sim, tmp_path):
    err = _bt(capsys, sim, tmp_path / "o", "--runner", "NoSuchRunner")
    assert "--runner NoSuchRunner" in err and "unknown runner" in err
    assert not (tmp_path / "o").exists()


def test_bad_value_of_a_beam_option_is_one_line(capsys, sim, tmp_path):
    err = _bt(capsys, sim, tmp_path / "o", "--direct_num_workers", "abc")
    assert err.endswith("argument --direct_num_workers: invalid int value: 'abc'")


def test_unwritable_output_dir_is_one_line_before_running(capsys, sim):
    err = _bt(capsys, sim, "/proc/self")  # a directory nobody, root included, can write to
    assert "--output /proc/self" in err and "cannot write" in err


def test_rerun_into_an_output_dir_is_refused_then_overwrite_clears_both_formats(
        capsys, sim, run_out, tmp_path):
    out = tmp_path / "o"
    shutil.copytree(run_out, out)
    (out / "notes.txt").write_text("mine")
    err = _bt(capsys, sim, out, "--format", "parquet")
    assert "already holds the output of an earlier run" in err and "--overwrite" in err
    assert (out / "holds.avro").exists()  # nothing touched
    assert backtest.run(["--input", str(sim), "--output", str(out), "--no_progress",
                         "--format", "parquet", "--overwrite"]) == 0
    assert not list(out.glob("*.avro"))  # the other format's decisions are gone
    assert (out / "holds.parquet").exists() and (out / "notes.txt").read_text() == "mine"


def test_overwrite_clears_an_earlier_runs_shadow_and_holdout_files(sim, run_out, tmp_path):
    # an earlier run with a shadow policy and a warning holdout left their files; a rerun
    # without them must not report the old shadow or efficacy figures
    out = tmp_path / "o"
    shutil.copytree(run_out, out)
    for stale in ("shadow_holds.avro", "warning_holdout.avro"):
        shutil.copy(out / "holds.avro" if "holds" in stale else out / "outreach.avro",
                    out / stale)
    (out / "shadow_disagreements.jsonl").write_text("{}\n")
    assert backtest.run(["--input", str(sim), "--output", str(out), "--no_progress",
                         "--overwrite"]) == 0
    assert not (out / "shadow_holds.avro").exists()
    assert not (out / "warning_holdout.avro").exists()
    assert not (out / "shadow_disagreements.jsonl").exists()
    m = json.loads((out / "metrics.json").read_text())
    assert m["shadow"] is None and m["warning_efficacy"] is None


def test_simulate_refuses_an_earlier_replay_then_overwrite_replaces_it(capsys, tmp_path):
    d = tmp_path / "s"
    args = ["--output", str(d), "--users", "20", "--days", "1"]
    assert simulate_cli.main(args) == 0
    capsys.readouterr()
    err = _one_line(capsys, simulate_cli.main(args + ["--format", "parquet"]))
    assert "--overwrite" in err
    assert simulate_cli.main(args + ["--format", "parquet", "--overwrite"]) == 0
    assert not list(d.glob("*.avro")) and (d / "transfers.parquet").exists()


def test_simulate_into_a_closed_pipe_exits_quietly(sim):
    """`safetynet simulate ... | head`: no BrokenPipeError traceback (`| true`: the reader
    is gone before the first line, every time)."""
    proc = subprocess.run(
        f"{sys.executable} -m pipelines.simulate --output {ROOT}/out/.pipe-test --users 20 "
        "--days 1 --overwrite | true", shell=True, capture_output=True, text=True,
        cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    shutil.rmtree(ROOT / "out" / ".pipe-test", ignore_errors=True)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    # ... nor `safetynet validate ... | true` (the reader left before the first line)
    proc = subprocess.run(f"{sys.executable} -m pipelines.cli validate --input {sim} | true",
                          shell=True, capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.stderr == "", proc.stderr


# ------------------------------------------------------------------ dead letters
def _all_dead_replay(sim: Path, d: Path) -> Path:
    """A copy of the replay whose transfers all miss a required field (user_id)."""
    shutil.copytree(sim, d)
    with open(d / "transfers.avro", "rb") as f:
        rdr = fastavro.reader(f)
        schema, recs = rdr.writer_schema, list(rdr)
    schema = dict(schema, fields=[x for x in schema["fields"] if x["name"] != "user_id"])
    for r in recs:
        r.pop("user_id", None)
    with open(d / "transfers.avro", "wb") as f:
        fastavro.writer(f, schema, recs)
    return d


def test_a_replay_whose_transfers_are_all_dead_lettered_fails_loudly(capsys, sim, tmp_path):
    inp = _all_dead_replay(sim, tmp_path / "in")
    rc = backtest.run(["--input", str(inp), "--output", str(tmp_path / "o"), "--no_progress"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1
    assert "--max_dead_letter_share" in err and "transfers (100.0%)" in err
    # ... with the right source, time and reason on every dead letter
    dead = list(codecs.read_records(tmp_path / "o" / "dead_letter.avro", "DeadLetter"))
    tdead = [d for d in dead if d.source == "transfers"]
    with open(inp / "transfers.avro", "rb") as f:
        recs = list(fastavro.reader(f))
    assert len(tdead) == len(recs) and all(type(d).__name__ == "DeadLetter" for d in dead)
    assert {d.error for d in tdead} >= {"missing required field 'user_id'"}
    own = {r["transfer_id"]: int(r["event_time"].timestamp() * 1000) for r in recs
           if isinstance(r["event_time"], datetime) and 2000 < r["event_time"].year < 2100}
    timed = [d for d in tdead if json.loads(d.payload).get("transfer_id") in own]
    assert len(timed) > len(recs) * 0.9
    assert all(d.at == own[json.loads(d.payload)["transfer_id"]] for d in timed)
    assert min(d.at for d in tdead) >= min(own.values())  # not 1970
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "transfers records (100.0%) were dead-lettered" in m["warnings"][0]
    # --max_dead_letter_share 1 accepts it
    assert backtest.run(["--input", str(inp), "--output", str(tmp_path / "o2"), "--no_progress",
                         "--max_dead_letter_share", "1"]) == 0


def test_a_parquet_usd_value_typed_as_string_is_dead_lettered_at_its_own_time(tmp_path):
    rows = [{"transfer_id": f"t{i}", "event_time": at(i), "user_id": "u", "to_address": "0xab",
             "to_user_id": None, "network": "ETH", "asset": "ETH", "amount": "1",
             "usd_value": "12.5", "channel": "WITHDRAWAL"} for i in range(3)]
    p = tmp_path / "transfers.parquet"
    pq.write_table(pa.Table.from_pylist(rows), str(p))
    dead = [r for b in validate_cli.read_validated(p, "Transfer", "transfers") for r in b]
    assert [(d.source, d.at) for d in dead] == [("transfers", at(i)) for i in range(3)]
    assert {d.error for d in dead} == {"usd_value must be a number, got str"}


@pytest.mark.parametrize("field,value", [("usd_value", 1e300), ("amount", "1e400")])
def test_money_beyond_the_upper_bound_is_dead_lettered(tmp_path, field, value):
    rows = [{"transfer_id": "t1", "event_time": at(0), "user_id": "u", "to_address": "0xab",
             "to_user_id": None, "network": "ETH", "asset": "ETH", "amount": "1",
             "usd_value": 10.0, "channel": "WITHDRAWAL"}]
    rows.append(dict(rows[0], transfer_id="t2", **{field: value}))
    codecs.write_records(tmp_path / "transfers.avro", "Transfer",
                         [codecs.validate("Transfer", r, "x") for r in rows], "avro")
    res = validate_cli.validate_dir(tmp_path)["transfers"]
    assert (res["valid"], res["dead_lettered"]) == (1, 1)
    assert f"--max_{'usd_value' if field == 'usd_value' else 'amount'}" in list(res["reasons"])[0]
    res = validate_cli.validate_dir(tmp_path, max_usd=1e301, max_amount=1e401)["transfers"]
    assert res["dead_lettered"] == 0 and res["conflicts"] == 0


def test_validate_command_counts_and_reasons_per_input(capsys, sim, tmp_path):
    assert cli.main(["validate", "--input", str(sim)]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((sim / "manifest.json").read_text())
    for name in ("transfers", "reports", "outcomes", "blacklist"):
        read, dead = manifest["files"][f"{name}.avro"], manifest["malformed_total"][name]
        assert re.search(rf"{name}\s+{name}\.avro\s+{read}\s+{read - dead}\s+{dead}\n", out)
    assert "unknown channel … (expected one of WITHDRAWAL, INTERNAL, P2P)" in out
    assert (f"duplicate deliveries (ignored) {manifest['duplicates']['transfers']}; "
            "conflicting deliveries (same id, other content: dead-lettered) 0") in out
    inp = _all_dead_replay(sim, tmp_path / "in")
    assert cli.main(["validate", "--input", str(inp)]) == 1
    assert "--max_dead_letter_share" in capsys.readouterr().err


# ------------------------------------------------------------------ conflicts (ledger)
def _feed(machine, key, events):
    state, outs = machine.new_state(key), []
    for ev in events:
        state, o = step(machine, key, state, ev)
        outs.extend(o)
    return outs


def test_identical_second_delivery_is_an_ignored_duplicate():
    t = transfer("t1", at(0), "u1", "0x" + "ab" * 20)
    outs = _feed(Ledger(Policy()), "T:t1", [t, t._replace(event_time=at(0))])
    assert [tag for tag, _, _ in outs] == [TRANSFERS, METRIC]
    assert outs[1][2] == ("duplicate_transfers", 1)


def test_second_delivery_with_other_content_is_a_conflict_naming_both_versions():
    first = transfer("t1", at(0), "u1", "0x" + "ab" * 20, usd=100.0)
    second = first._replace(to_address="0x" + "cd" * 20, usd_value=900.0)
    outs = _feed(Ledger(Policy()), "T:t1", [first, second])
    tags = [tag for tag, _, _ in outs]
    assert tags == [TRANSFERS, METRIC, DEAD]
    assert outs[1][2] == ("conflicting_transfers", 1)
    dl = outs[2][2]
    assert dl.source == "transfers"
    assert "conflicting delivery of transfer_id 't1'" in dl.error
    assert "to_address, usd_value" in dl.error
    assert "ab" * 20 in dl.error and "cd" * 20 in dl.payload  # both versions named


def test_report_delivered_twice_with_other_text_is_a_conflict():
    from core.events import ReportIn

    r1 = report("r1", at(1), "u1", suspect="0x" + "ab" * 20)
    r2 = r1._replace(description="something else")
    outs = _feed(Ledger(Policy()), "R:r1", [ReportIn(r1, at(1), r1.suspect_address),
                                            ReportIn(r2, at(1), r2.suspect_address)])
    assert [tag for tag, _, _ in outs] == [REPORTS, METRIC, DEAD]
    assert outs[2][2].source == "reports" and "description" in outs[2][2].error


# ------------------------------------------------------------------ provenance, report
def test_version_flag_and_setup_py_agree(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"safetynet {provenance.__version__}")
    assert f'version="{provenance.__version__}"' in (ROOT / "setup.py").read_text()


def test_metrics_record_version_commit_run_time_and_the_replay(run_out, sim):
    run = json.loads((run_out / "metrics.json").read_text())["run"]
    assert run["version"] == provenance.__version__ and "commit" in run
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["run_at"])
    assert run["input_fingerprint"] == provenance.replay_fingerprint(sim)
    page = (run_out / "report.html").read_text()
    assert provenance.__version__ in page and run["run_at"] in page


def test_report_refuses_an_empty_input_dir(capsys, run_out, tmp_path):
    (tmp_path / "empty").mkdir()
    err = _one_line(capsys, report_cli.main(["--input", str(tmp_path / "empty"),
                                             "--output", str(run_out)]))
    assert "not the replay" in err


def test_report_refuses_a_backtest_output_of_another_replay(capsys, run_out, tmp_path):
    other = tmp_path / "other"
    assert simulate_cli.main(["--output", str(other), "--users", "300", "--days", "5",
                              "--seed", "12"]) == 0
    capsys.readouterr()
    err = _one_line(capsys, report_cli.main(["--input", str(other), "--output", str(run_out)]))
    assert "not the replay" in err and "transfers.avro" in err


# ------------------------------------------------------------------ policy files
def test_policy_file_in_the_cli_names_and_flags_win(sim, tmp_path):
    pol = tmp_path / "policy.yaml"
    pol.write_text("hold: 12h\nhold-threshold: 0.8\nuse_models: false\nlookback: 7d\n")
    out = tmp_path / "o"
    assert backtest.run(["--input", str(sim), "--output", str(out), "--quiet",
                         "--policy", str(pol), "--hold_threshold", "0.7"]) == 0
    run = json.loads((out / "metrics.json").read_text())["run"]
    opts = run["policy_options"]
    assert (opts["hold"], opts["hold_threshold"], opts["use_models"], opts["lookback"]) == (
        "12h", 0.7, False, "7d")
    assert run["policy"]["hold_ms"] == 12 * 3_600_000
    # metrics.json is itself a policy file: the run repeats exactly
    again = tmp_path / "again"
    assert backtest.run(["--input", str(sim), "--output", str(again), "--quiet",
                         "--policy", str(out / "metrics.json")]) == 0
    run2 = json.loads((again / "metrics.json").read_text())["run"]
    assert run2["policy_options"] == opts and run2["policy"] == run["policy"]
    for name in ("holds", "resolutions", "freezes", "outreach"):
        assert (out / f"{name}.avro").read_bytes() == (again / f"{name}.avro").read_bytes()


def test_policy_file_round_trips_every_policy_field(tmp_path):
    """Generic over Policy: every field (whatever others add) is written and read back."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.options import policy_from_options, policy_options, read_policy_file

    p = Policy(hold_threshold=0.81, hold_ms=5_400_000, use_models=False,
               blacklist_paths=("a.avro", "b.csv"), profiles_path="prof.avro",
               model_snapshot_path="snap", stream_ordering="event_time", dedup_ms=1234)
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(policy_options(p)))
    back = policy_from_options(PipelineOptions(read_policy_file(str(f))))
    assert back == p


@pytest.mark.parametrize("text,want", [("hold_treshold: 0.5\n", "unknown option 'hold_treshold'"),
                                       ("hold: 24\n", "bad value for hold"),
                                       ("[1, 2]\n", "expected a mapping")])
def test_bad_policy_file_is_one_line_naming_file_and_option(capsys, sim, tmp_path, text, want):
    pol = tmp_path / "p.yaml"
    pol.write_text(text)
    err = _bt(capsys, sim, tmp_path / "o", "--policy", str(pol))
    assert str(pol) in err and want in err


def test_quiet_backtest_prints_nothing_and_beam_warnings_are_hidden(sim, tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "pipelines.backtest", "--input", str(sim)]
    q = subprocess.run(base + ["--output", str(tmp_path / "q"), "--quiet"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert q.returncode == 0 and q.stdout == "" and q.stderr == "", q.stderr
    d = subprocess.run(base + ["--output", str(tmp_path / "d")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert d.returncode == 0 and "WARNING" not in d.stderr and "[backtest] done" in d.stderr


# ------------------------------------------------------------------ stream: one line
@pytest.mark.parametrize("args,want", [
    (["--project", "p"], "--project 'p': not a valid project id"),
    (["--project", "good-project", "--runner", "NoSuchRunner"], "--runner NoSuchRunner"),
    (["--project", "good-project", "--hold", "24"], "argument --hold: not a duration"),
    (["--project", "good-project", "--time_scale", "0"], "argument --time_scale"),
    (["--project", "good-project", "--bogus", "1"], "unknown option --bogus"),
    (["--project", "good-project", "--direct_running_mode", "x"], "invalid choice: 'x'"),
])
def test_stream_errors_are_one_line_before_the_job_starts(capsys, monkeypatch, args, want):
    """The command line's mistakes, in this process (``pipelines.stream.main``: what
    ``python -m pipelines.stream`` runs); the whole command as a process, below."""
    from pipelines import stream

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens there
    assert want in _one_line(capsys, stream.main(args))


def test_stream_as_a_command_says_in_one_line_that_the_emulator_does_not_answer():
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
           "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}  # nothing listens on the discard port
    proc = subprocess.run([sys.executable, "-m", "pipelines.stream", "--project",
                           "good-project"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "does not answer" in proc.stderr


def test_stream_without_emulator_or_credentials_is_one_line(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json")}
    proc = subprocess.run([sys.executable, "-m", "pipelines.stream", "--project",
                           "good-project"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "credentials" in proc.stderr


# ------------------------------------------------------------------ report honesty
def test_report_says_plainly_when_the_models_never_switched_on(run_out):
    m = json.loads((run_out / "metrics.json").read_text())
    assert m["models"]["scored_by"].get("model", 0) == 0  # 5 days: too little to learn
    assert m["warnings"] and m["warnings"][0].startswith("The models never switched on")
    assert "200 labels" in m["warnings"][0] and "7d" in m["warnings"][0]
    page = (run_out / "report.html").read_text()
    assert page.index("The models never switched on") < page.index("<h2")


def test_no_models_warning_for_a_rules_only_run(rules_out):
    assert json.loads((rules_out / "metrics.json").read_text())["warnings"] == []


# ------------------------------------------------------------------ publish
def test_publish_without_emulator_is_one_line(capsys, sim):
    import os

    old = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = "127.0.0.1:9"
    try:
        rc = cli.main(["publish", "--input", str(sim), "--project", "good-project"])
    finally:
        if old is None:
            del os.environ["PUBSUB_EMULATOR_HOST"]
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = old
    assert "does not answer" in _one_line(capsys, rc)
    assert "not a valid project id" in _one_line(
        capsys, cli.main(["publish", "--input", str(sim), "--project", "p"]))


@pytest.mark.emulator
def test_publish_replays_every_record_of_a_directory_into_the_topics(capsys, sim):
    import os

    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        pytest.skip("PUBSUB_EMULATOR_HOST is not set (./run_local.sh test starts the emulator)")
    from google.api_core import retry as gretry
    from google.api_core.exceptions import DeadlineExceeded
    from google.cloud import pubsub_v1

    from connectors.pubsub_client import create_resources
    from schemas.streams import subscription_path

    project = "safetynet-it-publish"
    create_resources(project)
    assert cli.main(["publish", "--input", str(sim), "--project", project, "--speedup", "inf",
                     "--quiet"]) == 0
    sub = pubsub_v1.SubscriberClient()
    manifest = json.loads((sim / "manifest.json").read_text())
    for name in ("transfers", "reports", "outcomes", "blacklist"):
        got, times = 0, []
        want = manifest["files"][f"{name}.avro"]
        while True:
            # everything was published before the first pull: once the count is reached, a
            # pull of 1 s (not 10) says whether anything more is there (an empty pull on
            # the emulator lasts its whole deadline)
            wait = 10.0 if got < want else 1.0
            try:
                r = sub.pull(subscription=subscription_path(project, name), max_messages=1000,
                             timeout=wait, retry=gretry.Retry(timeout=wait))
            except DeadlineExceeded:
                break
            if not r.received_messages:
                break
            got += len(r.received_messages)
            times += [int(m.message.attributes["event_time"]) for m in r.received_messages]
            sub.acknowledge(subscription=subscription_path(project, name),
                            ack_ids=[m.ack_id for m in r.received_messages])
        assert got == want, name
        valid = [t for t in times if codecs.MIN_TS <= t <= codecs.MAX_TS]
        assert max(valid) > manifest["end_ms"]  # re-timed to the present
    sub.close()


# ------------------------------------------------------------------ the demo's command line
def test_demo_usage_shows_how_it_is_really_called_and_takes_an_input_dir(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    h = subprocess.run([sys.executable, "-m", "pipelines.demo", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert h.returncode == 0 and h.stdout.startswith("usage: ./run_local.sh demo")
    assert "--input DIR" in h.stdout
    bad = subprocess.run([sys.executable, "-m", "pipelines.demo", "--input", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "not a replay directory" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_streaming_parse_dead_letters_money_beyond_the_bound():
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.ingest import DEAD as PARSE_DEAD
    from transforms.ingest import Parse

    ok = json.dumps({"transfer_id": "t1", "event_time": at(0), "user_id": "u",
                     "to_address": "0xab", "network": "ETH", "asset": "ETH", "amount": "1",
                     "usd_value": 10.0, "channel": "WITHDRAWAL"})
    huge = ok.replace('"t1"', '"t2"').replace("10.0", "1e300")
    with TestPipeline() as p:
        out = (p | beam.Create([ok.encode(), huge.encode()])
               | Parse("Transfer", "transfers", "json", bounds=(1e10, 1e30)))
        assert_that(out.main | "Ids" >> beam.Map(lambda r: r.transfer_id), equal_to(["t1"]),
                    label="valid")
        assert_that(out[PARSE_DEAD] | "Err" >> beam.Map(lambda d: (d.source, d.error)),
                    equal_to([("transfers", "usd_value 1e+300 exceeds the upper bound 1e+10 "
                               "(--max_usd_value)")]), label="dead")


@pytest.mark.parametrize("sub", ["simulate", "convert-eth", "backtest", "report", "validate",
                                 "publish"])
def test_every_sub_command_help_uses_underscores_and_no_markup(capsys, sub):
    assert cli.main([sub, "--help"]) == 0
    out = capsys.readouterr().out
    flags = re.findall(r"(?<![\w-])--[a-z][\w-]*", out)
    assert flags and not [f for f in flags if "-" in f[2:]], flags
    assert "``" not in out and ":func:" not in out


def test_dashed_spellings_still_work(tmp_path):
    assert simulate_cli.main(["--output", str(tmp_path / "s"), "--users", "20", "--days", "1",
                              "--malformed-share", "0", "--duplicate-share", "0"]) == 0
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["malformed_share"] == 0 and m["duplicate_share"] == 0


def test_safetynet_accepts_dashed_spellings_of_every_option(capsys, sim, tmp_path):
    rc = cli.main(["backtest", "--input", str(sim), "--output", str(tmp_path / "o"),
                   "--batch-shards", "0"])
    assert "argument --batch_shards: must be >= 1" in _one_line(capsys, rc)
    assert cli.main(["validate", "--input", str(sim), "--max-dead-letter-share", "1"]) == 0


# ------------------------------------------------------------------ the report's reading
def test_report_has_contents_holds_by_reason_units_and_the_policy_as_typed(run_out):
    page = (run_out / "report.html").read_text()
    m = json.loads((run_out / "metrics.json").read_text())
    toc = page[page.index("<nav class='toc'>"):page.index("</nav>")]
    for title in ("Money", "Why scam money was lost", "Threshold sweep", "Reconciliation",
                  "Run"):
        assert f">{title}</a>" in toc
        slug = title.lower().replace(" ", "-")
        assert toc.count(f"href='#{slug}'") == 1
        assert f"href='#{slug}'" in toc and f"<h2 id='{slug}'>{title}</h2>" in page
    by = m["holds_by_reason"]
    assert sum(v["holds"] for v in by.values()) >= m["summary"]["holds"] > 0
    assert "destination blacklisted" in page
    assert "<h3>Holds by reason</h3>" in page and page.count("Holds by reason") == 1
    assert "<th>USD held</th>" in page and "<th>scam</th>" in page
    assert "<td class=t>--hold</td><td class=t>24h</td>" in page
    assert "<td class=t>--lookback</td><td class=t>30d</td>" in page
    assert "86400000" not in page
    # long unbroken strings wrap inside cells; numbers never do
    assert "overflow-wrap:break-word" in page and "white-space:nowrap" in page


def test_compare_shows_the_difference(run_out, sim, rules_out):
    rules = rules_out
    assert report_cli.main(["--input", str(sim), "--output", str(run_out), "--compare",
                            str(rules)]) == 0
    page = (run_out / "report.html").read_text()
    assert "<th>difference</th>" in page and "<th>compared run (rules only)</th>" in page
    a = json.loads((run_out / "metrics.json").read_text())["summary"]["holds"]
    b = json.loads((rules / "metrics.json").read_text())["summary"]["holds"]
    assert f">{'+' if a >= b else '−'}{abs(a - b):,}</td>" in page
    assert "The compared run read another replay" not in page


def test_compare_with_a_run_of_another_replay_says_so(run_out, sim, tmp_path):
    other = tmp_path / "other"
    assert simulate_cli.main(["--output", str(other), "--users", "30", "--days", "2"]) == 0
    assert backtest.run(["--input", str(other), "--output", str(tmp_path / "o"), "--quiet",
                         "--max_dead_letter_share", "1"]) == 0
    assert report_cli.main(["--input", str(sim), "--output", str(run_out), "--compare",
                            str(tmp_path / "o")]) == 0
    assert "The compared run read another replay" in (run_out / "report.html").read_text()


def test_count_axes_have_integer_ticks(run_out):
    from matplotlib.ticker import MaxNLocator

    from report import plots as plots_module
    from report.plots import plots

    src = Path(plots_module.__file__).read_text()
    assert src.count("MaxNLocator(integer=True)") >= 3
    m = json.loads((run_out / "metrics.json").read_text())
    assert plots(m, {"freeze_rows": []})  # renders
    assert MaxNLocator(integer=True).tick_values(0, 3).tolist() == [0, 1, 2, 3]


def test_backtest_dead_letters_a_conflicting_redelivery_and_reconciles_it(sim, tmp_path):
    inp = tmp_path / "in"
    shutil.copytree(sim, inp)
    with open(inp / "transfers.avro", "rb") as f:
        rdr = fastavro.reader(f)
        schema, recs = rdr.writer_schema, list(rdr)
    first = next(r for r in recs if isinstance(r["usd_value"], float) and r["usd_value"] > 0
                 and isinstance(r["event_time"], datetime) and r["event_time"].year < 2100
                 and r["user_id"] and r["channel"] == "WITHDRAWAL")
    recs.append(dict(first, usd_value=first["usd_value"] + 1000.0))
    with open(inp / "transfers.avro", "wb") as f:
        fastavro.writer(f, schema, recs)
    out = tmp_path / "o"
    assert backtest.run(["--input", str(inp), "--output", str(out), "--quiet"]) == 0
    dead = [d for d in codecs.read_records(out / "dead_letter.avro", "DeadLetter")
            if "conflicting delivery" in d.error]
    assert len(dead) == 1 and first["transfer_id"] in dead[0].error
    assert "usd_value" in dead[0].error and dead[0].source == "transfers"
    rec = json.loads((out / "metrics.json").read_text())["reconciliation"]
    assert rec["conflicts_dead_lettered"]["transfers"] == 1


def test_validate_counts_conflicting_redeliveries(tmp_path):
    t = transfer("t1", at(0), "u1", "0x" + "ab" * 20)
    rows = [t, t, t._replace(usd_value=999.0), transfer("t2", at(1), "u1", "0x" + "cd" * 20)]
    codecs.write_records(tmp_path / "transfers.avro", "Transfer", rows, "avro")
    res = validate_cli.validate_dir(tmp_path)["transfers"]
    assert (res["read"], res["duplicates"], res["conflicts"]) == (4, 1, 1)


def test_report_compare_with_a_non_backtest_dir_is_one_line(capsys, sim, run_out, tmp_path):
    err = _one_line(capsys, report_cli.main(["--input", str(sim), "--output", str(run_out),
                                             "--compare", str(tmp_path)]))
    assert "--compare" in err and "no metrics.json" in err


def test_young_dest_reporter_short_window_and_payee_sweep_are_options():
    """Issue 15's options: durations with units (scaled by --time_scale like every other),
    a sweep period of at least 1, errors naming the flag."""
    from pipelines.options import SafetyNetOptions, policy_from_options

    p = policy_from_options(SafetyNetOptions(["--young_dest", "12h", "--reporter_short_window",
                                              "36h", "--payee_sweep_every", "8"]))
    assert (p.young_dest_ms, p.reporter_short_window_ms, p.payee_sweep_every) == (
        12 * 3_600_000, 36 * 3_600_000, 8)
    d = policy_from_options(SafetyNetOptions([]))
    assert (d.young_dest_ms, d.reporter_short_window_ms, d.payee_sweep_every) == (
        2 * 86_400_000, 86_400_000, 64)
    s = policy_from_options(SafetyNetOptions(["--time_scale", "24"]))
    assert (s.young_dest_ms, s.reporter_short_window_ms, s.payee_sweep_every) == (
        2 * 3_600_000, 3_600_000, 64)
    with pytest.raises(ValueError, match="--payee_sweep_every must be >= 1"):
        policy_from_options(SafetyNetOptions(["--payee_sweep_every", "0"]))
    with pytest.raises(SystemExit):
        policy_from_options(SafetyNetOptions(["--young_dest", "2"]))  # no unit
