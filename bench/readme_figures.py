"""The README's example figures, made from the runs of the commands the README shows.

    safetynet simulate --output runs/sim --users 20000 --days 30 --seed 7
    safetynet backtest --input runs/sim --output runs/bt
    safetynet backtest --input runs/sim --output runs/bt-rules --use_models false
    python -m bench.readme_figures --models runs/bt --rules runs/bt-rules [--write]

prints the README's block of figures made from the two runs' ``metrics.json`` (``--write``:
puts it into README.md between its ``readme-figures`` markers). The block records the
figures it was made from, and the replay's fingerprint, as a comment; a test
(``tests/test_report_trust.py``) renders them again and simulates the default month to check
that the README says what those runs said, about the replay the command makes. After a
change that moves a decision, rerun the four commands with ``--write``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- readme-figures:begin -->", "<!-- readme-figures:end -->"
KEYS = ("scam_transfers", "scam_usd", "scam_usd_prevented", "scam_usd_recovered",
        "scam_usd_lost", "scam_usd_prevented_or_recovered_share", "holds", "legit_held",
        "legit_held_share", "legit_held_usd", "legit_hours_held_total", "freezes",
        "freezes_not_known_scam", "legit_refunded_by_false_freezes", "transfers_unique")


def recorded(metrics: dict) -> dict:
    """What the block keeps of a run's metrics.json."""
    s = metrics["summary"]
    return {"summary": {k: s[k] for k in KEYS},
            "auc_model_scored": (metrics.get("models") or {}).get("auc_model_scored"),
            "fingerprint": ((metrics.get("run") or {}).get("input_fingerprint") or {})
            .get("sha256")}


def _stopped(s: dict) -> float:
    return s["scam_usd_prevented"] + s["scam_usd_recovered"]


def render(models: dict, rules: dict) -> str:
    """The block's prose from the recorded figures of the two runs."""
    a, b = models["summary"], rules["summary"]
    auc = models.get("auc_model_scored")
    lines = [
        f"On the default month ({a['transfers_unique']:,} transfers, {a['scam_transfers']:,} "
        f"scams worth ${a['scam_usd']:,.0f}), the models stop ${_stopped(a):,.0f} of scam money "
        f"({a['scam_usd_prevented_or_recovered_share']:.1%}: ${a['scam_usd_prevented']:,.0f} "
        f"prevented, held and then refunded, + ${a['scam_usd_recovered']:,.0f} recovered, sent "
        f"to an address already frozen) and lose ${a['scam_usd_lost']:,.0f}, for "
        f"{a['legit_held']:,} honest transfers held ({a['legit_held_share']:.2%}, "
        f"${a['legit_held_usd']:,.0f}, {a['legit_hours_held_total']:,.0f} hours).",
        f"The rules-only baseline stops ${_stopped(b):,.0f} "
        f"({b['scam_usd_prevented_or_recovered_share']:.1%}) for {b['legit_held']:,} honest "
        f"holds ({b['legit_held_share']:.2%}, ${b['legit_held_usd']:,.0f}): the models add "
        f"${_stopped(a) - _stopped(b):,.0f} stopped for {a['legit_held'] - b['legit_held']:+,} "
        "honest holds.",
        f"{a['freezes']:,} freezes with the models, {a['freezes_not_known_scam']:,} of them on "
        f"addresses not known to be scams (refunding {a['legit_refunded_by_false_freezes']:,} "
        f"honest payments); {b['freezes_not_known_scam']:,} with the rules."
        + (f" Prequential ROC AUC of the model-scored transfers: {auc:.3f}." if auc else ""),
    ]
    return "\n".join(lines)


def block(models: dict, rules: dict) -> str:
    data = json.dumps({"models": models, "rules": rules}, sort_keys=True)
    return f"{BEGIN}\n<!-- {data} -->\n{render(models, rules)}\n{END}"


def in_readme(text: str) -> tuple[dict, str]:
    """(recorded figures, prose) of the README's block."""
    m = re.search(re.escape(BEGIN) + r"\n<!-- (.*?) -->\n(.*?)\n" + re.escape(END), text, re.S)
    if m is None:
        raise ValueError(f"no {BEGIN} block in README.md")
    return json.loads(m.group(1)), m.group(2)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.readme_figures",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, metavar="DIR", help="the models-on backtest")
    ap.add_argument("--rules", required=True, metavar="DIR", help="the rules-only backtest")
    ap.add_argument("--write", action="store_true", help="write the block into README.md")
    a = ap.parse_args(argv)
    runs = [recorded(json.loads((Path(d) / "metrics.json").read_text(encoding="utf-8")))
            for d in (a.models, a.rules)]
    if runs[0]["fingerprint"] != runs[1]["fingerprint"]:
        raise SystemExit("readme_figures: error: the two runs read different replays")
    new = block(*runs)
    if a.write:
        text = README.read_text(encoding="utf-8")
        start, end = text.index(BEGIN), text.index(END) + len(END)
        README.write_text(text[:start] + new + text[end:], encoding="utf-8")
    print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
