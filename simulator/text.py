"""Free-text report descriptions: templates per typology, for honest, false and bombing
reports. Honest and false reports share vocabulary on purpose: the difference is in the
details (amounts, time lines, a named counterparty), not in one give-away word.

>>> import random
>>> s = describe("phishing_drainer", random.Random(1), 1234.5, "USDT")
>>> isinstance(s, str) and len(s) > 20
True
"""

from __future__ import annotations

import random

from simulator.assets import price

PLATFORMS = ("CoinVexa", "BitNova Pro", "AurumTrade", "QuantEdge AI", "MetaYield", "TronMax",
             "GoldenBridge FX", "NexaMining", "ApexStake", "LunaVault")
NAMES = ("Anna", "David", "Mei", "Jason", "Sofia", "Kevin", "Elena", "Mark", "Lina", "Tom")
BRANDS = ("exchange support", "the security team", "a wallet helpdesk", "customer service",
          "a tax office", "the compliance department")

HONEST: dict[str, tuple[str, ...]] = {
    "pig_butchering": (
        "Met {name} online {days} days ago, they showed me profits on {platform} and I kept "
        "depositing. Now they ask a {pct}% tax before I can withdraw. Lost about {amount} {asset}.",
        "I was guided to invest in {platform} by a friend from a dating app. Sent several "
        "transfers, last one {amount} {asset}, withdrawals are blocked.",
        "Investment platform {platform} shows my balance growing but I cannot withdraw, "
        "{name} keeps asking for more deposits. Total around {amount} USD.",
        "Someone I trusted for weeks convinced me to put money in crypto trading on "
        "{platform}. I sent {amount} {asset} in steps. I think it is a scam.",
    ),
    "phishing_drainer": (
        "Clicked a link for an airdrop and signed something, all my {asset} was sent to this "
        "address, {amount} gone.",
        "I got an email that looked like it came from {brand}, entered my details and "
        "{amount} {asset} was withdrawn to an unknown address minutes later.",
        "Fake website of a wallet asked me to verify, then a withdrawal of {amount} {asset} "
        "happened that I did not make myself.",
        "Withdrawal I did not authorise, {amount} {asset}, right after I logged in on a page "
        "from an SMS.",
    ),
    "fake_platform": (
        "Deposited to {platform} which promised {pct}% daily returns, site is now down and "
        "support does not answer. Lost {amount} {asset}.",
        "{platform} was recommended in a Telegram group. I sent {amount} {asset}, cannot "
        "withdraw, many people in the group have the same problem.",
        "The platform {platform} froze my account and asks for a fee to unlock. I paid "
        "{amount} USD to their deposit address.",
        "Mining pool {platform} stopped paying, deposit address is this one, {amount} {asset}.",
    ),
    "romance": (
        "{name} who I met online said they needed money for a flight to see me. I sent "
        "{amount} {asset} over several weeks, now they blocked me.",
        "My online partner {name} asked for help with hospital bills, sent {amount} USD in "
        "total. Never met in person, I realise it was fake.",
        "Person from a dating site asked me to send crypto for customs fees on a gift. "
        "Paid {amount} {asset}.",
    ),
    "impersonation": (
        "Someone called pretending to be {brand} and told me my account was compromised, "
        "I moved {amount} {asset} to a 'safe wallet' they gave me.",
        "Got a message from {brand} saying I must verify funds by sending {amount} {asset}, "
        "it was not the real {brand}.",
        "A person claiming to be from {brand} asked me to transfer {amount} USD for a refund "
        "procedure. It was a scam.",
    ),
    "address_poisoning": (
        "I sent {amount} {asset} to what I thought was my usual wallet, copied from my "
        "history, but the address is slightly different in the middle.",
        "Paid my regular address but the funds never arrived, the address only matches at the "
        "start and the end. {amount} {asset} lost.",
        "Wrong address in my transaction history, looks like mine but it is not. Lost "
        "{amount} {asset}.",
    ),
}

FALSE: tuple[str, ...] = (
    "The seller did not deliver what I paid for, I want my {amount} {asset} back.",
    "I paid this merchant {amount} USD and the service was not as described, please refund.",
    "I think this is a scam, the price changed after I paid {amount} {asset}.",
    "Made a transfer by mistake to this address, {amount} {asset}, please reverse it.",
    "My friend owes me money and does not reply, I sent {amount} {asset} to this wallet.",
    "Order took too long, I was charged {amount} USD, I consider it fraud.",
    "Investment returns were lower than {platform} promised, I lost {amount} {asset}.",
)

BOMBING: tuple[str, ...] = (
    "This address is a scam, {platform} stole my money. Freeze it now.",
    "SCAM SCAM SCAM this wallet took my funds, lost {amount} USD.",
    "Fake platform, they do not let me withdraw, block this address.",
    "I was scammed by this address, please freeze it immediately, {amount} {asset}.",
    "This merchant is fraud, many people lost money, ban them.",
    "Deposited to {platform} which promised high returns, cannot withdraw. Lost {amount} "
    "{asset}.",
)


def amount_text(usd: float, asset: str, rounded: bool) -> str:
    """``usd`` worth of ``asset`` as a user would write it (``rounded``: to whole units when
    that loses little): a report's amount agrees with the transfer it is about.

    >>> amount_text(2000.0, "BTC", True), amount_text(2000.0, "USDT", True)
    ('0.0210526', '2,000')
    >>> amount_text(2000.0, "ETH", False), amount_text(123.456, "USD", False)
    ('0.625', '123.46')
    """
    units = usd / (1.0 if asset == "USD" else price(asset))
    if units >= 100:
        return f"{units:,.0f}" if rounded else f"{units:.2f}"
    if units >= 1:
        return f"{units:,.2f}".rstrip("0").rstrip(".") if rounded else f"{units:.2f}"
    return f"{units:.6g}"


def _fill(template: str, rng: random.Random, usd: float, asset: str) -> str:
    """A template filled in; ``{amount}`` is in USD where the template says ``{amount} USD``,
    else in ``asset`` (``usd`` converted at the simulator's price)."""
    # the draws in the order they always were: the simulation after them stays the same
    words = dict(name=rng.choice(NAMES), platform=rng.choice(PLATFORMS),
                 brand=rng.choice(BRANDS), days=rng.randint(10, 90),
                 pct=rng.choice((2, 3, 5, 8, 10, 15, 20, 30)))
    rounded = rng.random() < 0.7
    unit = "USD" if "{amount} USD" in template else asset
    return template.format(**words, amount=amount_text(usd, unit, rounded), asset=asset)


def describe(typology: str, rng: random.Random, amount: float, asset: str) -> str:
    """An honest victim's description of a scam of ``typology``."""
    return _fill(rng.choice(HONEST[typology]), rng, amount, asset)


def describe_false(rng: random.Random, amount: float, asset: str) -> str:
    """A false report (a dispute with a legitimate payee), worded like a scam report."""
    if rng.random() < 0.25:  # some false reporters copy a genuine-looking story
        return _fill(rng.choice(HONEST["fake_platform"]), rng, amount, asset)
    return _fill(rng.choice(FALSE), rng, amount, asset)


def describe_bombing(rng: random.Random, amount: float, asset: str) -> str:
    """A report-bombing message: short, often copied, sometimes borrowed from real ones."""
    if rng.random() < 0.3:
        return _fill(rng.choice(HONEST["fake_platform"]), rng, amount, asset)
    return _fill(rng.choice(BOMBING), rng, amount, asset)
