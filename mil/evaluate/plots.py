"""Figures of the evaluation. Each `plot_*` draws on the `ax` it is given and returns it; each task kind picks
its figures (`Task.figures`: ROC and confusion, Kaplan-Meier, ...) and only `write_plots` saves files.

No pyplot: figures are `matplotlib.figure.Figure` objects rendered by the Agg canvas, so plotting never touches
a global figure registry or a display, and works the same in a CLI, a test and a notebook. Numbers drawn on a
figure (AUC in the legend, log-rank p) come from the same functions as metrics.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from sklearn.metrics import roc_curve

from features.core.io import atomic_write
from mil.evaluate.classification import auc_weighted
from mil.evaluate.predictions import require_truth
from mil.tasks import TaskSpec, create_task


def plot_roc(
    ax: Axes, truth: np.ndarray, scores: np.ndarray, names: list[str], linestyle: str = "-", prefix: str = ""
) -> Axes:
    """One-vs-rest ROC curve per column of `truth` (n x C bool) against `scores` (n x C); AUC in the legend.
    Column j is drawn in colour Cj, so several models on one axes (`linestyle`, `prefix`) share class colours."""
    for j, name in enumerate(names):
        positive = np.asarray(truth[:, j], bool)
        if positive.all() or not positive.any():
            ax.plot([], [], label=f"{prefix}{name} (AUC undefined: one class)")
            continue
        fpr, tpr, _ = roc_curve(positive, scores[:, j])
        auc = auc_weighted(positive, scores[:, j], np.ones((1, len(positive))))[0]
        label = f"{prefix}{name} (AUC {auc:.3f}, n+={int(positive.sum())})"
        ax.plot(fpr, tpr, lw=1.8, ls=linestyle, color=f"C{j % 10}", label=label)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity", aspect="equal")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_confusion(ax: Axes, matrix: np.ndarray, labels: list[str]) -> Axes:
    """Heatmap of counts (rows = true, columns = predicted) shaded by row fraction, counts written in cells."""
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    shade = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if shade[i, j] > 0.6 else "black")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true")
    return ax


def plot_km(ax: Axes, fits: dict, at_risk: bool = True) -> Axes:
    """Kaplan-Meier curves (with 95% bands) of fitted lifelines estimators; at-risk counts under the x axis."""
    for name, fit in fits.items():
        sf = fit.survival_function_.iloc[:, 0]
        line = ax.step(sf.index, sf.to_numpy(), where="post", label=f"{name} (n={len(fit.durations)})")[0]
        band = fit.confidence_interval_
        ax.fill_between(
            band.index, band.iloc[:, 0], band.iloc[:, 1], step="post", alpha=0.15, color=line.get_color()
        )
    ax.set(ylim=(0, 1.02), xlabel="time", ylabel="survival probability")
    ax.legend(loc="upper right", fontsize="small")
    if at_risk and fits:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        where = blended_transform_factory(ax.transData, ax.transAxes)
        for row, (name, fit) in enumerate(fits.items()):
            y = -0.22 - 0.08 * row
            ax.text(-0.02, y, name, transform=ax.transAxes, ha="right", va="center", fontsize="small")
            for t in ticks:
                count = int((np.asarray(fit.durations) >= t).sum())
                ax.text(t, y, str(count), transform=where, ha="center", va="center", fontsize="small")
        ax.text(-0.02, -0.14, "at risk", transform=ax.transAxes, ha="right", fontsize="small", style="italic")
    return ax


def roc_figure(truth: np.ndarray, scores: np.ndarray, names: list[str]) -> Figure:
    """The pooled ROC figure of `plot_roc`, titled with the number of patients."""
    fig, ax = new_figure(6, 6)
    plot_roc(ax, truth, scores, names)
    ax.set_title(f"ROC, pooled (n={len(truth)})")
    return fig


MODEL_STYLES = ("-", "--", ":", "-.")  # the first model (the head) solid, the baselines dashed, dotted, ...


def roc_comparison_figure(truth: np.ndarray, scores: dict[str, np.ndarray], names: list[str]) -> Figure:
    """ROC curves of several models' scores for the same patients on one axes: colour = class, line = model."""
    fig, ax = new_figure(6.5, 6.5)
    for m, (model, values) in enumerate(scores.items()):
        plot_roc(ax, truth, values, names, MODEL_STYLES[m % len(MODEL_STYLES)], f"{model}: ")
    ax.set_title(f"ROC, pooled out-of-fold (n={len(truth)}): {' vs '.join(scores)}")
    return fig


def km_comparison_figure(panels: dict[str, tuple[dict, str]]) -> Figure:
    """Kaplan-Meier split of each model side by side: model -> (fitted estimators per group, panel title)."""
    fig = Figure(figsize=(6.5 * len(panels), 5.5))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(bottom=0.3, left=0.08, right=0.97, wspace=0.3)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (model, (fits, title)) in zip(axes, panels.items(), strict=True):
        plot_km(ax, fits)
        ax.set_title(f"{model}: {title}")
    return fig


def write_plots(df: pd.DataFrame, spec: TaskSpec, out_dir: Path) -> list[Path]:
    """Save the pooled figures of the spec's kind (`Task.plots`) as PNGs under `out_dir`, each atomically."""
    require_truth(df, spec, "predictions")
    out_dir = Path(out_dir)
    return [save_figure(fig, out_dir / name) for name, fig in create_task(spec).figures(df)]


def new_figure(width: float, height: float, bottom: float | None = None) -> tuple[Figure, Axes]:
    """A figure with one axes on the Agg canvas (no pyplot); `bottom` leaves room under the axes."""
    fig = Figure(figsize=(width, height), layout=None if bottom else "constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if bottom:
        fig.subplots_adjust(bottom=bottom, left=0.15)
    return fig, ax


def save_figure(fig: Figure, path: Path) -> Path:
    """Save one figure as a PNG, atomically (its folder is created)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150))
    return path
