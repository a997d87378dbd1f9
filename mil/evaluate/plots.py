"""Figures of the evaluation. Each `plot_*` draws on the `ax` it is given and returns it; only `write_plots`
saves files.

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
from mil.config import EvaluateConfig
from mil.evaluate.classification import auc_weighted, confusion_matrix
from mil.evaluate.predictions import PredictionSpec, require_truth
from mil.evaluate.survival import GROUP_METHODS, kaplan_meier, risk_groups, survival_metrics

PLOT_FILES = {
    "classification": ["roc.png", "confusion.png"],
    "multilabel": ["roc.png"],
    "survival": ["km.png"],
}


def plot_roc(ax: Axes, truth: np.ndarray, scores: np.ndarray, names: list[str]) -> Axes:
    """One-vs-rest ROC curve per column of `truth` (n x C bool) against `scores` (n x C); AUC in the legend."""
    for j, name in enumerate(names):
        positive = np.asarray(truth[:, j], bool)
        if positive.all() or not positive.any():
            ax.plot([], [], label=f"{name} (AUC undefined: one class)")
            continue
        fpr, tpr, _ = roc_curve(positive, scores[:, j])
        auc = auc_weighted(positive, scores[:, j], np.ones((1, len(positive))))[0]
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {auc:.3f}, n+={int(positive.sum())})")
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


def write_plots(df: pd.DataFrame, spec: PredictionSpec, out_dir: Path) -> list[Path]:
    """Save the pooled figures of this kind (`PLOT_FILES`) as PNGs under `out_dir`, each atomically."""
    require_truth(df, spec, "predictions")
    out_dir = Path(out_dir)
    written = []
    if spec.kind in ("classification", "multilabel"):
        if spec.kind == "classification":
            truth = df["y_true"].to_numpy()[:, None] == np.asarray(spec.classes)[None, :]
        else:
            truth = df[spec.truth_columns()].to_numpy(int) == 1
        fig, ax = _figure(6, 6)
        plot_roc(ax, truth, df[spec.prob_columns()].to_numpy(float), spec.classes)
        ax.set_title(f"ROC, pooled (n={len(df)})")
        written.append(_save(fig, out_dir / "roc.png"))
    if spec.kind == "classification":
        index = {c: i for i, c in enumerate(spec.classes)}
        y, pred = df["y_true"].map(index).to_numpy(int), df["y_pred"].map(index).to_numpy(int)
        size = 2.5 + 0.9 * len(spec.classes)
        fig, ax = _figure(size, size)
        plot_confusion(ax, confusion_matrix(y, pred, len(spec.classes)), spec.classes)
        ax.set_title("confusion matrix, pooled")
        written.append(_save(fig, out_dir / "confusion.png"))
    if spec.kind == "survival":
        time, event, risk = (df[c].to_numpy(float) for c in ("time", "event", "risk"))
        groups, _ = risk_groups(risk, "median")
        fits = kaplan_meier(time, event, groups, GROUP_METHODS["median"])
        fig, ax = _figure(7, 5.5, bottom=0.3)
        plot_km(ax, fits)
        p = survival_metrics(time, event, risk, EvaluateConfig(n_bootstrap=0))["logrank_p"]
        ax.set_title(
            f"risk split at the median, log-rank p = {p:.3g}" if p is not None else "risk split at the median"
        )
        written.append(_save(fig, out_dir / "km.png"))
    return written


def _figure(width: float, height: float, bottom: float | None = None) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout=None if bottom else "constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if bottom:
        fig.subplots_adjust(bottom=bottom, left=0.15)
    return fig, ax


def _save(fig: Figure, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150))
    return path
