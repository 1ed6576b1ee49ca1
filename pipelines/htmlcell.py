"""One table cell's text for the HTML reports, escaped: ``–`` for nothing, thousands
separators for numbers (floats to the cent).

>>> cell(None), cell(1234), cell(0.5), cell("<b>")
('–', '1,234', '0.50', '&lt;b&gt;')
"""

from __future__ import annotations

import html
from typing import Any


def cell(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return html.escape(f"{x:,.2f}")
    if isinstance(x, int) and not isinstance(x, bool):
        return html.escape(f"{x:,}")
    return html.escape(str(x))
