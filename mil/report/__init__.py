"""`mil report`: one self-contained HTML file (metrics with CIs, figures, predictions, cell galleries and
diagnostic-cell discovery) that opens offline in any browser. `report(run, bags, out_html)` builds it."""

from __future__ import annotations


def report(*args, **kwargs):  # noqa: ANN002, ANN003 - re-export with a lazy import (no torch on `import mil.report`)
    from mil.report.build import report as _report

    return _report(*args, **kwargs)


report.__doc__ = "See `mil.report.build.report`."
__all__ = ["report"]
