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

import gc
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from connectors import chunked, chunks
from connectors.chunks import ChunkRun
from connectors.files import (
    SCORES_FILE,
    WriteDecisionFiles,
    WriteJsonLines,
    WriteScores,
    write_scores,  # noqa: F401 - imported from here by the report's tests
)
from connectors.local_runner import remembered_signatures
from connectors.reader import CountProgress, read_inputs
from connectors.replay import Replay, scan_input
from core.graph import STEP_LABELS
from core.policy import Policy
from pipelines import preflight
from pipelines.argtypes import UsageError
from pipelines.backtest_options import (  # noqa: F401 - arg_parser: the CLI's tests use it
    PROG,
    BacktestOptions,
    arg_parser,
    parse,
)
from pipelines.options import (
    SafetyNetOptions,
    SharedOptions,
    policy_from_options,
)
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
from transforms.faces import DEFAULT_SHARDS, Spill, local_shuffles
from transforms.safetynet import SafetyNet
from transforms.shadow import SHADOW_OUTPUTS, Shadow

# Decision files beside the live ones: a shadow policy's, and the warnings held out.
OPTIONAL_OUTPUTS = (*(f"shadow_{n}" for n in SHADOW_OUTPUTS), "warning_holdout",
                    "shadow_warning_holdout")
# What a run writes into --output (any format), whatever its options: refused or cleared
# first (--overwrite), so no file of an earlier run (a shadow's, say) outlives it.
OWNED = preflight.owned_files((*OUTPUTS, *OPTIONAL_OUTPUTS), codecs.FORMATS, extra=(
    SCORES_FILE, "hourly_metrics.jsonl", "fan_in_hourly.jsonl", "versions.jsonl",
    "shadow_disagreements.jsonl", "shadow_hourly.jsonl", "metrics.json", "report.html"))


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
                                             seeds=seeds, seed_versions=seed_versions,
                                             handover=run.handover)
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
        _write_shadow({"inputs": inputs, "live": outs}
                      | "Shadow" >> Shadow(shadow, "batch", shards=shards), out, fmt,
                      shadow.warning_holdout > 0)
    return outs


def _write_shadow(souts: dict, out: str, fmt: str, holdout: bool) -> None:
    """A shadow's decisions in ``shadow_*`` files, where it disagrees with the live policy
    in ``shadow_disagreements.jsonl`` and ``shadow_hourly.jsonl``."""
    shadow = souts["shadow"]
    ({name: shadow[name] for name in SHADOW_OUTPUTS}
     | "ShadowWriteDecisions" >> WriteDecisionFiles(out, fmt, prefix="shadow_"))
    if holdout:
        ({"warning_holdout": shadow["warning_holdout"]}
         | "ShadowWriteWarningHoldout" >> WriteDecisionFiles(out, fmt, prefix="shadow_"))
    ({f"shadow_{name}": souts[name] | f"ShadowGlobal{name.title()}" >> beam.WindowInto(
        beam.window.GlobalWindows()) for name in ("disagreements", "hourly")}
     | "ShadowWriteDiff" >> WriteJsonLines(out))




# ------------------------------------------------------------------------------ the driver
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
        from pipelines.options import shadow_policy

        scale = options.view_as(SafetyNetOptions).time_scale or 1.0
        shadow = shadow_policy(sh.shadow_policy, policy, scale)
    from schemas.blacklist import load_many  # fail early on an unreadable list

    if policy.blacklist_paths:
        load_many(tuple(policy.blacklist_paths))
    chunk_ms = chunked.chunk_flag(o.chunk, policy.day_ms)
    out = preflight.prepare_output(o.output, OWNED, o.overwrite)
    restored = check_checkpoint(sh.restore_state) if sh.restore_state else None
    if o.write_state:
        chunked.prepare_state_dir(o.write_state, sh.restore_state or ".")
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
    pipeline = beam.Pipeline(options=job.options)
    local = chunks.in_process(job.options)
    # a step's long input (the Learner's labels) waits for it on disk, not in memory
    spill = Spill(tempfile.mkdtemp(prefix=".shuffle-", dir=out)) if local else None
    # Beam reads each function's parameters once (it asks for every bundle otherwise)
    with remembered_signatures():
        with local_shuffles(local, spill):
            build(pipeline, job.replay, out, job.fmt, job.policy, progress,
                  job.flags.batch_shards, (job.shared.max_usd_value, job.shared.max_amount),
                  run, shadow=shadow)
        try:
            result = pipeline.run()
            result.wait_until_finish()
        finally:
            if spill is not None:
                shutil.rmtree(spill.directory, ignore_errors=True)
            gc.unfreeze()  # what the batch steps froze (core.machine.gc_paused)
            # and the cyclic garbage frozen with it (the runner's bundles, frames): freed
            # now, not carried into the next chunk's pipeline or the report (one full
            # collection)
            gc.collect()
    return counters_of(result)


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
            counters = chunked.run_chunked(
                job, lambda out, run: _run_pipeline(job, out, progress, run, job.shadow),
                progress)
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
    from report.finish import finish

    return finish(job, argv, counters, time.monotonic() - t0, progress)


def main(argv: Optional[list] = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
