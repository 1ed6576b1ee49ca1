"""`./run_local.sh test`: start the Pub/Sub emulator, run pytest, stop the emulator.

Tests that need the emulator read PUBSUB_EMULATOR_HOST; where gcloud's emulator is not
installed they are skipped with that reason, and under CI=true each such skip is turned
into a failure of the run instead (tests/conftest.py: reported as an error when the skip
comes from a ``skipif`` mark, as a failure when from ``pytest.skip`` in the test).
"""

import os
import sys

import pytest

from connectors import emulator


def main(argv: list[str]) -> int:
    emu = None
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        emu = emulator.start()
        if emu is None:
            print("[test] gcloud's Pub/Sub emulator is not installed: emulator tests will "
                  + ("FAIL (CI=true)" if os.environ.get("CI", "").lower() == "true"
                     else "skip"))
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
            print(f"[test] Pub/Sub emulator on {emu.host}")
    try:
        return pytest.main(argv)
    finally:
        if emu is not None:
            emu.stop()
            print("[test] Pub/Sub emulator stopped")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
