"""The shadow policy's file: a candidate policy as changes to the live one. (The streaming
job's shadow is built in :mod:`pipelines.stream`; the report's side-by-side of live and
shadow is :mod:`report.shadow`.)

``--shadow_policy FILE`` names a JSON or YAML mapping of policy options, spelt as the
command-line flags (without the dashes), or a backtest's ``metrics.json`` (the policy that
run used), read as ``--policy`` reads its file: a candidate policy is the live one with
these changes. Durations take their units as on the command line, and the live job's
``--time_scale`` applies to them too::

    {"hold_threshold": 0.6, "warn_threshold": 0.35, "use_models": true, "hold": "12h"}

>>> from core.policy import Policy
>>> p = policy_with(Policy(), {"hold_threshold": 0.6, "hold": "12h"})
>>> (p.hold_threshold, p.hold_ms, p.warn_threshold)
(0.6, 43200000, 0.45)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from core.policy import Policy
from pipelines.options import (
    parse_policy_flags,
    policy_changes,
    policy_flags,
    read_policy_file,
)


def policy_with(live: Policy, options: dict, time_scale: float = 1.0,
                where: str = "shadow policy") -> Policy:
    """``live`` with the policy options of ``options`` (CLI names, CLI value syntax)
    changed; durations given there are divided by ``time_scale``, as the live ones were
    (unless ``options`` names its own ``time_scale``)."""
    return _changed(live, policy_flags(options, where), time_scale)


def shadow_policy(path: str | Path, live: Policy, time_scale: float = 1.0) -> Policy:
    """The policy a ``--shadow_policy`` file describes, on top of the live one. The file is
    read as ``--policy`` reads one (:func:`pipelines.options.read_policy_file`)."""
    return _changed(live, read_policy_file(str(path), "--shadow_policy"), time_scale)


def _changed(live: Policy, flags: list, time_scale: float) -> Policy:
    got = parse_policy_flags(flags)
    scale = float(got.get("time_scale") or 1.0) if "--time_scale" in flags[::2] \
        else time_scale
    changes = policy_changes(got)
    if scale != 1.0:
        changes = {k: max(1, int(v / scale)) if k.endswith("_ms") else v
                   for k, v in changes.items()}
    return dataclasses.replace(live, **changes).validate()
