"""The backtest's report: ``metrics.json`` (figures) and ``report.html`` (rendered from the
Jinja2 templates in ``templates/``), with one page per case.

* :mod:`report.build` writes them (:func:`build_report`);
* :mod:`report.metrics` computes the figures from a replay and a backtest's files
  (:mod:`report.files`, :mod:`report.truth`, :mod:`report.scores`, :mod:`report.numbers`);
  what there is one of per transfer (the transfers, the ground truth about them, the
  scores) is held as columns (:mod:`report.columns`: numpy and Arrow arrays, no Python
  row per transfer), and the decision files as rows;
* :mod:`report.page` puts the page together: :mod:`report.first` its first screen (stopped,
  lost and why, the honest cost, wrong freezes, the ``--compare`` trade-off),
  :mod:`report.sections` the sections in order and the table of contents made from them;
  :mod:`report.html` and :mod:`report.plots` render; :mod:`report.comparison` is the
  ``--compare`` section;
* sections register themselves (``@report.sections.section``): the page's own in
  :mod:`report.page`, the others in :mod:`report.friction`, :mod:`report.efficacy`,
  :mod:`report.proactive`, :mod:`report.shadow`; :mod:`report.cases` splits each case's
  money into scam and honest and writes the case pages.

``safetynet report`` (``pipelines/report.py``) is the command line.
"""

from report.build import build_report
from report.metrics import policy_dict

__all__ = ["build_report", "policy_dict"]
