"""Realistic-looking on-chain addresses, made deterministically from bytes.

>>> fmt_address("ETH", bytes(range(44)))[:10]
'0x00010203'
>>> len(fmt_address("TRX", bytes(44))), len(fmt_address("SOL", bytes(44)))
(34, 44)
>>> fmt_address("BTC", bytes(44)).startswith("bc1q")
True
>>> a = "0xabc1111111111111111111111111111111111234"
>>> b = lookalike(a, bytes(range(20)))
>>> b[:5] == a[:5] and b[-4:] == a[-4:] and b != a and is_lookalike(b, a)
True
"""

from __future__ import annotations

import hashlib

NETWORKS = ("ETH", "BSC", "TRX", "BTC", "SOL")
EVM_NETWORKS = frozenset({"ETH", "BSC"})
INTERNAL = "INTERNAL"

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"  # bech32 charset
_T58 = bytes(ord(_B58[i % 58]) for i in range(256))
_T32 = bytes(ord(_B32[i % 32]) for i in range(256))
_HEX = "0123456789abcdef"


def fmt_address(network: str, raw: bytes) -> str:
    """An address of ``network`` from 44 random bytes (EVM: ``0x`` + 40 lower-case hex;
    TRX: ``T`` + 33 base58; BTC: ``bc1q`` + 38 bech32; SOL: 44 base58)."""
    if network in EVM_NETWORKS:
        return "0x" + raw[:20].hex()
    if network == "TRX":
        return "T" + raw[:33].translate(_T58).decode()
    if network == "BTC":
        return "bc1q" + raw[:38].translate(_T32).decode()
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


def lookalike(genuine: str, raw: bytes) -> str:
    """An EVM address sharing the first 3 hex digits after ``0x`` and the last 4 with
    ``genuine``, with a different middle (the address-poisoning pattern)."""
    middle = raw[:17].hex()[:33]
    if middle == genuine[5:38]:
        middle = _HEX[(_HEX.index(middle[0]) + 1) % 16] + middle[1:]
    return genuine[:5] + middle + genuine[38:]


def is_lookalike(addr: str, genuine: str) -> bool:
    """True when ``addr`` imitates ``genuine``: both EVM, different, same first 3 hex digits
    after ``0x`` and same last 4."""
    a, g = addr.lower(), genuine.lower()
    return (len(a) == len(g) == 42 and a.startswith("0x") and g.startswith("0x") and a != g
            and a[2:5] == g[2:5] and a[-4:] == g[-4:])
