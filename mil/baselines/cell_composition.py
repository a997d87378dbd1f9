"""`cell_composition`: per patient, the share of each cell type among its counted nucleated cells.

The differential count a hematologist reads, as patient-level features: every cell of the bag is typed by a
cell model (`mil cells train` -> CELLMODEL) as its most probable class, the types are counted, and the counted
classes are divided by their sum, exactly as `mil cells count` does (`CellModel.type_counts`,
`mil.cells.count.shares`): artefact, smudge, unknown and platelet classes (`counted: false` in the
vocabulary) are typed but enter neither numerator nor denominator. One column per counted class,
`share[<class>]`, then the kind's regularised linear model with C by inner CV, like every baseline.

Where the signal sits in a cell type's share (blast % separates AML from a healthy marrow, with blasts that
look like any myeloblast), these few numbers are what the head has to beat. The featuriser uses no labels of
the run; the cell model itself is trained outside the run (`mil train` warns when it learnt from patients of
the run, see `mil.training.train`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from features.core.errors import InputError
from mil.baselines import BASELINES
from mil.baselines.base import Baseline, PatientFeatures
from mil.cells.count import shares
from mil.cells.model import CellModel

if TYPE_CHECKING:
    from features.bagstore import BagStore


@BASELINES.register("cell_composition")
class CellComposition(Baseline):
    """Share of each counted cell type (typed by `train.cell_model`) -> the kind's regularised linear model."""

    name = "cell_composition"
    describes = "the cell-type composition"
    nonfinite = "no counted cell (every cell typed as a class that is left out of percentages)"

    def __init__(self, cell_model: CellModel | None = None):
        if cell_model is None:  # the config refuses this earlier; a direct caller gets the same words
            raise ValueError(
                "cell_composition needs a cell model: set train.cell_model (--cell-model CELLMODEL)"
            )
        self.cell_model = cell_model

    def inputs(self) -> dict:
        model = self.cell_model
        return {"cell_model": {"path": str(model.path), "classifier": model.kind, "vocabulary": model.vocabulary.name,
                               "learnt_from_patients": len(model.trained_on.get("patients") or ())}}  # fmt: skip

    def features(self, bags: Iterable[np.ndarray], dim: int) -> PatientFeatures:
        model = self.cell_model
        counted = model.counted()
        counts = [model.type_counts(np.asarray(bag, np.float32)) for bag in bags]
        table = np.stack(counts) if counts else np.zeros((0, len(model.classes)), np.int64)
        names = [f"share[{c}]" for c, keep in zip(model.classes, counted, strict=True) if keep]
        return PatientFeatures(shares(table, counted)[:, counted], names)


def load_cell_model(path: str | Path, store: BagStore) -> CellModel:
    """The run's cell model, refused in one line when missing, unreadable or of another encoder than `store`."""
    try:
        model = CellModel.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"{path}: cell model unreadable ({why}); pass a folder written by `mil cells train`"
        ) from None
    model.check_store(
        store,
        use="pass a cell model trained on this store's encoder (`mil cells train --bags` a store of it)",
    )
    return model


def patients_learnt(
    model: CellModel,
    tested: Iterable[str],
    slides: dict[str, list[str]] | None = None,
    store: Path | None = None,
) -> list[str]:
    """The run's test patients among those the cell model learnt cell types from, as its provenance records
    them: by patient id, or, for a model trained on this very store (`store`), by slide (`slides`: patient ->
    its slide ids), since the store's patient ids need not be the labels CSV's (a store extracted without
    patient ids names each patient by its slide). Empty when the model records neither."""
    tested = set(tested)
    learnt = set(model.trained_on.get("patients") or ()) & tested
    same_store = store is not None and model.trained_on.get("bags") == str(Path(store).resolve())
    if same_store and slides:
        trained = set(model.trained_on.get("slides") or ())
        learnt |= {p for p in tested if trained & set(slides.get(p, ()))}
    return sorted(learnt)
