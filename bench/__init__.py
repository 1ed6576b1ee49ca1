"""Benchmarks, run by hand (not part of the test suite); see bench/README.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(module: str, args: list, what: str) -> dict:
    """Run ``python -m module --child ...args`` in a fresh process from the project root
    (one measurement each, nothing shared); return the JSON its last stdout line holds."""
    cmd = [sys.executable, "-m", module, "--child", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"[bench] {what} failed (status {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def seeds_summary(rows: list, inside: int, json_path) -> int:
    """The seed benches' last lines: how many seeds had the true effect inside the measured
    95% interval, and the rows as JSON when ``json_path`` is given. Returns 0 (exit status)."""
    print(f"[bench] true effect inside the 95% interval for {inside} of {len(rows)} seeds")
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))
    return 0
