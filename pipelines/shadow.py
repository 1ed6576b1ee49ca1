"""The shadow policy's file: a candidate policy as changes to the live one. (The streaming
job's shadow is built in :mod:`pipelines.stream`; the report's side-by-side of live and
shadow is :mod:`report.shadow`.)

``--shadow_policy FILE`` names a JSON or YAML mapping of policy options, spelt as the
command-line flags (without the dashes): a candidate policy is the live one with these
changes. Durations take their units as on the command line, and the live job's
``--time_scale`` applies to them too::

    {"hold_threshold": 0.6, "warn_threshold": 0.35, "use_models": true, "hold": "12h"}

>>> from transforms.policy import Policy
>>> p = policy_with(Policy(), {"hold_threshold": 0.6, "hold": "12h"})
>>> (p.hold_threshold, p.hold_ms, p.warn_threshold)
(0.6, 43200000, 0.45)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from pipelines.options import SafetyNetOptions, policy_changes
from transforms.policy import Policy


def read_options_file(path: str | Path) -> dict:
    """The mapping in a JSON or YAML file (``.yaml`` / ``.yml``: YAML; otherwise JSON, then
    YAML if it is not JSON). Raises ValueError with a message a person understands."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"shadow policy file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            raise json.JSONDecodeError("yaml", text, 0)
        data = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"shadow policy file {p}: neither JSON nor YAML: "
                             f"{str(e).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"shadow policy file {p}: expected a mapping of policy options, "
                         f"got {type(data).__name__}")
    return data


def _flags(options: dict) -> list[str]:
    out = []
    for k, v in options.items():
        name = str(k).lstrip("-")
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        out += [f"--{name}", str(v)]
    return out


def policy_with(live: Policy, options: dict, time_scale: float = 1.0) -> Policy:
    """``live`` with the policy options of ``options`` (CLI names, CLI value syntax)
    changed; durations given there are divided by ``time_scale``, as the live ones were."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    SafetyNetOptions._add_argparse_args(parser)
    flags = _flags(options)
    try:
        ns, unknown = parser.parse_known_args(flags)
    except argparse.ArgumentError as e:
        raise ValueError(f"shadow policy: {e}") from None
    bad = [u for u in unknown if u.startswith("--")]
    if bad:
        raise ValueError(f"shadow policy: unknown option {bad[0][2:]!r}")
    got = vars(ns)
    scale = float(got.get("time_scale") or 1.0) if "time_scale" in {
        str(k).lstrip("-") for k in options} else time_scale
    changes = policy_changes(got)
    if scale != 1.0:
        changes = {k: max(1, int(v / scale)) if k.endswith("_ms") else v
                   for k, v in changes.items()}
    return dataclasses.replace(live, **changes).validate()


def shadow_policy(path: str | Path, live: Policy, time_scale: float = 1.0) -> Policy:
    """The policy a ``--shadow_policy`` file describes, on top of the live one."""
    return policy_with(live, read_options_file(path), time_scale)
