"""The report's charts (matplotlib, Agg), each as a base64 PNG."""

from __future__ import annotations

import base64
import io
from datetime import datetime


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig, **savefig) -> str:
    """``fig`` as a base64 PNG; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", **savefig)
    _pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _legend(ax, ax2=None) -> None:
    """The legend outside the plot, on its right: never over the data."""
    h, lab = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        h, lab = h + h2, lab + l2
    ax.legend(h, lab, loc="upper left", bbox_to_anchor=(1.08 if ax2 is not None else 1.01, 1),
              frameon=False)


def dollars(x: float, _pos=None) -> str:
    """An axis tick in USD, without a "1e6" multiplier.

    >>> dollars(0), dollars(2500), dollars(1_250_000), dollars(40_000)
    ('$0', '$2.5k', '$1.25M', '$40k')
    """
    a = abs(x)
    if a >= 1e6:
        return f"${x / 1e6:.3g}M"
    if a >= 1e3:
        return f"${x / 1e3:.3g}k"
    return f"${x:.0f}"


def _usd_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(dollars))
    ax.set_ylim(bottom=0)


def money_plot(daily: dict) -> str:
    """Scam money refunded and lost, per day."""
    days = [datetime.strptime(d, "%Y-%m-%d") for d in daily]
    fig, ax = _pyplot().subplots(figsize=(10, 3.6))
    for key, label, color in (("refunded_usd", "scam stopped", "#2a9d8f"),
                              ("lost_usd", "scam lost", "#e63946")):
        ax.plot(days, [daily[d].get(key, 0) for d in daily], label=label, color=color,
                marker="o" if len(days) < 40 else None, ms=3)
    ax.set_ylabel("USD per day")
    _usd_axis(ax)
    ax.set_title("Scam money stopped (prevented + recovered) and lost, per day (event time)")
    _legend(ax)
    ax.grid(alpha=.3)
    fig.autofmt_xdate()
    return png(fig, metadata={"Software": None})


def friction_plot(daily: dict) -> str:
    """Legitimate transfers held per day, and their USD."""
    from matplotlib.ticker import MaxNLocator

    days = [datetime.strptime(d, "%Y-%m-%d") for d in daily]
    fig, ax = _pyplot().subplots(figsize=(10, 3.0))
    ax.bar(days, [daily[d].get("legit_held_n", 0) for d in daily], color="#f4a261",
           label="honest transfers held")
    ax.set_ylabel("honest transfers held")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax.twinx()
    ax2.plot(days, [daily[d].get("legit_held_usd", 0) for d in daily], color="#6d597a",
             label="their USD (right axis)")
    ax2.set_ylabel("USD held per day")
    _usd_axis(ax2)
    _legend(ax, ax2)
    ax.set_title("Friction: honest transfers held per day (event time)")
    ax.grid(alpha=.3, axis="y")
    fig.autofmt_xdate()
    return png(fig, metadata={"Software": None})


def sweep_plot(sweep: list, current) -> str:
    """The threshold sweep: scam USD prevented and held, legitimate transfers held."""
    from matplotlib.ticker import MaxNLocator

    th = [x["threshold"] for x in sweep]
    fig, ax = _pyplot().subplots(figsize=(10, 3.6))
    ax.plot(th, [x["prevented_usd"] for x in sweep], marker="o", color="#2a9d8f",
            label="scam USD prevented (est.)")
    ax.plot(th, [(x["prevented_usd"] or 0) + (x["recovered_usd"] or 0) for x in sweep],
            marker="^", color="#2a7d6f", ls=":", label="scam USD stopped (+ recovered, est.)")
    ax.plot(th, [x["scam_held_usd"] for x in sweep], marker=".", color="#264653",
            label="scam USD held")
    ax.set_xlabel("hold threshold")
    ax.set_ylabel("scam USD")
    _usd_axis(ax)
    ax2 = ax.twinx()
    ax2.plot(th, [x["legit_held"] for x in sweep], marker="s", color="#f4a261",
             label="honest transfers held")
    ax2.set_ylabel("honest transfers held")
    ax2.set_ylim(bottom=0)
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    if current is not None:
        ax.axvline(current, color="#999", ls="--", lw=1,
                   label=f"this run's threshold ({current:g})")
    _legend(ax, ax2)
    ax.set_title("Threshold sweep (estimated from the recorded scores)")
    ax.grid(alpha=.3)
    return png(fig, metadata={"Software": None})


def delay_plot(delays: list) -> str:
    """A histogram of the hours from the first report to the freeze."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = _pyplot().subplots(figsize=(10, 3.0))
    ax.hist(delays, bins=min(40, max(5, len(delays) // 3)), color="#457b9d")
    ax.set_xlabel("hours from first report to freeze")
    ax.set_ylabel("freezes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Freeze delay after the first report (event time)")
    ax.grid(alpha=.3)
    return png(fig, metadata={"Software": None})


def plots(metrics: dict, extras: dict) -> dict:
    """The report's charts by name (``money``, ``friction``, ``sweep``, ``delay``), for
    what the run has."""
    out = {}
    daily = metrics["daily"]
    if daily:
        out["money"] = money_plot(daily)
        out["friction"] = friction_plot(daily)
    sweep = metrics["threshold_sweep"]
    if sweep:
        cur = (metrics.get("run") or {}).get("policy", {}).get("hold_threshold")
        out["sweep"] = sweep_plot(sweep, cur)
    delays = [row[2] for row in extras["freeze_rows"] if row[2] is not None]
    if delays:
        out["delay"] = delay_plot(delays)
    return out


def threshold_plot(f: dict) -> str:
    """The hold threshold of each day's last version, as a base64 PNG ('' if none)."""
    rows = f.get("hold_threshold_by_day") or []
    if not rows:
        return ""
    days = [datetime.strptime(x["day"], "%Y-%m-%d") for x in rows]
    fig, ax = _pyplot().subplots(figsize=(10, 3.0))
    ax.step(days, [x["hold_threshold"] for x in rows], where="post", color="#264653")
    ax.set_ylabel("hold threshold (score)")
    ax.set_title("Hold threshold of the published transfer_risk versions (last of each day)")
    ax.grid(alpha=.3)
    fig.autofmt_xdate()
    return png(fig)
