"""Small labelled cell data for the `mil cells` tests, built in seconds and without an encoder.

`class_folders` writes a CellaVision-style export whose class folders carry what real exports carry: spaces,
commas ("Lymphocyte, variant"), unicode ("Érythroblaste"), extra nesting (`<patient>/scan 1/<class>/`), a
class too small to train on, and images directly in the patient folder (no class: unlabelled). `store_for`
writes a bag store of those images whose features are their class's centre plus noise, so a probe separates
the classes and every test is about labels, counts and files, not about an encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity
from features.sources.cells import list_images, patient_folders

ENCODER = EncoderIdentity("test-cells", "none", 12, "cells")
OTHER_ENCODER = EncoderIdentity("test-other", "none", 12, "cells")

# class folder (as an analyser exports it) -> images per patient
FOLDERS = {
    "Band neutrophils": 6,
    "Lymphocyte, variant": 6,
    "Érythroblaste": 6,
    "Blasts": 6,
    "Smudge cells": 4,
    "Hairy cells": 1,  # 3 patients x 1 = 3 labelled cells: under min_cells_per_class (5)
}
UNLABELLED_PER_PATIENT = 2  # images straight in the patient folder


def class_folders(root: Path, patients: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for p in range(patients):
        patient = root / f"Patient {p + 1}, Ünit A"
        for k, (name, n) in enumerate(FOLDERS.items()):
            # half the patients nest one level deeper (scan folder), as some exports do
            folder = patient / "scan 1" / name if p % 2 else patient / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _png(folder / f"cell {k}-{i}.png", rng)
        for i in range(UNLABELLED_PER_PATIENT):
            _png(patient / f"loose {i}.png", rng)
    return root


def _png(path: Path, rng: np.random.Generator) -> None:
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


def centres(names: list[str], dim: int = ENCODER.dim) -> dict[str, np.ndarray]:
    return {name: 4.0 * np.eye(dim, dtype=np.float32)[i % dim] for i, name in enumerate(sorted(names))}


def store_for(root: Path, store_path: Path, encoder: EncoderIdentity = ENCODER, seed: int = 0) -> Path:
    """A bag per patient folder of `root`, features = centre of the image's class folder + noise."""
    rng = np.random.default_rng(seed)
    centre = centres([*FOLDERS, ""])
    store = BagStore(store_path, "a", encoder)
    for folder in patient_folders(root):
        files = list_images(folder)
        cls = [Path(f).parent.name if "/" in f else "" for f in files]
        x = np.stack([centre[c] for c in cls]) + rng.normal(scale=0.4, size=(len(files), encoder.dim))
        meta = BagMeta(folder.name, folder.name, len(files), encoder, str(folder), "cells", crop_px=8)
        store.write(Bag(x.astype(np.float32), paths=np.array(files, dtype=object)), meta)
    return store_path
