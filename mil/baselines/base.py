"""The baseline contract: bags in, one row of patient-level features out; the model is the task kind's.

A `Baseline` only featurises. It is handed the patients' bags one at a time (an iterable of N x D arrays, in
patient order) and returns a P x F matrix: nothing it computes may use labels, so featurising every patient at
once leaks nothing (standardisation and the model are fitted inside each fold, see `mil.baselines.cv`).
Bags come from the run's in-memory features (`mil train`) or straight from a store (`bags_from_store`), one
patient at a time, so a 300-patient x 2,000-cell x 384-d cohort never has to sit in memory twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from features.bagstore import BagStore


@dataclass(frozen=True)
class PatientFeatures:
    values: np.ndarray  # P x F float64, one row per patient in the order the bags came
    names: list[str]  # F column names ("mean[3]", "q90[17]", "share[blast]")


class Baseline:
    """One way to summarise a bag as patient-level features. Subclasses register in `BASELINES`."""

    name: ClassVar[str] = ""
    describes: ClassVar[str] = ""  # what the verdict line calls it: "the pooled statistics"
    nonfinite: ClassVar[str] = "NaN or inf in its bag; fix the store"  # why a patient's row can be non-finite

    def features(self, bags: Iterable[np.ndarray], dim: int) -> PatientFeatures:
        """P x F features from P bags (each N_p x `dim`, float16 or float32)."""
        raise NotImplementedError

    def inputs(self) -> dict:
        """What else the features were made from, for metrics.json (`cell_composition`: the cell model)."""
        return {}


def bags_from_store(
    store: BagStore, patients: list[str], slides: dict[str, list[str]]
) -> Iterator[np.ndarray]:
    """Each patient's slides concatenated into one bag, read patient by patient (memory: one bag)."""
    for patient in patients:
        parts = [store.read_features(slide) for slide in sorted(slides[patient])]
        yield parts[0] if len(parts) == 1 else np.concatenate(parts)
