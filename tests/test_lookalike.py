"""Rule 9 on every address family: EVM hex, TRON base58, BTC base58 and bech32, SOL base58.

Each family is pinned three ways: the key a wallet shows (``core/lookalike.py``), the
SenderProfile machine (which payee a payment imitates), and the whole graph (the hold and
the reason naming the genuine payee and the family). Genuine addresses are real-looking
public examples; an imitation keeps the head and tail the family's wallets show (defaults:
EVM 5 + 4 with ``0x``, TRON / BTC base58 / SOL 4 + 4, bech32 6 + 4 with ``bc1``) and
changes the middle.
"""

from __future__ import annotations

import dataclasses

import pytest

from core import lookalike as lk
from core.machine import run_history
from core.policy import Policy
from core.profiles import SenderProfile
from schemas import codecs
from schemas.codecs import normalize_address
from schemas.rows import Transfer
from tests.scenario import at, decide

EVM_G = "0xabc" + "1" * 33 + "9f3e"
TRON_G = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
BTC_G = "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"
P2SH_G = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
BECH_G = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
SOL_G = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"

P = Policy(use_models=False)


def fake(genuine: str, head: int, tail: int, filler: str = "x") -> str:
    """``genuine`` with its first ``head`` and last ``tail`` characters kept and the middle
    replaced by ``filler`` (the vanity address a poisoner makes)."""
    return genuine[:head] + filler * (len(genuine) - head - tail) + genuine[-tail:]


def off(address: str, i: int) -> str:
    """``address`` with the character at ``i`` replaced by another valid one of its
    encoding (hex, base58 and bech32 all have ``d`` and ``e``)."""
    return swap(address, i, "d" if address[i % len(address)] != "d" else "e")


def swap(address: str, i: int, c: str) -> str:
    """``address`` with the character at ``i`` replaced by ``c`` (one character off)."""
    i = i % len(address)
    assert address[i] != c
    return address[:i] + c + address[i + 1:]


# (family, network, genuine, head, tail, a valid replacement character of the encoding)
CASES = [
    (lk.EVM, "ETH", EVM_G, 5, 4, "7"),
    (lk.TRON, "TRX", TRON_G, 4, 4, "x"),
    (lk.BTC, "BTC", BTC_G, 4, 4, "x"),
    (lk.BTC, "BTC", P2SH_G, 4, 4, "x"),
    (lk.BECH32, "BTC", BECH_G, 6, 4, "x"),
    (lk.SOL, "SOL", SOL_G, 4, 4, "x"),
]
IDS = ["evm", "tron", "btc_p2pkh", "btc_p2sh", "bech32", "sol"]


def tr(tid: str, minutes: float, user: str, to: str, network: str,
       to_user: str | None = None, channel: str = "WITHDRAWAL") -> Transfer:
    return Transfer(tid, at(minutes), user, to, to_user, network, "USDT", "100", 100.0, channel)


def imitations(transfers: list, policy: Policy = P) -> dict:
    """transfer id -> the payee SenderProfile says it imitates (None: imitates nothing)."""
    out = run_history(SenderProfile(policy, lambda u: None), transfers[0].user_id, transfers)
    return {v.transfer.transfer_id: v.lookalike_of for _, _, v in out}


# ------------------------------------------------------------------- the key, per family
@pytest.mark.parametrize("fam,net,genuine,head,tail,c", CASES, ids=IDS)
def test_family_is_recognised_from_network_and_shape(fam, net, genuine, head, tail, c):
    assert lk.family(genuine, net) == fam
    assert lk.key(genuine, net) == (fam, genuine[:head].lower() if fam in (lk.EVM, lk.BECH32)
                                    else genuine[:head], genuine[-tail:])


@pytest.mark.parametrize("fam,net,genuine,head,tail,c", CASES, ids=IDS)
def test_same_head_and_tail_is_a_lookalike(fam, net, genuine, head, tail, c):
    f = fake(genuine, head, tail, c)
    assert f != genuine and lk.family(f, net) == fam
    assert lk.key(f, net) == lk.key(genuine, net)


@pytest.mark.parametrize("fam,net,genuine,head,tail,c", CASES, ids=IDS)
def test_one_character_off_in_head_or_tail_is_not_a_lookalike(fam, net, genuine, head, tail,
                                                               c):
    f = fake(genuine, head, tail, c)
    # the last character of the head (after any fixed prefix) and the first of the tail
    for i in (head - 1, -tail, -1):
        near = off(f, i)
        assert lk.family(near, net) == fam
        assert lk.key(near, net) != lk.key(genuine, net), (i, near)


@pytest.mark.parametrize("genuine,net", [(TRON_G, "TRX"), (BTC_G, "BTC"), (SOL_G, "SOL")],
                         ids=["tron", "btc", "sol"])
def test_base58_case_difference_is_a_different_head(genuine, net):
    # "Q"/"q", "o"/"O" ... : flip the case of the last head character that has a valid
    # other case in base58 (no 0, O, I, l)
    f = fake(genuine, 4, 4)
    i = next(i for i in (3, 2, 1) if f[i].swapcase() != f[i]
             and f[i].swapcase() not in "0OIl")
    other = swap(f, i, f[i].swapcase())
    assert lk.family(other, net) is not None
    assert lk.key(other, net) != lk.key(genuine, net)
    assert normalize_address(other, net) == other  # the codecs keep base58 as given


@pytest.mark.parametrize("fmt", ["json", "avro", "parquet"])
def test_codecs_keep_base58_and_bech32_as_given_and_lower_evm_hex(fmt, tmp_path):
    """On every input path the look-alike test sees base58 exactly as sent (its case is
    part of the address) and EVM hex lower-cased."""
    sent = [(TRON_G, "TRX"), (BTC_G, "BTC"), (SOL_G, "SOL"), (BECH_G.upper(), "BTC"),
            (EVM_G.upper().replace("0X", "0x"), "ETH")]
    rows = [tr(f"t{i}", i, "u", a, net) for i, (a, net) in enumerate(sent)]
    if fmt == "json":
        got = [codecs.decode_json("Transfer", codecs.encode_json(r), "test") for r in rows]
    elif fmt == "avro":
        got = [codecs.decode_avro("Transfer", codecs.encode_avro(r), "test") for r in rows]
    else:
        codecs.write_records(tmp_path / "transfers.parquet", "Transfer", rows, "parquet")
        got = list(codecs.read_records(tmp_path / "transfers.parquet", "Transfer"))
    assert [g.to_address for g in got] == [TRON_G, BTC_G, SOL_G, BECH_G.upper(), EVM_G]


def test_bech32_is_case_free():
    f = fake(BECH_G, 6, 4)
    assert lk.key(f.upper(), "BTC") == lk.key(BECH_G, "BTC")
    assert lk.same_address(BECH_G.upper(), BECH_G, lk.BECH32)
    assert lk.family(BECH_G[:10] + BECH_G[10:].upper(), "BTC") is None  # mixed case: invalid


def test_evm_hex_is_case_free():
    f = fake(EVM_G, 5, 4, "7")
    assert lk.key(f.upper().replace("0X", "0x"), "ETH") == lk.key(EVM_G, "ETH")


def test_families_are_never_compared():
    # the same characters on another network are another family (or none)
    as_sol = fake(TRON_G, 4, 4)  # 34 base58 characters: a valid SOL shape too
    assert lk.key(as_sol, "SOL") != lk.key(TRON_G, "TRX")
    assert lk.family(EVM_G, "TRX") is None and lk.family(EVM_G, "SOL") is None
    assert lk.family(TRON_G, "ETH") is None and lk.family(BECH_G, "SOL") is None
    assert lk.family(BTC_G, "TRX") is None
    # a bech32 and a base58 BTC address never share a key (different family)
    assert lk.key(BECH_G, "BTC")[0] != lk.key(BTC_G, "BTC")[0]


def test_internal_accounts_are_never_lookalikes():
    assert lk.family("acct:u0000042", "INTERNAL") is None
    assert lk.family(EVM_G, "INTERNAL") is None  # whatever it looks like
    assert lk.family("acct:u0000042", None) is None


def test_head_and_tail_lengths_are_policy_options():
    wide = dataclasses.replace(P, lookalike_tron_head=6, lookalike_tron_tail=5)
    shown = lk.shown(wide)
    assert shown[lk.TRON] == (6, 5) and shown[lk.EVM] == (5, 4)
    f4 = fake(TRON_G, 4, 4)
    assert lk.key(f4, "TRX", shown) != lk.key(TRON_G, "TRX", shown)
    assert lk.key(fake(TRON_G, 6, 5), "TRX", shown) == lk.key(TRON_G, "TRX", shown)
    with pytest.raises(ValueError, match="lookalike_sol_tail"):
        dataclasses.replace(P, lookalike_sol_tail=0).validate()


# ----------------------------------------------------------------- SenderProfile, per family
@pytest.mark.parametrize("fam,net,genuine,head,tail,c", CASES, ids=IDS)
def test_sender_profile_names_the_imitated_payee(fam, net, genuine, head, tail, c):
    f = fake(genuine, head, tail, c)
    near_head, near_tail = off(f, head - 1), off(f, -1)
    got = imitations([tr("g1", 0, "u", genuine, net), tr("x1", 10, "u", f, net),
                      tr("n1", 20, "u", near_head, net), tr("n2", 30, "u", near_tail, net),
                      tr("g2", 40, "u", genuine, net), tr("x2", 50, "u", f, net)])
    assert got == {"g1": None, "x1": genuine, "n1": None, "n2": None, "g2": None,
                   "x2": genuine}


def test_sender_profile_bech32_other_case_of_a_payee_is_not_an_imitation():
    got = imitations([tr("g1", 0, "u", BECH_G, "BTC"), tr("g2", 10, "u", BECH_G.upper(), "BTC"),
                      tr("x1", 20, "u", fake(BECH_G, 6, 4).upper(), "BTC")])
    assert got["g1"] is None and got["g2"] is None  # one address, two spellings
    assert lk.same_address(got["x1"], BECH_G, lk.BECH32)  # named in either spelling


def test_sender_profile_base58_other_case_is_not_an_imitation_of_the_head():
    other = "Tqn9" + TRON_G[4:]  # a different TRON address (base58 is case-sensitive)
    got = imitations([tr("g1", 0, "u", TRON_G, "TRX"), tr("o1", 10, "u", other, "TRX")])
    assert got == {"g1": None, "o1": None}


def test_sender_profile_never_compares_across_families_or_internal():
    internal_g, internal_x = "acct:u0000001", "acct:u0000002"
    got = imitations([
        tr("g1", 0, "u", TRON_G, "TRX"),
        tr("s1", 10, "u", fake(TRON_G, 4, 4), "SOL"),  # same characters, SOL family
        tr("g2", 20, "u", EVM_G, "ETH"),
        tr("t1", 30, "u", fake(EVM_G, 5, 4, "7"), "TRX"),  # hex on TRON: no family
        tr("i1", 40, "u", internal_g, "INTERNAL", "u1", "INTERNAL"),
        tr("i2", 50, "u", internal_x, "INTERNAL", "u2", "P2P"),
        tr("i3", 60, "u", fake(EVM_G, 5, 4, "7"), "INTERNAL", "u3", "INTERNAL"),
    ])
    assert set(got.values()) == {None}


def test_sender_profile_evm_on_bsc_imitates_a_payee_paid_on_eth():
    """EVM chains share one address space: unchanged from the rule's first form."""
    got = imitations([tr("g1", 0, "u", EVM_G, "ETH"),
                      tr("x1", 10, "u", fake(EVM_G, 5, 4, "7"), "BSC")])
    assert got == {"g1": None, "x1": EVM_G}


# --------------------------------------------------------------------- the whole graph
def test_lookalikes_on_every_family_are_held_naming_payee_and_family():
    events, expect_held, users = [], {}, []
    for n, (fam, net, genuine, head, tail, c) in enumerate(CASES):
        u = f"user{n}"
        users.append(u)
        f = fake(genuine, head, tail, c)
        near = off(f, head - 1)
        events += [tr(f"{u}-g1", 0, u, genuine, net), tr(f"{u}-x1", 60, u, f, net),
                   tr(f"{u}-n1", 120, u, near, net), tr(f"{u}-g2", 180, u, genuine, net),
                   tr(f"{u}-x2", 240, u, f, net)]
        why = f"lookalike_of={genuine}" + ("" if fam == lk.EVM else f" ({fam})")
        expect_held[f"{u}-x1"] = expect_held[f"{u}-x2"] = why
    out = decide(events, P)  # the graph's machines without Beam (tests.scenario.decide)
    held = {h.transfer_id: h for h in out["holds"]}
    assert set(held) == set(expect_held)
    for tid, why in expect_held.items():
        assert why in held[tid].reasons, (tid, held[tid].reasons)
    # the sender is warned, naming the payee (once a day: rule 6 keeps the x2 warnings back)
    warned = {o.transfer_id: o for o in out["outreach"] if o.kind == "WARNING"}
    assert set(warned) == {f"{u}-x1" for u in users}
    for tid, o in warned.items():
        assert expect_held[tid] in o.reasons


def test_same_address_ignores_case_only_in_case_free_families():
    assert lk.same_address("0xABC", "0xabc", "EVM")
    assert lk.same_address("bc1qabc", "BC1QABC", "BTC-bech32")
    assert not lk.same_address("TAbc", "Tabc", "TRON")  # base58: another address
    assert lk.same_address("TAbc", "TAbc", "TRON")


def test_forget_drops_the_addresses_and_only_the_keys_left_empty():
    ix = {("EVM", "0xab", "cd"): {"0xab1cd", "0xab2cd"}, ("EVM", "0xef", "01"): {"0xef901"},
          ("SOL", "Ab", "cd"): {"Ab9cd"}}
    lk.forget(ix, ["0xab1cd", "0xef901"])
    assert ix == {("EVM", "0xab", "cd"): {"0xab2cd"}, ("SOL", "Ab", "cd"): {"Ab9cd"}}
    lk.forget(ix, [])
    assert ix == {("EVM", "0xab", "cd"): {"0xab2cd"}, ("SOL", "Ab", "cd"): {"Ab9cd"}}


# The address formats at their edges (each network's documented shape): TRON base58check
# addresses are 34 characters starting with T; legacy BTC (P2PKH/P2SH) base58 addresses
# start with 1 or 3 and are 25-35 characters long; bech32 addresses (BIP 173) are 14-74
# characters, all lower or all upper case, from the bech32 alphabet after "bc1"; Solana
# base58 public keys are 32-44 characters; EVM addresses are 0x and 40 hex digits.

@pytest.mark.parametrize("address,net,fam", [
    ("T" + "a" * 33, "TRX", lk.TRON), ("T" + "a" * 33, "tron", lk.TRON),
    ("T" + "a" * 32, "TRX", None), ("T" + "a" * 34, "TRX", None),
    ("A" + "a" * 33, "TRX", None), ("T" + "a" * 32 + "0", "TRX", None),  # 0 not base58
    ("1" + "a" * 24, "BTC", lk.BTC), ("3" + "a" * 34, "BTC", lk.BTC),
    ("1" + "a" * 23, "BTC", None), ("1" + "a" * 35, "BTC", None),
    ("2" + "a" * 30, "BTC", None), ("X" + "a" * 30, "BTC", None),
    ("1" + "a" * 29 + "l", "BTC", None),  # l not base58
    ("bc1" + "q" * 11, "BTC", lk.BECH32), ("bc1" + "q" * 71, "BTC", lk.BECH32),
    ("bc1" + "q" * 10, "BTC", None), ("bc1" + "q" * 72, "BTC", None),
    ("BC1" + "Q" * 39, "BTC", lk.BECH32), ("bc1" + "q" * 38 + "b", "BTC", None),  # b not bech32
    ("bc1" + "q" * 38 + "Q", "BTC", None),  # mixed case
    ("bc1b" + "q" * 38, "BTC", None),  # b, right after bc1, not bech32
    ("a" * 32, "SOL", lk.SOL), ("a" * 44, "SOL", lk.SOL),
    ("a" * 31, "SOL", None), ("a" * 45, "SOL", None), ("a" * 31 + "0", "SOL", None),
    ("0x" + "aB" * 20, "ETH", lk.EVM), ("0x" + "a" * 39, "ETH", None),
    ("0x" + "a" * 41, "ETH", None), ("0X" + "a" * 40, "ETH", None),
    ("0x" + "a" * 39 + "g", "ETH", None), ("0xg" + "a" * 39, "ETH", None),
    ("0x" + "a" * 40, "INTERNAL", None), ("0x" + "a" * 40, "internal", None), ("", "ETH", None),
    ("", "BTC", None), ("", "TRX", None),
])
def test_family_at_the_edges_of_each_address_format(address, net, fam):
    assert lk.family(address, net) == fam


def test_each_family_shows_what_its_policy_fields_say():
    p = Policy(lookalike_evm_head=7, lookalike_evm_tail=5, lookalike_tron_head=3,
               lookalike_tron_tail=6, lookalike_btc_head=2, lookalike_btc_tail=8,
               lookalike_bech32_head=9, lookalike_bech32_tail=3, lookalike_sol_head=5,
               lookalike_sol_tail=2)
    assert lk.shown(p) == {lk.EVM: (7, 5), lk.TRON: (3, 6), lk.BTC: (2, 8),
                           lk.BECH32: (9, 3), lk.SOL: (5, 2)}
    assert lk.shown(None) == lk.DEFAULT_SHOWN and lk.shown(None) is not lk.DEFAULT_SHOWN


def test_a_policy_without_a_family_field_gets_that_familys_default():
    class Partial:
        lookalike_evm_head = 8

    assert lk.shown(Partial()) == {**lk.DEFAULT_SHOWN, lk.EVM: (8, lk.DEFAULT_SHOWN[lk.EVM][1])}
