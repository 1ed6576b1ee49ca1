"""The Learner, the Score step and LabelJoin: score before learn, delayed labels, model
versions, snapshots, the report-bombing guard. Machine-level tests run the pure machines
(fast); the graph-level ones run the whole SafetyNet in batch mode through
tests/scenario.py.

:class:`Models` below runs the Learner and the Score step in one event-time order, the
order the graph gives them (a version published at t is used from t + 1 on), with a
version published after every label unless the policy says otherwise."""

from __future__ import annotations

import dataclasses
import math
import pickle
import random

import pytest

from core.events import (
    AddressFact,
    Example,
    FeaturedReport,
    FeaturedTransfer,
    ReportIn,
    sort_key,
)
from core.labels import EXAMPLES, SCAM_VERDICT, TRANSFER_RISK, LabelJoin
from core.learner import MODEL_METRICS, SNAPSHOTS, VERSIONS, Learner
from core.machine import END_OF_TIME, METRIC, Machine, run_history, step
from core.models import (
    RIVER_VERSION,
    SNAPSHOT_FORMAT,
    ModelState,
    SnapshotError,
    read_snapshot,
    report_x,
    transfer_x,
)
from core.policy import DAY, Policy
from core.scorer import SCORED_REPORTS, SCORED_TRANSFERS, Score
from schemas.rows import ScamReport
from tests.kit import snapshot_models
from tests.scenario import addr, at, collect, report, transfer
from transforms.side import load_warm, warm_versions
from transforms.snapshots import load_snapshot, snapshot_file, write_snapshot_bytes


class Models(Machine):
    """The Learner and the Score step of one model, as the graph composes them: labels
    go to the learner, its published versions to the scorer, which scores featured
    events. State: the learner's ModelState (the scorer's friction state is not tested
    here). ``save(base, state, t)`` receives the snapshots the learner emits."""

    def __init__(self, policy: Policy, save=None):
        if "model_publish_labels" not in getattr(policy, "_explicit", ()):
            policy = dataclasses.replace(policy, model_publish_labels=1)
        self.p = policy
        self.learner = Learner(policy, load_warm(policy))
        self.scorer = Score(policy)
        self.scorer.bind(warm_versions(policy))
        self._save = save

    def new_state(self, key):
        return self.learner.new_state(key)

    def next_deadline(self, s):
        return self.learner.next_deadline(s)

    def _pass(self, s, out: list) -> list:
        got = []
        for o in out:
            if o[0] == VERSIONS:
                self.scorer.bind([o[2]])
            elif o[0] == SNAPSHOTS and self._save is not None:
                states, _ = read_snapshot(o[2][1])
                self._save(self.p.model_snapshot_path, states[o[2][0]], o[1])
            elif o[0] == SNAPSHOTS:  # what the shell does with them
                write_snapshot_bytes(o[2][1], snapshot_file(self.p.model_snapshot_path,
                                                            o[2][0]))
            got.append(o)
        return got

    def advance(self, s, now):
        return self._pass(s, self.learner.advance(s, now))

    def on_event(self, s, ev, now):
        if type(ev) is Example:
            return self._pass(s, self.learner.on_event(s, ev, now))
        return self.scorer.on_event(self.scorer.new_state(None), ev, now)

# the model decides from the first label (no warm-up, no class minimum) and learns each
# label as it comes (positives do not wait for the label horizon)
ON = {"model_warmup_labels": 0, "model_min_negatives": 0, "model_min_positives": 0,
      "verdict_warmup_labels": 0, "verdict_min_negatives": 0, "verdict_min_positives": 0,
      "model_sync_labels": False}
LEGIT = {"log_usd": 4.0, "n_1h": 0.0, "n_24h": 1.0, "new_dest": 0.0, "amount_z": 0.1,
         "account_age_days": 400.0, "fresh_account": 0.0, "fan_in_1h": 1.0,
         "fan_in_24h": 3.0, "dest_age_days": 50.0, "blacklisted": 0.0, "reports_7d": 0.0}
SCAMMY = dict(LEGIT, log_usd=8.0, new_dest=1.0, amount_z=3.0, fan_in_1h=6.0,
              fan_in_24h=12.0, dest_age_days=0.3, reports_7d=1.0)
BOMB = {"reporter_age_days": 0.2, "reporter_fresh": 1.0, "reporter_paid_suspect": 0.0,
        "hours_since_paid": -1.0, "suspect_fan_in_24h": 20.0, "suspect_log_transfers": 6.0,
        "reporters_24h": 20.0, "established_reporters_24h": 0.0,
        "established_reporters_7d": 0.0, "unestablished_reports_24h": 19.0,
        "suspect_blacklisted": 0.0, "log_claimed_loss": 6.0, "claimed_loss_missing": 0.0,
        "_text": "SCAM SCAM SCAM this wallet took my funds, freeze it now",
        "_category": "FAKE_PLATFORM"}
HONEST = dict(BOMB, reporter_age_days=600.0, reporter_fresh=0.0, reporter_paid_suspect=1.0,
              hours_since_paid=0.5, reporters_24h=1.0, established_reporters_24h=1.0,
              established_reporters_7d=1.0, unestablished_reports_24h=0.0,
              suspect_log_transfers=1.0, suspect_fan_in_24h=2.0,
              _text="Met Anna online, platform shows profits but I cannot withdraw")


def ftransfer(tid: str, t: int, features: dict, to: str = "0xdest") -> FeaturedTransfer:
    return FeaturedTransfer(transfer(tid, t, "u-" + tid, to), t, dict(features))


def freport(rid: str, t: int, features: dict, suspect: str = "0xmerchant") -> FeaturedReport:
    r = ScamReport(rid, t, "rep-" + rid, None, suspect, None, features["_category"],
                   features["_text"], 100.0)
    return FeaturedReport(ReportIn(r, t, suspect), t, dict(features))


def example(model: str, sid: str, t: int, x: dict, y: bool) -> Example:
    return Example(model, t, sid, dict(x), y, t - 1)


def training(model: str, n: int, t0: int, seed: int = 1) -> list:
    """n labelled examples: scammy / legit transfers, or honest / bombing reports. For the
    verdict model the labels are *inverted on purpose* when ``model`` is 'evil': a model
    taught that bombing reports are scams."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = rng.random() < 0.3
        if model == TRANSFER_RISK:
            x = SCAMMY if y else LEGIT
            x = {k: v + rng.gauss(0, 0.1) for k, v in x.items()}
            out.append(example(TRANSFER_RISK, f"T:x{i}", t0 + i, x, y))
        else:
            x = BOMB if (y if model == "evil" else not y) else HONEST
            out.append(example(SCAM_VERDICT, f"R:x{i}", t0 + i, x, y))
    return out


def scores(outputs: list, tag: str = SCORED_TRANSFERS) -> dict:
    out = {}
    for t, _, v in outputs:
        if t != tag:
            continue
        if tag == SCORED_TRANSFERS:
            out[v.featured.transfer.transfer_id] = v
        else:
            out[v.featured.report_in.report.report_id] = v
    return out


def trained_state(policy: Policy, name: str, n: int = 300) -> tuple[Models, ModelState]:
    m = Models(policy)
    s = m.new_state(name)
    for ex in training(name if name == TRANSFER_RISK else SCAM_VERDICT, n, at(0)):
        s, _ = step(m, name, s, ex)
    return m, s


# ----------------------------------------------------------------- score before learn
def test_label_for_a_transfer_never_changes_its_own_score():
    p = Policy(**ON)
    t = at(days=1)
    x = ftransfer("X", t, SCAMMY)
    warm = training(TRANSFER_RISK, 50, at(0))
    # the label for X arrives at X's own event time and 1 ms later (the earliest LabelJoin
    # can stamp it): neither reaches the model before X is scored
    own_now = Example(TRANSFER_RISK, t, "T:X", dict(SCAMMY), True, t)
    own_next = Example(TRANSFER_RISK, t + 1, "T:X", dict(SCAMMY), True, t)
    without = scores(run_history(Models(p), TRANSFER_RISK, warm + [x]))["X"]
    with_label = scores(run_history(Models(p), TRANSFER_RISK, warm + [own_now, own_next, x]))
    assert with_label["X"].score == without.score
    assert with_label["X"].model_version == without.model_version == f"{TRANSFER_RISK}:50"
    # ... but the label is learned from: a later transfer sees it
    later = ftransfer("Y", t + 2, SCAMMY)
    after = scores(run_history(Models(p), TRANSFER_RISK, warm + [own_next, x, later]))
    assert after["Y"].model_version == f"{TRANSFER_RISK}:51"


def test_examples_sort_after_every_event_at_the_same_time():
    t = at(hours=3)
    ex = Example(TRANSFER_RISK, t, "T:a", {}, True, t)
    assert sort_key(ex) > sort_key(ftransfer("zzz", t, LEGIT))
    assert sort_key(ex) > sort_key(freport("zzz", t, BOMB))


def test_label_join_examples_are_stamped_after_the_event_they_describe():
    p = Policy()
    lj = LabelJoin(p)
    t = at(hours=1)
    fact_same_time = AddressFact("0xdest", t, True, "c1", "ADDRESS", "0xdest")
    evs = [ftransfer("a", t, LEGIT), fact_same_time, ftransfer("b", t + 5, LEGIT)]
    out = [v for tag, _, v in run_history(lj, "0xdest", evs) if tag == EXAMPLES]
    assert {e.subject_id: e.y for e in out} == {"T:a": True, "T:b": True}
    assert all(e.event_time > e.scored_at for e in out)


def test_score_unchanged_in_the_graph_when_the_transfer_is_confirmed_later():
    """Graph level: the outcome confirming X arrives ten minutes after X; X's recorded score is
    the same as in a run without that outcome."""
    from tests.scenario import outcome

    p = Policy(**ON, label_horizon_ms=30 * 60_000)
    dest = addr("dest")
    base = [transfer(f"t{i}", at(minutes=10 * i), f"u{i}", addr(f"d{i % 3}"))
            for i in range(12)]
    x = transfer("X", at(hours=3), "victim", dest, usd=5000.0)
    more = [transfer("Y", at(hours=5), "other", dest, usd=4000.0)]
    label = [outcome("c1", at(hours=3, minutes=10), "TRANSFER", "X", True)]
    a = dict(collect(base + [x] + more, p, "batch")["scored"])
    b = dict(collect(base + [x] + more + label, p, "batch")["scored"])
    assert a["X"] == b["X"]
    assert a["Y"] != b["Y"]  # the label was learned from, after X was scored


# ------------------------------------------------------------------- labels
def test_label_horizon_without_a_fact_gives_a_negative_at_the_horizon():
    p = Policy(label_horizon_ms=7 * DAY)
    t = at(hours=2)
    out = run_history(LabelJoin(p), "0xdest", [ftransfer("a", t, LEGIT)])
    assert out == [(EXAMPLES, t + 7 * DAY,
                    Example(TRANSFER_RISK, t + 7 * DAY, "T:a", LEGIT, False, t))]


def test_report_examples_carry_the_text_the_model_scored():
    p = Policy()
    t = at(hours=2)
    fr = freport("r1", t, HONEST)
    out = run_history(LabelJoin(p), "0xmerchant",
                      [fr, AddressFact("0xmerchant", t + 60_000, True, "c", "ADDRESS", "x")])
    (tag, _, ex), = out
    assert ex.y is True and ex.model == SCAM_VERDICT
    assert report_x(ex.x) == report_x(fr.features)
    assert report_x(ex.x)["_text"] == HONEST["_text"]


def test_profiles_put_the_report_text_into_the_features():
    from core.profiles import SenderProfile

    sp = SenderProfile(Policy(), lambda u: None)
    r = report("r1", at(0), "alice", suspect=addr("s"), text="they took my money", loss=250.0)
    (_, _, fr), = run_history(sp, "alice", [ReportIn(r, r.event_time, addr("s"))])
    assert fr.features["_text"] == "they took my money"
    assert fr.features["_category"] == "INVESTMENT"
    assert fr.features["log_claimed_loss"] == pytest.approx(math.log1p(250.0))


def test_no_label_or_outcome_field_reaches_the_model_input():
    x = transfer_x(SCAMMY, Policy())
    assert all(isinstance(v, float) for v in x.values())
    assert not {"y", "is_scam", "label"} & set(x) and not {"y", "is_scam"} & set(report_x(BOMB))


# ------------------------------------------------------------------- decisions
def test_rules_until_warmup_then_the_model_names_its_version():
    p = Policy(**dict(ON, model_warmup_labels=10))
    evs = training(TRANSFER_RISK, 10, at(0)) + [ftransfer("a", at(0) - 1, SCAMMY),
                                                 ftransfer("b", at(hours=1), SCAMMY)]
    got = scores(run_history(Models(p), TRANSFER_RISK, evs))
    assert got["a"].model_version == "rules"
    assert got["b"].model_version == f"{TRANSFER_RISK}:10"
    assert got["b"].score > got["a"].score


def test_rules_only_baseline_never_uses_the_model():
    p = Policy(use_models=False, **ON)
    evs = training(TRANSFER_RISK, 50, at(0)) + [ftransfer("b", at(hours=1), SCAMMY)]
    got = scores(run_history(Models(p), TRANSFER_RISK, evs))
    assert got["b"].model_version == "rules" and got["b"].score == 0.05


def test_high_fan_in_young_destination_is_held_whatever_the_model_says():
    p = Policy(**ON)
    m, s = trained_state(p, TRANSFER_RISK)
    f = dict(LEGIT, fan_in_24h=40.0, fan_in_1h=30.0, dest_age_days=0.5)
    (_, _, st), = m.on_event(s, ftransfer("z", at(days=2), f), at(days=2))
    assert st.score >= p.hold_threshold and "fan_in_24h=40" in st.reasons


def test_fan_in_rule_spares_a_busy_merchant_first_seen_at_the_start_of_a_replay():
    # 40 distinct payers in its first 8 hours *of the replay*, 5 of them in the last hour:
    # a merchant's usual pace, not a burst -> the rule does not fire
    p = Policy(use_models=False)
    m = Models(p)
    f = dict(LEGIT, fan_in_24h=40.0, fan_in_1h=5.0, dest_age_days=0.33)
    (_, _, st), = m.on_event(m.new_state(TRANSFER_RISK), ftransfer("z", at(0), f), at(0))
    assert st.score < p.warn_threshold and not st.reasons


def test_the_transfer_model_learns_to_separate_scams():
    p = Policy(**ON)
    m, s = trained_state(p, TRANSFER_RISK, 400)
    t = at(days=2)
    hi = m.on_event(s, ftransfer("s", t, SCAMMY), t)[0][2].score
    lo = m.on_event(s, ftransfer("l", t, LEGIT), t)[0][2].score
    assert hi > 0.9 > 0.1 > lo


# ----------------------------------------------------------------- report bombing
@pytest.mark.parametrize("use_models", [False, True])
def test_bombing_reports_never_reach_scam_even_from_a_model_taught_they_are_scams(use_models):
    p = Policy(**ON, use_models=use_models)
    m = Models(p)
    s = m.new_state(SCAM_VERDICT)
    for ex in training("evil", 300, at(0)):  # every bombing-like report labelled scam
        s, _ = step(m, SCAM_VERDICT, s, ex)
    t = at(days=1)
    bombs = [freport(f"b{i}", t + i, dict(BOMB, reporters_24h=float(i + 1),
                                             unestablished_reports_24h=float(i)))
             for i in range(20)]
    out = []
    for b in bombs:
        out.extend(m.on_event(s, b, b.event_time))
    got = scores(out, SCORED_REPORTS)
    assert len(got) == 20
    assert all(v.verdict != "SCAM" and v.score < p.scam_threshold for v in got.values())
    if use_models:  # the model itself wanted SCAM; only the guard stopped it
        assert all("no_established_reporter" in v.reasons for v in got.values())
        assert all(v.model_version == f"{SCAM_VERDICT}:300" for v in got.values())
    # an honest, established reporter still gets through with the rules
    honest = freport("h", t + 100, dict(HONEST, established_reporters_24h=2.0,
                                        established_reporters_7d=2.0))
    (_, _, v), = Models(dataclasses.replace(p, use_models=False)).on_event(
        ModelState(SCAM_VERDICT), honest, t + 100)
    assert v.verdict == "SCAM"


@pytest.mark.parametrize("use_models", [False, True])
def test_report_bombing_of_a_merchant_freezes_nothing_in_the_graph(use_models, tmp_path):
    """20 reporters who never paid the merchant report it within an hour: no SCAM verdict,
    no freeze, no refund — rules only, and with a warm-started model taught to love them."""
    merchant = addr("merchant")
    policy = Policy(use_models=use_models, **ON)
    if use_models:
        m = Models(policy)
        s = m.new_state(SCAM_VERDICT)
        for ex in training("evil", 300, at(0)):
            s, _ = step(m, SCAM_VERDICT, s, ex)
        path = snapshot_models({SCAM_VERDICT: s}, str(tmp_path / "snap.pkl"))
        policy = dataclasses.replace(policy, model_warm_start=path)
    customers = [transfer(f"c{i}", at(minutes=i), f"cust{i}", merchant, usd=30.0)
                 for i in range(30)]
    bombs = [report(f"b{i}", at(hours=2, minutes=i), f"fresh{i}", suspect=merchant,
                    category="FAKE_PLATFORM", text="SCAM SCAM SCAM freeze it now")
             for i in range(20)]
    got = collect(customers + bombs, policy, "batch")
    assert len(got["verdicts"]) == 20
    assert all(v.verdict != "SCAM" for v in got["verdicts"])
    assert got["freezes"] == []
    assert all(r.resolution != "REFUNDED" for r in got["resolutions"])
    if use_models:
        assert all(v.model_version.startswith(f"{SCAM_VERDICT}:300@")
                   for v in got["verdicts"])


# ----------------------------------------------------------------- lifecycle
def test_snapshot_round_trip_gives_the_same_predictions(tmp_path):
    p = Policy(**ON)
    m, s = trained_state(p, TRANSFER_RISK, 200)
    path = snapshot_models({TRANSFER_RISK: s}, str(tmp_path / "models" / "snap.pkl"), at(1))
    loaded = load_snapshot(path)[TRANSFER_RISK]
    assert loaded.n_labels == 200 and loaded.origin
    for f in (LEGIT, SCAMMY):
        x = transfer_x(f, p)
        assert loaded.model.predict_proba_one(x) == s.model.predict_proba_one(x)
    # warm start through the policy: same score, a version naming the snapshot
    warm = Models(dataclasses.replace(p, model_warm_start=path))
    t = at(days=3)
    (_, _, a), = m.on_event(s, ftransfer("q", t, SCAMMY), t)
    (_, _, b), = warm.on_event(warm.new_state(TRANSFER_RISK), ftransfer("q", t, SCAMMY), t)
    assert a.score == b.score
    assert b.model_version == f"{TRANSFER_RISK}:200@{loaded.origin}"


def test_warm_start_from_a_directory_of_per_model_snapshots(tmp_path):
    d = str(tmp_path / "snaps")
    p = Policy(**ON, model_snapshot_path=d, model_snapshot_every=50)
    for name in (TRANSFER_RISK, SCAM_VERDICT):
        out = run_history(Models(p), name, training(name, 120, at(0)))
        assert [o for o in out if o[0] == MODEL_METRICS][-1][2]["final"]
    # every 50 labels and at the end: the last one holds all 120
    states = load_snapshot(d)
    assert {k: v.n_labels for k, v in states.items()} == {TRANSFER_RISK: 120, SCAM_VERDICT: 120}
    warm = Models(Policy(**dict(ON, model_warm_start=d, model_warmup_labels=100,
                                verdict_warmup_labels=100)))
    s = warm.new_state(SCAM_VERDICT)
    (_, _, v), = warm.on_event(s, freport("r", at(days=9), HONEST), at(days=9))
    assert v.model_version.startswith(f"{SCAM_VERDICT}:120@")


def test_periodic_snapshots_every_n_labels(tmp_path):
    written = []
    p = Policy(model_snapshot_every=25, model_snapshot_path=str(tmp_path))
    m = Models(p, save=lambda base, s, t: written.append((base, s.n_labels, t)))
    run_history(m, TRANSFER_RISK, training(TRANSFER_RISK, 60, at(0)))
    assert [n for _, n, _ in written] == [25, 50, 60]  # and once at the end
    assert written[-1][2] == at(0) + 59  # stamped with the last event time
    assert snapshot_file("gs://bucket/models", "transfer_risk") == \
        "gs://bucket/models/transfer_risk.pkl"


def test_snapshot_from_another_river_version_is_refused(tmp_path):
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"format": SNAPSHOT_FORMAT, "river_version": "0.19.0",
                                   "models": b"", "n_labels": {}, "snapshot_id": "x"}))
    with pytest.raises(SnapshotError, match=f"written by River 0.19.0, this is River "
                                            f"{RIVER_VERSION}"):
        load_snapshot(str(path))
    with pytest.raises(SnapshotError, match="not a model snapshot"):
        (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
        load_snapshot(str(tmp_path / "junk.pkl"))


# ----------------------------------------------------------------- metrics
def test_prequential_metrics_are_counted_and_summarised_at_the_end():
    p = Policy(**ON)
    out = run_history(Models(p), TRANSFER_RISK, training(TRANSFER_RISK, 300, at(0)))
    counters: dict = {}
    for tag, _, v in out:
        if tag == METRIC:
            counters[v[0]] = counters.get(v[0], 0) + v[1]
    cells = sum(counters.get(f"{TRANSFER_RISK}_{c}", 0) for c in ("tp", "fp", "fn", "tn"))
    assert counters["labels_transfer_risk"] == cells == 300
    (final,) = [v for tag, _, v in out if tag == MODEL_METRICS and v["final"]]
    assert final["labels"] == 300 and final["roc_auc"] > 0.95
    assert final["tp"] + final["fn"] == final["positives"]
    assert final["threshold"] == p.hold_threshold
    # the end fires once: advancing again emits nothing
    m = Models(p)
    s = m.new_state(TRANSFER_RISK)
    assert m.advance(s, END_OF_TIME) and not m.advance(s, END_OF_TIME)


# ------------------------------------------------------- warm-up, label timing, fast path
def test_model_switches_on_only_after_enough_labels_of_both_classes():
    # 300 positives and no negative (what the label delay gives at the start): rules decide
    p = Policy(model_warmup_labels=10, model_min_negatives=20, model_min_positives=5,
               model_sync_labels=False)
    pos = [example(TRANSFER_RISK, f"T:p{i}", at(0) + i, SCAMMY, True) for i in range(300)]
    neg = [example(TRANSFER_RISK, f"T:n{i}", at(hours=1) + i, LEGIT, False)
           for i in range(20)]
    evs = pos + [ftransfer("a", at(minutes=30), LEGIT)] + neg \
        + [ftransfer("b", at(hours=2), LEGIT)]
    got = scores(run_history(Models(p), TRANSFER_RISK, evs))
    assert got["a"].model_version == "rules"
    assert got["b"].model_version == f"{TRANSFER_RISK}:320"


def test_a_positive_is_learned_when_its_event_is_as_old_as_a_negative_would_be():
    h = 6 * 3_600_000
    p = Policy(**dict(ON, model_sync_labels=True, label_horizon_ms=h))
    t = at(0)
    pos = Example(TRANSFER_RISK, t + 60_000, "T:p", dict(SCAMMY), True, t)  # confirmed fast
    evs = [pos, ftransfer("early", t + h - 1, SCAMMY), ftransfer("late", t + h, SCAMMY)]
    got = scores(run_history(Models(p), TRANSFER_RISK, evs))
    assert got["early"].model_version == "rules"  # still waiting: nothing learned yet
    assert got["late"].model_version == f"{TRANSFER_RISK}:1"  # due at t + horizon: learned
    # a bounded run's end learns what still waits, before the final summary
    out = run_history(Models(p), TRANSFER_RISK, [pos])
    (final,) = [v for tag, _, v in out if tag == MODEL_METRICS and v["final"]]
    assert final["labels"] == final["positives"] == 1


def test_waiting_positives_survive_a_snapshot(tmp_path):
    p = Policy(**dict(ON, model_sync_labels=True))
    m = Models(p)
    s = m.new_state(TRANSFER_RISK)
    s, _ = step(m, TRANSFER_RISK, s, example(TRANSFER_RISK, "T:p", at(0) + 5, SCAMMY, True))
    assert len(s.waiting) == 1 and m.next_deadline(s) == at(0) + 4 + p.label_horizon_ms
    path = snapshot_models({TRANSFER_RISK: s}, str(tmp_path / "m.pkl"))
    assert len(load_snapshot(path)[TRANSFER_RISK].waiting) == 1


def test_the_step_learns_exactly_as_the_river_pipeline_would():
    from core.models import new_transfer_model

    p = Policy(**ON)
    m, s = trained_state(p, TRANSFER_RISK, 200)
    ref = new_transfer_model()
    for ex in training(TRANSFER_RISK, 200, at(0)):
        w = 1.0
        if ex.y:  # the step's weight for this positive, from the counts before it
            n_pos = sum(1 for e in training(TRANSFER_RISK, 200, at(0))
                        if e.y and e.event_time < ex.event_time)
            n = ex.event_time - at(0)
            w = max(1.0, min(30.0, math.sqrt((n - n_pos + 1) / (n_pos + 1))))
        ref.learn_one(transfer_x(ex.x, p), ex.y, w=w)
    for f in (SCAMMY, LEGIT):
        x = transfer_x(f, p)
        assert s.model.predict_proba_one(x)[True] == pytest.approx(
            ref.predict_proba_one(x)[True], rel=1e-12)


def test_a_bounded_run_ends_the_learner_once_then_an_example_reopens_it():
    """Stream face: the end of a bounded run is a deadline at ``END``; it fires once (the
    final metrics) and comes back only when a new example arrives."""
    from core.learner import END

    m = Learner(Policy(**ON))
    s = m.new_state(TRANSFER_RISK)
    assert m.next_deadline(s) == END
    assert [tag for tag, _t, _v in m.advance(s, END - 1)] == []
    assert [tag for tag, _t, _v in m.advance(s, END)] == [MODEL_METRICS]
    assert m.next_deadline(s) is None and m.advance(s, END + 1) == []
    ex = example(TRANSFER_RISK, "e1", at(0), LEGIT, False)
    m.on_event(s, ex, ex.event_time)
    assert m.next_deadline(s) == END
