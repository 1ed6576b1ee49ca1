"""Live facts outlive the idle reset of a key's state.

Every keyed step forgets a key that stays idle past its TTL (memory bounded by live state).
What a user relies on must survive that reset: a live REMOVE of a snapshot listing, a live
ADD, a freeze, a user's confirmed losses. Each test keeps the key idle longer than every
TTL of the policy (the longest, payee memory, is 180 days) and checks the fact still holds
and that what survives is small.
"""

from __future__ import annotations

from core.actions import FREEZES, HOLDS, RESOLUTIONS, Actions
from core.events import AddressFact, FeaturedTransfer
from core.outreach import OUTREACH, OutreachStep
from core.policy import DAY, Policy
from core.profiles import FEATURED, CounterpartyProfile, SenderProfile
from core.reference import run_reference
from schemas.blacklist import BlacklistSnapshot
from schemas.codecs import write_records
from tests.kit import P, feed, loss, request, scored, tagged
from tests.scenario import addr, at, listing, split_inputs, transfer
from transforms.side import load_side

HOT = addr("own-hot-wallet")  # wrongly listed by a vendor, then delisted by a live REMOVE
IDLE = 200 * DAY  # longer than every TTL of the default policy
assert IDLE > max(P.payee_memory_ms, P.lookback_ms, P.dedup_ms, P.label_horizon_ms)


def _ft(tid, t, user="u1", to=HOT):
    return FeaturedTransfer(transfer(tid, t, user, to), t, {})


def _lists(out):
    return [(v.transfer.transfer_id, v.blacklist) for v in tagged(out, FEATURED)]


def test_removed_snapshot_listing_stays_removed_after_the_address_idles_past_every_ttl():
    m = CounterpartyProfile(P, BlacklistSnapshot({HOT: ("vendor_x",)}))
    events = [_ft("t1", at(0)), listing(HOT, at(days=1), "REMOVE", "ops"),
              _ft("t2", at(days=2)), _ft("t3", at(days=2) + IDLE)]
    _, out = feed(m, HOT, events)
    assert _lists(out) == [("t1", ("vendor_x",)), ("t2", None), ("t3", None)]


def test_only_the_tombstone_survives_the_idle_reset():
    m = CounterpartyProfile(P, BlacklistSnapshot({HOT: ("vendor_x",)}))
    state, _ = feed(m, HOT, [_ft("t1", at(0)), listing(HOT, at(days=1), "REMOVE", "ops")],
                    until=at(0) + IDLE)
    assert (state.live, state.last_t, state.first_t, len(state.senders), state.n_in) == (
        ("REMOVE", "ops", at(days=1)), None, None, 0, 0)
    assert not m.is_empty(state) and m.next_deadline(state) is None


def test_remove_of_an_address_only_listed_live_keeps_no_state():
    m = CounterpartyProfile(P, BlacklistSnapshot({}))
    other = addr("listed-live-only")
    state, out = feed(m, other, [listing(other, at(0), "ADD", "ops"),
                                 listing(other, at(1), "REMOVE", "ops")])
    assert m.is_empty(state)
    _, out = feed(m, other, [_ft("t1", at(days=1), to=other)], state=state)
    assert _lists(out) == [("t1", None)]


def test_live_add_outlives_the_idle_reset_and_a_later_add_relists_a_removed_address():
    m = CounterpartyProfile(P, BlacklistSnapshot({HOT: ("vendor_x",)}))
    events = [listing(HOT, at(0), "REMOVE", "ops"), _ft("t1", at(1)),
              listing(HOT, at(2), "ADD", "fraud_team"), _ft("t2", at(3)),
              _ft("t3", at(3) + IDLE)]
    _, out = feed(m, HOT, events)
    assert _lists(out) == [("t1", None), ("t2", ("fraud_team", "vendor_x")),
                           ("t3", ("fraud_team", "vendor_x"))]


def test_delisted_hot_wallet_is_not_held_weeks_later_on_the_whole_graph(tmp_path):
    """The issue's story end to end (reference run of the graph): an exchange delists its
    own hot wallet, wrongly listed by a vendor; payments to it a month and more later pass."""
    snap = tmp_path / "snapshot.avro"
    write_records(snap, "BlacklistUpdate", [listing(HOT, at(days=-1), source="vendor_x")],
                  "avro")
    policy = Policy(use_models=False, blacklist_paths=(str(snap),))
    events = [transfer("t0", at(0), "alice", HOT),
              listing(HOT, at(hours=1), "REMOVE", "ops"),
              transfer("t1", at(days=1), "alice", HOT),
              transfer("t2", at(days=40), "bob", HOT),
              transfer("t3", at(days=1) + IDLE, "carol", HOT)]
    out = run_reference(split_inputs(events), policy, side=load_side(policy))
    assert [(h.transfer_id, h.reasons[0]) for h in out["holds"]] == [
        ("t0", "blacklist:vendor_x")]


def test_freeze_outlives_the_idle_reset():
    """A transfer to an address frozen long ago is held and refunded at once (rule 3)."""
    scam = addr("frozen-long-ago")
    m = Actions(P)
    later = at(0) + IDLE
    _, out = feed(m, scam, [AddressFact(scam, at(0), True, "c1", "ADDRESS", scam),
                            scored("t1", later, "u1", scam)])
    assert len(tagged(out, FREEZES)) == 1
    (hold,) = tagged(out, HOLDS)
    assert (hold.transfer_id, hold.placed_at, hold.reasons) == ("t1", later, [
        "destination_frozen", "hold_test=frozen"])  # rule 13: the hold names its test
    assert [(r.transfer_id, r.resolution, r.resolved_at) for r in tagged(out, RESOLUTIONS)] \
        == [("t1", "REFUNDED", later)]


def test_repeat_victim_stays_one_after_idling_past_every_ttl():
    m = OutreachStep(P, lambda u: None)
    later = at(days=1) + IDLE
    _, out = feed(m, "bob", [loss("bob", at(0), "a1"), loss("bob", at(days=1), "a2"),
                             request("bob", later, tid="a3")])
    assert [(o.kind, o.channel, o.reasons) for o in tagged(out, OUTREACH)] == [
        ("INTERVENTION", "CALL", ["repeat_victim:losses=2"])]


def test_one_loss_then_idle_is_not_a_repeat_victim_and_state_stays_small():
    m = OutreachStep(P, lambda u: None)
    state, _ = feed(m, "bob", [loss("bob", at(0), "a1"), loss("bob", at(1), "a2"),
                               loss("bob", at(2), "a3")], until=at(2) + IDLE)
    assert state.losses == {"a1": at(0), "a2": at(1)}  # what the rule needs, no more
    assert (state.last_t, state.last_sent, state.silent_for) == (None, {}, {})
    m2 = OutreachStep(P, lambda u: None)
    _, out = feed(m2, "eve", [loss("eve", at(0), "a1"), request("eve", at(0) + IDLE)])
    assert [(o.kind, o.channel) for o in tagged(out, OUTREACH)] == [("WARNING", "APP")]


def test_imitation_is_flagged_again_after_idle_shorter_than_payee_memory():
    """Known payees are remembered ``payee_memory_ms`` (180 days) of idleness: an
    imitation paid before stays an imitation (rule 9) across every shorter TTL."""
    genuine = "0xabc" + "1" * 33 + "9f3e"
    fake = "0xabc" + "7" * 33 + "9f3e"
    m = SenderProfile(P, lambda u: None)
    gap = P.payee_memory_ms - 1
    _, out = feed(m, "u", [transfer("g", at(0), "u", genuine),
                           transfer("f1", at(1), "u", fake),
                           transfer("f2", at(1) + gap, "u", fake),
                           transfer("g2", at(1) + 2 * gap, "u", genuine)])
    assert [v.lookalike_of for v in tagged(out, FEATURED)] == [None, genuine, genuine, None]
