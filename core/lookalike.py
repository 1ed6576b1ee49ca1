"""Address poisoning (rule 9): what a wallet shows of an address, per address family.

A poisoner makes a vanity address whose shortened form — the head and tail a wallet shows,
``0xabc…1234``, ``TQn9…LSE2`` — equals that of a payee the victim paid before, and plants
it in the victim's history. Two *different* addresses of the *same family* with the same
shown head and tail are look-alikes. Nothing else is compared: a TRON address never
imitates an EVM one, and an exchange-internal account id is never a look-alike.

Families, how one is recognised (the transfer's ``network`` and the address's shape), the
case rule of its encoding, and the default head + tail shown (characters counted from the
start of the address, fixed prefix included, and from its end):

* ``EVM`` — network ETH, BSC or any other not named below; ``0x`` + 40 hex; case-free;
  shows 5 + 4;
* ``TRON`` — network TRX (or TRON); ``T`` + 33 base58; case-sensitive; 4 + 4;
* ``BTC`` (base58) — network BTC; ``1`` or ``3`` + 24–34 base58; case-sensitive; 4 + 4;
* ``BTC-bech32`` — network BTC; ``bc1`` + 11–71 bech32 characters, all one case;
  case-free; 6 + 4;
* ``SOL`` — network SOL; 32–44 base58; case-sensitive; 4 + 4;
* none — network INTERNAL (exchange accounts), or a shape that is not the network's.

Where the defaults come from (each is a ``Policy`` option, ``--lookalike_<family>_head`` /
``_tail``):

* EVM 5 + 4 (``0x`` and 3 hex digits, then the last 4): MetaMask's ``shortenAddress``
  (``ui/helpers/utils/util.js`` of ``MetaMask/metamask-extension``,
  ``TRUNCATED_ADDRESS_START_CHARS = 5``, ``TRUNCATED_ADDRESS_END_CHARS = 4``; newer
  releases show 7 + 5, which a 5 + 4 match includes). Unchanged from the rule's first form.
* SOL 4 + 4: Solana's wallet adapter, the connect button every Solana dapp shows
  (``anza-xyz/wallet-adapter``, ``packages/ui/react-ui/src/BaseWalletMultiButton.tsx``:
  ``base58.slice(0, 4) + '..' + base58.slice(-4)``).
* TRON 4 + 4: TronLink's and Trust Wallet's truncation code is not public; documented TRON
  poisoning cases match at least the first 4 (``T`` included) and the last 4 —
  ``TA9S…spmo`` (Tokenview scam check, via pastorq.com/11516.html), ``TRqt…DUyu``
  (usdtbanlist.com, "Address poisoning on TRON"), and the December 2025 $50M case matched
  6 + 4 (tronorigin.io/learn/address-poisoning). 4 + 4 catches all of them.
* BTC base58 4 + 4 and bech32 6 + 4: no Bitcoin wallet's truncation code was found; the
  defaults are the two commonest truncations of wallet UIs (``slice(0, 4)…slice(-4)``,
  ``slice(0, 6)…slice(-4)``). ``bc1q`` is the same for every segwit v0 address, so a
  bech32 head of 6 compares only 2 characters of substance: widen it if your users' wallets
  show more.

Case: base58 is case-sensitive (``TAbc`` and ``Tabc`` are different heads); hex and bech32
are not (compared lower-cased, and two spellings of one bech32 address are the same
address, never look-alikes of each other). Addresses reach this module as the codecs left
them: EVM hex lower-cased, everything else only stripped (``schemas/codecs.py``).

>>> key("0xabc1111111111111111111111111111111111234", "ETH")
('EVM', '0xabc', '1234')
>>> key("TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE", "TRX")
('TRON', 'TQn9', 'bLSE')
>>> key("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "BTC")
('BTC-bech32', 'bc1qw5', 'f3t4')
>>> key("acct:u0000042", "INTERNAL") is None
True
>>> key("TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE", "ETH") is None  # never across families
True
>>> reason("TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE", "TRON")
'lookalike_of=TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE (TRON)'
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

EVM = "EVM"
TRON = "TRON"
BTC = "BTC"
BECH32 = "BTC-bech32"
SOL = "SOL"
FAMILIES = (EVM, TRON, BTC, BECH32, SOL)

# (head, tail) shown per family: the defaults of Policy.lookalike_*_head / _tail
DEFAULT_SHOWN: Mapping[str, tuple[int, int]] = {
    EVM: (5, 4), TRON: (4, 4), BTC: (4, 4), BECH32: (6, 4), SOL: (4, 4)}
# Policy field stem per family
OPTION = {EVM: "evm", TRON: "tron", BTC: "btc", BECH32: "bech32", SOL: "sol"}

_B58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
_B32 = frozenset("qpzry9x8gf2tvdw0s3jn54khce6mua7l")
_HEX = frozenset("0123456789abcdefABCDEF")
_CASE_FREE = frozenset({EVM, BECH32})
_TRON_NETS = frozenset({"TRX", "TRON"})


def _base58(s: str) -> bool:
    return _B58.issuperset(s)


def family(address: str, network: Optional[str]) -> Optional[str]:
    """The address family of ``address`` paid on ``network``, or None (no look-alike test:
    internal accounts, unknown shapes, a shape that does not belong to the network).

    >>> family("0x" + "ab" * 20, "BSC"), family("0x" + "ab" * 20, None)
    ('EVM', 'EVM')
    >>> family("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "BTC")
    'BTC'
    >>> family("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "BTC")
    'BTC-bech32'
    >>> family("bc1qAR0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "BTC") is None  # mixed case
    True
    >>> family("0x" + "ab" * 20, "TRX") is None
    True
    """
    net = (network or "").upper()
    a = address
    n = len(a)
    if net == "INTERNAL" or n == 0:
        return None
    if net in _TRON_NETS:
        return TRON if n == 34 and a[0] == "T" and _base58(a) else None
    if net == "BTC":
        if a[:3].lower() == "bc1":
            if 14 <= n <= 74 and (a == a.lower() or a == a.upper()) \
                    and _B32.issuperset(a[3:].lower()):
                return BECH32
            return None
        return BTC if a[0] in "13" and 25 <= n <= 35 and _base58(a) else None
    if net == "SOL":
        return SOL if 32 <= n <= 44 and _base58(a) else None
    if n == 42 and a[:2] == "0x" and _HEX.issuperset(a[2:]):  # ETH, BSC, other EVM chains
        return EVM
    return None


def shown(policy: object = None) -> dict[str, tuple[int, int]]:
    """(head, tail) per family from a ``Policy`` (its ``lookalike_<family>_head`` / ``_tail``
    fields), or the defaults.

    >>> shown()["TRON"]
    (4, 4)
    """
    if policy is None:
        return dict(DEFAULT_SHOWN)
    return {f: (int(getattr(policy, f"lookalike_{OPTION[f]}_head", DEFAULT_SHOWN[f][0])),
                int(getattr(policy, f"lookalike_{OPTION[f]}_tail", DEFAULT_SHOWN[f][1])))
            for f in FAMILIES}


def key(address: str, network: Optional[str],
        lengths: Mapping[str, tuple[int, int]] = DEFAULT_SHOWN) -> Optional[tuple]:
    """``(family, head, tail)``: what a wallet of the address's network shows of it, case
    folded where the encoding ignores case; None when the address has no family. Two
    different addresses with the same key are look-alikes.

    >>> key("TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE", "TRX", {"TRON": (6, 4)})
    ('TRON', 'TQn9Y2', 'bLSE')
    """
    fam = family(address, network)
    if fam is None:
        return None
    head, tail = lengths[fam]
    a = address.lower() if fam in _CASE_FREE else address
    return (fam, a[:head], a[-tail:])


def same_address(a: str, b: str, fam: str) -> bool:
    """True when ``a`` and ``b`` are one address of family ``fam`` (hex and bech32 ignore
    case; base58 does not).

    >>> same_address("bc1qabc", "BC1QABC", "BTC-bech32"), same_address("Tab", "TAB", "TRON")
    (True, False)
    """
    return a.lower() == b.lower() if fam in _CASE_FREE else a == b


def imitated(address: str, k: tuple, payees: Iterable[str]) -> Optional[str]:
    """The payee ``address`` imitates among ``payees`` that share its key ``k``: the
    smallest that is a different address (deterministic), or None.

    >>> imitated("bc1qxyz9", ("BTC-bech32", "bc1qxy", "yz9"), ["BC1QXYZ9"]) is None
    True
    >>> imitated("0xabc7", ("EVM", "0xabc", "c7"), ["0xabc1", "0xabc0"])
    '0xabc0'
    """
    fam = k[0]
    others = [p for p in payees if not same_address(p, address, fam)]
    return min(others) if others else None


def forget(by_key: dict, addresses: Iterable[str]) -> None:
    """Drop ``addresses`` from an index ``key -> set of payees`` (and emptied keys).

    >>> ix = {("SOL", "ab", "cd"): {"abXcd", "abYcd"}}
    >>> forget(ix, ["abXcd"]); ix
    {('SOL', 'ab', 'cd'): {'abYcd'}}
    >>> forget(ix, ["abYcd"]); ix
    {}
    """
    gone = set(addresses)
    if not gone:
        return
    for k in list(by_key):
        payees = by_key[k]
        payees -= gone
        if not payees:
            del by_key[k]


def reason(genuine: str, fam: Optional[str]) -> str:
    """The hold reason naming the genuine payee and, outside EVM, the family. EVM keeps the
    rule's original form ``lookalike_of=<payee>``; for every family the payee is the text
    between ``lookalike_of=`` and the first space.

    >>> reason("0xabc1111111111111111111111111111111111234", "EVM")
    'lookalike_of=0xabc1111111111111111111111111111111111234'
    >>> reason("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "BTC-bech32").split(" ")[1]
    '(BTC-bech32)'
    """
    if fam is None or fam == EVM:
        return f"lookalike_of={genuine}"
    return f"lookalike_of={genuine} ({fam})"
