"""The sections of ``report.html``, in page order, and the table of contents made from them.

A section is a function that returns its HTML body (escaped: render it from a template with
:func:`report.html.render`), or ``''`` to leave the section out of this run's page. A module
of the ``report`` package registers its sections with :func:`section`::

    # report/drift.py
    from report.sections import section

    @section("Drift", order=66)
    def drift_section(page) -> str:        # page: a :class:`Page`
        d = page.metrics.get("drift")
        return render("drift.html", d=d) if d else ""

Nothing else is needed: :func:`discover` imports every module of the package before the
page is rendered, the page puts the section under an ``<h2 id=...>`` heading (its title,
:func:`report.html.slug`), and the table of contents lists every ``<h2>`` of the finished
page (:func:`toc`), so a section cannot be left out of it. ``order`` places the section
(see :data:`ORDERS` for the page's own); the figures a section reads belong in
``metrics.json`` (add them in :func:`report.build.build_report`).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from markupsafe import Markup

# The page's own sections and where they sit (a new one picks a number between).
ORDERS = {"Comparison": 10, "Money": 20, "Why scam money was lost": 25,
          "Friction: who bears the holds": 30, "Hold precision by reason": 32,
          "Escalation inside the hold": 36, "Freezes": 40, "Case files": 45,
          "Per typology": 50, "Per month": 55, "Threshold sweep": 60, "Models": 65,
          "Drift": 66, "Outreach": 70, "Contacts per user": 71,
          "Daily risk assessments": 72, "Call capacity": 74, "Verdicts and reports": 80,
          "Shadow policy": 85, "Warning efficacy": 86, "Reconciliation": 90, "Run": 95}


@dataclass
class Page:
    """What a section can read: ``metrics`` (metrics.json), ``extras`` (the rows read for
    the report, :func:`report.metrics.compute`), ``compare`` (the compared run's
    metrics.json, or None), ``imgs`` (charts by name), ``rows`` (the page's table rows)."""

    metrics: dict
    extras: dict
    compare: Optional[dict] = None
    imgs: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    title: str
    order: float
    render: Callable[[Page], str]


REGISTRY: dict = {}


def section(title: str, order: float) -> Callable:
    """Register the decorated function as the section ``title`` (see the module doc)."""
    def register(fn: Callable[[Page], str]) -> Callable[[Page], str]:
        REGISTRY[title] = Section(title, order, fn)
        return fn
    return register


def discover() -> None:
    """Import every module of the ``report`` package, so that each registers its sections."""
    import report

    for m in pkgutil.iter_modules(report.__path__):
        importlib.import_module(f"report.{m.name}")


def rendered(page: Page) -> list:
    """(title, HTML body) of every section with something to say, in page order."""
    discover()
    out = []
    for s in sorted(REGISTRY.values(), key=lambda s: (s.order, s.title)):
        body = s.render(page)
        if body and str(body).strip():
            out.append((s.title, Markup(body)))
    return out


_H2 = re.compile(r"<h2 id=['\"]([^'\"]+)['\"][^>]*>(.*?)</h2>", re.S)
_TAG = re.compile(r"<[^>]+>")


def toc(page_html: str) -> list:
    """(id, title) of every ``<h2 id=...>`` of a finished page, in order: the table of
    contents."""
    return [(i, Markup(_TAG.sub("", t)).unescape()) for i, t in _H2.findall(page_html)]
