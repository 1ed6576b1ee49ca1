"""The shadow policy's file, and the streaming job's JSON publisher for its hourly counts.

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
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import apache_beam as beam

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


# ------------------------------------------------------------------------- streaming
# Topics of a streaming job with a shadow, besides the live ones (create them first: the
# local runner's publisher retries until a topic exists, and stalls the job meanwhile).
SHADOW_TOPICS = ("shadow-holds", "shadow-resolutions", "shadow-freezes", "shadow-outreach",
                 "shadow-verdicts", "shadow-disagreements")
def hourly_attributes(row: dict) -> dict:
    return {"event_time": str(row["window_start"]),
            "record_id": f"shadow-hour-{row['window_start']}",
            "record": "ShadowDisagreementsHourly"}


class PublishJson(beam.PTransform):
    """Publish dict rows as JSON messages (``event_time`` = the hour's start)."""

    def __init__(self, topic: str, local: bool, label: Optional[str] = None):
        super().__init__(label)
        self.topic, self.local = topic, local

    def expand(self, rows):
        def encode(r: dict) -> bytes:
            return json.dumps(r, sort_keys=True).encode("utf-8")

        if self.local:
            from connectors.pubsub import ResilientPublishFn as _ResilientPublishFn

            return (rows
                    | "Encode" >> beam.Map(lambda r: (encode(r), hourly_attributes(r)))
                    | "Publish" >> beam.ParDo(_ResilientPublishFn(self.topic)))
        from apache_beam.io.gcp.pubsub import PubsubMessage

        return (rows
                | "Encode" >> beam.Map(lambda r: PubsubMessage(encode(r), hourly_attributes(r)))
                .with_output_types(PubsubMessage)
                | "Publish" >> beam.io.WriteToPubSub(self.topic, with_attributes=True))


# ---------------------------------------------------------------------------- the report
SAMPLE_ROWS = 30


def decision_figures(transfers: dict, truth, holds: list, resolutions: list, freezes: list,
                     outreach: list) -> dict:
    """One policy's headline figures, with the report's definitions (pipelines/report.py):
    holds, friction (legitimate transfers held), scam USD prevented / recovered / lost,
    freezes (on known scams), outreach by kind."""
    held = {h.transfer_id for h in holds}
    res = {r.transfer_id: r for r in resolutions}
    c: dict = defaultdict(float)
    for tid, t in transfers.items():
        scam, _typ, detail = truth.transfer.get(tid, (False, None, None))
        usd = float(t.usd_value)
        r = res.get(tid)
        refunded = r is not None and r.resolution == "REFUNDED"
        if scam:
            key = ("recovered" if refunded and r.reason == "destination frozen"
                   else "prevented" if refunded else "lost")
            c[f"scam_{key}"] += 1
            c[f"scam_usd_{key}"] += usd
        elif detail != "laundering":
            c["legit"] += 1
            if tid in held:
                c["legit_held"] += 1
                c["legit_held_usd"] += usd
    kinds = Counter(o.kind for o in outreach)
    return {"holds": len(holds), "legit_held": int(c["legit_held"]),
            "legit_held_share": round(c["legit_held"] / c["legit"], 6) if c["legit"] else None,
            "legit_held_usd": round(c["legit_held_usd"], 2),
            "scam_usd_prevented": round(c["scam_usd_prevented"], 2),
            "scam_usd_recovered": round(c["scam_usd_recovered"], 2),
            "scam_usd_lost": round(c["scam_usd_lost"], 2),
            "scam_prevented": int(c["scam_prevented"]),
            "freezes": len(freezes),
            "freezes_on_scam_addresses": sum(1 for f in freezes if f.address in truth.addresses),
            "outreach_by_kind": dict(sorted(kinds.items()))}


def read_jsonl(path: Path) -> list:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def compare(out_dir: str | Path, extras: dict, live_policy: Optional[dict],
            shadow_policy_: Optional[dict]) -> Optional[dict]:
    """The report's side-by-side of the live and the shadow policy (None without a shadow
    in ``out_dir``)."""
    from pipelines.report import _output_named

    out_dir = Path(out_dir)
    if not any(out_dir.glob("shadow_holds.*")):
        return None
    transfers, truth = extras["transfers"], extras["truth"]
    sides = {}
    for side, prefix in (("live", ""), ("shadow", "shadow_")):
        rows = {n: _output_named(out_dir, prefix + n, n)
                for n in ("holds", "resolutions", "freezes", "outreach")}
        sides[side] = decision_figures(transfers, truth, rows["holds"], rows["resolutions"],
                                       rows["freezes"], rows["outreach"])
    dis = read_jsonl(out_dir / "shadow_disagreements.jsonl")
    by_pair: dict = defaultdict(lambda: {"transfers": 0, "scam": 0, "legit": 0, "usd": 0.0})
    for d in dis:
        t = transfers.get(d["transfer_id"])
        scam = truth.transfer.get(d["transfer_id"], (False,))[0]
        usd = float(t.usd_value) if t is not None else float(d.get("usd_value") or 0.0)
        d["usd_value"], d["scam"] = usd, bool(scam)
        x = by_pair[d["pair"]]
        x["transfers"] += 1
        x["scam" if scam else "legit"] += 1
        x["usd"] += usd
    lp, sp = live_policy or {}, shadow_policy_ or {}
    diff = {k: [lp.get(k), sp.get(k)] for k in sorted(set(lp) | set(sp))
            if lp.get(k) != sp.get(k)}
    sample = sorted(dis, key=lambda d: (-d["usd_value"], d["event_time"], d["transfer_id"]))
    hourly = read_jsonl(out_dir / "shadow_hourly.jsonl")
    return {"live": sides["live"], "shadow": sides["shadow"], "policy_differences": diff,
            "disagreements": len(dis),
            "disagreements_by_pair": {k: {**v, "usd": round(v["usd"], 2)}
                                      for k, v in sorted(by_pair.items())},
            "hours_with_disagreements": len(hourly),
            "max_disagreements_per_hour": max((h["disagreements"] for h in hourly), default=0),
            "sample": sample[:SAMPLE_ROWS]}


def html_section(fig: Optional[dict]) -> str:
    """The report's "Shadow policy" section (empty without a shadow)."""
    if not fig:
        return ""
    from pipelines.report import _e, _iso, _pct, _short, _table, _usd

    lv, sh = fig["live"], fig["shadow"]
    P = ["<h2>Shadow policy</h2>"]
    diffs = "; ".join(f"{k}: {a} → {b}" for k, (a, b) in fig["policy_differences"].items())
    P.append("<p class='note'>A second policy ran on the same stream in the same job; its "
             "decisions were written to <code>shadow_*</code> files and never acted on. "
             f"Policy changes: {_e(diffs or 'none')}.</p>")
    rows = [("holds", lv["holds"], sh["holds"]),
            ("legitimate transfers held (friction)", lv["legit_held"], sh["legit_held"]),
            ("… share of legitimate transfers", _pct(lv["legit_held_share"]),
             _pct(sh["legit_held_share"])),
            ("… their USD", _usd(lv["legit_held_usd"]), _usd(sh["legit_held_usd"])),
            ("scam USD prevented (held → refunded)", _usd(lv["scam_usd_prevented"]),
             _usd(sh["scam_usd_prevented"])),
            ("scam USD recovered (sent to frozen)", _usd(lv["scam_usd_recovered"]),
             _usd(sh["scam_usd_recovered"])),
            ("scam USD lost", _usd(lv["scam_usd_lost"]), _usd(sh["scam_usd_lost"])),
            ("freezes", lv["freezes"], sh["freezes"]),
            ("… on known scams", lv["freezes_on_scam_addresses"],
             sh["freezes_on_scam_addresses"])]
    for k in sorted(set(lv["outreach_by_kind"]) | set(sh["outreach_by_kind"])):
        rows.append((f"outreach: {k}", lv["outreach_by_kind"].get(k, 0),
                     sh["outreach_by_kind"].get(k, 0)))
    P.append(_table(["", "live", "shadow"], rows, raw_cols=()))
    P.append(f"<p class='note'>{_e(fig['disagreements'])} transfers decided differently "
             "(hold &gt; warning &gt; nothing), in "
             f"{_e(fig['hours_with_disagreements'])} hours of event time (at most "
             f"{_e(fig['max_disagreements_per_hour'])} in one hour; hourly counts in "
             "<code>shadow_hourly.jsonl</code>, every one in "
             "<code>shadow_disagreements.jsonl</code>).</p>")
    P.append(_table(["live → shadow", "transfers", "scams", "legitimate", "USD"],
                    [(k.replace(">", " → "), v["transfers"], v["scam"], v["legit"],
                      _usd(v["usd"])) for k, v in fig["disagreements_by_pair"].items()],
                    raw_cols=(4,)))
    P.append(f"<p class='note'>The {_e(len(fig['sample']))} largest by USD:</p>")
    P.append(_table(["time (UTC)", "transfer", "user", "destination", "USD", "scam", "live",
                     "shadow", "live reasons", "shadow reasons"],
                    [(_iso(d["event_time"]), d["transfer_id"], d["user_id"],
                      _short(d["address"], 24), _usd(d["usd_value"]),
                      "yes" if d["scam"] else "no", d["live"], d["shadow"],
                      "; ".join(d["live_reasons"])[:120], "; ".join(d["shadow_reasons"])[:120])
                     for d in fig["sample"]], raw_cols=(4,)))
    return "\n".join(P)


def build_stream_shadow(inputs: dict, outs: dict, shadow: Policy, topic_of, payload: str,
                        local: bool, time_scale: float = 1.0,
                        versions_dir: Optional[str] = None) -> dict:
    """The streaming job's shadow: ``SafetyNet(shadow, "stream", label="Shadow")`` on the
    same inputs, its decisions published to ``topic_of("shadow-NAME")`` (never acted on),
    and the hourly disagreement counts (fixed hourly windows of event time, divided by
    ``time_scale`` like every other duration) to ``topic_of("shadow-disagreements")``."""
    from connectors.pubsub import WriteOutput
    from transforms.safetynet import SafetyNet
    from transforms.shadow import HOUR_MS, SHADOW_OUTPUTS, ShadowDiff

    souts = inputs | "Shadow" >> SafetyNet(shadow, "stream", label="Shadow",
                                           versions_dir=versions_dir)
    for n in SHADOW_OUTPUTS:
        souts[n] | f"ShadowWrite{n.title()}" >> WriteOutput(topic_of(f"shadow-{n}"), payload,
                                                            local)
    if shadow.warning_holdout > 0:
        (souts["warning_holdout"] | "ShadowWriteWarningHoldout"
         >> WriteOutput(topic_of("shadow-warning_holdout"), payload, local))
    diff = {"live": outs, "shadow": souts} | "ShadowDiff" >> ShadowDiff(
        window_ms=max(1, int(HOUR_MS / time_scale)))
    diff["hourly"] | "ShadowWriteHourly" >> PublishJson(topic_of("shadow-disagreements"),
                                                        local)
    return {"shadow": souts, **diff}
