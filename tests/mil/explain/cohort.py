"""One tiny synthetic cohort with trained runs, shared by the explanation, heatmap and report tests.

Built once per test session (memoised here, because a session fixture imported into several modules would
otherwise be built once per module): a `mil synth` cohort of 12 patients (4 APL, 4 AML, 4 healthy) in both
layouts, and two bag stores whose features are the truth's cell type one-hot (x 3) plus noise, so a tiny head
learns in seconds where the diagnostic cells are and the tests do not depend on an encoder. The stores point at
the real synthetic sources (cell images, pyramidal TIFFs), so galleries and overlays re-read real pixels.

Runs: `abmil` on the cells store (one attention row), `clam_mb` on the slides store (one row per class) and
`mean_pool` on the cells store (no attention: gradient x input).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity
from tests.train_helpers import SINGLE_MODEL

TASK = "apl_aml_healthy"


@dataclass
class TinyCohort:
    synth: Path
    labels: Path
    cells: Path  # bag store of the cell folders
    slides: Path  # bag store of the slides
    abmil: Path  # run on `cells`
    clam_mb: Path  # run on `slides`
    mean_pool: Path  # run on `cells`
    encoder: EncoderIdentity


_CACHE: dict[str, TinyCohort] = {}


def _types() -> list[str]:
    from features.synth import CELL_TYPES

    return sorted(CELL_TYPES)


def _features(types: pd.Series, rng: np.random.Generator) -> np.ndarray:
    names = _types()
    onehot = (types.to_numpy()[:, None] == np.array(names)[None, :]).astype(np.float32)
    return np.concatenate([3 * onehot, rng.normal(size=(len(types), 4)).astype(np.float32)], axis=1)


def _write_stores(synth: Path, root: Path, encoder: EncoderIdentity) -> tuple[Path, Path]:
    from features.smear.qc import REGIONS

    rng = np.random.default_rng(0)
    cells, slides = BagStore(root / "cells.bags", "a", encoder), BagStore(root / "slides.bags", "a", encoder)
    labels = pd.read_csv(synth / "labels.csv", dtype=str)
    for pid in sorted(labels["patient_id"].unique()):
        truth = pd.read_csv(synth / "truth" / "cells" / f"{pid}.csv")
        meta = BagMeta(pid, pid, len(truth), encoder, str(synth / "cells" / pid), "cells", crop_px=96)
        cells.write(Bag(_features(truth["cell_type"], rng), paths=truth["file"].to_numpy(object)), meta)
        sid = f"{pid}_s1"
        truth = pd.read_csv(synth / "truth" / "slides" / f"{sid}.csv")
        truth = truth[truth["nucleated"] == 1].reset_index(drop=True)
        obs = {
            # the generator calls the thin readable area "monolayer"; the region map calls it "trail"
            "region": np.array(
                [REGIONS.index({"monolayer": "trail"}.get(r, r)) for r in truth["region"]], np.uint8
            ),
            "area_um2": (np.pi * (truth["diameter_um"] / 2) ** 2).to_numpy(np.float32),
        }
        coords = truth[["x", "y"]].to_numpy(np.int64)
        meta = BagMeta(sid, sid, len(truth), encoder, str(synth / "slides" / f"{sid}.tiff"), "slide", mpp=0.25,
                       crop_um=24.0, crop_px=96)  # fmt: skip
        slides.write(Bag(_features(truth["cell_type"], rng), coords=coords, obs=obs), meta)
    return cells.path, slides.path


def build(root: Path) -> TinyCohort:
    from features.synth import generate_cohort, make_config
    from mil.config import EvaluateConfig, TrainConfig
    from mil.training.train import train_cv

    config = make_config(
        patients=12, layout="both", cells_per_patient=24, slide_px=768, seed=3, sites=1,
        diagnosis_mix={"healthy": 1, "AML": 1, "APL": 1},
    )  # fmt: skip
    synth = root / "synth"
    generate_cohort(synth, config, workers=1)
    encoder = EncoderIdentity("truth-onehot", "none", len(_types()) + 4, "cells")
    cells, slides = _write_stores(synth, root, encoder)
    labels = synth / "labels.csv"
    runs = {}
    for name, head, store in (
        ("abmil", "abmil", cells),
        ("clam_mb", "clam_mb", slides),
        ("mean_pool", "mean_pool", cells),
    ):
        cfg = TrainConfig(
            target=TASK, head=head, folds=2, epochs=30, lr=5e-3, batch_size=4, allow_missing=True,
            device="cpu", val_fraction=0.25, **SINGLE_MODEL,
        )  # fmt: skip
        train_cv(store, labels, cfg, root / f"run_{name}", evaluate=EvaluateConfig(n_bootstrap=20))
        runs[name] = root / f"run_{name}"
    return TinyCohort(
        synth, labels, cells, slides, runs["abmil"], runs["clam_mb"], runs["mean_pool"], encoder
    )


def get_tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCohort:
    """The session's tiny cohort, built on first use. Test modules wrap it in their own `tiny` fixture."""
    if "tiny" not in _CACHE:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _CACHE["tiny"] = build(tmp_path_factory.mktemp("explain_cohort"))
        finally:
            torch.set_num_threads(before)
    return _CACHE["tiny"]


def copy_store(store: Path, dest: Path) -> Path:
    """A private copy of a store, for tests that break its sources."""
    shutil.copytree(store, dest)
    return dest


def point_source(store: Path, slide_id: str, source: Path) -> None:
    """Rewrite one bag's provenance so it names `source` as its slide file (e.g. a file that is not there)."""
    from dataclasses import replace

    bags = BagStore(store, "a")
    meta = replace(bags.meta(slide_id), source_path=str(source), created_at="")
    bags.write(bags.read(slide_id), meta, overwrite=True)
