"""Realistic-looking on-chain addresses, made deterministically from bytes.

>>> fmt_address("ETH", bytes(range(44)))[:10]
'0x00010203'
>>> len(fmt_address("TRX", bytes(44))), len(fmt_address("SOL", bytes(44)))
(34, 44)
>>> fmt_address("BTC", bytes(44)).startswith("bc1q")
True
>>> sorted({fmt_address("BTC", bytes([0] * 43 + [i]))[0] for i in range(20)})
['1', '3', 'b']
>>> a = "0xabc1111111111111111111111111111111111234"
>>> b = lookalike(a, bytes(range(20)))
>>> b[:5] == a[:5] and b[-4:] == a[-4:] and b != a
True
>>> t = fmt_address("TRX", bytes(range(44)))
>>> f = lookalike(t, bytes(range(100, 144)), "TRX")
>>> f[:6] == t[:6] and f[-4:] == t[-4:] and f != t
True
"""

from __future__ import annotations

import hashlib

EVM_NETWORKS = frozenset({"ETH", "BSC"})
INTERNAL = "INTERNAL"

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"  # bech32 charset
_T58 = bytes(ord(_B58[i % 58]) for i in range(256))
_T32 = bytes(ord(_B32[i % 32]) for i in range(256))
_HEX = "0123456789abcdef"


def fmt_address(network: str, raw: bytes) -> str:
    """An address of ``network`` from 44 random bytes (EVM: ``0x`` + 40 lower-case hex;
    TRX: ``T`` + 33 base58; BTC: half bech32 ``bc1q`` + 38, 35 % base58 P2PKH ``1`` + 33,
    15 % base58 P2SH ``3`` + 33 — the shape chosen by the last byte; SOL: 44 base58)."""
    if network in EVM_NETWORKS:
        return "0x" + raw[:20].hex()
    if network == "TRX":
        return "T" + raw[:33].translate(_T58).decode()
    if network == "BTC":
        shape = raw[43] % 20
        if shape < 10:
            return "bc1q" + raw[:38].translate(_T32).decode()
        return ("1" if shape < 17 else "3") + raw[:33].translate(_T58).decode()
    if network == "SOL":
        return raw[:44].translate(_T58).decode()
    raise ValueError(f"unknown network {network!r}")


def internal_address(user_id: str) -> str:
    """The exchange-internal account address of a user (network ``INTERNAL``)."""
    return "acct:" + user_id


def derive(key: bytes, *parts: int) -> bytes:
    """44 pseudo-random bytes from a secret key and integers (stable across runs)."""
    msg = b"".join(p.to_bytes(8, "little", signed=True) for p in parts)
    return hashlib.blake2b(msg, digest_size=44, key=key).digest()


# What the simulated poisoners copy of a genuine address, per network and shape: (first,
# last) characters, fixed prefix included. EVM: 0x + 3 hex and 4 (as the rule's first form);
# TRON: T + 5 and 4 (the December 2025 $50M case matched 6 + 4); BTC base58 1/3 + 4 and 4;
# bech32: bc1q + 4 and 4; SOL: 4 and 4 (what Solana wallets show). Each is at least what
# the wallets of the network show (core/lookalike.py), so every imitation is one.
POISON_MATCH = {"EVM": (5, 4), "TRX": (6, 4), "BTC": (5, 4), "BECH32": (8, 4), "SOL": (4, 4)}


def _kind(address: str, network: str) -> str:
    if network in EVM_NETWORKS or (network is None and address.startswith("0x")):
        return "EVM"
    if network == "BTC" and address.lower().startswith("bc1"):
        return "BECH32"
    return network


def lookalike(genuine: str, raw: bytes, network: str = "ETH") -> str:
    """An address of ``network`` with the head and tail of ``genuine`` a poisoner copies
    (``POISON_MATCH``) and a different middle made from ``raw`` (20 bytes for EVM, 44
    otherwise): the address-poisoning pattern."""
    kind = _kind(genuine, network)
    if kind == "EVM":
        middle = raw[:17].hex()[:33]
        if middle == genuine[5:38]:
            middle = _HEX[(_HEX.index(middle[0]) + 1) % 16] + middle[1:]
        return genuine[:5] + middle + genuine[38:]
    head, tail = POISON_MATCH[kind]
    n = len(genuine) - head - tail
    alphabet, table = (_B32, _T32) if kind == "BECH32" else (_B58, _T58)
    middle = raw[:n].translate(table).decode()
    if middle == genuine[head:head + n]:
        middle = alphabet[(alphabet.index(middle[0]) + 1) % len(alphabet)] + middle[1:]
    return genuine[:head] + middle + genuine[-tail:]
