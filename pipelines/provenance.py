"""Where a run's figures come from: the program's version and git commit, when it ran, and
a fingerprint of the replay it read (so ``safetynet report`` can refuse a backtest output
paired with another replay).

No Beam import: the CLI's ``--version`` stays fast.
"""

from __future__ import annotations

import hashlib
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

__version__ = "0.1.0"  # keep equal to setup.py's version (tests/test_cli_safety.py checks)

ROOT = Path(__file__).resolve().parent.parent
# The replay files a backtest reads, the fingerprint covers: names and bytes.
REPLAY_STEMS = ("transfers", "reports", "outcomes", "blacklist", "profiles",
                "blacklist_snapshot", "truth")


def git_commit() -> Optional[str]:
    """The commit of the source tree this runs from, ``+dirty`` when it has local changes;
    None outside a git checkout (an installed package, a Dataflow worker)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def version_line() -> str:
    """What ``safetynet --version`` prints."""
    commit = git_commit()
    return f"safetynet {__version__}" + (f" (commit {commit})" if commit else "")


def replay_fingerprint(directory: str | Path) -> dict:
    """SHA-256 of each replay file in ``directory`` and of them all: equal fingerprints, the
    same replay. ``{"sha256": ..., "files": {name: sha256}}``; an empty directory gives no
    files."""
    d = Path(directory)
    files = {}
    for stem in REPLAY_STEMS:
        for fmt in ("avro", "parquet"):
            p = d / f"{stem}.{fmt}"
            if p.is_file():
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                files[p.name] = h.hexdigest()
    total = hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(files.items()))
                           .encode()).hexdigest()
    return {"sha256": total, "files": files}


def run_stamp() -> dict:
    """Version, commit and the wall-clock time of the run (UTC), for ``metrics.json``."""
    return {"version": __version__, "commit": git_commit(),
            "run_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
