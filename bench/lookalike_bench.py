"""Look-alike rule (rule 9) per address family: false holds on honest payments, catches.

Replays the simulator's transfers through the SenderProfile machine (the step that decides
the look-alike flag, exactly as the pipeline runs it: per user, in event-time order, after
de-duplication) and counts, per address family (``core/lookalike.py``):

* honest payments, and those the rule holds (false holds) with their rate; when none is
  held, the 95 % upper bound of the rate (3 / n, the "rule of three");
* the expected false holds if addresses were uniformly random: for every honest payment to
  a new address, the number of distinct shown forms (head + tail) among the sender's known
  payees of its family, times the chance that a random address shows a given form
  (alphabet ** -(characters compared beyond the fixed prefix));
* population collisions: pairs of distinct honest destinations of the family that show the
  same form anywhere in the data, as if every user had paid every address (a far harsher
  test than one user's payees), against the number expected by chance;
* poisoning payments (Truth ``address_poisoning``) and how many the rule holds.

Run (by hand)::

    PYTHONPATH=. .venv/bin/python bench/lookalike_bench.py --generate /tmp/sim-la
    PYTHONPATH=. .venv/bin/python bench/lookalike_bench.py --sim DIR [--users N --days D]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from math import comb
from pathlib import Path

from core import lookalike
from core.events import sort_key
from core.machine import run_history
from core.policy import Policy
from core.profiles import SenderProfile
from schemas.codecs import find_input, read_records
from schemas.rows import DeadLetter

# characters of the encoding, and fixed prefix characters the head always contains
ALPHABET = {lookalike.EVM: 16, lookalike.TRON: 58, lookalike.BTC: 58, lookalike.BECH32: 32,
            lookalike.SOL: 58}
FIXED_PREFIX = {lookalike.EVM: 2, lookalike.TRON: 1, lookalike.BTC: 1, lookalike.BECH32: 4,
                lookalike.SOL: 0}
NONE = "none"  # INTERNAL accounts and shapes without a family


def match_chance(fam: str, shown: dict) -> float:
    """Chance that a uniformly random address of ``fam`` shows a given head + tail."""
    head, tail = shown[fam]
    return float(ALPHABET[fam]) ** -(head - FIXED_PREFIX[fam] + tail)


def _read(directory: Path, name: str, record: str) -> list:
    p = find_input(directory, name)
    if p is None:
        sys.exit(f"{directory}: no {name}.avro / {name}.parquet")
    return [r for r in read_records(p, record) if not isinstance(r, DeadLetter)]


def measure(directory: Path, policy: Policy) -> dict:
    transfers = _read(directory, "transfers", "Transfer")
    truth = {t.subject_id: t for t in _read(directory, "truth", "Truth")
             if t.subject_type == "TRANSFER"}
    seen, by_user = set(), defaultdict(list)
    for t in transfers:  # de-duplicated as the Ledger does (rule 8)
        if t.transfer_id not in seen:
            seen.add(t.transfer_id)
            by_user[t.user_id].append(t)
    shown = lookalike.shown(policy)
    machine = SenderProfile(policy, lambda u: None)
    rows = defaultdict(Counter)
    expected = defaultdict(float)
    forms = defaultdict(lambda: defaultdict(set))  # family -> shown form -> honest addresses
    t0 = time.perf_counter()
    for user, evs in by_user.items():
        evs.sort(key=sort_key)
        known = defaultdict(set)  # family -> shown forms of this user's honest payees so far
        paid = set()
        for _, _, ft in run_history(machine, user, evs):
            tr = ft.transfer
            k = lookalike.key(tr.to_address, tr.network, shown)
            fam = k[0] if k else NONE
            gt = truth.get(tr.transfer_id)
            scam = gt is not None and gt.is_scam
            held = ft.lookalike_of is not None
            r = rows[fam]
            if scam and gt.typology == "address_poisoning":
                r["poison"] += 1
                r["poison_held"] += held
            elif not scam:
                r["honest"] += 1
                r["false_holds"] += held
                if k is not None:
                    if tr.to_address not in paid:
                        expected[fam] += len(known[fam]) * match_chance(fam, shown)
                        known[fam].add(k)
                        paid.add(tr.to_address)
                    forms[fam][k].add(tr.to_address)
            else:
                r["other_scam"] += 1
                r["other_scam_held"] += held
    elapsed = time.perf_counter() - t0
    out = {}
    for fam in (*lookalike.FAMILIES, NONE):
        r = rows.get(fam, Counter())
        n = sum(len(a) for a in forms[fam].values())
        pairs = sum(comb(len(a), 2) for a in forms[fam].values())
        out[fam] = {
            "honest": r["honest"], "false_holds": r["false_holds"],
            "rate": r["false_holds"] / r["honest"] if r["honest"] else 0.0,
            "bound95": 3 / r["honest"] if r["honest"] else 1.0,
            "expected_false": expected.get(fam, 0.0),
            "addresses": n, "collision_pairs": pairs,
            "expected_pairs": comb(n, 2) * match_chance(fam, shown) if fam != NONE else 0.0,
            "poison": r["poison"], "poison_held": r["poison_held"],
            "other_scam_held": r["other_scam_held"],
        }
    out["_"] = {"transfers": len(seen), "users": len(by_user), "seconds": elapsed}
    return out


def report(res: dict, policy: Policy) -> str:
    shown = lookalike.shown(policy)
    lines = [f"{res['_']['transfers']:,} transfers of {res['_']['users']:,} users "
             f"(SenderProfile replay {res['_']['seconds']:.1f} s)", "",
             "| family | shown | honest payments | false holds | rate | 95% bound "
             "| expected (random) | distinct addresses | colliding pairs (expected) "
             "| poisoning held |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fam in (*lookalike.FAMILIES, NONE):
        r = res[fam]
        if not r["honest"] and not r["poison"]:
            continue
        sh = "-" if fam == NONE else f"{shown[fam][0]}+{shown[fam][1]}"
        poison = f"{r['poison_held']}/{r['poison']}" if r["poison"] else "-"
        lines.append(
            f"| {fam} | {sh} | {r['honest']:,} | {r['false_holds']} | {r['rate']:.5%} "
            f"| {r['bound95']:.4%} | {r['expected_false']:.1e} | {r['addresses']:,} "
            f"| {r['collision_pairs']} ({r['expected_pairs']:.1e}) | {poison} |")
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--sim", type=Path, help="a replay directory written by the simulator")
    g.add_argument("--generate", type=Path, help="write a simulator run here first")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    policy = Policy(use_models=False)
    directory = a.sim
    if a.generate is not None:
        import simulator

        t0 = time.perf_counter()
        simulator.generate(a.generate, users=a.users, days=a.days, seed=a.seed)
        print(f"simulated --users {a.users} --days {a.days} --seed {a.seed} "
              f"in {time.perf_counter() - t0:.1f} s -> {a.generate}")
        directory = a.generate
    print(report(measure(directory, policy), policy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
