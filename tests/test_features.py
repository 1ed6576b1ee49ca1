"""The features the rules and models read, exact, from their definitions (DESIGN.md,
"Windows"; the docstrings of core/profiles.py): velocity in the last 1h / 24h
(windows open on the left: an event exactly 1h or 24h old is out), new destination,
amount against the sender's own history, fan-in, the reporter's record.

Pure machines, hand-built histories, every value written down before the run.
"""

from __future__ import annotations

import math
import statistics

from core.events import FeaturedReport, FeaturedTransfer, ReportIn
from core.lookalike import key as lookalike_key
from core.policy import DAY, HOUR, MINUTE
from core.profiles import FEATURED, CounterpartyProfile, SenderProfile
from schemas.blacklist import BlacklistSnapshot
from tests.kit import P, feed, tagged
from tests.scenario import addr, at, listing, profile, report, transfer

X, Y, Z = addr("feat-x"), "0x" + "1" * 40, "0x" + "2" * 40
BOOK = {"u": profile("u", at(days=-3)), "old": profile("old", at(days=-400))}


def _sender_features(events):
    _, out = feed(SenderProfile(P, BOOK.get), "u", events)
    return [v.features for v in tagged(out, FEATURED)]


def test_sender_velocity_windows_and_payees():
    f = _sender_features([
        transfer("a", at(0), "u", X, 100.0),
        transfer("b", at(30), "u", X, 200.0),
        transfer("c", at(90), "u", Y, 50.0, channel="INTERNAL"),  # b is exactly 1h old
        transfer("d", at(30 + 24 * 60), "u", Z, 1000.0),  # b is exactly 24h old
    ])
    want = [
        dict(log_usd=math.log1p(100), n_1h=0, log_usd_1h=0.0, n_24h=0, log_usd_24h=0.0,
             new_dest=1.0, amount_z=0.0, account_age_days=3.0, fresh_account=1.0,
             log_tx_count=0.0, n_payees=0.0, lookalike=0.0, internal=0.0),
        dict(log_usd=math.log1p(200), n_1h=1, log_usd_1h=math.log1p(100), n_24h=1,
             log_usd_24h=math.log1p(100), new_dest=0.0, amount_z=0.0,
             account_age_days=3.0 + 30 * MINUTE / DAY, fresh_account=1.0,
             log_tx_count=math.log1p(1), n_payees=1.0, lookalike=0.0, internal=0.0),
        dict(log_usd=math.log1p(50), n_1h=0, log_usd_1h=0.0, n_24h=2,
             log_usd_24h=math.log1p(300), new_dest=1.0, amount_z=0.0,
             account_age_days=3.0 + 90 * MINUTE / DAY, fresh_account=1.0,
             log_tx_count=math.log1p(2), n_payees=1.0, lookalike=0.0, internal=1.0),
    ]
    for got, exp in zip(f[:3], want, strict=True):
        assert got.keys() == exp.keys()
        for k, v in exp.items():
            assert math.isclose(got[k], v, abs_tol=1e-12), k
    logs = [math.log1p(u) for u in (100.0, 200.0, 50.0)]
    z = (math.log1p(1000.0) - statistics.mean(logs)) / statistics.stdev(logs)
    d = f[3]
    assert (d["n_1h"], d["n_24h"], d["log_usd_24h"]) == (0, 1, math.log1p(50))
    assert math.isclose(d["amount_z"], z) and 0 < z < 10
    assert (d["log_tx_count"], d["n_payees"], d["new_dest"]) == (math.log1p(3), 2.0, 1.0)
    assert d["fresh_account"] == 1.0  # 4 days and 30 minutes old: fresh until 7 days


def test_amount_z_is_clipped_and_freshness_ends_at_seven_days():
    f = _sender_features([transfer(f"t{i}", at(i), "u", X, usd) for i, usd in
                          enumerate((100.0, 110.0, 90.0, 1e15))]
                         + [transfer("w", at(days=4) - 1, "u", X, 1.0),
                            transfer("x", at(days=4), "u", X, 1.0)])
    assert f[3]["amount_z"] == 10.0
    logs = [math.log1p(u) for u in (100.0, 110.0, 90.0, 1e15)]
    z = (math.log1p(1.0) - statistics.mean(logs)) / statistics.stdev(logs)
    assert math.isclose(f[4]["amount_z"], z) and -10 < z < 0
    # created 3 days before at(0): 7 days old exactly at at(days=4)
    assert (f[4]["fresh_account"], f[5]["fresh_account"]) == (1.0, 0.0)
    assert f[5]["account_age_days"] == 7.0


def test_sender_without_profile_has_age_minus_one_and_is_not_fresh():
    _, out = feed(SenderProfile(P, lambda u: None), "nobody",
                  [transfer("a", at(0), "nobody", X)])
    (v,) = tagged(out, FEATURED)
    assert (v.features["account_age_days"], v.features["fresh_account"]) == (-1.0, 0.0)
    assert (v.reasons, v.lookalike_of, v.event_time) == ((), None, at(0))


def test_lookalike_reason_and_features():
    genuine, fake = "0xabc" + "1" * 33 + "9f3e", "0xabc" + "7" * 33 + "9f3e"
    _, out = feed(SenderProfile(P, BOOK.get), "u",
                  [transfer("g", at(0), "u", genuine), transfer("f", at(1), "u", fake)])
    v = tagged(out, FEATURED)[1]
    assert (v.reasons, v.lookalike_of, v.features["lookalike"], v.features["n_payees"]) == (
        (f"lookalike_of={genuine}",), genuine, 1.0, 1.0)


def test_evm_lookalike_key_is_0x_three_hex_digits_and_the_last_four():
    assert lookalike_key("0x" + "a" * 36 + "b123", "ETH") == ("EVM", "0xaaa", "b123")
    assert lookalike_key("0x" + "a" * 39, "ETH") is None  # 41 characters
    assert lookalike_key("1x" + "a" * 40, "ETH") is None


def test_forgotten_payee_is_new_again_and_no_longer_imitated():
    """Payees older than ``payee_memory_ms`` are dropped (every 64th transfer), with their
    look-alike key: paying it again is a new destination."""
    genuine, fake = "0xabc" + "1" * 33 + "9f3e", "0xabc" + "7" * 33 + "9f3e"
    mem = P.payee_memory_ms
    events = [transfer("g", at(0), "u", genuine)]
    events += [transfer(f"o{i}", at(0) + mem - DAY + i, "u", X) for i in range(62)]
    events += [transfer("z", at(0) + mem + 1, "u", X),  # the 64th: the sweep runs
               transfer("g2", at(0) + mem + 2, "u", genuine),
               transfer("f", at(0) + mem + 3, "u", fake)]
    _, out = feed(SenderProfile(P, BOOK.get), "u", events)
    v = {x.transfer.transfer_id: x for x in tagged(out, FEATURED)}
    assert v["z"].features["n_payees"] == 2.0  # before the sweep: genuine and X
    assert (v["g2"].features["new_dest"], v["g2"].features["n_payees"]) == (1.0, 1.0)
    assert v["f"].lookalike_of == genuine  # genuine is a payee again, paid just now


# ------------------------------------------------------------------ the reporter's record
def _reports(events, book=BOOK):
    _, out = feed(SenderProfile(P, book.get), "u", events)
    return [v for v in tagged(out, FEATURED) if type(v) is FeaturedReport]


def test_reporter_record_features():
    r1 = report("r1", at(hours=1), "u", suspect=X, loss=250.0, text="abcd",
                category="ROMANCE")
    r2 = report("r2", at(hours=1) + 7 * DAY, "u", suspect=Y)  # r1 exactly 7 days old
    r3 = report("r3", at(hours=2) + 7 * DAY, "u", suspect=X, loss=-5.0)
    got = _reports([transfer("a", at(0), "u", X, 100.0),
                    ReportIn(r1, r1.event_time, X, None, 100.0),
                    ReportIn(r2, r2.event_time, Y),
                    ReportIn(r3, r3.event_time, X, at(0) - HOUR, None)])
    f1, f2, f3 = (g.features for g in got)
    assert f1 == {
        "reporter_age_days": 3.0 + 1 / 24, "reporter_fresh": 1.0,
        "reporter_log_tx_count": math.log1p(1), "reporter_paid_suspect": 1.0,
        "hours_since_paid": 1.0, "reporter_reports_7d": 0.0, "reporter_reports_total": 0.0,
        "log_claimed_loss": math.log1p(250.0), "claimed_loss_missing": 0.0,
        "log_paid_usd": math.log1p(100.0), "text_len": math.log1p(4), "_text": "abcd",
        "_category": "ROMANCE"}
    assert got[0].report_in.paid_at == at(0)  # filled from the payees
    assert (f2["reporter_paid_suspect"], f2["hours_since_paid"]) == (0.0, -1.0)
    assert (f2["reporter_reports_7d"], f2["reporter_reports_total"]) == (0.0, 1.0)
    assert (f2["claimed_loss_missing"], f2["log_claimed_loss"], f2["log_paid_usd"]) == (
        1.0, 0.0, 0.0)
    assert f2["reporter_fresh"] == 0.0  # 10 days old
    # r3: the paid_at it came with wins over the payee's; r2 is 1h old, r1 just over 7d
    assert (f3["hours_since_paid"], f3["reporter_reports_7d"], f3["reporter_reports_total"],
            f3["log_claimed_loss"]) == (7 * 24 + 3.0, 1.0, 2.0, 0.0)
    assert got[2].event_time == r3.event_time


def test_report_without_profile_or_text():
    rep = report("r1", at(0), "u", suspect=X, text="")
    (g,) = _reports([ReportIn(rep, at(0), X)], book={})
    assert (g.features["reporter_age_days"], g.features["reporter_fresh"],
            g.features["text_len"], g.features["_text"]) == (-1.0, 0.0, 0.0, "")


def test_sender_state_expires_exactly_at_payee_memory():
    m = SenderProfile(P, BOOK.get)
    state, _ = feed(m, "u", [transfer("a", at(0), "u", X)])
    assert m.next_deadline(state) == at(0) + P.payee_memory_ms
    m.advance(state, at(0) + P.payee_memory_ms - 1)
    assert not m.is_empty(state)
    m.advance(state, at(0) + P.payee_memory_ms)
    assert m.is_empty(state) and m.next_deadline(state) is None
    state, _ = feed(m, "u", [ReportIn(report("r", at(0), "u", suspect=X), at(0), X)])
    assert m.next_deadline(state) == at(0) + P.payee_memory_ms


# ------------------------------------------------------------------ the counterparty
def _ft(tid, t, user):
    return FeaturedTransfer(transfer(tid, t, user, X), t, {"mine": 1.0})


def _fr(rid, t, reporter, paid=1.0, fresh=0.0):
    ri = ReportIn(report(rid, t, reporter, suspect=X), t, X)
    return FeaturedReport(ri, t, {"reporter_paid_suspect": paid, "reporter_fresh": fresh})


def test_counterparty_fan_in_age_and_reports():
    m = CounterpartyProfile(P, BlacklistSnapshot({}))
    events = [_ft("a", at(0), "u1"), _ft("b", at(10), "u2"), _ft("c", at(20), "u1"),
              _fr("r1", at(30), "u1"), _fr("r2", at(40), "f1", paid=0.0),
              _ft("d", at(70), "u3"),  # a and b: 70 and 60 min old
              _ft("e", at(10 + 24 * 60), "u4")]  # b exactly 24h old: out
    _, out = feed(m, X, events)
    v = tagged(out, FEATURED)
    first = v[0].features
    assert first == {"mine": 1.0, "fan_in_1h": 1.0, "fan_in_24h": 1.0,
                     "log_dest_transfers": 0.0, "dest_age_days": 0.0, "blacklisted": 0.0,
                     "reports_7d": 0.0, "established_reporters_7d": 0.0}
    c = v[2].features
    assert (c["fan_in_1h"], c["fan_in_24h"], c["log_dest_transfers"]) == (
        2.0, 2.0, math.log1p(2))
    r2 = v[4].features
    assert r2 == {"reporter_paid_suspect": 0.0, "reporter_fresh": 0.0,
                  "suspect_fan_in_24h": 2.0, "suspect_log_transfers": math.log1p(3),
                  "suspect_blacklisted": 0.0, "reporters_24h": 2.0,
                  "established_reporters_24h": 1.0, "established_reporters_7d": 1.0,
                  "unestablished_reports_24h": 0.0}
    d = v[5].features
    assert (d["fan_in_1h"], d["fan_in_24h"], d["reports_7d"],
            d["established_reporters_7d"]) == (2.0, 3.0, 2.0, 1.0)  # u1 (c at 20), u3
    assert d["dest_age_days"] == 70 * MINUTE / DAY
    e = v[6].features
    assert (e["fan_in_1h"], e["fan_in_24h"], e["log_dest_transfers"]) == (
        1.0, 3.0, math.log1p(4))  # c, d and u4 itself; a and b are out
    assert v[6].blacklist is None and v[6].list_version is None


def test_counterparty_report_windows_and_established_reporters():
    m = CounterpartyProfile(P, BlacklistSnapshot({X: ("ofac_sdn",)}))
    events = [_fr("r1", at(0), "e1"), _fr("r2", at(1), "fresh1", paid=1.0, fresh=1.0),
              _fr("r3", at(hours=24), "e2"),  # r1 exactly 24h old: out of the 24h counts
              _fr("r4", at(days=7, minutes=1), "e3")]  # r1, r2 past 7 days
    _, out = feed(m, X, events)
    f = [v.features for v in tagged(out, FEATURED)]
    assert (f[1]["reporters_24h"], f[1]["established_reporters_24h"],
            f[1]["unestablished_reports_24h"]) == (2.0, 1.0, 0.0)
    assert (f[2]["reporters_24h"], f[2]["established_reporters_24h"],
            f[2]["established_reporters_7d"], f[2]["unestablished_reports_24h"]) == (
        2.0, 1.0, 2.0, 1.0)
    assert (f[3]["established_reporters_7d"], f[3]["reporters_24h"]) == (2.0, 1.0)
    assert f[3]["suspect_blacklisted"] == 1.0
    assert tagged(out, FEATURED)[0].reasons == ("blacklist:ofac_sdn",)


def test_live_listing_versions_and_sources():
    m = CounterpartyProfile(P, BlacklistSnapshot({X: ("ofac_sdn",)}, version="snap-7"))
    _, out = feed(m, X, [_ft("a", at(0), "u1"), listing(X, at(1), "ADD", "fraud_team"),
                         _ft("b", at(2), "u1")])
    a, b = tagged(out, FEATURED)
    assert (a.blacklist, a.list_version) == (("ofac_sdn",), "snap-7")
    assert (b.blacklist, b.list_version) == (("fraud_team", "ofac_sdn"), f"live@{at(1)}")
    assert b.features["blacklisted"] == 1.0


def test_counterparty_state_expires_after_its_longest_window():
    m = CounterpartyProfile(P, BlacklistSnapshot({}))
    ttl = max(P.long_window_ms, P.reporter_window_ms, P.lookback_ms)
    assert ttl == 30 * DAY
    state, _ = feed(m, X, [_ft("a", at(0), "u1")])
    assert m.next_deadline(state) == at(0) + ttl
    m.advance(state, at(0) + ttl - 1)
    assert not m.is_empty(state)
    m.advance(state, at(0) + ttl)
    assert m.is_empty(state)


def test_hourly_velocity_sums_every_transfer_in_the_hour():
    f = _sender_features([transfer("a", at(0), "u", X, 100.0),
                          transfer("b", at(10), "u", X, 200.0),
                          transfer("c", at(20), "u", X, 50.0)])
    assert (f[2]["n_1h"], f[2]["log_usd_1h"]) == (2, math.log1p(300.0))


def test_amount_z_of_a_sender_whose_amounts_never_varied():
    """No spread yet (all amounts equal): the z-score divides by 1, and is clipped at -10."""
    f = _sender_features([transfer(f"t{i}", at(i), "u", X, 100.0) for i in range(3)]
                         + [transfer("up", at(5), "u", X, 1000.0)])
    assert math.isclose(f[3]["amount_z"], math.log1p(1000.0) - math.log1p(100.0))
    g = _sender_features([transfer(f"t{i}", at(i), "u", X, 1e6) for i in range(3)]
                         + [transfer("down", at(5), "u", X, 1.0)])
    assert math.log1p(1.0) - math.log1p(1e6) < -10 and g[3]["amount_z"] == -10.0


def test_an_account_is_fresh_from_its_first_millisecond_and_ages_in_fractions_of_a_day():
    book = {"n": profile("n", at(0))}
    _, out = feed(SenderProfile(P, book.get), "n",
                  [transfer("a", at(0), "n", X), transfer("b", at(hours=3), "n", X),
                   ReportIn(report("r0", at(0), "n", suspect=X), at(0), X),
                   ReportIn(report("r7", at(days=7), "n", suspect=X), at(days=7), X)])
    a, b, r0, r7 = (v.features for v in tagged(out, FEATURED))
    assert (a["account_age_days"], a["fresh_account"]) == (0.0, 1.0)
    assert (b["account_age_days"], b["fresh_account"]) == (0.125, 1.0)
    assert (r0["reporter_fresh"], r7["reporter_fresh"]) == (1.0, 0.0)


def test_a_forgotten_payee_is_imitated_by_nobody():
    genuine, fake = "0xabc" + "1" * 33 + "9f3e", "0xabc" + "7" * 33 + "9f3e"
    mem = P.payee_memory_ms
    events = [transfer("g", at(0), "u", genuine)]
    events += [transfer(f"o{i}", at(0) + mem - DAY + i, "u", X) for i in range(62)]
    events += [transfer("z", at(0) + mem + 1, "u", X),  # the 64th transfer: the sweep
               transfer("f", at(0) + mem + 2, "u", fake)]
    _, out = feed(SenderProfile(P, BOOK.get), "u", events)
    f = tagged(out, FEATURED)[-1]
    assert (f.lookalike_of, f.features["new_dest"], f.features["n_payees"]) == (None, 1.0, 1.0)


def test_counterparty_state_lasts_its_longest_window_whichever_it_is():
    from core.policy import Policy

    long_fan = Policy(use_models=False, long_window_ms=40 * DAY)
    _, out = feed(CounterpartyProfile(long_fan, BlacklistSnapshot({})), X,
                  [_ft("a", at(0), "u1"), _ft("b", at(days=35), "u2")])
    assert tagged(out, FEATURED)[1].features["fan_in_24h"] == 2.0
    long_rep = Policy(use_models=False, reporter_window_ms=40 * DAY)
    _, out = feed(CounterpartyProfile(long_rep, BlacklistSnapshot({})), X,
                  [_fr("r1", at(0), "e1"), _fr("r2", at(days=35), "e2")])
    assert tagged(out, FEATURED)[1].features["established_reporters_7d"] == 2.0


def test_counterparty_report_edges():
    """A report exactly 7 days (the reporter window) or 24h old is out of its count; a
    reporter counts once however often it reports; without the paid flag, not established."""
    m = CounterpartyProfile(P, BlacklistSnapshot({}))
    bare = FeaturedReport(ReportIn(report("rb", at(1), "b1", suspect=X), at(1), X), at(1), {})
    events = [_fr("r1", at(0), "e1"), bare, _fr("r2", at(2), "e1"),
              _fr("r3", at(1) + DAY, "n1", paid=0.0),  # rb exactly 24h old: out
              _ft("t", at(1) + 7 * DAY, "u9")]  # rb exactly 7 days old: out
    _, out = feed(m, X, events)
    f = [v.features for v in tagged(out, FEATURED)]
    assert (f[1]["established_reporters_24h"], f[1]["established_reporters_7d"]) == (1.0, 1.0)
    assert f[1]["unestablished_reports_24h"] == 0.0  # e1's r1 was established
    assert (f[2]["established_reporters_24h"], f[2]["established_reporters_7d"]) == (1.0, 1.0)
    assert f[2]["unestablished_reports_24h"] == 1.0  # rb
    assert (f[3]["unestablished_reports_24h"], f[3]["established_reporters_24h"],
            f[3]["reporters_24h"]) == (0.0, 1.0, 2.0)  # r2 (e1) and n1 itself
    assert f[4]["reports_7d"] == 2.0  # r2 and r3


def test_lookalike_follows_the_networks_family_and_the_shown_lengths_option():
    from core.policy import Policy

    genuine, fake = "0xabc" + "1" * 33 + "9f3e", "0xabc" + "7" * 33 + "9f3e"
    wider = Policy(use_models=False, lookalike_evm_head=7)  # 0x + 5 hex digits shown
    _, out = feed(SenderProfile(wider, BOOK.get), "u",
                  [transfer("g", at(0), "u", genuine), transfer("f", at(1), "u", fake)])
    assert [v.lookalike_of for v in tagged(out, FEATURED)] == [None, None]
    tg, tf = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE", "TQn9ZZZZZZZZZZZZZZZZZZZZZZZZZZbLSE"
    trx = [transfer("g", at(0), "u", tg)._replace(network="TRX"),
           transfer("f", at(1), "u", tf)._replace(network="TRX")]
    _, out = feed(SenderProfile(P, BOOK.get), "u", trx)
    f = tagged(out, FEATURED)[1]
    assert (f.lookalike_of, f.reasons) == (tg, (f"lookalike_of={tg} (TRON)",))


def _window_oracle(events, long_ms, short_ms):
    """Fan-in by its definition, per transfer, in the order fed: the window is the
    senders of the transfers before it, dropped from the oldest end while that end is at
    least ``long_ms`` old (an entry behind a later one stays until it reaches the end);
    distinct senders in it (and in its last ``short_ms``), the transfer's own included."""
    window, out = [], []
    for ev in events:
        now = ev.event_time
        while window and window[0][0] <= now - long_ms:
            window.pop(0)
        if type(ev) is FeaturedTransfer:
            u = ev.transfer.user_id
            out.append((float(len({x for _, x in window} | {u})),
                        float(len({x for t, x in window if t > now - short_ms} | {u}))))
            window.append((now, u))
        else:
            out.append(float(len({x for _, x in window})))
    return out


def _busy_destination(seed, late):
    """Transfers from 40 users into X over 3 days, a report now and then; ``late``: some
    delivered up to 2h late (the stream face in arrival order)."""
    import random

    rnd = random.Random(seed)
    events = []
    for i in range(600):
        t = at(0) + rnd.randrange(3 * DAY)
        events.append(_ft(f"t{i}", t, f"u{rnd.randrange(40)}") if i % 50 else
                      _fr(f"r{i}", t, f"u{rnd.randrange(40)}"))
    events.sort(key=lambda e: e.event_time)
    if late:
        for i in range(0, len(events) - 20, 7):
            j = i + rnd.randrange(1, 20)
            if events[j].event_time - events[i].event_time <= 2 * HOUR:
                events[i], events[j] = events[j], events[i]
    return events


def test_fan_in_of_a_busy_destination_costs_no_scan_and_matches_its_definition():
    import pickle

    m = CounterpartyProfile(P, BlacklistSnapshot({}))
    for seed, late, reload_every in [(1, False, 0), (2, False, 37), (3, True, 0),
                                     (4, True, 11)]:
        events = _busy_destination(seed, late)
        want = _window_oracle(events, P.long_window_ms, P.short_window_ms)
        state, got = m.new_state(X), []
        for i, ev in enumerate(events):
            if reload_every and i % reload_every == 0:  # a saved state, loaded again
                state = pickle.loads(pickle.dumps(state))
            state, out = feed(m, X, [ev], state=state)
            f = tagged(out, FEATURED)[0].features
            got.append((f["fan_in_24h"], f["fan_in_1h"]) if type(ev) is FeaturedTransfer
                       else f["suspect_fan_in_24h"])
        assert got == want, (seed, late)
        assert max(x[0] for x in want if type(x) is tuple) > 30  # a busy window


def test_a_destinations_saved_state_is_its_window_not_the_index_kept_beside_it():
    import pickle

    m = CounterpartyProfile(P, BlacklistSnapshot({}))
    state, _ = feed(m, X, [_ft("a", at(0), "u1"), _ft("b", at(5), "u2")])
    assert state.index is not None  # the fan-in kept as the window moves
    blob = pickle.dumps(state)
    assert b"_FanIn" not in blob
    again = pickle.loads(blob)
    assert again.index is None and list(again.senders) == [(at(0), "u1"), (at(5), "u2")]


def test_established_reporters_of_a_much_reported_destination_match_their_definition():
    """``established_reporters_7d`` on a transfer: the distinct reporters who paid the
    address and are not fresh, among its reports of the reporter window. Kept as reports
    come and leave (not read from them at each transfer): checked against the definition
    over 10 days of a much-reported address, in order and a little late, with the state
    saved and loaded again now and then."""
    import pickle
    import random

    m = CounterpartyProfile(P, BlacklistSnapshot({}))
    for seed, late, reload_every in [(1, False, 0), (2, False, 13), (3, True, 0),
                                     (4, True, 29)]:
        rnd = random.Random(seed)
        events = []
        for i in range(700):
            t = at(0) + rnd.randrange(10 * DAY)
            events.append(_ft(f"t{i}", t, f"u{rnd.randrange(40)}") if i % 3 else
                          _fr(f"r{i}", t, f"p{rnd.randrange(30)}", paid=float(i % 2),
                              fresh=float(i % 5 == 0)))
        events.sort(key=lambda e: e.event_time)
        if late:
            for i in range(0, len(events) - 20, 7):
                j = i + rnd.randrange(1, 20)
                events[i], events[j] = events[j], events[i]
        window, want, got = [], [], []
        state = m.new_state(X)
        for i, ev in enumerate(events):
            now = ev.event_time
            while window and window[0][0] <= now - P.reporter_window_ms:
                window.pop(0)
            if type(ev) is FeaturedTransfer:
                want.append(float(len({r for _, r, est in window if est})))
            else:
                f = ev.features
                window.append((now, ev.report_in.report.reporter_user_id,
                               f["reporter_paid_suspect"] > 0 and not f["reporter_fresh"]))
            if reload_every and i % reload_every == 0:
                state = pickle.loads(pickle.dumps(state))
            state, out = feed(m, X, [ev], state=state)
            if type(ev) is FeaturedTransfer:
                got.append(tagged(out, FEATURED)[0].features["established_reporters_7d"])
        assert got == want, (seed, late)
        assert max(want) >= 8  # a much-reported address
