"""A small cell model for the `cell_composition` tests, on the embedding space of `tests.train_helpers`.

`make_cohort` shifts 30 % of each patient's cells by 2.5 along its diagnosis's axis (APL 0, AML 1, healthy 2,
...). The model here types a cell shifted on axis 1 as `blast`, on axis 0 as `artefact` (left out of every
percentage, as in munich21) and anything else as `lymphocyte`, so an AML patient's blast share is ~30 % and an
APL patient's artefacts change no share: what the baseline sees is known in advance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.bagstore import EncoderIdentity
from mil.cells.classifiers import create_classifier
from mil.cells.model import CellModel
from mil.cells.vocabulary import load_vocabulary
from tests.train_helpers import ENCODER

CLASSES = ["artefact", "blast", "lymphocyte"]  # codes 0, 1, 2


def make_cell_model(
    folder: Path, encoder: EncoderIdentity = ENCODER, patients: list[str] | None = None
) -> Path:
    """CELLMODEL written to `folder`; `patients`: what its provenance says it learnt from."""
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(3 * n, encoder.dim)).astype(np.float32)
    y = np.repeat(np.arange(3), n)
    x[y == 0, 0] += 2.5
    x[y == 1, 1] += 2.5
    classifier = create_classifier("linear").fit(x, y, len(CLASSES))
    model = CellModel(classifier=classifier, kind="linear", params={}, classes=CLASSES, temperature=1.0,
                      vocabulary=load_vocabulary("munich21"), encoder=encoder,
                      trained_on={"bags": "/elsewhere/cells.zarr", "slides": [], "patients": patients or []})  # fmt: skip
    model.save(folder, {})
    return folder
