"""A small bag store with informative random features and a labels.csv shaped like the synthetic cohort's.

Signal, so that tests can check learning and not just plumbing: every patient has a diagnosis, and a share of
its instances is shifted along that diagnosis's own feature axis; NPM1 / CBFB::MYH11 carriers get a shift on
their own axes; survival risk scales a shift on one more axis and shortens follow-up. Everything is drawn from
one seeded generator, so a store is identical across calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity

# The single model per fold (`selection: validation`, no prior): tests that do not test the training recipe
# pin it, so their runs cost one model per fold instead of the default's 5 cross-fitted members
# (tests/mil/training/test_recipe.py and test_predict.py test the default recipe itself).
SINGLE_MODEL = {"selection": "validation", "prior": "none"}
SINGLE_MODEL_FLAGS = ["--set", "train.selection=validation", "--set", "train.prior=none"]
DIAGNOSES = ["APL", "AML", "healthy", "MDS", "AA"]
ENCODER = EncoderIdentity(name="test-encoder", weights_sha256="0" * 64, dim=16, unit="cells")


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run fastest on one thread (no OpenMP contention). Autouse and
    module-scoped: a test module that imports it runs all its fixtures and tests on one thread, so a module
    fixture's run and a test's rerun use the same thread count (needed for bit-identical repeats)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_cohort(
    root: Path,
    n_patients: int = 60,
    n_instances: tuple[int, int] = (20, 60),
    seed: int = 0,
    two_slides_every: int = 7,
    encoder: EncoderIdentity = ENCODER,
    sites: tuple[str, ...] = ("site_a", "site_b", "site_c"),
) -> tuple[Path, Path]:
    """Write `root/bags` (a BagStore) and `root/labels.csv`; every `two_slides_every`-th patient has 2 slides."""
    rng = np.random.default_rng(seed)
    store_path, labels_path = root / "bags", root / "labels.csv"
    store = BagStore(store_path, "a", encoder)
    rows = []
    for i in range(n_patients):
        pid = f"P{i:03d}"
        diagnosis = DIAGNOSES[i % len(DIAGNOSES)]
        # AML patients cycle through the genetic groups, so every small cohort has carriers and non-carriers
        genetic = ["NPM1", "CBFB::MYH11", "other"][(i // len(DIAGNOSES)) % 3] if diagnosis == "AML" else ""
        npm1 = int(genetic == "NPM1") if diagnosis == "AML" else None
        cbfb = int(genetic == "CBFB::MYH11") if diagnosis == "AML" else None
        risk = rng.normal()
        time = float(np.round(rng.exponential(24 * np.exp(-risk)) + 0.5, 1))
        event = int(rng.random() < 0.75)
        n_slides = 2 if i % two_slides_every == 3 else 1
        for s in range(n_slides):
            sid = f"{pid}-S{s}"
            n = int(rng.integers(*n_instances))
            x = rng.normal(size=(n, encoder.dim)).astype(np.float32)
            hit = rng.random(n) < 0.3
            x[hit, DIAGNOSES.index(diagnosis)] += 2.5
            if npm1:
                x[hit, 5] += 2.5
            if cbfb:
                x[hit, 6] += 2.5
            x[hit, 7] += 1.5 * risk
            coords = rng.integers(0, 10_000, size=(n, 2))
            meta = BagMeta(
                sid, pid, n, encoder, f"/slides/{sid}.svs", "slide", mpp=0.25, crop_um=24.0, crop_px=96
            )
            store.write(Bag(x, coords=coords), meta)
            rows.append(
                {
                    "patient_id": pid,
                    "slide_id": sid,
                    "site": sites[i % len(sites)],
                    "diagnosis": diagnosis,
                    "genetic": genetic,
                    "apl_aml_healthy": diagnosis if diagnosis in ("APL", "AML", "healthy") else "",
                    "mds_aa_aml": diagnosis if diagnosis in ("MDS", "AA", "AML") else "",
                    "npm1": "" if npm1 is None else npm1,
                    "cbfb_myh11": "" if cbfb is None else cbfb,
                    "os_months": time,
                    "os_event": event,
                }
            )
    pd.DataFrame(rows).to_csv(labels_path, index=False)
    return store_path, labels_path


def assert_predict_reproduces(out, preds, cohort, tmp_path):
    """`mil predict` with each fold's saved members alone gives the run's out-of-fold probabilities."""
    from mil.evaluate.predictions import read_predictions
    from mil.training.predict import predict

    for fold in range(3):
        sub = tmp_path / f"fold{fold}"
        (sub / "folds").mkdir(parents=True)
        (sub / "config.yaml").write_bytes((out / "config.yaml").read_bytes())
        (sub / "folds" / str(fold)).symlink_to(out / "folds" / str(fold))
        again, _ = read_predictions(predict(sub, cohort[0], sub / "p.csv", labels=cohort[1], device="cpu"))
        mine = preds[preds["fold"] == fold].set_index("patient_id").filter(like="prob_")
        again = again.set_index("patient_id").loc[mine.index].filter(like="prob_")
        np.testing.assert_allclose(again.to_numpy(), mine.to_numpy(), atol=1e-5)
