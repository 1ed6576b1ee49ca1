"""The backtest: replay a directory of history through the Safety Net graph.

    python -m pipelines.backtest --input DIR --output DIR [--format avro|parquet]
        [--blacklist FILES] [Safety Net policy options] [Beam pipeline options]

Shaped like Beam's examples: the flags are :class:`BacktestOptions` (the policy flags
:class:`~pipelines.options.SafetyNetOptions`), ``build`` wires the graph (no side effects,
nothing runs) into :class:`connectors.files.WriteDecisionFiles`, ``run`` runs it, then
writes ``metrics.json`` and ``report.html`` (:mod:`report`).

Input (``--input``): ``transfers`` (required), ``reports``, ``outcomes``, ``blacklist`` and
optionally ``profiles``, each as ``NAME.avro`` or ``NAME.parquet``. A
``blacklist_snapshot.*`` file there is loaded as the blacklist side input together with any
``--blacklist`` files; ``profiles.*`` becomes the profile side input; ``truth.*`` (the
simulator's ground truth), when present, is used only by the report.

Output (``--output``): ``holds``, ``resolutions``, ``freezes``, ``outreach``, ``verdicts``,
``dead_letter``, ``cases`` (the latest version of each case file) as single
``NAME.avro`` / ``NAME.parquet`` files (rows sorted, so a rerun gives byte-identical
files), ``scores.parquet`` (every scored transfer: the threshold sweep's input),
``metrics.json``, ``report.html`` and ``cases/*.html`` (one page per case file).

Runner: ``FnApiRunner`` unless ``--runner`` says otherwise (Beam's plain ``DirectRunner``
would try to download Prism). For several processes:
``--direct_num_workers 2 --direct_running_mode multi_processing``. Each output is gathered
on one worker and written once: fine for the histories this targets (millions of rows).

Errors a user can make (missing or corrupt input, unknown flag or runner, a bad value, an
output directory that cannot be written or holds an earlier run without ``--overwrite``)
end with one line on stderr and exit status 2, before anything runs
(:mod:`pipelines.preflight`). A run that dead-letters more than ``--max_dead_letter_share``
of an input ends with one line and exit status 1 (:mod:`pipelines.validate`).
"""

from __future__ import annotations

import argparse
import gc
import re
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from connectors import chunks, statefs
from connectors.chunks import ChunkRun
from connectors.files import (
    SCORES_FILE,
    WriteDecisionFiles,
    WriteJsonLines,
    WriteScores,
    latest_cases_file,
    sort_key,
    write_empty,
    write_scores,
)
from connectors.reader import CountProgress, read_batches, read_inputs
from connectors.replay import Replay, scan_input
from pipelines import preflight, provenance
from pipelines.argtypes import positive_int, unknown_option
from pipelines.options import (
    SafetyNetOptions,
    SharedOptions,
    add_restore_state,
    add_shadow_policy,
    expand_policy_file,
    parse_duration,
    policy_from_options,
    policy_options,
)
from pipelines.validate import add_input_options, dead_letter_excess
from schemas import codecs
from schemas.codecs import CodecError
from schemas.streams import OUTPUTS
from transforms.aggregates import FanIn, HourlyMetrics
from transforms.checkpoint import (
    CheckpointError,
    ReadSeeds,
    WriteCheckpoint,
    read_versions,
)
from transforms.checkpoint import check as check_checkpoint
from transforms.faces import DEFAULT_SHARDS, local_shuffles
from transforms.graph import STEP_LABELS
from transforms.policy import Policy
from transforms.safetynet import SafetyNet
from transforms.shadow import SHADOW_OUTPUTS, ShadowDiff

PROG = "backtest"
# Policy options that only the streaming job reads (accepted, not shown in --help).
STREAM_ONLY = ("stream_ordering",)
# Decision files beside the live ones: a shadow policy's, and the warnings held out.
OPTIONAL_OUTPUTS = (*(f"shadow_{n}" for n in SHADOW_OUTPUTS), "warning_holdout",
                    "shadow_warning_holdout")
# What a run writes into --output (any format), whatever its options: refused or cleared
# first (--overwrite), so no file of an earlier run (a shadow's, say) outlives it.
OWNED = preflight.owned_files((*OUTPUTS, *OPTIONAL_OUTPUTS), codecs.FORMATS, extra=(
    SCORES_FILE, "hourly_metrics.jsonl", "fan_in_hourly.jsonl", "versions.jsonl",
    "shadow_disagreements.jsonl", "shadow_hourly.jsonl", "metrics.json", "report.html"))


class UsageError(Exception):
    """A mistake of the user's (paths, flags): one line on stderr, exit 2."""


# ------------------------------------------------------------------------------ the inputs
def version_row(v) -> dict:
    """A published model version as a ``versions.jsonl`` row (no parameters): the model,
    the event time it is valid from (exclusive), its id, labels learned, hold threshold."""
    return {"model": v.model, "valid_from": v.event_time, "version": v.version,
            "n_labels": v.n_labels, "hold_threshold": v.hold_threshold}




# ------------------------------------------------------------------------------- the graph
def build(pipeline: beam.Pipeline, replay: Replay, output_dir: str | Path, fmt: str,
          policy: Policy, progress: bool = True, shards: int = DEFAULT_SHARDS,
          bounds: tuple = (codecs.MAX_USD_VALUE, codecs.MAX_AMOUNT),
          run: ChunkRun = ChunkRun(), shadow: Optional[Policy] = None) -> dict:
    """Wire the replay files through ``SafetyNet(policy, "batch")`` into the output files.
    Graph only: nothing runs until the pipeline does. Returns the SafetyNet outputs.
    ``shadow``: a second policy on the same inputs, written to ``shadow_*`` files."""
    out = str(Path(output_dir).resolve())
    inputs, parse_dead = read_inputs(pipeline, replay, progress, run.window, bounds,
                                     run.spilled)
    seeds, seed_versions = None, ()
    if run.restore is not None:
        seeds = pipeline | "ReadState" >> ReadSeeds(run.restore, STEP_LABELS, run.restore_at)
        seed_versions = tuple(read_versions(run.restore))
    outs = inputs | "SafetyNet" >> SafetyNet(policy, "batch", shards=shards, chunk=run.chunk,
                                             seeds=seeds, seed_versions=seed_versions)
    if run.save is not None:
        versions = outs["versions"]
        if seed_versions:
            versions = (versions, pipeline | "OldVersions" >> beam.Create(
                list(seed_versions))) | "KeepVersions" >> beam.Flatten()
        {"state": outs["state"], "versions": versions} | "WriteState" >> WriteCheckpoint(
            run.save)
    dead = (*parse_dead, outs["dead_letter"]) | "AllDeadLetters" >> beam.Flatten()
    ({name: dead if name == "dead_letter" else outs[name] for name in OUTPUTS}
     | "WriteDecisions" >> WriteDecisionFiles(out, fmt))
    # Hourly aggregates people look at: decision metrics, fan-in per destination.
    hourly = ({n: outs[n] for n in ("holds", "resolutions", "freezes", "outreach")}
              | "HourlyMetrics" >> HourlyMetrics(mode="batch"))
    fan_in = (inputs["transfers"]
              | "FanIn" >> FanIn(min_senders=max(2, policy.fan_in_rule // 2), mode="batch"))
    # The model versions published (the hold threshold over time, for the report)
    versions_out = outs["versions"] | "VersionRows" >> beam.Map(version_row)
    ({"hourly_metrics": hourly, "fan_in_hourly": fan_in, "versions": versions_out}
     | "WriteJsonLines" >> WriteJsonLines(out))
    n_transfers = replay.totals.get("transfers", 0)
    (outs["scored"]
     | "ScoredProgress" >> beam.ParDo(CountProgress("transfers scored", n_transfers, progress))
     | "WriteScores" >> WriteScores(out))
    if policy.warning_holdout > 0:  # the report's control group for warning efficacy
        ({"warning_holdout": outs["warning_holdout"]}
         | "WriteWarningHoldout" >> WriteDecisionFiles(out, fmt))
    if shadow is not None:
        build_shadow(inputs, outs, shadow, out, fmt, shards)
    return outs


def build_shadow(inputs: dict, outs: dict, shadow: Policy, out: str, fmt: str,
                 shards: int) -> dict:
    """A shadow policy on the same inputs: its own decisions in ``shadow_*`` files, never
    acted on, and where it disagrees with the live one (``shadow_disagreements.jsonl``,
    ``shadow_hourly.jsonl``). The live steps and their labels are untouched."""
    souts = inputs | "Shadow" >> SafetyNet(shadow, "batch", label="Shadow", shards=shards)
    ({name: souts[name] for name in SHADOW_OUTPUTS}
     | "ShadowWriteDecisions" >> WriteDecisionFiles(out, fmt, prefix="shadow_"))
    if shadow.warning_holdout > 0:
        ({"warning_holdout": souts["warning_holdout"]}
         | "ShadowWriteWarningHoldout" >> WriteDecisionFiles(out, fmt, prefix="shadow_"))
    diff = {"live": outs, "shadow": souts} | "ShadowDiff" >> ShadowDiff()
    ({f"shadow_{name}": diff[name] | f"ShadowGlobal{name.title()}" >> beam.WindowInto(
        beam.window.GlobalWindows()) for name in ("disagreements", "hourly")}
     | "ShadowWriteDiff" >> WriteJsonLines(out))
    return souts


# ----------------------------------------------------------------------------- the options
def _add_flags(parser, required: bool, shared: bool) -> None:
    """The backtest's own flags, in --help's order; ``shared``: with the flags the stream
    driver takes too (:class:`~pipelines.options.SharedOptions`), for --help."""
    parser.add_argument("--input", required=required, metavar="DIR",
                        help="replay directory: transfers (required), reports, outcomes, "
                             "blacklist, profiles, blacklist_snapshot, truth as NAME.avro or "
                             "NAME.parquet")
    parser.add_argument("--output", required=required, metavar="DIR",
                        help="output directory (created if missing)")
    parser.add_argument("--format", choices=codecs.FORMATS, default=None,
                        help="format of the decision files (default: that of transfers.*)")
    parser.add_argument("--no_progress", action="store_true",
                        help="no progress lines on stderr")
    preflight.add_verbosity(parser)
    parser.add_argument("--compare", default=None, metavar="DIR",
                        help="another backtest's output directory (e.g. a rules-only run, "
                             "--use_models=false) to compare with in the report")
    parser.add_argument("--no_report", action="store_true",
                        help="write metrics.json but not report.html")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output of an earlier run in --output (without it, "
                             "such a directory is refused before anything runs)")
    add_input_options(parser.add_argument_group("input guards"), bounds=shared)
    if shared:
        add_shadow_policy(parser)
    parser.add_argument("--batch_shards", type=positive_int, default=DEFAULT_SHARDS,
                        metavar="N",
                        help="shards of each step's key space: the most workers a step can "
                             f"use (default {DEFAULT_SHARDS}; raise it for a large cluster)")
    g = parser.add_argument_group("long replays and warm start")
    g.add_argument("--chunk", default=chunks.AUTO, metavar="DURATION",
                   help="replay in chunks of this much event time (whole days, e.g. 7d), "
                        "carrying every step's state from one chunk to the next: memory is "
                        "bounded by one chunk plus the live state; decisions are identical. "
                        "auto (default): whole days holding about --chunk_transfers "
                        "transfers (one run when the history fits in one); 0: one run, "
                        "whatever its length")
    g.add_argument("--chunk_transfers", type=positive_int, default=chunks.AUTO_TRANSFERS,
                   metavar="N", help="--chunk auto: transfers per chunk, about (default "
                   f"{chunks.AUTO_TRANSFERS:,})")
    g.add_argument("--write_state", default=None, metavar="DIR",
                   help="write the state the replay ends with (a state checkpoint) to DIR: "
                        "`safetynet stream --restore_state DIR` starts from it")
    if shared:
        add_restore_state(g)


class BacktestOptions(PipelineOptions):
    """The backtest's flags (``--input``, ``--output``, ``--format``, ``--chunk``, ...); the
    policy flags are :class:`~pipelines.options.SafetyNetOptions`', the flags it shares with
    the stream driver (``--restore_state``, ``--shadow_policy``, the money bounds)
    :class:`~pipelines.options.SharedOptions`'."""

    @classmethod
    def _add_argparse_args(cls, parser):
        _add_flags(parser, required=False, shared=False)


# ------------------------------------------------------------------------------ the driver
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2)."""

    def error(self, message):
        raise UsageError(message)


def arg_parser() -> argparse.ArgumentParser:
    """The command line's own flags and the policy flags: --help, and one-line errors."""
    p = _Parser(
        prog=f"safetynet {PROG}", add_help=True, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay a directory of history (Avro or Parquet) through the Safety Net "
                    "and write the decisions, metrics.json and report.html.",
        epilog="Beam pipeline options are accepted too, e.g. --runner (default FnApiRunner), "
               "--direct_num_workers N --direct_running_mode multi_processing.\n"
               "Durations take a unit: 90s, 15m, 24h, 30d.")
    _add_flags(p, required=True, shared=True)
    g = p.add_argument_group("Safety Net policy")
    SafetyNetOptions._add_argparse_args(g)
    for a in g._group_actions:  # options of the streaming job only: not shown here
        if a.dest in STREAM_ONLY:
            a.help = argparse.SUPPRESS
    return p


def parse(argv: list) -> PipelineOptions:
    """The command line as PipelineOptions (views: BacktestOptions, SafetyNetOptions and
    Beam's own); a bad or unknown flag raises UsageError or PreflightError."""
    argv = expand_policy_file(argv)
    parser = arg_parser()
    _, rest = parser.parse_known_args(argv)
    unknown = preflight.beam_unknown_flags(rest)
    if unknown:
        raise UsageError(unknown_option(unknown[0], parser))
    if not any(f == "--runner" or f.startswith("--runner=") for f in rest):
        argv = [*argv, "--runner=FnApiRunner"]
    return PipelineOptions(argv)


def _policy(options: PipelineOptions, replay: Replay) -> Policy:
    """The policy of the flags, with the replay's blacklist snapshot and profiles."""
    so = options.view_as(SafetyNetOptions)
    lists = [str(replay.snapshot)] if replay.snapshot else []
    if so.blacklist_paths:
        for x in str(so.blacklist_paths).split(","):
            if x:
                if not Path(x).is_file():
                    raise UsageError(f"blacklist file {x} does not exist")
                lists.append(str(Path(x).resolve()))
    profiles = so.profiles_path or (str(replay.profiles) if replay.profiles else None)
    if profiles and not Path(profiles).is_file():
        raise UsageError(f"profiles file {profiles} does not exist")
    return policy_from_options(options, blacklist_paths=tuple(lists), profiles_path=profiles)


def counters_of(result) -> dict:
    """Every Beam counter of a finished run: {"Namespace/name": value}."""
    out: dict = {}
    try:
        res = result.metrics().query(MetricsFilter())
    except Exception:  # a runner without metrics
        return out
    for m in res.get("counters", []):
        v = m.committed if m.committed is not None else m.attempted
        k = f"{m.key.metric.namespace}/{m.key.metric.name}"
        out[k] = out.get(k, 0) + int(v or 0)
    return dict(sorted(out.items()))


_CODEC_RE = re.compile(r"CodecError: ([^\n]+)")


def _chunk_ms(text: Optional[str], day_ms: int) -> Optional[int | str]:
    """``--chunk``: ``auto``, ``0`` (one run), or whole hours and whole days of ``--day``
    (the daily selections, rules 11 and 12, rank whole days of one chunk)."""
    if text is None or text == chunks.AUTO:
        return chunks.AUTO
    if text.strip() in ("0", "0d", "0h"):
        return None
    try:
        ms = parse_duration(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise UsageError(f"--chunk {text!r}: not a duration (e.g. 7d, 24h)") from None
    if ms < chunks.HOUR_MS or ms % chunks.HOUR_MS:
        raise UsageError(f"--chunk {text}: use whole hours (e.g. 12h, 7d)")
    if ms % day_ms:
        raise UsageError(f"--chunk {text}: use whole days (of --day, {day_ms // 3_600_000}h) "
                         "so that no day of the daily risk assessments and call capacity is "
                         "cut by a chunk")
    return ms


def _prepare_state_dir(d: str, restore: str) -> None:
    """``--write_state DIR``: a new or empty directory, or a checkpoint this command may
    replace (never the one it restores from). ``gs://`` and Beam's other file systems
    through :mod:`connectors.statefs`."""
    if not statefs.is_local(d):
        if d.rstrip("/") == restore.rstrip("/"):
            raise UsageError("--write_state and --restore_state name the same directory")
        if statefs.files(d, "*") and not statefs.exists(statefs.join(d, "manifest.json")):
            raise UsageError(f"--write_state {d} is not empty and holds no checkpoint: "
                             "refusing to write into it")
        statefs.remove_all(d)
        return
    d, restore = Path(d), Path(restore)  # type: ignore[assignment]
    if d.exists() and d.resolve() == restore.resolve():
        raise UsageError("--write_state and --restore_state name the same directory")
    if d.exists() and not d.is_dir():
        raise UsageError(f"--write_state {d} exists and is not a directory")
    if d.is_dir() and any(d.iterdir()):
        if not (d / "manifest.json").exists():
            raise UsageError(f"--write_state {d} is not empty and holds no checkpoint: "
                             "refusing to write into it")
        shutil.rmtree(d)


class Job(NamedTuple):
    """A checked command line: the options, what to replay, and how."""

    options: PipelineOptions
    replay: Replay
    fmt: str
    policy: Policy
    shadow: Optional[Policy]
    out: Path
    chunk_ms: Optional[int | str]  # chunks.AUTO: chosen from the history
    restored: Optional[dict]  # the manifest of --restore_state

    @property
    def flags(self) -> BacktestOptions:
        return self.options.view_as(BacktestOptions)

    @property
    def shared(self) -> SharedOptions:
        return self.options.view_as(SharedOptions)

    @property
    def readers(self) -> int:
        return chunks.readers(self.options)

    @property
    def chunked(self) -> bool:
        """Inputs staged (read once, per day) and run in chunks: not for one run read
        directly by one reader per file."""
        return bool(self.chunk_ms or self.flags.write_state or self.restored is not None
                    or self.readers > 1)


def prepare(argv: list) -> Job:
    """Check the command line, the input and the output directory before anything runs;
    raises UsageError, CodecError, CheckpointError, PreflightError or ValueError."""
    options = parse(argv)
    o, sh = options.view_as(BacktestOptions), options.view_as(SharedOptions)
    replay = scan_input(o.input)
    preflight.check_runner(options.view_as(StandardOptions).runner)
    fmt = o.format or replay.files["transfers"].suffix.lstrip(".")
    if o.compare and not (Path(o.compare) / "metrics.json").is_file():
        raise UsageError(f"--compare {o.compare}: no metrics.json there")
    policy = _policy(options, replay)
    shadow = None
    if sh.shadow_policy:
        from pipelines.shadow import shadow_policy

        scale = options.view_as(SafetyNetOptions).time_scale or 1.0
        shadow = shadow_policy(sh.shadow_policy, policy, scale)
    from schemas.blacklist import load_many  # fail early on an unreadable list

    if policy.blacklist_paths:
        load_many(tuple(policy.blacklist_paths))
    chunk_ms = _chunk_ms(o.chunk, policy.day_ms)
    out = preflight.prepare_output(o.output, OWNED, o.overwrite)
    restored = check_checkpoint(sh.restore_state) if sh.restore_state else None
    if o.write_state:
        _prepare_state_dir(o.write_state, sh.restore_state or ".")
    if chunk_ms == chunks.AUTO and (shadow is not None or policy.warning_holdout > 0 or
                                    replay.totals.get("transfers", 0) <= o.chunk_transfers):
        chunk_ms = None  # one run: it fits; a shadow or a holdout is not carried across chunks
    if (shadow is not None or policy.warning_holdout > 0) and (
            chunk_ms or o.write_state or restored is not None):
        raise UsageError("--shadow_policy and --warning_holdout need a replay in one run "
                         "(no --chunk, --write_state or --restore_state yet)")
    return Job(options, replay, fmt, policy, shadow, out, chunk_ms, restored)


def _run_pipeline(job: Job, out: Path, progress: bool, run: ChunkRun = ChunkRun(),
                  shadow: Optional[Policy] = None) -> dict:
    """One pipeline of the replay, run to the end; returns its counters."""
    chunks.no_timed_flushes()  # gRPC workers: no bytes lost between two writes
    if job.readers > 1:
        chunks.thread_safe_buffers()
    pipeline = beam.Pipeline(options=job.options)
    with local_shuffles(chunks.in_process(job.options)):
        build(pipeline, job.replay, out, job.fmt, job.policy, progress,
              job.flags.batch_shards, (job.shared.max_usd_value, job.shared.max_amount), run,
              shadow=shadow)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        gc.unfreeze()  # what the batch steps froze (transforms.machine.gc_paused)
    return counters_of(result)


def run_chunked(job: Job, progress: bool) -> dict:
    """The replay read once, then one pipeline per chunk of event time
    (:func:`connectors.chunks.run_chunks`), each starting from the previous one's state
    checkpoint; returns the summed counters."""
    restored, restore = job.restored, job.shared.restore_state
    bounds = (job.shared.max_usd_value, job.shared.max_amount)

    def check_start(lo: int) -> None:
        if restored is not None and restored["end_time"] > lo:
            raise UsageError(
                f"--restore_state {restore} holds state up to event time "
                f"{restored['end_time']} ms, after the replay's first event ({lo} ms): "
                "replay only what comes after the checkpoint")

    def merge(dirs: list) -> None:
        chunks.merge_parts(dirs, job.out, job.fmt, OUTPUTS, sort_key, SCORES_FILE)
        latest_cases_file(job.out / f"cases.{job.fmt}", job.fmt)  # the latest versions

    def say(text: str) -> None:
        if progress:
            print(f"[{PROG}] {text}", file=sys.stderr, flush=True)

    r = chunks.Replayer(
        read=lambda name, path: read_batches(name, path, job.replay.totals.get(name, 0),
                                             bounds, progress),
        run_one=lambda out, plan: _run_pipeline(job, out, progress, plan, job.shadow),
        say=say, merge=merge, check_start=check_start)
    chunking = chunks.chunking(job.chunk_ms, job.flags.chunk_transfers)
    return chunks.run_chunks(r, dict(job.replay.files), job.out, chunking, job.policy.day_ms,
                             job.readers, restore, restored["end_time"] if restored else None,
                             job.flags.write_state)


def _fill_missing(job: Job) -> None:
    """An empty file for every output a runner skipped (a Gather over nothing)."""
    out, fmt, shadow = job.out, job.fmt, job.shadow
    names = list(OUTPUTS)
    if shadow is not None:
        names += [f"shadow_{n}" for n in SHADOW_OUTPUTS]
    if job.policy.warning_holdout > 0:
        names.append("warning_holdout")
    if shadow is not None and shadow.warning_holdout > 0:
        names.append("shadow_warning_holdout")
    for name in names:
        p = out / f"{name}.{fmt}"
        if not p.exists():
            write_empty(p, name, fmt)
    if not (out / SCORES_FILE).exists():
        write_scores(out / SCORES_FILE, [])


def closing_line(s: dict, wall: float, out: Path, html: bool = True) -> str:
    """The backtest's last line: scam money stopped (prevented + recovered) and lost, with
    the report's definitions, and what it cost honest users."""
    stopped = s["scam_usd_prevented"] + s["scam_usd_recovered"]
    share = stopped / s["scam_usd"] if s["scam_usd"] else 0.0
    return (f"[{PROG}] done in {wall:.1f}s ({s['transfers_read'] / max(wall, 1e-9):,.0f} "
            f"transfers/s): ${stopped:,.0f} of ${s['scam_usd']:,.0f} scam money stopped "
            f"({share:.1%}: ${s['scam_usd_prevented']:,.0f} prevented + "
            f"${s['scam_usd_recovered']:,.0f} recovered), ${s['scam_usd_lost']:,.0f} lost; "
            f"{s['holds']:,} holds ({s['legit_held']:,} honest), {s['freezes']:,} freezes; "
            f"{out / ('report.html' if html else 'metrics.json')}")


def finish(job: Job, argv: list, counters: dict, wall: float, progress: bool) -> int:
    """``metrics.json`` and the report of a finished run; returns the exit status (1 when
    too much of an input was dead-lettered)."""
    import report

    _fill_missing(job)
    o, out, policy, replay = job.flags, job.out, job.policy, job.replay
    run_info = {**provenance.run_stamp(),
                "runner": str(job.options.view_as(StandardOptions).runner),
                "wall_seconds": round(wall, 3), "format": job.fmt,
                "input": str(replay.directory),
                "input_fingerprint": provenance.replay_fingerprint(replay.directory),
                "argv": argv, "policy": report.policy_dict(policy),
                "policy_options": policy_options(policy, automatic=tuple(
                    str(p) for p in (replay.snapshot, replay.profiles) if p))}
    if job.shadow is not None:
        run_info["shadow_policy"] = report.policy_dict(job.shadow)
    metrics = report.build_report(replay.directory, out, counters=counters, run=run_info,
                                  html=not o.no_report, compare=o.compare)
    if progress:
        print(closing_line(metrics["summary"], wall, out, not o.no_report), file=sys.stderr,
              flush=True)
    excess = dead_letter_excess(metrics["reconciliation"]["inputs"], o.max_dead_letter_share)
    if excess:
        print(f"{PROG}: error: {excess}; outputs in {out}", file=sys.stderr, flush=True)
        return 1
    return 0


def run(argv: Optional[list] = None) -> int:
    """The backtest; returns the exit status (0 ok, 2 usage / input error, 1 failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        job = prepare(argv)
    except (UsageError, CodecError, CheckpointError, preflight.PreflightError,
            ValueError) as e:  # ValueError: bad policy values (thresholds, durations)
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    o = job.flags
    preflight.apply_verbosity(o.quiet, o.verbose)
    progress = not (o.no_progress or o.quiet)
    if progress:
        tot = ", ".join(f"{k} {v:,}" for k, v in job.replay.totals.items())
        print(f"[{PROG}] {job.replay.directory}: {tot}; runner "
              f"{job.options.view_as(StandardOptions).runner}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    with codecs.kept_reads(_kept(job)):
        return _run_and_finish(job, argv, progress, t0)


def _kept(job: Job) -> list:
    """The input files the report reads again, when this process reads them all in one
    pipeline (not chunked, workers in this process): kept from the pipeline's read
    (:func:`schemas.codecs.kept_reads`)."""
    if job.chunked or not chunks.in_process(job.options):
        return []
    return [p for p in (*job.replay.files.values(), job.replay.profiles) if p is not None]


def _run_and_finish(job: Job, argv: list, progress: bool, t0: float) -> int:
    o = job.flags
    try:
        if job.chunked:
            counters = run_chunked(job, progress)
        else:
            counters = _run_pipeline(job, job.out, progress, shadow=job.shadow)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a runner wraps worker errors in its own types
        m = _CODEC_RE.search(str(e))
        if m:
            print(f"{PROG}: error: {m.group(1).strip()}", file=sys.stderr)
            return 2
        if o.verbose:
            raise
        print(f"{PROG}: error: the pipeline failed: {preflight.first_line(e)} (--verbose "
              "shows the traceback)", file=sys.stderr)
        return 1
    return finish(job, argv, counters, time.monotonic() - t0, progress)


def main(argv: Optional[list] = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
