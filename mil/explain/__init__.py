"""Explanations: where the model looked, shown as files people open (CSV, PNG, GeoJSON, HTML).

    attention   per-instance attention of the fold models (mean and spread), or gradient x input for heads
                without attention
    cohort      a run and a bag store opened together (`Explainer`), patient by patient
    tables      attention.csv columns
    gallery     top/bottom cells as labelled montages, re-read from the source slide or cell image
    overlay     the smear with cells coloured by attention
    geojson     cells as QuPath detections with attention measurements
    discovery   clusters of high-attention cells ranked by enrichment in a class ("which cells drive APL")
    truth       joins attention.csv to annotated cells (by file, or nearest x, y)
    heatmap     `mil heatmap`: all of the above per slide

Submodules import on use, so `import mil.explain` costs nothing.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PatientAttention": "attention",
    "explain_patient": "attention",
    "Explainer": "cohort",
    "DiscoveryCollector": "discovery",
    "heatmap": "heatmap",
    "HeatmapSummary": "heatmap",
    "join_truth": "truth",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mil.explain' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mil.explain.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
