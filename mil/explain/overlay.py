"""The smear at low resolution with every cell drawn as a dot coloured by its attention, one PNG per class,
and (with a cell model, `mil heatmap --cells`) one more coloured by cell type, its legend counting each type.

Peers paint tile heatmaps; a smear is sparse, so each detected cell is a dot at its level-0 centre. Colours
show attention x N on a diverging map centred on 1 (uniform: red = above, blue = below), clipped at the 1st
and 99th percentiles so one outlier does not wash out the rest; high-attention cells are drawn last so they are
never hidden under low ones. Attributions (heads without attention) are centred on 0 instead. No pyplot: figures render on the Agg canvas
(as in `mil.evaluate.plots`), the plot function takes an `ax` and returns it, and only `write_overlays` saves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from features.sources.instances import Overview

DOT_UM = 9.0  # dot diameter: about a small cell, so dots mark cells without hiding the smear


def plot_overlay(
    ax: Axes,
    thumb: np.ndarray,
    downsample: float,
    xy: np.ndarray,
    values: np.ndarray,
    label: str,
    dot_px: float = 10.0,
) -> Axes:
    """Dots of `dot_px` thumbnail pixels at level-0 `xy` (N x 2) over `thumb`, coloured by `values` (N)."""
    values = np.asarray(values, dtype=np.float64)
    ax.imshow(thumb, interpolation="nearest")
    if len(values):
        order = np.argsort(values, kind="stable")  # high values drawn last, on top
        # diverging around "no preference": 1 for attention x N (uniform), 0 for an attribution
        centre = 0.0 if values.min() < 0 else 1.0
        low = min(float(np.percentile(values, 1)), centre - 1e-3)
        high = max(float(np.percentile(values, 99)), centre + 1e-3)
        norm, cmap = TwoSlopeNorm(centre, low, high), "RdYlBu_r"
        # marker area is in points^2: convert the dot's thumbnail pixels to points at the figure's height
        points_per_px = 0.9 * ax.figure.get_figheight() * 72 / max(1, thumb.shape[0])
        size = max(9.0, (dot_px * points_per_px) ** 2)
        dots = ax.scatter(
            xy[order, 0] / downsample,
            xy[order, 1] / downsample,
            c=values[order],
            s=size,
            cmap=cmap,
            norm=norm,
            edgecolors="white",
            linewidths=0.3,
        )
        ax.figure.colorbar(dots, ax=ax, shrink=0.8, label=label, extend="both")
    ax.set_axis_off()
    return ax


def plot_type_overlay(
    ax: Axes,
    thumb: np.ndarray,
    downsample: float,
    xy: np.ndarray,
    types: np.ndarray,
    colours: dict[str, tuple[int, int, int]],
    dot_px: float = 10.0,
) -> Axes:
    """Dots at level-0 `xy` coloured by cell type (`colours`: type -> RGB 0-255); a legend with each count."""
    ax.imshow(thumb, interpolation="nearest")
    types = np.asarray(types, dtype=object)
    points_per_px = 0.9 * ax.figure.get_figheight() * 72 / max(1, thumb.shape[0])
    size = max(9.0, (dot_px * points_per_px) ** 2)
    names, counts = np.unique(types.astype(str), return_counts=True)
    for name, n in sorted(zip(names, counts, strict=True), key=lambda kv: -kv[1]):
        at = types == name
        rgb = np.asarray(colours.get(name, (128, 128, 128)), np.float64)[None] / 255.0
        ax.scatter(xy[at, 0] / downsample, xy[at, 1] / downsample, c=rgb, s=size, edgecolors="white",
                   linewidths=0.3, label=f"{name.replace('_', ' ')} ({n})")  # fmt: skip
    if len(names):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.set_axis_off()
    return ax


def write_type_overlay(
    overview: Overview,
    xy: np.ndarray,
    types: np.ndarray,
    colours: dict[str, tuple[int, int, int]],
    path: Path,
    title: str,
) -> Path:
    """overlay_celltype.png: the slide's cells coloured by their type (`plot_type_overlay`)."""
    from features.core.io import atomic_write

    thumb, downsample = overview.image, overview.downsample
    aspect = thumb.shape[1] / max(1, thumb.shape[0])
    fig = Figure(figsize=(min(16.0, 7.0 * aspect + 3.5), 7.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    plot_type_overlay(ax, thumb, downsample, xy, types, colours, DOT_UM / (overview.mpp * downsample))
    ax.set_title(f"{title}: cell types")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, pil_kwargs={"compress_level": 3}))
    return path


def write_overlays(
    overview: Overview,
    xy: np.ndarray,
    values: dict[str, np.ndarray],
    paths: dict[str, Path],
    title: str,
    label: str = "attention x N (1 = uniform)",
) -> list[Path]:
    """One overlay PNG per output name (`paths[name]`), all over one `overview` of the slide (read once, by
    `features.sources.open_instances(...).overview()`)."""
    from features.core.io import atomic_write

    thumb, downsample = overview.image, overview.downsample
    dot_px = DOT_UM / (overview.mpp * downsample)
    written = []
    aspect = thumb.shape[1] / max(1, thumb.shape[0])
    for name, v in values.items():
        fig = Figure(figsize=(min(14.0, 7.0 * aspect + 1.5), 7.0), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        plot_overlay(ax, thumb, downsample, xy, v, label, dot_px)
        ax.set_title(f"{title}: {name}")
        atomic_write(
            paths[name],
            lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=110, pil_kwargs={"compress_level": 3}),
        )
        written.append(paths[name])
    return written
