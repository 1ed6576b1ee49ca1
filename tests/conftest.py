"""Suite-wide hooks.

Under ``CI=true`` a test skipped because the Pub/Sub emulator is missing (its skip reason
names PUBSUB_EMULATOR_HOST) fails instead: CI must run the emulator tests, and a green run
that skipped them would hide a broken install. Elsewhere they skip with the reason.
"""

from __future__ import annotations

import os

import pytest

EMULATOR_VAR = "PUBSUB_EMULATOR_HOST"


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and _ci() and EMULATOR_VAR in str(rep.longrepr):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"CI=true but the Pub/Sub emulator is missing ({reason}): install "
                        "gcloud's pubsub-emulator component; CI must not skip these tests")
