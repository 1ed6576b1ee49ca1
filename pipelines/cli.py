"""The ``safetynet`` command: one entry point, a sub-command per driver.

    safetynet simulate    --output DIR [--users N] [--days D] [--seed S] [--format avro|parquet]
    safetynet backtest    --input DIR --output DIR [--format avro|parquet] [options]
    safetynet stream      --project P [subscription/topic names] [options]
    safetynet convert-eth --input CSV.gz --output DIR [--seed S] [--report-share X] [--limit N]
    safetynet report      --input DIR --output DIR [--compare DIR] [--report_dir DIR]
    safetynet validate    --input DIR
    safetynet publish     --input DIR --project P [--speedup F]
    safetynet --version

``safetynet SUB-COMMAND --help`` explains every option of one. Each is also
``python -m pipelines.<name>``. Sub-command modules are imported only when used (Beam and
River take seconds to import).
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

# name -> (module, function, one-line help). The function takes argv and returns an exit
# status (or exits itself).
COMMANDS = {
    "simulate": ("pipelines.simulate", "main",
                 "write a synthetic replay directory (transfers, reports, outcomes, "
                 "blacklist, profiles, truth) from the built-in exchange simulator"),
    "backtest": ("pipelines.backtest", "run",
                 "replay a directory of history through the Safety Net on a local Beam runner "
                 "and write decision files, metrics.json and report.html"),
    "stream": ("pipelines.stream", "main",
               "run the streaming job on Pub/Sub (the local emulator, Dataflow or Flink)"),
    "convert-eth": ("pipelines.convert_eth", "main",
                    "convert the real labelled Ethereum transfers (../shared/data) into a "
                    "replay directory; user reports are simulated from the labels"),
    "report": ("pipelines.report", "main",
               "re-render metrics.json and report.html of a backtest output directory"),
    "validate": ("pipelines.validate", "main",
                 "read and validate a replay directory without running the pipeline: counts "
                 "and dead-letter reasons per input"),
    "publish": ("pipelines.publish", "main",
                "publish a replay directory into Pub/Sub topics, re-timed to the present, "
                "to drive the streaming job with your own data"),
}


def underscored(arg: str) -> str:
    """Options are spelt with underscores in every sub-command (as Beam's are); a dashed
    spelling is accepted as an alias: ``--batch-shards 8`` -> ``--batch_shards 8``.

    >>> [underscored(a) for a in ("--batch-shards=8", "--max-dead-letter-share", "a-b", "-q")]
    ['--batch_shards=8', '--max_dead_letter_share', 'a-b', '-q']
    """
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: safetynet SUB-COMMAND [options]   (safetynet SUB-COMMAND --help for its "
             "options)", "       safetynet --version", "",
             "A streaming anti-scam system for a crypto exchange on Apache Beam.", "",
             "sub-commands:"]
    lines += [f"  {n:<{width}}  {h}" for n, (_, _, h) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("--version", "-V", "version"):
        from pipelines.provenance import version_line

        print(version_line())
        return 0
    name, rest = argv[0], [underscored(a) for a in argv[1:]]
    if name not in COMMANDS:
        print(f"safetynet: unknown sub-command {name!r} (choose from "
              f"{', '.join(COMMANDS)}; see safetynet --help)", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    fn = getattr(importlib.import_module(module), func)
    try:
        rc = fn(rest)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:  # `safetynet ... | head`: the reader left
        from pipelines.argtypes import reader_left

        return reader_left()
    except SystemExit as e:  # argparse --help, or a main that exits itself
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
