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
