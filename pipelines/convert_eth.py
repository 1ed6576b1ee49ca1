"""Convert the real labelled Ethereum transfers into a replay directory for the backtest.

    python -m pipelines.convert_eth --input ../shared/data/eth_transfers_2018H1_labeled.csv.gz \\
        --output DIR [--seed S] [--report-share X] [--format avro|parquet] [--limit N]

Source: ``eth_transfers_2018H1_labeled.csv.gz`` (see ``../shared/data/SOURCES.md``; from
``eltontay/Ethereum-Fraud-Detection``, MIT): successful ETH value transfers of labelled
accounts, January–June 2018, with ``to_flagged`` / ``from_flagged`` (Etherscan Phish/Hack).

Mapping to the data contract (``Transfer``): ``transfer_id`` = ``tx_hash``, ``event_time`` =
``timestamp`` (seconds → ms), ``user_id`` = ``from_address``, ``to_address`` as is,
``to_user_id`` null, ``network`` = ``asset`` = ``ETH``, ``amount`` = ``value_wei`` / 10^18
(exact, with ``Decimal``), ``channel`` = ``WITHDRAWAL``, ``usd_value`` = amount × the
month's average ETH price (:data:`ETH_USD`, approximate monthly averages of daily closing
prices, rounded to $5: good enough for money figures, not for trading).

Ground truth (``truth.*``): a TRANSFER row per transfer with ``is_scam`` = recipient flagged
and sender not flagged (a *victim payment*); payments between two flagged accounts are
scammers moving money among themselves (``detail`` = ``laundering``, not a scam against a
user); an ADDRESS row per flagged recipient; a USER row per (victim, flagged recipient) pair
with ``detail`` ``fast`` / ``late`` (reported, by delay) or ``silent`` (never reported).

**Simulated, not real** — open data holds no user reports, case outcomes or a blacklist as
known at the time, so they are simulated from the labels, seeded:

* each victim payment is reported by its sender with probability ``--report-share``
  (default 0.3) after a log-normal delay (median 6 h, capped at 7 days); ``category``
  PHISHING, a templated description, ``claimed_loss_usd`` = the payment's USD value;
* a small share of legitimate payments (``--false-report-share``, default 0.002) is
  reported too (mistakes and bad-faith reports), each refuted by a REPORT CaseOutcome 3–10
  days later;
* each flagged recipient with at least one report gets an ADDRESS CaseOutcome (``is_scam``
  true) 2–6 days after its first report (an investigation);
* no blacklist: an empty ``blacklist`` file and no snapshot. The public lists cover almost
  every flagged recipient but were compiled years later: using them would leak the answer.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import random
import sys
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Optional

from pipelines.argtypes import OneLineParser, dashed_aliases
from schemas import codecs
from schemas.rows import CaseOutcome, ScamReport, Transfer, Truth

PROG = "convert-eth"
# Approximate monthly average ETH/USD (average of daily closes, rounded to $5), 2018.
ETH_USD = {"2018-01": 1110.0, "2018-02": 860.0, "2018-03": 615.0, "2018-04": 515.0,
           "2018-05": 690.0, "2018-06": 525.0}
COLUMNS = ("tx_hash", "block_number", "timestamp", "from_address", "to_address", "value_wei",
           "input_len", "to_flagged", "from_flagged")
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
WEI = Decimal(10) ** 18
_TEMPLATES = (
    "I sent {amt} ETH to {addr} for what I thought was a token sale / airdrop. The site is gone "
    "and nobody answers.",
    "Phishing: a fake wallet page asked me to verify my account and I sent {amt} ETH to {addr}.",
    "Someone posing as support told me to move {amt} ETH to {addr} to secure it. It was a scam.",
    "Paid {amt} ETH to {addr} to join an ICO whitelist; it was a fake contribution address.",
)
_FALSE_TEMPLATES = (
    "Payment of {amt} ETH to {addr} not received by the seller, please check.",
    "I think {addr} is a scam, they have not delivered yet.",
)


class ConvertError(Exception):
    """A one-line problem with the input or arguments."""


def eth_amount(value_wei: str) -> str:
    """``value_wei`` / 10^18 as an exact decimal string, no exponent, no trailing zeros.

    >>> eth_amount("1921800000000000000000")
    '1921.8'
    >>> eth_amount("1")
    '0.000000000000000001'
    """
    try:
        w = int(value_wei)
    except ValueError:
        raise ConvertError(f"value_wei is not an integer: {value_wei!r}") from None
    if w < 0:
        raise ConvertError(f"value_wei is negative: {value_wei!r}")
    d = (Decimal(w) / WEI) if w < 10 ** 27 else Decimal(value_wei).scaleb(-18)
    s = format(d.quantize(Decimal(1).scaleb(-18)) if d != d.to_integral() else d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"


def month_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m")


def _rid(prefix: str, *parts) -> str:
    return prefix + hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20]


def read_rows(path: Path, limit: Optional[int] = None):
    """Parsed CSV rows: (tx, ts_ms, from, to, value_wei, to_flagged, from_flagged)."""
    if not path.exists():
        raise ConvertError(f"input {path} does not exist")
    try:
        f = gzip.open(path, "rt", encoding="utf-8", newline="") if path.suffix == ".gz" \
            else open(path, encoding="utf-8", newline="")
        with f:
            rd = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (rd.fieldnames or [])]
            if missing:
                raise ConvertError(f"{path}: missing columns {', '.join(missing)}")
            for i, r in enumerate(rd):
                if limit is not None and i >= limit:
                    break
                yield (r["tx_hash"], int(r["timestamp"]) * 1000,
                       codecs.normalize_address(r["from_address"]),
                       codecs.normalize_address(r["to_address"]), r["value_wei"],
                       r["to_flagged"] == "1", r["from_flagged"] == "1")
    except (OSError, EOFError, gzip.BadGzipFile, csv.Error, UnicodeDecodeError) as e:
        raise ConvertError(f"{path}: unreadable: {type(e).__name__}: {e}") from None
    except (ValueError, KeyError, InvalidOperation) as e:
        raise ConvertError(f"{path}: bad row: {type(e).__name__}: {e}") from None


class _Gathered:
    """The rows of the replay files and the figures, gathered transfer by transfer; the
    simulated reports and outcomes draw from ``rng`` in the order of the transfers."""

    def __init__(self, rng: random.Random, report_share: float, false_report_share: float):
        self.rng, self.report_share = rng, report_share
        self.false_report_share = false_report_share
        self.transfers: list = []
        self.truth: list = []
        self.reports: list = []
        self.outcomes: list = []
        self.first_report: dict = {}  # flagged address -> first report time
        self.victim_pairs: dict = {}  # (user, address) -> [first_t, usd, reported_delay or None]
        self.flagged: dict = {}  # flagged recipient -> first payment time
        self.fig = defaultdict(float)
        self.months: set = set()
        self.silent = 0

    def add(self, tx, t, frm, to, wei, to_f, from_f) -> None:
        """One CSV row: its transfer and truth, and any report simulated for it."""
        m = month_of(t)
        if m not in ETH_USD:
            raise ConvertError(f"{tx}: {m} is outside the price table (2018-01..2018-06)")
        self.months.add(m)
        amt = eth_amount(wei)
        usd = round(float(Decimal(amt) * Decimal(str(ETH_USD[m]))), 2)
        self.transfers.append(Transfer(tx, t, frm, to, None, "ETH", "ETH", amt, usd,
                                       "WITHDRAWAL"))
        victim = to_f and not from_f
        detail = "laundering" if to_f and from_f else None
        self.truth.append(Truth("TRANSFER", tx, victim, "phish_hack" if victim else None, frm,
                                to, usd, t, detail))
        fig = self.fig
        fig["rows"] += 1
        fig["usd"] += usd
        if to_f:
            self.flagged.setdefault(to, t)
        if victim:
            self._victim_payment(tx, t, frm, to, amt, usd)
        elif detail == "laundering":
            fig["laundering_payments"] += 1
            fig["laundering_usd"] += usd
        elif self.rng.random() < self.false_report_share:
            self._false_report(tx, t, frm, to, amt, usd)

    def _victim_payment(self, tx, t, frm, to, amt, usd) -> None:
        rng = self.rng
        self.fig["victim_payments"] += 1
        self.fig["victim_usd"] += usd
        pair = self.victim_pairs.setdefault((frm, to), [t, 0.0, None])
        pair[1] += usd
        if rng.random() < self.report_share:
            delay = int(min(7 * DAY_MS, rng.lognormvariate(math.log(6 * HOUR_MS), 1.3)))
            rt = t + delay
            text = rng.choice(_TEMPLATES).format(amt=amt, addr=to)
            rid = _rid("r-", tx, "victim")
            self.reports.append(ScamReport(rid, rt, frm, tx, to, None, "PHISHING", text, usd))
            self.truth.append(Truth("REPORT", rid, True, "phish_hack", frm, to, usd, rt, None))
            self.first_report[to] = min(self.first_report.get(to, rt), rt)
            if pair[2] is None or delay < pair[2]:
                pair[2] = delay

    def _false_report(self, tx, t, frm, to, amt, usd) -> None:
        rng = self.rng
        rt = t + int(rng.uniform(1, 72) * HOUR_MS)
        rid = _rid("r-", tx, "false")
        text = rng.choice(_FALSE_TEMPLATES).format(amt=amt, addr=to)
        self.reports.append(ScamReport(rid, rt, frm, tx, to, None, "OTHER", text, usd))
        self.truth.append(Truth("REPORT", rid, False, None, frm, to, usd, rt, "false_report"))
        self.outcomes.append(CaseOutcome(_rid("c-", rid),
                                         rt + int(rng.uniform(3, 10) * DAY_MS),
                                         "REPORT", rid, False))
        self.fig["false_reports"] += 1

    def close(self) -> None:
        """After the last row: the investigations, the addresses' and victims' truth, and
        every file in event-time order."""
        for a, t0 in sorted(self.first_report.items()):
            self.outcomes.append(CaseOutcome(_rid("c-", a),
                                             t0 + int(self.rng.uniform(2, 6) * DAY_MS),
                                             "ADDRESS", a, True))
        for a, t in sorted(self.flagged.items()):
            self.truth.append(Truth("ADDRESS", a, True, "phish_hack", None, a, None, t,
                                    "reported" if a in self.first_report else "unreported"))
        for (u, a), (t, usd, delay) in sorted(self.victim_pairs.items()):
            beh = "silent" if delay is None else "fast" if delay <= 2 * HOUR_MS else "late"
            self.silent += beh == "silent"
            self.truth.append(Truth("USER", u, True, "phish_hack", u, a, round(usd, 2), t,
                                    beh))
        self.reports.sort(key=lambda r: (r.event_time, r.report_id))
        self.outcomes.sort(key=lambda o: (o.event_time, o.case_id))
        self.truth.sort(key=lambda r: (r.event_time, r.subject_type, r.subject_id))

    def files(self) -> dict:
        """file stem -> (record type, rows)."""
        return {"transfers": ("Transfer", self.transfers),
                "reports": ("ScamReport", self.reports),
                "outcomes": ("CaseOutcome", self.outcomes),
                "blacklist": ("BlacklistUpdate", []), "truth": ("Truth", self.truth)}

    def figures(self) -> dict:
        fig = self.fig
        return {
            "eth_usd_monthly": ETH_USD, "months": sorted(self.months),
            "rows": int(fig["rows"]), "usd": round(fig["usd"], 2),
            "victim_payments": int(fig["victim_payments"]),
            "victim_usd": round(fig["victim_usd"], 2),
            "laundering_payments": int(fig["laundering_payments"]),
            "laundering_usd": round(fig["laundering_usd"], 2),
            "flagged_recipients": len(self.flagged),
            "reported_addresses": len(self.first_report),
            "victims": len(self.victim_pairs), "silent_victims": self.silent,
            "reports_simulated": len(self.reports),
            "false_reports_simulated": int(fig["false_reports"]),
            "outcomes_simulated": len(self.outcomes),
        }


def _output_dir(output_dir: str | Path, fmt: str, report_share: float,
                false_report_share: float) -> Path:
    """Check the arguments; the output directory, created if missing."""
    if fmt not in codecs.FORMATS:
        raise ConvertError(f"format must be avro or parquet, not {fmt!r}")
    if not 0.0 <= report_share <= 1.0 or not 0.0 <= false_report_share <= 1.0:
        raise ConvertError("shares must be between 0 and 1")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ConvertError(f"output {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_files(out: Path, fmt: str, files: dict) -> dict:
    """Every replay file in ``fmt`` (no stale file of another format); returns the counts."""
    for name in ("transfers", "reports", "outcomes", "blacklist", "truth", "profiles",
                 "blacklist_snapshot"):
        for f in codecs.FORMATS:
            (out / f"{name}.{f}").unlink(missing_ok=True)
    counts = {}
    for name, (rec, rows) in files.items():
        counts[f"{name}.{fmt}"] = codecs.write_records(out / f"{name}.{fmt}", rec, rows, fmt)
    return counts


def convert(input_path: str | Path, output_dir: str | Path, seed: int = 7,
            report_share: float = 0.3, false_report_share: float = 0.002,
            fmt: str = "avro", limit: Optional[int] = None) -> dict:
    """Write the replay directory; return the figures (also in ``manifest.json``)."""
    out = _output_dir(output_dir, fmt, report_share, false_report_share)
    g = _Gathered(random.Random(seed), report_share, false_report_share)
    for row in read_rows(Path(input_path), limit):
        g.add(*row)
    g.close()
    counts = _write_files(out, fmt, g.files())
    figures = {
        "source": str(input_path), "seed": seed, "report_share": report_share,
        "false_report_share": false_report_share, "format": fmt, "limit": limit,
        "files": counts, **g.figures(),
        "note": "reports, case outcomes and victim reporting behaviour are simulated from the "
                "labels (seeded); no blacklist (the public lists were compiled years later)",
    }
    with open(out / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=2, sort_keys=True)
        f.write("\n")
    return figures


def main(argv: Optional[list] = None) -> int:
    p = OneLineParser(prog=f"safetynet {PROG}", allow_abbrev=False, raises=ConvertError,
                description="Convert eth_transfers_2018H1_labeled.csv.gz (real, labelled "
                            "Ethereum transfers) into a replay directory; user reports and "
                            "case outcomes are simulated from the labels (seeded).")
    p.add_argument("--input", required=True, metavar="CSV.gz", help="the labelled transfer file")
    p.add_argument("--output", required=True, metavar="DIR", help="replay directory to write")
    p.add_argument("--seed", type=int, default=7, metavar="S",
                   help="seed of the simulated reports (default 7)")
    p.add_argument("--report_share", dest="report_share", type=float,
                   metavar="X",
                   default=0.3, help="share of victim payments their sender reports (0.3)")
    p.add_argument("--false_report_share", dest="false_report_share",
                   metavar="X",
                   type=float, default=0.002,
                   help="share of legitimate payments reported anyway (0.002)")
    p.add_argument("--format", choices=codecs.FORMATS, default="avro", help="file format")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="convert only the first N rows")
    dashed_aliases(p)
    try:
        a = p.parse_args(argv)
        if a.limit is not None and a.limit <= 0:
            raise ConvertError("--limit must be positive")
        f = convert(a.input, a.output, a.seed, a.report_share, a.false_report_share, a.format,
                    a.limit)
    except ConvertError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"{PROG}: {f['rows']:,} transfers ({', '.join(f['months'])}), ${f['usd']:,.0f}; "
          f"{f['victim_payments']:,} victim payments (${f['victim_usd']:,.0f}) to "
          f"{f['flagged_recipients']:,} flagged recipients; {f['laundering_payments']:,} "
          f"flagged→flagged (${f['laundering_usd']:,.0f}); simulated "
          f"{f['reports_simulated']:,} reports ({f['false_reports_simulated']:,} false), "
          f"{f['outcomes_simulated']:,} case outcomes; {f['silent_victims']:,} of "
          f"{f['victims']:,} victims silent -> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
