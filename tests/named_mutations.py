"""Run by hand: apply each named one-line mutation of the decision code, run the fast
machine-level tests, report which tests kill it, revert. Every one must be killed.

    PYTHONPATH=. PYTHONHASHSEED=0 .venv/bin/python -m tests.named_mutations

The file is restored after each run (also on Ctrl-C). Not part of the suite: it rewrites
production files while it runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST_TESTS = ["tests/test_boundaries.py", "tests/test_live_facts.py",
              "tests/test_rules_exact.py", "tests/test_machines.py", "tests/test_features.py",
              "tests/test_records.py"]

# (name, file, original line fragment, mutated fragment): each fragment occurs once.
MUTATIONS = [
    ("hold at > instead of >= the threshold", "core/actions.py",
     "if ev.score >= threshold and not ev.capped:",
     "if ev.score > threshold and not ev.capped:"),
    ("warning at > instead of >= the threshold", "core/actions.py",
     "elif ev.score >= p.warn_threshold:", "elif ev.score > p.warn_threshold:"),
    ("no pruning of the silent-sufferer lookback", "core/actions.py",
     "if t < horizon or user in seen", "if user in seen"),
    ("look-alike by prefix only", "core/lookalike.py",
     "return (fam, a[:head], a[-tail:])", "return (fam, a[:head])"),
    ("look-alike by suffix only", "core/lookalike.py",
     "return (fam, a[:head], a[-tail:])", "return (fam, a[-tail:])"),
    ("cool-down at <= instead of <", "core/outreach.py",
     "now - last < self.p.cooldown_ms", "now - last <= self.p.cooldown_ms"),
    ("repeat victim after one loss instead of two", "core/outreach.py",
     "len(s.losses) >= self.p.repeat_victim_losses", "len(s.losses) >= 1"),
    ("a released hold not counted as lost", "core/actions.py",
     'if resolution == "REFUNDED":', "if True:"),
    ("hold released at < instead of <= the deadline", "core/actions.py",
     "if h.expires_at <= now)", "if h.expires_at < now)"),
    ("REMOVE tombstone dropped at the idle reset (the bug of issue 17)",
     "core/profiles.py",
     "            s.live = live\n",
     "            s.live = live if live is not None and live[0] == 'ADD' else None\n"),
]


def _killers(out: str) -> list[str]:
    return sorted({line.split(" ")[1].split("::", 1)[1] for line in out.splitlines()
                   if line.startswith("FAILED ")})


def main() -> int:
    survived = 0
    for name, rel, old, new in MUTATIONS:
        path = ROOT / rel
        original = path.read_text()
        assert original.count(old) == 1, (rel, old)
        try:
            path.write_text(original.replace(old, new))
            res = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider",
                 "--timeout=120", *[f for f in FAST_TESTS if (ROOT / f).exists()]],
                cwd=ROOT, capture_output=True, text=True, timeout=600)
        finally:
            path.write_text(original)
        killers = _killers(res.stdout)
        survived += not killers
        print(f"{'KILLED ' if killers else 'SURVIVED'} {name}")
        for k in killers:
            print(f"    {k}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
