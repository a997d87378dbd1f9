"""The report's differential-count section (`mil report --cells`): per-patient stacked bars of the cell types,
a table with blast %, M:E, the commonest types and flags, each % with its 95 % interval, and in words how
wide an interval a count of this size has (a 200-cell count is about ± 6 points at 20 %)."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.axes import Axes

from mil.cells.count import Differential, interval_words
from mil.cells.differential import CountResult
from mil.report import html as H

MAX_BARS = 150  # patients drawn as bars; beyond this the figure stops being readable (the table lists all)


def plot_stacked(ax: Axes, rows: list[Differential], classes: list[str], colours: dict) -> Axes:
    """One horizontal bar per row: the % of its counted cells of each type, in `classes` order."""
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for c in classes:
        share = np.array([r.pct[c].value or 0.0 for r in rows])
        if not share.any():
            continue
        ax.barh(
            y, share, left=left, color=np.asarray(colours[c]) / 255.0, label=c.replace("_", " "), height=0.8
        )
        left += share
    ax.set_yticks(y, [f"{r.id} (n={r.n_counted})" for r in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="% of counted nucleated cells")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return ax


def _figure(rows: list[Differential], classes: list[str], colours: dict) -> bytes:
    from mil.evaluate.plots import new_figure

    fig, ax = new_figure(10.0, min(40.0, 1.6 + 0.26 * len(rows)))
    plot_stacked(ax, rows, classes, colours)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _ci(m) -> str:
    return "–" if m is None or m.value is None else f"{m.value:.1f} ({m.lo:.1f}-{m.hi:.1f})"


def differential_section(result: CountResult, shown_as: dict[str, str]) -> str:
    model = result.model
    counted = [c for c in model.classes if model.vocabulary.counted(c)]
    order = sorted(result.patients, key=lambda r: (shown_as.get(r.id, ""), -(_blast(r) or 0.0), r.id))
    body = _method_note(result, order)
    drawn = order[:MAX_BARS]
    body += H.img(_figure(drawn, counted, model.colours()), "differential count per patient", "montage")
    if len(order) > MAX_BARS:
        body += H.note(f"The bars show the first {MAX_BARS} of {len(order)} patients; the table lists all.")
    header = ["patient", "shown as", "counted", "blast % (95% CI)", "M:E", "dysplastic neutrophils %",
              "commonest types", "flags"]  # fmt: skip
    rows = [_row(r, counted, shown_as) for r in order]
    body += H.table(header, rows, sortable=True, scroll=True)
    return H.section("differential", f"Differential count ({len(order)} patients)", body)


def _method_note(result: CountResult, order: list[Differential]) -> str:
    """How the count was made, what its percentages leave out, and how wide a count of this size is."""
    model = result.model
    n_median = int(np.median([r.n_counted for r in order])) if order else 0
    excluded = [c.replace("_", " ") for c in model.classes if not model.vocabulary.counted(c)]
    cv = model.record.get("cv") or {}
    quality = (
        f"; its patient-grouped {cv['n_folds']}-fold CV on {cv['n_cells']} labelled cells of {cv['n_patients']} "
        f"patients gave balanced accuracy {cv['balanced_accuracy']:.3f}"
        if cv
        else ""
    )
    left_out = (
        f" ({', '.join(excluded)} are counted as cells but left out of every percentage)" if excluded else ""
    )
    width = (
        interval_words(n_median) + " (this cohort's median count)" if n_median else "no cells were counted"
    )
    note = H.note(
        f"Every stored cell typed by the cell model {model.path} ({model.kind}, {len(model.classes)} classes, "
        f"vocabulary {model.vocabulary.name}{quality}) as its most probable type, counted per patient. "
        f"Percentages are of the counted nucleated cells{left_out}; each has a 95 % Clopper-Pearson interval. "
        f"A count is a sample of the smear: {width}; for comparison, {interval_words(200)}. Flags compare a "
        f"count with the reference ranges ({result.ranges.name}); they are for review, not diagnoses."
    )
    if any(r.in_training for r in order):
        note += H.note(
            "Marked *: the cell model learnt from labels of this patient's cells, so its count is not a test "
            "of the model (see the model's cross-validated metrics in its metrics.json)."
        )
    return note


def _row(r: Differential, counted: list[str], shown_as: dict[str, str]) -> list:
    top = sorted(counted, key=lambda c: -r.counts[c])[:3]
    return [
        r.id + (" *" if r.in_training else ""),
        shown_as.get(r.id, ""),
        r.n_counted,
        _ci(r.measures.get("blast_pct")),
        _me(r),
        _ci(r.measures.get("dysplastic_neutrophil_pct")),
        ", ".join(f"{c.replace('_', ' ')} {_ci(r.pct[c])}" for c in top if r.counts[c]),
        "; ".join(r.flags),
    ]


def _blast(r: Differential) -> float | None:
    m = r.measures.get("blast_pct")
    return None if m is None else m.value


def _me(r: Differential) -> str:
    m = r.measures.get("me_ratio")
    if m is None:
        return "–"
    return f"{m.value:.2f}" if m.value is not None else f"{m.numerator}:0"
