"""The synthetic exchange: users, normal behaviour, scam campaigns, reports, outcomes, lists.

``generate`` writes a replay directory (see ``simulator/README.md``). Three phases:

1. *world* (numpy, seeded): users and profiles, favourite payees, merchants, exchange
   deposit addresses, employers;
2. *plan* (``random.Random``, seeded): scam campaigns of every typology with their victims'
   reports, case outcomes, blacklist snapshot and live updates, false reports, report
   bombing, salaries — all small next to the transfers, held in memory;
3. *stream*: normal transfers generated day by day, vectorised with numpy, merged by event
   time with the planned transfers of that day and streamed to the writers.

Nothing reads global random state or the clock: the same arguments give the same bytes.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from schemas import codecs
from schemas.rows import BlacklistUpdate, CaseOutcome, ScamReport, Transfer, Truth, UserProfile
from simulator import text
from simulator.addresses import EVM_NETWORKS, derive, fmt_address, internal_address, lookalike
from simulator.assets import ASSETS, DECIMALS, PRICE, make_amount
from simulator.remote import LocalWriters, RemoteWriters, writers
from simulator.sinks import Sink

SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000
DEFAULT_START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z (a Monday)
GENERATOR_VERSION = 1

TYPOLOGIES = ("pig_butchering", "phishing_drainer", "fake_platform", "romance",
              "impersonation", "address_poisoning")
# Share of scam transfers per typology (of SCAM_SHARE of all transfers).
TYPOLOGY_WEIGHT = {"pig_butchering": 0.22, "phishing_drainer": 0.12, "fake_platform": 0.30,
                   "romance": 0.14, "impersonation": 0.08, "address_poisoning": 0.14}
SCAM_SHARE = 0.012
TRANSFERS_PER_USER_DAY = 0.172

NET_NAMES = ("ETH", "BSC", "TRX", "BTC", "SOL", "INTERNAL")
INTERNAL_NET = 5
NET_P = np.array([0.25, 0.15, 0.35, 0.15, 0.10])  # withdrawals to new addresses
FAV_NET_P = np.array([0.30, 0.15, 0.30, 0.15, 0.10])  # favourite payees
POW10 = 10.0 ** DECIMALS
_NET_CUM = np.cumsum(NET_P).tolist()
# per network: (asset index, probability)
NET_ASSETS = ((( 0, .50), (2, .35), (1, .15)), ((0, .60), (3, .40)), ((0, .85), (4, .15)),
              ((5, 1.0),), ((6, .60), (1, .40)), ((0, .80), (5, .10), (2, .10)))
_ASSET_CUM = np.ones((6, 3))
_ASSET_IDS = np.zeros((6, 3), dtype=np.int64)
for _n, _opts in enumerate(NET_ASSETS):
    _c = 0.0
    for _k, (_a, _p) in enumerate(_opts):
        _ASSET_IDS[_n, _k] = _a
        _c += _p
        _ASSET_CUM[_n, _k] = _c if _k < len(_opts) - 1 else 2.0
    _ASSET_CUM[_n, len(_opts):] = 2.0
# Networks/assets scams use (USDT on Tron dominates, as in public reports).
SCAM_ROUTES = (("TRX", "USDT", .42), ("ETH", "USDT", .20), ("BSC", "USDT", .10),
               ("ETH", "ETH", .10), ("BTC", "BTC", .10), ("SOL", "SOL", .04),
               ("SOL", "USDC", .04))

# Asset of a poisoned payment that is not USDT (70 % are USDT where USDT exists)
POISON_ASSET = {"ETH": "ETH", "BSC": "BNB", "TRX": "TRX", "BTC": "BTC", "SOL": "SOL"}

# Normal transfer kinds: favourite payee, merchant, exchange deposit, internal/P2P, new address.
KIND_P = np.array([0.40, 0.16, 0.14, 0.16, 0.14])
_HOURLY = np.array([2, 1.5, 1, 1, 1, 1.5, 2.5, 4, 5, 6, 6.5, 6.5, 6.5, 6.5, 6.5, 6, 6, 6, 6, 6,
                    5.5, 5, 4, 3])
DIURNAL = _HOURLY / _HOURLY.sum()
COUNTRIES = ("US", "GB", "DE", "FR", "TR", "BR", "IN", "NG", "VN", "PH", "ID", "JP", "KR",
             "AU", "CA", "ES", "IT", "AR", "MX", "ZA", "PL", "NL", "UA", "TH", "AE")
COUNTRY_P = np.array([12, 6, 6, 4, 7, 6, 8, 5, 6, 5, 5, 3, 4, 2, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2],
                     dtype=float)
COUNTRY_P /= COUNTRY_P.sum()

# Reporting behaviour of victims per typology: (fast, late) — the rest are silent.
REPORTING = {"pig_butchering": (.10, .35), "phishing_drainer": (.45, .20),
             "fake_platform": (.20, .25), "romance": (.15, .30), "impersonation": (.35, .25),
             "address_poisoning": (.40, .20)}
CATEGORY = {"pig_butchering": (("INVESTMENT", .8), ("ROMANCE", .1), ("OTHER", .1)),
            "phishing_drainer": (("PHISHING", .85), ("OTHER", .15)),
            "fake_platform": (("FAKE_PLATFORM", .6), ("INVESTMENT", .3), ("OTHER", .1)),
            "romance": (("ROMANCE", .8), ("INVESTMENT", .1), ("OTHER", .1)),
            "impersonation": (("IMPERSONATION", .8), ("PHISHING", .2)),
            "address_poisoning": (("PHISHING", .5), ("OTHER", .5))}
FALSE_CATEGORY = (("OTHER", .35), ("FAKE_PLATFORM", .2), ("PHISHING", .15),
                  ("INVESTMENT", .15), ("IMPERSONATION", .15))
LIST_SOURCES = (("vendor_chainabuse", .45), ("vendor_trm", .2), ("law_enforcement", .1),
                ("internal_investigation", .25))
# Chance that a scam address is on the list before the period starts (poisoning look-alikes
# are made for one victim and are always fresh): ~30% of all scam addresses overall.
SNAPSHOT_SHARE = {"pig_butchering": 0.55, "fake_platform": 0.55, "romance": 0.55,
                  "impersonation": 0.55, "phishing_drainer": 0.5}
FILES = ("transfers", "reports", "outcomes", "blacklist", "profiles")
RECORD = {"transfers": "Transfer", "reports": "ScamReport", "outcomes": "CaseOutcome",
          "blacklist": "BlacklistUpdate", "profiles": "UserProfile",
          "blacklist_snapshot": "BlacklistUpdate", "truth": "Truth"}


def _pick(rng: random.Random, options: tuple) -> Any:
    """A weighted choice from ((value, p), ...)."""
    r = rng.random()
    for value, p in options[:-1]:
        if r < p:
            return value
        r -= p
    return options[-1][0]


@dataclass
class Episode:
    """One victim scammed once: transfers to one scam address."""

    user: int
    typology: str
    address: str
    network: str
    transfers: list  # [(t, transfer_id, usd, asset)]
    to_user: Optional[int] = None
    imitated: Optional[str] = None
    behaviour: str = "silent"
    repeat: bool = False


@dataclass
class ScamAddress:
    """A scam destination and what the world knows about it."""

    address: str
    network: str
    typology: str
    to_user: Optional[int] = None
    first_t: int = 0
    usd: float = 0.0
    victims: set = field(default_factory=set)
    listing: str = "unlisted"
    investigated: bool = False


class Exchange:
    """The world and the plan; ``write`` streams the files."""

    def __init__(self, users: int, days: int, seed: int, start_ms: int,
                 malformed_share: float, duplicate_share: float,
                 efficacy: Optional[tuple[float, float, int]] = None,
                 escalation: Optional[tuple[float, float, int]] = None):
        self.n, self.days, self.seed, self.start = users, days, seed, start_ms
        self.end = start_ms + days * DAY
        self.malformed_share, self.duplicate_share = malformed_share, duplicate_share
        self.key = hashlib.blake2b(f"safetynet-sim-{seed}".encode(), digest_size=32).digest()
        self.prng = random.Random(f"safetynet-plan-{seed}")
        self.scripted: dict[int, list] = defaultdict(list)  # day -> [(t, seq, Transfer, Truth)]
        self.episodes: list[Episode] = []
        self.addresses: dict[str, ScamAddress] = {}
        self.reports: list[tuple[int, ScamReport]] = []
        self.outcomes: list[tuple[int, CaseOutcome]] = []
        self.live: list[tuple[int, BlacklistUpdate]] = []
        self.snapshot: list[BlacklistUpdate] = []
        self.truth_other: list[Truth] = []
        self._seq = 0
        self._build_world()
        self._plan()
        self.efficacy = None
        if efficacy is not None:  # (warning effect, holdout share, victims): efficacy.py
            from simulator import efficacy as eff

            self.efficacy = eff.plan(self, *efficacy)
        self.escalation = None
        if escalation is not None:  # (response, holdout share, warn_after ms): response.py
            from simulator import response

            self.escalation = response.plan(self, *escalation)

    # --- world ---------------------------------------------------------------------------
    def _build_world(self) -> None:
        rng = np.random.default_rng([self.seed, 1])
        n = self.n
        p = self.prng
        self.bursts = [p.randint(15, 30) for _ in range(max(1, self.days // 14))]
        self.total_users = n + sum(self.bursts)
        new = rng.random(n) < 0.04
        ago = np.clip(rng.lognormal(math.log(500), 0.9, n), 2, 3000)
        created = self.start - (ago * DAY).astype(np.int64)
        created[new] = self.start + (rng.random(new.sum()) * (self.end - self.start - HOUR)
                                     ).astype(np.int64)
        self.created = np.concatenate([created, np.zeros(self.total_users - n, np.int64)])
        birth = np.clip(rng.normal(1989, 11.5, self.total_users), 1935, 2007).astype(np.int64)
        birth[rng.random(self.total_users) < 0.04] = -1
        self.birth = birth
        self.country = rng.choice(len(COUNTRIES), self.total_users, p=COUNTRY_P)
        self.country_missing = rng.random(self.total_users) < 0.03
        old = (birth > 0) & (birth < 1960)
        self.vulnerable = rng.random(self.total_users) < (0.027 + 0.10 * old)
        self.vulnerable[n:] = False
        perm = rng.permutation(self.total_users)
        width = max(7, len(str(self.total_users)))
        self.uid = np.array([f"u{i:0{width}d}" for i in perm.tolist()], dtype=object)
        self.acct = np.array([internal_address(u) for u in self.uid.tolist()], dtype=object)
        self.rate = TRANSFERS_PER_USER_DAY * rng.lognormal(-0.5, 1.0, n)
        self.wealth = rng.normal(0.0, 0.7, n)
        self.nfav = 1 + rng.binomial(3, 0.5, n)
        self.fav_net = rng.choice(5, (n, 4), p=FAV_NET_P)
        self.fav_base = np.exp(rng.normal(math.log(180), 0.8, (n, 4)) + self.wealth[:, None])
        self.mule = (rng.random(n) < 0.001) & ~new
        self.established = np.flatnonzero(~new)
        # merchants and exchange deposit addresses: Zipf popularity -> huge fan-in at the top
        m = max(40, n // 250)
        self.merch_net = rng.choice(5, m, p=NET_P)
        self.merch_addr = np.array([fmt_address(NET_NAMES[k], derive(self.key, 1, i))
                                    for i, k in enumerate(self.merch_net.tolist())], dtype=object)
        zipf = 1.0 / np.arange(1, m + 1) ** 1.1
        self.merch_p = zipf / zipf.sum()
        self.merch_price = np.exp(rng.normal(math.log(60), 0.8, m))
        e = 16
        self.ex_net = np.array([0, 2, 1, 3, 4, 2, 0, 2, 1, 0, 3, 2, 4, 0, 2, 1])[:e]
        self.ex_addr = np.array([fmt_address(NET_NAMES[k], derive(self.key, 2, i))
                                 for i, k in enumerate(self.ex_net.tolist())], dtype=object)
        zipf = 1.0 / np.arange(1, e + 1) ** 0.9
        self.ex_p = zipf / zipf.sum()
        # employers paying salaries internally
        emp = self.established[rng.random(len(self.established)) < 0.0025]
        self.employers = []
        for e_user in emp.tolist():
            k = int(rng.integers(3, 40))
            staff = rng.choice(self.established, k)
            pay = np.exp(rng.normal(math.log(2500), 0.5, k))
            period = 14 if rng.random() < 0.4 else 30
            self.employers.append((e_user, staff.tolist(), pay.tolist(), period,
                                   int(rng.integers(0, period))))
        w = np.ones(n)
        w[self.vulnerable[:n]] += 3.0
        w[(birth[:n] > 0) & (birth[:n] < 1965)] += 1.0
        w[new | self.mule] = 0.0
        self._victim_cum = np.cumsum(w).tolist()

    def fav_address(self, user: int, slot: int) -> str:
        """The ``slot``-th favourite payee of ``user`` (stable, derived from the seed)."""
        return fmt_address(NET_NAMES[int(self.fav_net[user, slot])],
                           derive(self.key, 3, user, slot))

    # --- plan helpers --------------------------------------------------------------------
    def _tid(self, prefix: str = "t") -> str:
        return f"{prefix}{self.prng.getrandbits(64):016x}"

    def _add_transfer(self, t: int, user: int, to_address: str, to_user: Optional[int],
                      network: str, asset: str, usd: float, channel: str,
                      truth: tuple) -> Optional[str]:
        """Plan one transfer (dropped outside the period); return its id."""
        if not (self.start <= t < self.end):
            return None
        tid = self._tid()
        amount, usd_value = make_amount(usd, asset)
        row = Transfer(tid, t, str(self.uid[user]), to_address,
                       None if to_user is None else str(self.uid[to_user]), network, asset,
                       amount, usd_value, channel)
        is_scam, typology, detail = truth
        tr = Truth("TRANSFER", tid, is_scam, typology, row.user_id, to_address, usd_value, t,
                   detail)
        self._seq += 1
        self.scripted[(t - self.start) // DAY].append((t, self._seq, row, tr))
        return tid

    def _victim(self, t: int) -> int:
        p = self.prng
        if self.episodes and p.random() < 0.12:  # repeat victim
            return self.episodes[p.randrange(len(self.episodes))].user
        return bisect.bisect_right(self._victim_cum, p.random() * self._victim_cum[-1])

    def _when(self, margin: int = 0) -> int:
        return self.start + int(self.prng.random() * max(HOUR, self.end - self.start - margin))

    def _lognormal(self, median: float, sigma: float, cap: float = 750_000.0) -> float:
        return min(cap, max(5.0, self.prng.lognormvariate(math.log(median), sigma)))

    def _scam_address(self, typology: str, net: str, mule: Optional[int] = None) -> ScamAddress:
        addr = (str(self.acct[mule]) if mule is not None
                else fmt_address(net, self.prng.randbytes(44)))
        sa = ScamAddress(addr, net, typology, mule)
        self.addresses[addr] = sa
        return sa

    def _mule(self) -> Optional[int]:
        mules = np.flatnonzero(self.mule)
        return int(mules[self.prng.randrange(len(mules))]) if len(mules) else None

    def _episode(self, sa: ScamAddress, user: int, times: list[int], usds: list[float],
                 asset: str, imitated: Optional[str] = None) -> int:
        """Plan a victim's payments to a scam address; return how many fall in the period."""
        p = self.prng
        ep = Episode(user, sa.typology, sa.address, sa.network, [], sa.to_user, imitated)
        detail = f"imitates:{imitated}" if imitated else None
        for t, usd in zip(times, usds, strict=True):
            if sa.to_user is not None:
                tid = self._add_transfer(t, user, sa.address, sa.to_user, "INTERNAL", asset,
                                         usd, "P2P" if p.random() < 0.5 else "INTERNAL",
                                         (True, sa.typology, detail))
            else:
                tid = self._add_transfer(t, user, sa.address, None, sa.network, asset, usd,
                                         "WITHDRAWAL", (True, sa.typology, detail))
            if tid is not None:
                ep.transfers.append((t, tid, make_amount(usd, asset)[1], asset))
        if ep.transfers:
            self.episodes.append(ep)
            sa.first_t = min(sa.first_t or ep.transfers[0][0], ep.transfers[0][0])
            sa.usd += sum(x[2] for x in ep.transfers)
            sa.victims.add(user)
        return len(ep.transfers)

    def _route(self) -> tuple[str, str]:
        return _pick(self.prng, tuple(((n, a), w) for n, a, w in SCAM_ROUTES))

    # --- typologies ----------------------------------------------------------------------
    def _pig_butchering(self) -> int:
        p = self.prng
        net, asset = self._route()
        sa = self._scam_address("pig_butchering", net)
        t0, count = self._when(3 * DAY), 0
        for _ in range(1 if p.random() < 0.8 else 2):
            user, t = self._victim(t0), t0 + int(p.random() * 3 * DAY)
            amount, times, usds = self._lognormal(250, 0.6), [], []
            for _ in range(p.randint(3, 10)):
                times.append(t)
                usds.append(min(amount, 250_000.0))
                amount *= p.uniform(1.15, 1.8)
                t += (int(p.uniform(1, 6) * HOUR) if p.random() < 0.15
                      else int(p.lognormvariate(math.log(2.5 * DAY), 0.5)))
            count += self._episode(sa, user, times, usds, asset)
        return count

    def _phishing_drainer(self) -> int:
        p = self.prng
        net, asset = self._route()
        sa = self._scam_address("phishing_drainer", net)
        t0, count = self._when(), 0
        for _ in range(_pick(p, ((1, .4), (2, .3), (3, .2), (5, .1)))):
            t = t0 + int(p.random() * 8 * HOUR)
            count += self._episode(sa, self._victim(t), [t], [self._lognormal(3500, 1.0)], asset)
        return count

    def _fake_platform(self, remaining: int) -> int:
        p = self.prng
        net, asset = self._route()
        sa = self._scam_address("fake_platform", net)
        span = int(min(p.uniform(4, 20) * DAY, 0.7 * (self.end - self.start)))
        t0, count = self._when(span + DAY), 0
        for _ in range(max(8, min(p.randint(10, 80), int(remaining / 1.7)))):
            t = t0 + int(p.random() * span)
            amount, times, usds = self._lognormal(400, 0.9), [], []
            for _ in range(_pick(p, ((1, .55), (2, .30), (3, .15)))):
                times.append(t)
                usds.append(amount)
                amount = min(250_000.0, amount * p.uniform(0.8, 2.5))
                t += int(p.uniform(2 * HOUR, 4 * DAY))
            count += self._episode(sa, self._victim(times[0]), times, usds, asset)
        return count

    def _romance(self) -> int:
        p = self.prng
        mule = self._mule() if p.random() < 0.3 else None
        net, asset = ("INTERNAL", "USDT") if mule is not None else self._route()
        sa = self._scam_address("romance", net, mule)
        t = self._when(2 * DAY)
        amount, times, usds = self._lognormal(700, 0.6), [], []
        for _ in range(p.randint(2, 5)):
            times.append(t)
            usds.append(amount)
            amount *= p.uniform(0.8, 1.6)
            t += int(p.lognormvariate(math.log(4 * DAY), 0.6))
        return self._episode(sa, self._victim(times[0]), times, usds, asset)

    def _impersonation(self) -> int:
        p = self.prng
        mule = self._mule() if p.random() < 0.35 else None
        net, asset = ("INTERNAL", "USDT") if mule is not None else self._route()
        sa = self._scam_address("impersonation", net, mule)
        t = self._when()
        times, usds = [t], [self._lognormal(1200, 0.8)]
        if p.random() < 0.4:
            times.append(t + int(p.uniform(10 * MINUTE, 3 * HOUR)))
            usds.append(self._lognormal(1200, 0.8))
        return self._episode(sa, self._victim(t), times, usds, asset)

    def _address_poisoning(self) -> int:
        p = self.prng
        t = self._when()
        user = self._victim(t)
        # any favourite payee: EVM, TRON, BTC (base58 or bech32) or SOL
        slot = p.randrange(int(self.nfav[user]))
        payee, net = self.fav_address(user, slot), NET_NAMES[int(self.fav_net[user, slot])]
        asset = POISON_ASSET[net] if p.random() >= 0.7 or net in ("BTC", "SOL") else "USDT"
        base = float(self.fav_base[user, slot])
        # the genuine payment the poisoner copies (always before the poisoned one)
        t = max(t, self.start + 7 * HOUR)
        prior = max(self.start, t - int(p.uniform(2 * HOUR, 6 * DAY)))
        if self._add_transfer(prior, user, payee, None, net, asset,
                              base * p.lognormvariate(0, 0.3), "WITHDRAWAL",
                              (False, None, None)) is None:
            return 0
        raw = p.randbytes(20 if net in EVM_NETWORKS else 44)
        sa = ScamAddress(lookalike(payee, raw, net), net, "address_poisoning")
        self.addresses[sa.address] = sa
        times, usds = [t], [base * p.uniform(0.8, 1.5)]
        if p.random() < 0.25:  # pays the imitation again: held again (rule 9)
            times.append(t + int(p.uniform(1, 48) * HOUR))
            usds.append(base * p.uniform(0.8, 1.5))
        return self._episode(sa, user, times, usds, asset, imitated=payee)

    # --- plan ----------------------------------------------------------------------------
    def _plan(self) -> None:
        expected = float(self.rate[self.established].sum()) * self.days * 0.97
        target = max(len(TYPOLOGIES), int(SCAM_SHARE * expected))
        for typ in TYPOLOGIES:
            budget, count, made, attempts = target * TYPOLOGY_WEIGHT[typ], 0, 0, 0
            while (count < budget or made == 0) and attempts < 100_000:
                attempts += 1
                got = (self._fake_platform(int(budget - count)) if typ == "fake_platform"
                       else getattr(self, "_" + typ)())
                count += got
                made += got > 0
        self.scam_transfer_target = target
        self._mark_repeats()
        self._plan_reports()
        self._plan_false_reports()
        self._plan_bombing()
        self._plan_investigations()
        self._plan_blacklist()
        self._plan_salaries()
        for sa in self.addresses.values():
            if sa.victims:
                self.truth_other.append(Truth(
                    "ADDRESS", sa.address, True, sa.typology,
                    None if sa.to_user is None else str(self.uid[sa.to_user]), sa.address,
                    round(sa.usd, 2), sa.first_t,
                    sa.listing + (";investigated" if sa.investigated else "")))
        for ep in self.episodes:
            self.truth_other.append(Truth(
                "USER", str(self.uid[ep.user]), True, ep.typology, str(self.uid[ep.user]),
                ep.address, round(sum(x[2] for x in ep.transfers), 2), ep.transfers[0][0],
                ep.behaviour + (";repeat" if ep.repeat else "")))

    def _mark_repeats(self) -> None:
        by_user: dict[int, list[Episode]] = defaultdict(list)
        for ep in self.episodes:
            by_user[ep.user].append(ep)
        for eps in by_user.values():
            eps.sort(key=lambda e: e.transfers[0][0])
            for ep in eps[1:]:
                ep.repeat = True

    def _report(self, t: int, reporter: int, tid: Optional[str], suspect: Optional[str],
                suspect_user: Optional[int], category: str, description: str,
                claimed: Optional[float], truth: tuple) -> Optional[ScamReport]:
        if not (self.start <= t < self.end):
            return None
        row = ScamReport(self._tid("r"), t, str(self.uid[reporter]), tid, suspect,
                         None if suspect_user is None else str(self.uid[suspect_user]),
                         category, description, claimed)
        self.reports.append((t, row))
        is_scam, typology, detail, usd = truth
        self.truth_other.append(Truth("REPORT", row.report_id, is_scam, typology,
                                      row.reporter_user_id, suspect, usd, t, detail))
        return row

    def _outcome(self, t: int, subject_type: str, subject_id: str, is_scam: bool) -> None:
        if self.start <= t < self.end:
            self.outcomes.append((t, CaseOutcome(self._tid("c"), t, subject_type, subject_id,
                                                 is_scam)))

    def _plan_reports(self) -> None:
        p = self.prng
        for ep in self.episodes:
            fast, late = REPORTING[ep.typology]
            r = p.random()
            ep.behaviour = "fast" if r < fast else "late" if r < fast + late else "silent"
            if ep.behaviour == "silent":
                continue
            last_t = ep.transfers[-1][0]
            t = last_t + (int(min(12 * HOUR, p.lognormvariate(math.log(40 * MINUTE), 1.2)))
                          if ep.behaviour == "fast" else int(p.uniform(1, 10) * DAY))
            loss = sum(x[2] for x in ep.transfers)
            asset = ep.transfers[-1][3]
            tid = None
            if p.random() < 0.75:
                tid = (ep.transfers[-1] if p.random() < 0.6
                       else max(ep.transfers, key=lambda x: x[2]))[1]
            suspect = ep.address if (tid is None or p.random() < 0.6) else None
            if ep.to_user is not None and p.random() < 0.5:
                suspect = None if tid is not None else suspect
            row = self._report(
                t, ep.user, tid, suspect, ep.to_user, _pick(p, CATEGORY[ep.typology]),
                text.describe(ep.typology, p, loss, asset),
                None if p.random() < 0.1 else round(loss * p.uniform(0.95, 1.3), 2),
                (True, ep.typology, ep.behaviour, round(loss, 2)))
            if row is None:
                continue
            sa = self.addresses[ep.address]
            if p.random() < 0.8:  # an investigation confirms it, hours to days later
                to = t + int(min(10 * DAY, max(2 * HOUR, p.lognormvariate(math.log(30 * HOUR),
                                                                            0.8))))
                if tid is not None and p.random() < 0.55:
                    self._outcome(to, "TRANSFER", tid, True)
                else:
                    self._outcome(to, "ADDRESS", sa.address, True)
                sa.investigated = True

    def _plan_false_reports(self) -> None:
        p = self.prng
        honest = len(self.reports)
        merch_cum = np.cumsum(self.merch_p).tolist()
        for _ in range(max(3, round(0.2 * honest))):
            user = int(self.established[p.randrange(len(self.established))])
            if user >= self.n or self.mule[user]:
                continue
            t_pay = self.start + int(p.random() * max(HOUR, self.end - self.start - DAY))
            if p.random() < 0.7:
                m = min(bisect.bisect_right(merch_cum, p.random()), len(self.merch_addr) - 1)
                addr, net = str(self.merch_addr[m]), NET_NAMES[int(self.merch_net[m])]
                usd = float(self.merch_price[m]) * p.lognormvariate(0, 0.7)
            else:
                s = p.randrange(int(self.nfav[user]))
                addr, net = self.fav_address(user, s), NET_NAMES[int(self.fav_net[user, s])]
                usd = float(self.fav_base[user, s]) * p.lognormvariate(0, 0.35)
            asset = ASSETS[int(_ASSET_IDS[NET_NAMES.index(net), 0])]
            tid = self._add_transfer(t_pay, user, addr, None, net, asset, usd, "WITHDRAWAL",
                                     (False, None, None))
            if tid is None:
                continue
            t = t_pay + int(p.uniform(6 * HOUR, 6 * DAY))
            row = self._report(t, user, tid if p.random() < 0.7 else None,
                               addr if p.random() < 0.8 else None, None,
                               _pick(p, FALSE_CATEGORY), text.describe_false(p, usd, asset),
                               None if p.random() < 0.15 else round(usd * p.uniform(1, 3), 2),
                               (False, None, "false_report", round(usd, 2)))
            if row is None:
                continue
            if row.suspect_address is None and row.transfer_id is None:
                continue
            if p.random() < 0.7:
                to = t + int(p.uniform(1, 5) * DAY)
                if p.random() < 0.6:
                    self._outcome(to, "REPORT", row.report_id, False)
                else:
                    self._outcome(to, "ADDRESS", addr, False)

    def _plan_bombing(self) -> None:
        """15-30 fresh accounts report one big legitimate merchant within an hour."""
        p = self.prng
        first = self.n
        self.bombing = []
        for size in self.bursts:
            m = p.randrange(min(5, len(self.merch_addr)))
            target = str(self.merch_addr[m])
            day = p.randrange(1, self.days) if self.days > 1 else 0
            t_b = self.start + day * DAY + int(p.uniform(8, 22) * HOUR)
            day_start = self.start + day * DAY
            times = sorted(t_b + int(p.random() * 55 * MINUTE) for _ in range(size))
            accounts = list(range(first, first + size))
            first += size
            self.bombing.append({"merchant": target, "at": t_b, "reports": size})
            for user, t in zip(accounts, times, strict=True):
                self.created[user] = day_start + int(p.random() * (t_b - 5 * MINUTE - day_start))
                row = self._report(t, user, None, target, None,
                                   _pick(p, (("FAKE_PLATFORM", .5), ("OTHER", .3),
                                             ("INVESTMENT", .2))),
                                   text.describe_bombing(p, self._lognormal(600, 1.0), "USDT"),
                                   None if p.random() < 0.3 else round(self._lognormal(600, 1.0),
                                                                        2),
                                   (False, None, "bombing", None))
                if row is not None and p.random() < 0.3:
                    self._outcome(t + int(p.uniform(1, 3) * DAY), "REPORT", row.report_id,
                                  False)
            self._outcome(t_b + int(p.uniform(12, 48) * HOUR), "ADDRESS", target, False)

    def _plan_investigations(self) -> None:
        """Some scam addresses nobody reported are found by investigation."""
        p = self.prng
        for sa in self.addresses.values():
            if sa.victims and not sa.investigated and p.random() < 0.3:
                t = sa.first_t + int(p.uniform(2, 15) * DAY)
                self._outcome(t, "ADDRESS", sa.address, True)
                if self.start <= t < self.end:
                    sa.investigated = True
                    if p.random() < 0.5:
                        self._list(t, sa, "internal_investigation")

    def _list(self, t: int, sa: ScamAddress, source: str) -> None:
        if sa.listing != "unlisted" or not (self.start <= t < self.end):
            return
        sa.listing = "live:" + source
        self.live.append((t, BlacklistUpdate(sa.address, sa.network, "ADD", t, source,
                                             f"{sa.typology.replace('_', ' ')} reported")))

    def _plan_blacklist(self) -> None:
        p = self.prng
        for sa in self.addresses.values():
            if not sa.victims:
                continue
            share = SNAPSHOT_SHARE.get(sa.typology, 0.0) if sa.to_user is None else 0.0
            if sa.listing == "unlisted" and p.random() < share:
                sa.listing = "snapshot"
                src = _pick(p, LIST_SOURCES)
                self.snapshot.append(BlacklistUpdate(sa.address, sa.network, "ADD", self.start,
                                                     src, "known scam"))
            elif sa.listing == "unlisted" and p.random() < 0.45:
                self._list(sa.first_t + int(p.lognormvariate(math.log(3 * DAY), 0.8)), sa,
                           _pick(p, LIST_SOURCES))
        # the historical list: addresses that never show up in this period
        for i in range(max(100, self.n // 4)):
            net = NET_NAMES[min(4, bisect.bisect_right(_NET_CUM, p.random()))]
            addr = fmt_address(net, p.randbytes(44))
            self.snapshot.append(BlacklistUpdate(addr, net, "ADD", self.start,
                                                 _pick(p, LIST_SOURCES), "historical"))
            if i < 3:  # expired entries delisted during the period
                t = self._when()
                self.live.append((t, BlacklistUpdate(addr, net, "REMOVE", t, "vendor_chainabuse",
                                                     "expired")))
        # false positives: legitimate merchants listed, later removed
        m = len(self.merch_addr)
        for k, rank in enumerate((min(m - 1, 20), min(m - 1, 35), min(m - 1, 12))):
            addr, net = str(self.merch_addr[rank]), NET_NAMES[int(self.merch_net[rank])]
            t_add = self.start if k < 2 else self.start + int(p.uniform(0.2, 0.4) * (
                self.end - self.start))
            bu = BlacklistUpdate(addr, net, "ADD", t_add, "vendor_chainabuse",
                                 "reported phishing")
            if k < 2:
                self.snapshot.append(bu)
            else:
                self.live.append((t_add, bu))
            t_rm = t_add + int(p.uniform(0.3, 0.5) * (self.end - self.start))
            if t_rm < self.end:
                self.live.append((t_rm, BlacklistUpdate(addr, net, "REMOVE", t_rm,
                                                        "internal_investigation",
                                                        "false positive: verified merchant")))
        # live additions of scam addresses that never receive from our users
        for _ in range(max(5, self.n // 1000)):
            net = NET_NAMES[min(4, bisect.bisect_right(_NET_CUM, p.random()))]
            t = self._when()
            self.live.append((t, BlacklistUpdate(fmt_address(net, p.randbytes(44)), net, "ADD",
                                                 t, _pick(p, LIST_SOURCES), "reported scam")))

    def _plan_salaries(self) -> None:
        p = self.prng
        for user, staff, pay, period, offset in self.employers:
            for day in range(self.days):
                if (day + offset) % period:
                    continue
                t0 = self.start + day * DAY + 9 * HOUR + int(p.random() * HOUR)
                for i, (emp, usd) in enumerate(zip(staff, pay, strict=True)):
                    if emp == user:
                        continue
                    self._add_transfer(t0 + i * SECOND * 3, user, str(self.acct[emp]), emp,
                                       "INTERNAL", "USDT", round(usd, 2), "INTERNAL",
                                       (False, None, None))

    # --- normal transfers ----------------------------------------------------------------
    def normal_day(self, day: int) -> list[tuple]:
        """The day's normal transfers as parallel lists, sorted by event time."""
        rng = np.random.default_rng([self.seed, 7, day])
        t0 = self.start + day * DAY
        n = self.n
        active = np.flatnonzero(self.created[:n] < t0 + DAY - HOUR)
        weekend = ((t0 // DAY) + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        cnt = rng.poisson(self.rate[active] * (0.85 if weekend else 1.0))
        u = np.repeat(active, cnt)
        m = len(u)
        t = t0 + rng.choice(24, m, p=DIURNAL) * HOUR + rng.integers(0, HOUR, m)
        cr = self.created[u]
        late = cr > t0
        if late.any():  # accounts opened today transact after opening
            t[late] = cr[late] + 1000 + (t[late] - t0) * (t0 + DAY - cr[late] - 1000) // DAY
        kind = rng.choice(5, m, p=KIND_P)
        net = np.empty(m, np.int64)
        usd = np.empty(m)
        addr = np.empty(m, dtype=object)
        to_uid = np.full(m, None, dtype=object)
        channel = np.full(m, "WITHDRAWAL", dtype=object)
        wealth = self.wealth[u]
        # 0: favourite payees, paid again and again with similar amounts
        k = np.flatnonzero(kind == 0)
        uk = u[k]
        slot = (rng.random(len(k)) * self.nfav[uk]).astype(np.int64)
        net[k] = self.fav_net[uk, slot]
        usd[k] = self.fav_base[uk, slot] * rng.lognormal(0, 0.35, len(k))
        addr[k] = [self.fav_address(a, b) for a, b in zip(uk.tolist(), slot.tolist(), strict=True)]
        # 1: merchants (Zipf: the top ones have thousands of senders)
        k = np.flatnonzero(kind == 1)
        mi = rng.choice(len(self.merch_addr), len(k), p=self.merch_p)
        net[k] = self.merch_net[mi]
        usd[k] = self.merch_price[mi] * rng.lognormal(0, 0.7, len(k))
        addr[k] = self.merch_addr[mi]
        # 2: deposit addresses of other exchanges (very large fan-in)
        k = np.flatnonzero(kind == 2)
        ei = rng.choice(len(self.ex_addr), len(k), p=self.ex_p)
        net[k] = self.ex_net[ei]
        usd[k] = np.exp(rng.normal(math.log(900), 1.0, len(k)) + wealth[k])
        addr[k] = self.ex_addr[ei]
        # 3: internal / P2P to another user of the exchange (often the same friends)
        k = np.flatnonzero(kind == 3)
        est = self.established
        friend = (u[k] * 7919 + rng.integers(0, 3, len(k)) * 104_729) % len(est)
        rand = rng.integers(0, len(est), len(k))
        to = est[np.where(rng.random(len(k)) < 0.7, friend, rand)]
        to = np.where(to == u[k], est[(friend + 1) % len(est)], to)
        net[k] = INTERNAL_NET
        usd[k] = np.exp(rng.normal(math.log(250), 1.0, len(k)) + wealth[k])
        addr[k] = self.acct[to]
        to_uid[k] = self.uid[to]
        channel[k] = np.where(rng.random(len(k)) < 0.35, "P2P", "INTERNAL")
        # 4: a one-off payment to an address never seen before
        k = np.flatnonzero(kind == 4)
        net[k] = rng.choice(5, len(k), p=NET_P)
        usd[k] = np.exp(rng.normal(math.log(300), 1.2, len(k)) + wealth[k])
        raw = rng.integers(0, 256, (len(k), 44), dtype=np.uint8).tobytes()
        addr[k] = [fmt_address(NET_NAMES[nk], raw[i * 44:(i + 1) * 44])
                   for i, nk in enumerate(net[k].tolist())]
        # assets, exact amounts and usd values
        asset = _ASSET_IDS[net, (rng.random(m)[:, None] >= _ASSET_CUM[net]).sum(1)]
        usd = np.clip(usd, 1.0, 2_000_000.0)
        units = np.maximum(1, np.rint(usd / PRICE[asset] * POW10[asset])).astype(np.int64)
        usd_value = np.round(units * PRICE[asset] / POW10[asset], 2)
        ids = rng.integers(0, 2 ** 64, m, dtype=np.uint64)
        order = np.argsort(t, kind="stable")
        return [ids[order].tolist(), t[order].tolist(), self.uid[u[order]].tolist(),
                addr[order].tolist(), to_uid[order].tolist(),
                [NET_NAMES[i] for i in net[order].tolist()],
                asset[order].tolist(), units[order].tolist(), usd_value[order].tolist(),
                channel[order].tolist()]

    # --- writing -------------------------------------------------------------------------
    def write(self, out: Path, fmt: str) -> dict:
        """Write every file of the replay directory; return the manifest."""
        counts: dict[str, int] = {}
        malformed: dict[str, dict[str, int]] = {}
        duplicates: dict[str, int] = {}
        span = (self.start, self.end)

        def sink_for(name: str, writer: Any, idx: int) -> Sink:
            return Sink(writer.write, RECORD[name], random.Random(f"sink-{self.seed}-{idx}"),
                        self.malformed_share, self.duplicate_share, span)

        def finish(name: str, sink: Sink) -> None:
            sink.close()
            counts[name] = sink.count
            if sink.malformed:
                malformed[name] = dict(sink.malformed)
            if name in ("transfers", "reports"):
                duplicates[name] = sink.duplicates

        path = {name: out / f"{name}.{fmt}" for name in RECORD}
        with writers() as remote:
            self._write_side_files(remote, path, fmt, counts)
            for idx, (name, rows) in enumerate((("blacklist", self.live),
                                                ("outcomes", self.outcomes),
                                                ("reports", self.reports)), start=1):
                with codecs.RecordWriter(path[name], RECORD[name], fmt) as w:
                    sink = sink_for(name, w, idx)
                    for t, row in sorted(rows, key=lambda x: (x[0], x[1][0])):
                        sink.emit(t, row)
                    finish(name, sink)
            truth = remote.open(path["truth"], "Truth", fmt)
            scam = self._write_transfers(path, fmt, sink_for, finish, truth)
            counts["truth"] = truth.close()
        return {"counts": counts, "malformed": malformed, "duplicates": duplicates,
                "scam": scam}

    def _write_side_files(self, remote: RemoteWriters | LocalWriters, path: dict, fmt: str,
                          counts: dict) -> None:
        """Profiles (in order of account creation) and the blacklist snapshot."""
        order = np.lexsort((np.arange(self.total_users), self.created))
        w = remote.open(path["profiles"], "UserProfile", fmt)
        uid, created, birth = self.uid.tolist(), self.created.tolist(), self.birth.tolist()
        country = [None if miss else COUNTRIES[c] for c, miss in
                   zip(self.country.tolist(), self.country_missing.tolist(), strict=True)]
        vulnerable = self.vulnerable.tolist()
        for i in order.tolist():
            b = birth[i]
            w.write(UserProfile(uid[i], created[i], country[i], b if b > 0 else None,
                                vulnerable[i]))
        counts["profiles"] = w.close()
        w = remote.open(path["blacklist_snapshot"], "BlacklistUpdate", fmt)
        w.write_many(sorted(self.snapshot, key=lambda r: r.address))
        counts["blacklist_snapshot"] = w.close()

    def _write_transfers(self, path: dict, fmt: str, sink_for: Any, finish: Any,
                         wtruth: Any) -> dict:
        other = sorted(self.truth_other, key=lambda r: (r.event_time, r.subject_type,
                                                        r.subject_id))
        oi, n_other = 0, len(other)
        tot = [0, 0.0]  # scam transfers, scam USD
        by_typ: dict[str, list] = {t: [0, 0.0] for t in TYPOLOGIES}
        with codecs.RecordWriter(path["transfers"], "Transfer", fmt) as wt:
            sink = sink_for("transfers", wt, 0)
            emit, twrite = sink.emit, wtruth.write

            def put_scripted(item, oi: int) -> int:
                """Write a scripted (scam) transfer and its truth, after the other truth
                rows due by its time; returns the new position in ``other``."""
                st, _, srow, struth = item
                while oi < n_other and other[oi].event_time <= st:
                    twrite(other[oi])
                    oi += 1
                emit(st, srow)
                twrite(struth)
                if struth.is_scam:
                    tot[0] += 1
                    tot[1] += struth.usd_value
                    bt = by_typ[struth.typology]
                    bt[0] += 1
                    bt[1] += struth.usd_value
                return oi

            pows = [10 ** int(d) for d in DECIMALS]
            decs = [int(d) for d in DECIMALS]
            for day in range(self.days):
                cols = self.normal_day(day)
                scripted = sorted(self.scripted.pop(day, []), key=lambda x: (x[0], x[1]))
                si, ns = 0, len(scripted)
                rows = zip(*cols, strict=True)
                for tid, t, uid, addr, touid, net, a, units, usd, ch in rows:
                    while si < ns and scripted[si][0] <= t:
                        oi = put_scripted(scripted[si], oi)
                        si += 1
                    while oi < n_other and other[oi].event_time <= t:
                        twrite(other[oi])
                        oi += 1
                    q, r = divmod(units, pows[a])
                    amount = str(q) if r == 0 else \
                        f"{q}.{r:0{decs[a]}d}".rstrip("0")
                    tid_s = f"t{tid:016x}"
                    emit(t, Transfer(tid_s, t, uid, addr, touid, net, ASSETS[a], amount, usd,
                                     ch))
                    twrite(Truth("TRANSFER", tid_s, False, None, uid, addr, usd, t, None))
                for item in scripted[si:]:
                    oi = put_scripted(item, oi)
            for row in other[oi:]:
                twrite(row)
            finish("transfers", sink)
        return {"transfers": tot[0], "usd": round(tot[1], 2),
                "by_typology": {k: {"transfers": v[0], "usd": round(v[1], 2)}
                                for k, v in by_typ.items()}}


def generate(output_dir: str | Path, users: int = 20000, days: int = 30, seed: int = 7,
             fmt: str = "avro", start_ms: int = DEFAULT_START_MS,
             malformed_share: float = 0.002, duplicate_share: float = 0.002,
             warning_effect: float = 0.0, warning_holdout: float = 0.0,
             efficacy_victims: int = 0, escalation_response: float = 0.0,
             escalation_holdout: float = 0.0, hold_warn_after_ms: int = 3_600_000) -> dict:
    """Write a replay directory (transfers, reports, outcomes, blacklist, profiles,
    blacklist_snapshot, truth, manifest.json) and return the manifest as a dict.

    ``efficacy_victims`` > 0 adds efficacy campaigns (``simulator/efficacy.py``): victims
    outside a ``warning_holdout`` share who are warned cancel their later scam payments with
    probability ``warning_effect``.

    ``escalation_response`` > 0 adds the response model of escalation inside the hold
    (``simulator/response.py``): a contacted victim of a certainly-held scam transfer outside
    an ``escalation_holdout`` share of holds reports it ``hold_warn_after_ms`` plus a delay
    after it, with that probability."""
    if fmt not in codecs.FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(codecs.FORMATS)}, got {fmt!r}")
    if users < 10 or days < 1:
        raise ValueError(f"need users >= 10 and days >= 1, got users={users}, days={days}")
    for name, v in (("malformed_share", malformed_share), ("duplicate_share", duplicate_share)):
        if not 0.0 <= v < 0.5:
            raise ValueError(f"{name} must be in [0, 0.5), got {v}")
    if not codecs.MIN_TS <= start_ms <= codecs.MAX_TS - days * DAY:
        raise ValueError(f"start_ms out of range: {start_ms}")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for name, v in (("warning_effect", warning_effect), ("warning_holdout", warning_holdout),
                    ("escalation_response", escalation_response),
                    ("escalation_holdout", escalation_holdout)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v}")
    ex = Exchange(users, days, seed, start_ms, malformed_share, duplicate_share,
                  (warning_effect, warning_holdout, efficacy_victims) if efficacy_victims > 0
                  else None,
                  (escalation_response, escalation_holdout, hold_warn_after_ms)
                  if escalation_response > 0 else None)
    written = ex.write(out, fmt)
    counts = written["counts"]
    typ_counts: dict[str, int] = defaultdict(int)
    for ep in ex.episodes:
        typ_counts[ep.typology] += 1
    behaviour: dict[str, int] = defaultdict(int)
    for ep in ex.episodes:
        behaviour[ep.behaviour] += 1
    listed = defaultdict(int)
    for sa in ex.addresses.values():
        if sa.victims:
            listed[sa.listing.split(":")[0]] += 1
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed, "users": users, "days": days, "format": fmt,
        "start_ms": start_ms, "end_ms": ex.end,
        "malformed_share": malformed_share, "duplicate_share": duplicate_share,
        "files": {f"{k}.{fmt}": counts[k] for k in (*FILES, "blacklist_snapshot", "truth")},
        "malformed": written["malformed"],
        "malformed_total": {k: sum(v.values()) for k, v in written["malformed"].items()},
        "duplicates": written["duplicates"],
        "scam": written["scam"],
        "victim_episodes": {t: typ_counts.get(t, 0) for t in TYPOLOGIES},
        "victim_behaviour": dict(sorted(behaviour.items())),
        "repeat_episodes": sum(ep.repeat for ep in ex.episodes),
        "scam_addresses": {k: listed[k] for k in ("snapshot", "live", "unlisted")},
        "accounts": ex.total_users,
        "vulnerable_users": int(ex.vulnerable.sum()),
        "report_bombing": ex.bombing,
    }
    if ex.efficacy is not None:
        manifest["efficacy"] = ex.efficacy
    if ex.escalation is not None:
        manifest["escalation"] = ex.escalation
    with open(out / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return manifest
