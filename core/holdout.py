"""The warning holdout: a fixed, deterministic share of users who receive no ``WARNING``.

Measuring whether warnings work needs a control group. :func:`in_holdout` puts a user in
the holdout when a hash of the user id falls below the share: the same user is always in
the same group, in the backtest, the streaming job and the simulator (which imports this
function to model who is warned), whatever the runner or the process. Changing the share
keeps everyone who was in a smaller holdout inside the larger one.

Plain Python, no Beam: the Outreach machine and the simulator both call it.

>>> in_holdout("u0000001", 0.0), in_holdout("u0000001", 1.0)
(False, True)
>>> n = sum(in_holdout(f"u{i:07d}", 0.05) for i in range(20_000))
>>> abs(n - 1000) < 4 * (20_000 * 0.05 * 0.95) ** 0.5  # binomial: sd 31
True
"""

from __future__ import annotations

import hashlib

SALT = b"safetynet-warning-holdout-v1|"
_SCALE = float(2**64)


def bucket(user_id: str, salt: bytes = SALT) -> float:
    """The user's fixed position in [0, 1): the first 8 bytes of a salted SHA-256. Another
    ``salt`` gives an independent position (the escalation holdout hashes holds with its own,
    so its control group is not the warning holdout's)."""
    h = hashlib.sha256(salt + str(user_id).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / _SCALE


def in_holdout(user_id: str, share: float, salt: bytes = SALT) -> bool:
    """True when ``user_id`` is in a holdout of ``share`` (0 <= share <= 1) of all users."""
    if share <= 0.0:
        return False
    return bucket(user_id, salt) < share


def parse_share(text: str | float) -> float:
    """A share from ``"5%"``, ``"0.05"`` or ``0.05``; raises ValueError outside [0, 1].

    >>> parse_share("5%"), parse_share("0.2"), parse_share(0)
    (0.05, 0.2, 0.0)
    """
    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise ValueError(f"not a share: {text!r} (use e.g. 5% or 0.05)") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"a share must be between 0 and 100%, got {text!r}")
    return v
