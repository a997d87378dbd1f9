"""`mil report`: one self-contained HTML file (metrics with CIs, figures, predictions, cell galleries and
diagnostic-cell discovery) that opens offline in any browser.

    report(run, bags, out_html, ...) -> ReportSummary      (mil.report.build)

`html` builds the page (pure string functions), `sections` renders the run's own results, `build` explains
the cohort and assembles everything.
"""

from __future__ import annotations

from mil.report.build import ReportSummary, report

__all__ = ["ReportSummary", "report"]
