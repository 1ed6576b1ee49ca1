"""The report's HTML, rendered from the Jinja2 templates in ``report/templates``.

Autoescape is on, and every value a template prints is escaped with :func:`html.escape`
(the environment's ``finalize``), so anything that comes from data (addresses, ids, report
text, reasons) is escaped as it always was (``'`` as ``&#x27;``, ``"`` as ``&quot;``).

>>> str(render_string("<td>{{ x|cell }}</td><td>{{ y|cell }}</td>", x=1234.5, y="<b>"))
'<td>1,234.50</td><td>&lt;b&gt;</td>'
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from typing import Any, Optional

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from report.numbers import stamp


def cell(x: Any) -> str:
    """A table cell's text: ``–`` for nothing, thousands separators for numbers (floats to
    the cent).

    >>> cell(None), cell(1234), cell(0.5), cell("<b>")
    ('–', '1,234', '0.50', '<b>')
    """
    if x is None:
        return "–"
    if isinstance(x, Markup):  # already escaped (a link made by the report)
        return x
    if isinstance(x, float):
        return f"{x:,.2f}"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return str(x)


_NUMBER = re.compile(r"^[−+-]?\$?[\d,]+(\.\d+)?( ?%| h| pp|[kM])?$")
_NOWRAP = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?|[^\s]{1,28})$")


def cell_class(v: Any, column: int, right: tuple = ()) -> str:
    """A cell's class: ``n`` a number (right-aligned, never wrapped), ``t`` a short token or
    a time (never wrapped: no "NOT_SCA / M"), ``l`` text (wraps between words).

    >>> [cell_class(x, 0) for x in (3, "2026-01-05 21:40", "NOT_SCAM", "two words", "−$1,250")]
    ['n', 't', 't', 'l', 'n']
    """
    if (isinstance(v, (int, float)) and not isinstance(v, bool)) or column in right:
        return "n"
    text = v.striptags() if isinstance(v, Markup) else cell(v)
    if _NUMBER.match(text):
        return "n"
    return "t" if _NOWRAP.match(text) else "l"


def link(href: str, text: str) -> Markup:
    """``<a href=...>text</a>``, both escaped.

    >>> str(link("cases/a.html", "<b>"))
    "<a href='cases/a.html'>&lt;b&gt;</a>"
    """
    return Markup("<a href='{}'>{}</a>").format(href, text)


def usd(x: Optional[float], none: str = "–") -> str:
    return none if x is None else f"${x:,.0f}"


def pct(x: Optional[float], none: str = "–") -> str:
    return none if x is None else f"{100 * x:.2f}%"


def short(a: Optional[str], n: int = 18) -> str:
    """A long address shortened to ``n`` characters, its start and end kept."""
    if a is None:
        return ""
    return a if len(a) <= n else a[: n - 6] + "…" + a[-5:]


def iso(ms: Optional[int]) -> str:
    """Event time to the minute, UTC ('' for nothing)."""
    if ms is None:
        return ""
    return stamp(ms, seconds=False)


def slug(title: str) -> str:
    """A heading's anchor.

    >>> slug("Holds by reason"), slug("Friction: who bears the holds")
    ('holds-by-reason', 'friction-who-bears-the-holds')
    """
    return re.sub("-+", "-", "".join(c if c.isalnum() else "-" for c in title.lower())).strip("-")


def opt(v: Any) -> str:
    """A policy option's value as typed on the command line."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def _escape(v: Any) -> Markup:
    return v if isinstance(v, Markup) else Markup(html.escape(str(v)))


def _text(v: Any) -> str:
    """What the templates print for ``v`` (:func:`_escape`), as a plain string."""
    return str(v) if isinstance(v, Markup) else html.escape(str(v))


def table(head, rows, right: tuple = (), cls: str = "", id: str = "",
          flags=()) -> Markup:
    """The ``table`` macro of ``_macros.html`` (a table, in a box that scrolls past 15
    rows; cells classed by :func:`cell_class`, printed by :func:`cell`, escaped), built
    here: the case pages and the report print tens of thousands of cells."""
    if not rows:
        return Markup("")
    out = ["<div class='scrollbox'><table" if len(rows) > 15 else "<table"]
    if cls:
        out.append(f" class='{_text(cls)}'")
    if id:
        out.append(f" id='{_text(id)}'")
    out.append("><thead><tr>")
    out.extend(f"<th>{_text(c)}</th>" for c in head)
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        out.append("<tr class='bad'>" if flags and flags[i] else "<tr>")
        out.extend(_td(v, j, right) for j, v in enumerate(row))
        out.append("</tr>")
    out.append("</tbody></table>\n</div>" if len(rows) > 15 else "</tbody></table>\n")
    return Markup("".join(out))


def _td(v: Any, j: int, right: tuple) -> str:
    """A cell of :func:`table`: ``<td class=...>text</td>`` (the common types first)."""
    t = type(v)
    if t is str:
        cls = "n" if j in right or _NUMBER.match(v) else "t" if _NOWRAP.match(v) else "l"
        return f"<td class={cls}>{html.escape(v)}</td>"
    if t is int:
        return f"<td class=n>{v:,}</td>"
    if t is float:
        return f"<td class=n>{v:,.2f}</td>"
    return f"<td class={cell_class(v, j, right)}>{_text(cell(v))}</td>"


def text_table(head, rows) -> Markup:
    """The ``text_table`` macro of ``_macros.html`` (every cell left-aligned text), built
    here."""
    if not rows:
        return Markup("")
    out = ["<table><thead><tr>"]
    out.extend(f"<th>{_text(c)}</th>" for c in head)
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        out.extend(f"<td class=l>{_text(cell(v))}</td>" for v in row)
        out.append("</tr>")
    out.append("</tbody></table>\n")
    return Markup("".join(out))


ENV = Environment(loader=PackageLoader("report", "templates"), autoescape=True,
                  finalize=_escape, trim_blocks=True, lstrip_blocks=True,
                  undefined=StrictUndefined)
ENV.filters.update(cell=cell, cell_class=cell_class, usd=usd, pct=pct, short=short, iso=iso,
                   slug=slug, opt=opt)
CSS = Markup(ENV.loader.get_source(ENV, "report.css")[0])
# The pages' one script (sorting and filtering tables), inline; the content security policy
# allows it by its hash and nothing else (no other script, nothing fetched).
SCRIPT = Markup(ENV.loader.get_source(ENV, "script.js")[0])
SCRIPT_CSP = "'sha256-" + base64.b64encode(hashlib.sha256(
    str(SCRIPT).encode("utf-8")).digest()).decode("ascii") + "'"
ENV.globals.update(SCRIPT=SCRIPT, SCRIPT_CSP=SCRIPT_CSP, table_html=table,
                   text_table_html=text_table)


def render(template: str, **context) -> Markup:
    """The template ``template`` (under report/templates) rendered with ``context``."""
    return Markup(ENV.get_template(template).render(**context))


def render_string(source: str, **context) -> Markup:
    return Markup(ENV.from_string(source).render(**context))
