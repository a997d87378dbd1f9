"""Cell-type classifiers on frozen embeddings: one registry, one short file each (`mil list cell-classifiers`).

Every classifier z-scores with its training cells, fits on integer class codes 0..C-1 (a class missing from a
fold's training cells gets log-probability `FLOOR` there), returns N x C log-probabilities, and saves itself as
plain arrays (`arrays` / `from_arrays`): a cell model is numbers in an .npz and a JSON, never a pickle, and
predicting is numpy (`mil.cells.classifiers.base`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.core.registry import Registry
from mil.cells.classifiers.base import FLOOR, CellClassifier

CLASSIFIERS = Registry(
    "cell classifier",
    modules=("mil.cells.classifiers.linear", "mil.cells.classifiers.mlp", "mil.cells.classifiers.knn"),
)


def create_classifier(name: str, **params: Any) -> CellClassifier:
    """`create_classifier("linear", seed=0)`; each kind takes the `cells` config values it uses."""
    return CLASSIFIERS.create(name, **params)


def load_classifier(name: str, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> CellClassifier:
    return CLASSIFIERS.get(name).factory.from_arrays(arrays, **params)


__all__ = ["CLASSIFIERS", "FLOOR", "CellClassifier", "create_classifier", "load_classifier"]
