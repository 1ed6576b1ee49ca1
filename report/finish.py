"""The end of a backtest: every output file present (an empty one for an output a runner
skipped), ``metrics.json`` and ``report.html`` written from the run's files and counters,
and the run's closing line."""

from __future__ import annotations

import sys
from pathlib import Path

from report.build import build_report

# The backtest's own modules (and the model libraries they bring) are imported where they
# are used: ``safetynet report`` imports every module of this package to find the page's
# sections (report.sections.discover), and needs none of them.


def fill_missing(job) -> None:
    """An empty file for every output a runner skipped (a Gather over nothing)."""
    from connectors.files import SCORES_FILE, write_empty, write_scores
    from schemas.streams import OUTPUTS
    from transforms.shadow import SHADOW_OUTPUTS

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
    from pipelines.backtest_options import PROG

    stopped = s["scam_usd_prevented"] + s["scam_usd_recovered"]
    share = stopped / s["scam_usd"] if s["scam_usd"] else 0.0
    return (f"[{PROG}] done in {wall:.1f}s ({s['transfers_read'] / max(wall, 1e-9):,.0f} "
            f"transfers/s): ${stopped:,.0f} of ${s['scam_usd']:,.0f} scam money stopped "
            f"({share:.1%}: ${s['scam_usd_prevented']:,.0f} prevented + "
            f"${s['scam_usd_recovered']:,.0f} recovered), ${s['scam_usd_lost']:,.0f} lost; "
            f"{s['holds']:,} holds ({s['legit_held']:,} honest), {s['freezes']:,} freezes; "
            f"{out / ('report.html' if html else 'metrics.json')}")


def finish(job, argv: list, counters: dict, wall: float, progress: bool) -> int:
    """``metrics.json`` and the report of a finished run (``job``: the backtest's checked
    command line, :class:`pipelines.backtest.Job`); returns the exit status (1 when too
    much of an input was dead-lettered)."""
    from apache_beam.options.pipeline_options import StandardOptions

    from pipelines import provenance
    from pipelines.backtest_options import PROG
    from pipelines.options import policy_options
    from pipelines.validate import dead_letter_excess
    from report.metrics import policy_dict

    fill_missing(job)
    o, out, policy, replay = job.flags, job.out, job.policy, job.replay
    run_info = {**provenance.run_stamp(),
                "runner": str(job.options.view_as(StandardOptions).runner),
                "wall_seconds": round(wall, 3), "format": job.fmt,
                "input": str(replay.directory),
                "input_fingerprint": provenance.replay_fingerprint(replay.directory),
                "argv": argv, "policy": policy_dict(policy),
                "policy_options": policy_options(policy, automatic=tuple(
                    str(p) for p in (replay.snapshot, replay.profiles) if p))}
    if job.shadow is not None:
        run_info["shadow_policy"] = policy_dict(job.shadow)
    metrics = build_report(replay.directory, out, counters=counters, run=run_info,
                                  html=not o.no_report, compare=o.compare)
    if progress:
        print(closing_line(metrics["summary"], wall, out, not o.no_report), file=sys.stderr,
              flush=True)
    excess = dead_letter_excess(metrics["reconciliation"]["inputs"], o.max_dead_letter_share)
    if excess:
        print(f"{PROG}: error: {excess}; outputs in {out}", file=sys.stderr, flush=True)
        return 1
    return 0
