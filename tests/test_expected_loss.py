"""Decisions by expected loss (rules 2, 10): a transfer is held when its score reaches the
hold threshold or its score x USD reaches the expected-loss threshold; every hold names
the test that held it; the friction budget bounds both tests by count and by USD of recent
legitimate transfers; the per-user cap counts expected-loss holds too."""

from __future__ import annotations

import itertools
import random

import pytest

from core.events import AddressFact, FeaturedTransfer
from core.friction import NEVER, Budget
from core.labels import TRANSFER_RISK
from core.learner import VERSIONS, Learner
from core.machine import run_history
from core.policy import Policy
from core.scorer import SCORED_TRANSFERS, Score
from tests.scenario import at, collect, transfer
from tests.test_models import LEGIT, ON, SCAMMY, example, ftransfer


def hold_tests(holds) -> dict:
    return {h.transfer_id: [r for r in h.reasons if r.startswith("hold_test=")]
            for h in holds}


# ------------------------------------------------------------------ the graph decides
def versioned(score: float, loss: float) -> list:
    """A published transfer_risk version, valid from the start, whose model scores every
    transfer ``score``, carrying the expected-loss threshold ``loss``."""
    import pickle

    from river import dummy

    from core.events import ModelVersion

    m = dummy.PriorClassifier()
    for y in [True] * int(score * 100) + [False] * (100 - int(score * 100)):
        m.learn_one({}, y)
    return [ModelVersion(TRANSFER_RISK, at(0) - 10, "transfer_risk:1", 1,
                         pickle.dumps(m), 0.75, loss)]


def score_and_act(events, policy: Policy, versions: list) -> dict:
    """Score and Actions (the pure machines, as the reference runs them) on featured
    transfers and address facts, with ``versions`` as the scorers' side data."""
    from core.actions import HOLDS, Actions

    sc = Score(policy)
    sc.bind(versions)
    scored_evs = [o[2] for ev in events if isinstance(ev, FeaturedTransfer)
                  for o in run_history(sc, ev.transfer.user_id, [ev])
                  if o[0] == SCORED_TRANSFERS]
    facts = [e for e in events if not isinstance(e, FeaturedTransfer)]
    out = []
    for dest in sorted({e.featured.transfer.to_address for e in scored_evs}):
        evs = [e for e in scored_evs if e.featured.transfer.to_address == dest]
        evs += [f for f in facts if f.address == dest]
        out += run_history(Actions(policy), dest, evs)
    return {"holds": [v for tag, _, v in out if tag == HOLDS]}


def featured(tid: str, t: int, usd: float, to: str, **kw) -> FeaturedTransfer:
    return FeaturedTransfer(transfer(tid, t, "u-" + tid, to, usd), t, {}, **kw)


def test_a_large_transfer_is_held_by_expected_loss_and_every_hold_names_its_test():
    # the model scores every transfer 0.3; at $3,000 of expected loss a $20,000 transfer
    # (0.3 x 20,000 = $6,000) is held, a $5,000 one ($1,500) is not
    p = Policy(hold_expected_loss=3000.0, friction_cap=0)
    listed, frozen = "0x" + "b" * 40, "0x" + "f" * 40
    evs = [AddressFact(frozen, at(0), True, "c1", "ADDRESS", frozen),
           featured("big", at(1), 20000.0, "0x" + "1" * 40),
           featured("mid", at(2), 5000.0, "0x" + "2" * 40),
           featured("lst", at(3), 50.0, listed, blacklist=("vendor_x",), list_version="v1"),
           featured("frz", at(4), 50.0, frozen)]
    out = score_and_act(evs, p, versioned(0.3, 3000.0))
    assert hold_tests(out["holds"]) == {"big": ["hold_test=expected_loss"],
                                        "lst": ["hold_test=blacklist"],
                                        "frz": ["hold_test=frozen"]}
    (big,) = [h for h in out["holds"] if h.transfer_id == "big"]
    assert "expected_loss_usd=6000" in big.reasons
    # the version's threshold wins over the policy's: at $10,000 the big one goes through
    out = score_and_act(evs, p, versioned(0.3, 10000.0))
    assert "big" not in hold_tests(out["holds"])


def test_expected_loss_is_off_while_the_rules_score():
    # no model version: the rules' fixed 0.05 is no probability, so a $1M transfer is not
    # held by "expected loss" ($50,000 at 0.05), whatever the threshold
    ev = [transfer("huge", at(1), "ann", "0x" + "1" * 40, 1_000_000.0)]
    out = collect(ev, Policy(use_models=False, hold_expected_loss=1000.0))
    assert out["holds"] == []


def test_the_friction_cap_counts_expected_loss_holds():
    p = Policy(hold_expected_loss=3000.0, friction_cap=1)
    evs = [featured("b1", at(1), 20000.0, "0x" + "1" * 40),
           featured("b2", at(2), 20000.0, "0x" + "2" * 40),  # over the cap
           featured("b3", at(hours=25), 20000.0, "0x" + "3" * 40)]  # window passed
    evs = [e._replace(transfer=e.transfer._replace(user_id="bulk")) for e in evs]
    sc = Score(p)
    sc.bind(versioned(0.3, 3000.0))
    got = {o[2].featured.transfer.transfer_id: (o[2].held_by, o[2].capped)
           for o in run_history(sc, "bulk", evs) if o[0] == SCORED_TRANSFERS}
    assert got == {"b1": ("expected_loss", False), "b2": ("expected_loss", True),
                   "b3": ("expected_loss", False)}


# ------------------------------------------------------------- the budget's two thresholds
def within(legit, t, loss, share_n, share_u) -> bool:
    held = [(w, u) for s, w, u in legit if s >= t or s * u >= loss]
    tot_n, tot_u = sum(w for _, w, _ in legit), sum(w * u for _, w, u in legit)
    return (sum(w for w, _ in held) <= share_n * tot_n + 1e-9
            and sum(w * u for w, u in held) <= share_u * tot_u + 1e-9)


def test_without_expected_loss_the_usd_budget_also_bounds_the_score_threshold():
    b = Budget(100)
    for i in range(100):
        b.add(i / 100, 1, 1000.0 if i == 99 else 10.0)  # the top score is the big one
    # 2% by count would hold 0.99 and 0.98; but 0.99's $1,000 is 50% of the USD
    assert b.thresholds(0.02, 0.0, 0.0, 0.0) == (pytest.approx(0.970001), 0.0)
    assert b.thresholds(0.02, 0.10, 0.0, 0.0) == (pytest.approx(0.990001), 0.0)


def test_joint_thresholds_fit_both_budgets_and_hold_the_most_positive_usd():
    rng = random.Random(5)
    b = Budget(2000)
    legit = []
    for _ in range(400):
        s, u = round(rng.random() ** 3, 6), round(10 ** rng.uniform(1, 5), 2)
        legit.append((s, 1.0, u))
        b.add(s, 1.0, u)
    pos = [(round(rng.uniform(0.2, 1.0), 6), round(10 ** rng.uniform(2, 5), 2))
           for _ in range(60)]
    for s, u in pos:
        b.add_positive(s, u)
    t, loss = b.thresholds(0.02, 0.05, 0.5, 100.0)
    assert t >= 0.5 and loss >= 100.0
    assert within(legit, t, loss, 0.02, 0.05)

    def caught(tt, ll):
        return sum(u for s, u in pos if s >= tt or s * u >= ll)

    # no pair of thresholds from the data's own values beats it within the budgets
    ts = sorted({0.5, NEVER} | {round(s + 1e-6, 6) for s, _, _ in legit if s >= 0.5})
    losses = sorted({100.0} | {round(s * u + 0.01, 2) for s, _, u in legit if s * u >= 100})
    best = max(caught(tt, ll) for tt, ll in itertools.product(ts, losses)
               if within(legit, tt, ll, 0.02, 0.05))
    assert caught(t, loss) == pytest.approx(best)


def test_the_learner_publishes_both_thresholds_and_the_scorer_uses_them():
    p = Policy(**dict(ON, model_publish_labels=50, friction_budget=0.05,
                      friction_budget_usd=0.2, hold_expected_loss=1.0,
                      hold_threshold=0.5, warn_threshold=0.05))
    rng = random.Random(3)
    exs = []
    for i in range(400):
        y = rng.random() < 0.2
        x = {k: v + rng.gauss(0, 0.3) for k, v in (SCAMMY if y else LEGIT).items()}
        exs.append(example(TRANSFER_RISK, f"T:e{i}", at(0) + 10 * i, x, y))
    versions = [v for tag, _, v in run_history(Learner(p), TRANSFER_RISK, exs)
                if tag == VERSIONS]
    assert versions and all(v.hold_expected_loss >= 1.0 for v in versions)
    last = versions[-1]
    assert last.hold_expected_loss > 1.0  # the budget raised it above the floor
    sc = Score(p)
    sc.bind(versions)
    now = exs[-1].event_time + 1

    def scored(usd):
        ft = ftransfer("z", now, LEGIT)
        ft = ft._replace(transfer=ft.transfer._replace(usd_value=usd))
        (o,) = [o for o in sc.on_event(sc.new_state("u"), ft, now)
                if o[0] == SCORED_TRANSFERS]
        return o[2]

    score = scored(1.0).score
    assert 0 < score < last.hold_threshold
    # between the policy's floor and the version's threshold: not held; above: held
    assert scored(0.5 * (1.0 + last.hold_expected_loss) / score).held_by is None
    assert scored(1.01 * last.hold_expected_loss / score).held_by == "expected_loss"


def test_a_reason_holding_mostly_honest_money_is_flagged_and_warned():
    from report.precision import add_precision
    from schemas.rows import Hold

    trs = [transfer("s1", at(1), "v", "0x" + "1" * 40, 100.0),
           transfer("l1", at(2), "u", "0x" + "2" * 40, 5000.0),
           transfer("s2", at(3), "v", "0x" + "3" * 40, 900.0)]
    tests = {"s1": "expected_loss", "l1": "expected_loss", "s2": "score"}
    holds = [Hold("h" + t.transfer_id, t.transfer_id, t.user_id, t.to_address, "ETH", "1",
                  t.usd_value, t.event_time, t.event_time + 1, 0.5,
                  [f"hold_test={tests[t.transfer_id]}"]) for t in trs]

    class Truth:
        transfer = {"s1": (True, None, None), "s2": (True, None, None),
                    "l1": (False, None, None)}

    metrics: dict = {}
    p = add_precision(metrics, {"truth": Truth, "holds": holds,
                                "transfers": {t.transfer_id: t for t in trs}})
    el = p["expected_loss"]
    assert (el["holds"], el["precision"]) == (2, 0.5)
    assert el["precision_usd"] == pytest.approx(100 / 5100) and el["mostly_honest"]
    assert p["model"]["precision_usd"] == 1.0 and not p["model"]["mostly_honest"]
    (w,) = metrics["warnings"]
    assert "expected_loss" in w and "model" not in w


def test_the_long_cap_stops_a_bulk_payer_the_daily_cap_lets_through():
    # one model hold a day is within a daily cap of 5; the 30-day cap of 3 stops the 4th
    # until the first hold is 30 days old
    from core.policy import DAY

    p = Policy(**dict(ON, friction_cap=5, friction_cap_long=3, hold_threshold=0.05,
                      warn_threshold=0.05))
    sc = Score(p)
    s = sc.new_state("pool")
    got = {}
    for d in (0, 1, 2, 3, 29, 30, 31):
        now = at(0) + d * DAY
        sc.advance(s, now)
        (o,) = [o for o in sc.on_event(s, ftransfer(f"d{d}", now, LEGIT), now)
                if o[0] == SCORED_TRANSFERS]
        got[d] = (o[2].capped, [r for r in o[2].reasons if r.startswith("friction_cap")])
    assert got == {0: (False, []), 1: (False, []), 2: (False, []),
                   3: (True, ["friction_cap_long=3"]), 29: (True, ["friction_cap_long=3"]),
                   30: (False, []), 31: (False, [])}


def test_the_budget_waits_until_it_can_measure_its_share():
    # a 1% budget needs 100 legitimate examples before it may move the policy's threshold
    from core.models import ModelState

    p = Policy(**dict(ON, friction_budget=0.01, hold_threshold=0.5, friction_budget_usd=0.0,
                      hold_expected_loss=0.0))
    learner = Learner(p)
    s = ModelState(TRANSFER_RISK, 0.5)
    s.budget = Budget(1000)
    for i in range(99):
        s.budget.add(0.9 + i / 1000)  # all above the floor: the budget would raise it
    assert learner.hold_thresholds(s) == (0.5, 0.0)
    s.budget.add(0.95)
    assert learner.hold_thresholds(s)[0] > 0.95
