"""Write ``tests/module_seconds.json`` (versioned) from this checkout's last run
(``tests/.durations.json``): each test module's wall seconds, by which a fresh clone's
first parallel run orders the modules (the longest first; see ``conftest.py``).

    PYTHONPATH=. .venv/bin/python -m tests.save_module_seconds

Run it after a full run of the suite, when modules were added or their cost changed.
"""

from __future__ import annotations

import json
import sys

from tests.conftest import DURATIONS, MODULE_SECONDS, _read_durations, module_seconds


def main() -> int:
    durations = _read_durations(DURATIONS)
    if not durations:
        print(f"no durations in {DURATIONS}: run the suite first", file=sys.stderr)
        return 2
    got = module_seconds(durations)
    MODULE_SECONDS.write_text(json.dumps(got, indent=0, sort_keys=True) + "\n")
    print(f"wrote {MODULE_SECONDS}: {len(got)} modules, {sum(got.values())} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
