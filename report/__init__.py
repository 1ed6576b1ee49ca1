"""The backtest's report: ``metrics.json`` (figures) and ``report.html`` (rendered from the
Jinja2 templates in ``templates/``), with one page per case.

* :mod:`report.build` writes them (:func:`build_report`);
* :mod:`report.metrics` computes the figures from a replay and a backtest's files
  (:mod:`report.files`, :mod:`report.truth`, :mod:`report.scores`, :mod:`report.numbers`);
* :mod:`report.html` and :mod:`report.plots` render the page; :mod:`report.comparison` is
  its ``--compare`` section;
* one module per section: :mod:`report.friction`, :mod:`report.efficacy`,
  :mod:`report.proactive`, :mod:`report.shadow`.

``safetynet report`` (``pipelines/report.py``) is the command line.
"""

from report.build import build_report
from report.metrics import policy_dict

__all__ = ["build_report", "policy_dict"]
