"""The simulated exchange's assets: fixed USD prices, decimals, and exact amounts."""

from __future__ import annotations

import numpy as np

ASSETS = ("USDT", "USDC", "ETH", "BNB", "TRX", "BTC", "SOL")
PRICE = np.array([1.0, 1.0, 3200.0, 620.0, 0.25, 95000.0, 180.0])  # fixed USD per unit
DECIMALS = np.array([6, 6, 8, 8, 6, 8, 9])
_ASSET_INDEX = {a: i for i, a in enumerate(ASSETS)}


def price(asset: str) -> float:
    """The simulator's fixed USD price of one unit of ``asset``."""
    return float(PRICE[_ASSET_INDEX[asset]])


def make_amount(usd: float, asset: str) -> tuple[str, float]:
    """(exact decimal amount of ``asset`` worth about ``usd``, the usd value of that amount).

    >>> make_amount(100.0, "USDT")
    ('100', 100.0)
    >>> make_amount(1000.0, "BTC")
    ('0.01052632', 1000.0)
    """
    i = _ASSET_INDEX[asset]
    d = int(DECIMALS[i])
    units = max(1, round(usd / PRICE[i] * 10 ** d))
    return fmt_units(units, d), round(units * float(PRICE[i]) / 10 ** d, 2)


def fmt_units(units: int, decimals: int) -> str:
    """An integer number of base units as an exact decimal string."""
    q, r = divmod(units, 10 ** decimals)
    if r == 0:
        return str(q)
    return f"{q}.{r:0{decimals}d}".rstrip("0")
