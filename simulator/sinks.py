"""Writing one replay file: duplicate deliveries and malformed records injected on the way.

A ``Sink`` takes rows in event-time order and passes them to a ``codecs.RecordWriter``.
With probability ``duplicate_share`` a row is delivered again later (same row, same id,
written once the stream has moved past ``event_time + delay``); with probability
``malformed_share`` a corrupted copy with a fresh id follows it. When the shares are
positive, every malformation kind (and one duplicate) is also forced once, at a random time,
so that small files still exercise every kind. Counts go to ``Sink.malformed`` /
``Sink.duplicates``.
"""

from __future__ import annotations

import heapq
import random
from typing import Any, Callable

YEAR_2200_MS = 7_258_118_400_000

# Every malformation of DESIGN rule 7 that a typed (Avro / Parquet) file can hold.
MALFORMATIONS: dict[str, tuple[str, ...]] = {
    "Transfer": ("unknown_enum", "negative_amount", "non_numeric_amount", "non_finite_amount",
                 "non_finite_usd", "timestamp_out_of_range", "empty_required"),
    "ScamReport": ("unknown_enum", "negative_amount", "non_finite_usd",
                   "timestamp_out_of_range", "empty_required"),
    "CaseOutcome": ("unknown_enum", "timestamp_out_of_range", "empty_required"),
    "BlacklistUpdate": ("unknown_enum", "timestamp_out_of_range", "empty_required"),
}
DUPLICATED = frozenset({"Transfer", "ScamReport"})

_ID_FIELD = {"Transfer": "transfer_id", "ScamReport": "report_id", "CaseOutcome": "case_id"}
_ENUM = {"Transfer": ("channel", ("CARD", "SWIFT", "Withdrawal", "ONCHAIN")),
         "ScamReport": ("category", ("SCAM", "fraud", "CRYPTO", "Phishing")),
         "CaseOutcome": ("subject_type", ("WALLET", "USER", "transfer")),
         "BlacklistUpdate": ("action", ("UPSERT", "DELETE", "add"))}
_REQUIRED = {"Transfer": ("transfer_id", "user_id", "to_address", "asset", "network"),
             "ScamReport": ("report_id", "reporter_user_id", "description"),
             "CaseOutcome": ("case_id", "subject_id"),
             "BlacklistUpdate": ("address", "source")}


def malform(row: Any, kind: str, rng: random.Random) -> Any:
    """A corrupted copy of ``row`` (a fresh id where the record has one)."""
    name = type(row).__name__
    changes: dict[str, Any] = {}
    if name in _ID_FIELD:
        changes[_ID_FIELD[name]] = f"{row[0][0]}{rng.getrandbits(64):016x}"
    if kind == "unknown_enum":
        field, values = _ENUM[name]
        changes[field] = rng.choice(values)
    elif kind == "negative_amount":
        if name == "Transfer":
            changes["amount"] = "-" + row.amount
        else:
            changes["claimed_loss_usd"] = -abs(row.claimed_loss_usd or 100.0)
    elif kind == "non_numeric_amount":
        changes["amount"] = rng.choice(("abc", "12,50", "1.2.3", "ten", ""))
        if changes["amount"] == "":
            changes["amount"] = "n/a"
    elif kind == "non_finite_amount":
        changes["amount"] = rng.choice(("NaN", "Infinity", "-Infinity", "inf"))
    elif kind == "non_finite_usd":
        field = "usd_value" if name == "Transfer" else "claimed_loss_usd"
        changes[field] = rng.choice((float("nan"), float("inf")))
    elif kind == "timestamp_out_of_range":
        t = row.event_time
        changes["event_time"] = (YEAR_2200_MS + t % 86_400_000 if rng.random() < 0.6
                                 else t // 1000)  # year 2200, or seconds mistaken for ms
    elif kind == "empty_required":
        changes[rng.choice(_REQUIRED[name])] = ""
    else:
        raise ValueError(f"unknown malformation {kind!r}")
    return row._replace(**changes)


class Sink:
    """Event-time-ordered rows into a writer, with duplicates and malformed rows injected."""

    def __init__(self, write: Callable[[Any], None], record: str, rng: random.Random,
                 malformed_share: float, duplicate_share: float, span: tuple[int, int]):
        self._write = write
        self._rng = rng
        self.kinds = MALFORMATIONS.get(record, ()) if malformed_share > 0 else ()
        self._mal_share = malformed_share if self.kinds else 0.0
        self._dup_share = duplicate_share if record in DUPLICATED else 0.0
        self.malformed = {k: 0 for k in MALFORMATIONS.get(record, ())}
        self.duplicates = 0
        self.count = 0
        self._next_kind = 0
        self._pending: list[tuple[int, int, Any]] = []
        self._seq = 0
        lo, hi = span
        forced = [(lo + int(rng.random() * (hi - lo)), 0, k) for k in self.kinds]
        if self._dup_share > 0:
            forced.append((lo + int(rng.random() * (hi - lo)), 1, ""))
        self._forced = sorted(forced)
        self._last: Any = None

    def _emit_malformed(self, row: Any, kind: str | None = None) -> None:
        if kind is None:
            kind = self.kinds[self._next_kind % len(self.kinds)]
            self._next_kind += 1
        self._write(malform(row, kind, self._rng))
        self.malformed[kind] += 1
        self.count += 1

    def _schedule_dup(self, t: int, row: Any) -> None:
        self._seq += 1
        delay = 1000 + int(self._rng.random() * 7_200_000)
        heapq.heappush(self._pending, (t + delay, self._seq, row))

    def emit(self, t: int, row: Any) -> None:
        """Write ``row`` (event time ``t``), plus whatever injection is due."""
        pending = self._pending
        while pending and pending[0][0] <= t:
            self._write(heapq.heappop(pending)[2])
            self.duplicates += 1
            self.count += 1
        self._write(row)
        self.count += 1
        self._last = row
        forced = self._forced
        while forced and forced[0][0] <= t:
            _, what, kind = forced.pop(0)
            if what == 0:
                self._emit_malformed(row, kind)
            else:
                self._schedule_dup(t, row)
        r = self._rng.random
        if self._dup_share and r() < self._dup_share:
            self._schedule_dup(t, row)
        if self._mal_share and r() < self._mal_share:
            self._emit_malformed(row)

    def close(self) -> None:
        """Deliver what is still pending (duplicates, forced malformations) at the end."""
        if self._last is not None:
            for _, what, kind in self._forced:
                if what == 0:
                    self._emit_malformed(self._last, kind)
                else:
                    self._schedule_dup(self._last[1], self._last)
        self._forced = []
        while self._pending:
            self._write(heapq.heappop(self._pending)[2])
            self.duplicates += 1
            self.count += 1
