"""Screenshots of a backtest's report in a real browser (headless Chromium): the first screen
of ``report.html`` and one case page, as PNGs to look at.

    python -m bench.report_screenshots --report runs/bt [--out runs/shots] [--case CASE_ID]

``--report`` is a directory with ``report.html`` and ``cases/`` (a backtest's output, or
``safetynet report --report_dir``). The case page is ``--case``, else the first of the
report's case table (wrong freezes first, then the largest scam loss). Needs Debian's
``chromium`` (``apt-get install -y chromium``); the browser runs with a throw-away profile,
no network and no sandbox (for containers running as root).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("report_screenshots: error: no chromium on PATH "
                     "(apt-get update && apt-get install -y chromium)")


def shoot(page: Path, png: Path, width: int, height: int) -> Path:
    """``page`` rendered at ``width`` x ``height`` CSS pixels into ``png``."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser(), *FLAGS, f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={png}",
               page.resolve().as_uri()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not png.is_file():
        raise SystemExit(f"report_screenshots: error: chromium failed on {page}: "
                         f"{(r.stderr or '').strip().splitlines()[-1:]}")
    return png


def first_case(report_html: Path) -> str:
    """The case page the report's case table links first."""
    m = re.search(r"<a href='(cases/[^']+\.html)'", report_html.read_text(encoding="utf-8"))
    if m is None:
        raise SystemExit(f"report_screenshots: error: {report_html} links no case page")
    return m.group(1)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report_screenshots",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--report", required=True, metavar="DIR",
                    help="directory with report.html and cases/")
    ap.add_argument("--out", default=None, metavar="DIR",
                    help="where the PNGs go (default: DIR/screenshots)")
    ap.add_argument("--case", default=None, metavar="CASE_ID",
                    help="the case page to shoot (default: the first in the case table)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    a = ap.parse_args(argv)
    d = Path(a.report)
    html = d / "report.html"
    if not html.is_file():
        raise SystemExit(f"report_screenshots: error: no report.html in {d}")
    out = Path(a.out) if a.out else d / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    case = d / (f"cases/{a.case}.html" if a.case else first_case(html))
    shots = [shoot(html, out / "first_screen.png", a.width, a.height),
             shoot(case, out / "case_page.png", a.width, a.height)]
    for s in shots:
        print(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
