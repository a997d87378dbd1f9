"""How informative and how fast is `cytomorph`? Measured on synthetic cells rendered at three sites.

Prints, from one run:
* segmentation IoU against the renderer's own nucleus / cell masks, per cell type;
* 5-fold logistic regression (sklearn, standardised features) on the pooled sites: balanced accuracy over all
  cell types and one-vs-rest AUCs for the diagnostic questions (APL promyelocytes vs every other cell,
  dysplastic vs normal neutrophils, inv(16) vs normal eosinophils, blasts vs lymphocytes, NPM1 cup vs myeloblast);
* the same questions trained on site 1 and tested on site 3 (another stain and scanner);
* a colour-statistics baseline (per-channel mean/std/percentiles of the crop) through the same classifier, so
  the numbers can be read against what colour alone gives;
* crops/s on one core (BLAS pinned to one thread).

Run: /work/venv/bin/python benchmarks/cytomorph.py [--per-type 60] [--seed 0]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import balanced_accuracy_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_predict  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from features.encoders import create_encoder  # noqa: E402
from features.encoders.cytomorph import (  # noqa: E402
    half_resolution,
    optical_density,
    segment,
    segment_in_reference_stain,
)

# question -> (positive types, negative types or None for "every other cell")
QUESTIONS = {
    "APL promyelocyte vs rest": (("abnormal_promyelocyte", "faggot_cell"), None),
    "APL vs normal promyelocyte": (("abnormal_promyelocyte", "faggot_cell"), ("promyelocyte",)),
    "dysplastic vs normal neutrophil": (
        ("dysplastic_neutrophil",),
        ("segmented_neutrophil", "band_neutrophil"),
    ),
    "abnormal vs normal eosinophil": (("abnormal_eosinophil",), ("eosinophil",)),
    "blast vs lymphocyte": (("myeloblast", "npm1_blast"), ("lymphocyte",)),
    "NPM1 cup blast vs myeloblast": (("npm1_blast",), ("myeloblast",)),
}
SITES = (0, 2)  # train / test sites for the robustness check (site1 = reference stain, site3 = shifted)


def render(per_type: int, seed: int, n_sites: int = 3):
    from features.synth import CELL_TYPES, render_cells, site_stains

    rng = np.random.default_rng(seed)
    stains = site_stains(n_sites, seed)
    types = [t for t in CELL_TYPES for _ in range(per_type)]
    batches = [render_cells(types, rng, stain=stains[s]) for s in range(n_sites)]
    return batches, np.array(types * n_sites), np.repeat(np.arange(n_sites), len(types))


def colour_baseline(images: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1, 3).astype(np.float32)
    q = np.percentile(x, [5, 25, 50, 75, 95], axis=1).transpose(1, 0, 2).reshape(len(x), -1)
    return np.concatenate([x.mean(1), x.std(1), q], axis=1)


def classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))


def question_scores(feats, labels, train, test, cv: bool) -> dict[str, float]:
    out = {}
    for q, (pos, neg) in QUESTIONS.items():
        keep = np.ones(len(labels), bool) if neg is None else np.isin(labels, pos + neg)
        y = np.isin(labels, pos).astype(int)
        if cv:
            idx = np.flatnonzero(keep)
            prob = cross_val_predict(
                classifier(),
                feats[idx],
                y[idx],
                cv=StratifiedKFold(5, shuffle=True, random_state=0),
                method="predict_proba",
            )[:, 1]
            out[q] = roc_auc_score(y[idx], prob)
        else:
            tr, te = np.flatnonzero(keep & train), np.flatnonzero(keep & test)
            prob = classifier().fit(feats[tr], y[tr]).predict_proba(feats[te])[:, 1]
            out[q] = roc_auc_score(y[te], prob)
    return out


def segmentation_iou(batches, segmenter=segment_in_reference_stain) -> dict[str, tuple[float, float]]:
    """Per type, mean nucleus and cell IoU against the renderer's masks (the encoder's segmentation)."""
    from features.synth import CELL_TYPES

    nuc, cell, names = _ious(batches, segmenter)
    return {t: (nuc[names == t].mean(), cell[names == t].mean()) for t in CELL_TYPES}


def _ious(batches, segmenter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nuc_iou, cell_iou, names = [], [], []
    for batch in batches:
        seg = segmenter(optical_density(half_resolution(batch.images)[0]))
        for pred, truth, acc in (
            (seg["nuc"], batch.nucleus_mask, nuc_iou),
            (seg["cell"], batch.cell_mask, cell_iou),
        ):
            t = truth[:, ::2, ::2]
            acc.append((pred & t).sum((1, 2)) / np.maximum((pred | t).sum((1, 2)), 1))
        names.extend(batch.types)
    return np.concatenate(nuc_iou), np.concatenate(cell_iou), np.array(names)


def cell_iou_per_site(batches) -> list[tuple[str, float, float, float, float]]:
    """Per site: mean cell IoU and share of cells below 0.8, for one segmentation pass on the site's own
    densities and for the encoder's second pass on red-cell-normalised ones (`segment_in_reference_stain`)."""
    rows = []
    for k, batch in enumerate(batches):
        one = _ious([batch], segment)[1]
        two = _ious([batch], segment_in_reference_stain)[1]
        rows.append((f"site{k + 1}", one.mean(), (one < 0.8).mean(), two.mean(), (two < 0.8).mean()))
    return rows


def throughput(encoder, images: np.ndarray, repeats: int = 5) -> float:
    encoder.encode(images[:32])
    rates = []
    for _ in range(repeats):
        start = time.process_time()
        encoder.encode(images)
        rates.append(len(images) / (time.process_time() - start))
    return float(np.median(rates))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-type", type=int, default=60, help="cells per type and site")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--speed-only", action="store_true", help="only crops/s (on --crops, or freshly rendered)"
    )
    ap.add_argument("--crops", help=".npz with an `images` array (N x 96 x 96 x 3 uint8) to time instead")
    ap.add_argument(
        "--chunk", type=int, default=0, help="crops per vectorised pass (0: the encoder's default)"
    )
    args = ap.parse_args()
    if args.chunk:
        import features.encoders.cytomorph as cytomorph_module

        cytomorph_module.CHUNK = args.chunk

    enc = create_encoder("cytomorph")
    if args.speed_only:
        images = (
            np.load(args.crops)["images"] if args.crops else render(max(1, 512 // 60), args.seed)[0][0].images
        )
        rate = throughput(enc, images[:512])
        print(f"speed: {rate:.0f} crops/s on one core (CPU time, batch {min(512, len(images))}, median of 5, "
              f"chunk {args.chunk or 'default'})")  # fmt: skip
        return
    from features.synth import CELL_TYPES

    batches, labels, site = render(args.per_type, args.seed)
    images = np.concatenate([b.images for b in batches])
    feats = enc.encode(images)
    base = colour_baseline(images)
    print(
        f"cytomorph: dim {enc.dim}, {len(images)} crops, {len(CELL_TYPES)} types x 3 sites, seed {args.seed}"
    )

    print("\nsegmentation IoU vs renderer masks (half resolution): type  nucleus  cell")
    for t, (n_iou, c_iou) in segmentation_iou(batches).items():
        print(f"  {t:28s} {n_iou:5.2f} {c_iou:5.2f}")
    print("\ncell IoU per site: one pass (mean, share < 0.8) | on red-cell-normalised densities (encoder)")
    for name, one, one_low, two, two_low in cell_iou_per_site(batches):
        print(f"  {name:8s} {one:5.3f} {one_low:5.1%} | {two:5.3f} {two_low:5.1%}")

    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    for name, x in (("cytomorph", feats), ("colour baseline", base)):
        pred = cross_val_predict(classifier(), x, labels, cv=cv)
        print(f"\n{name}: {len(CELL_TYPES)}-type balanced accuracy (5-fold, pooled sites) "
              f"{balanced_accuracy_score(labels, pred):.3f}")  # fmt: skip
        pooled = question_scores(x, labels, None, None, cv=True)
        cross = question_scores(x, labels, site == SITES[0], site == SITES[1], cv=False)
        print(f"  {'AUC':34s} {'5-fold pooled':>14s} {'site1 -> site3':>15s}")
        for q in QUESTIONS:
            print(f"  {q:34s} {pooled[q]:14.3f} {cross[q]:15.3f}")
        train, test = site == SITES[0], site == SITES[1]
        acc = balanced_accuracy_score(
            labels[test], classifier().fit(x[train], labels[train]).predict(x[test])
        )
        print(f"  {'all types, balanced accuracy':34s} {'':14s} {acc:15.3f}")

    rate = throughput(enc, images[:512])
    print(f"\nspeed: {rate:.0f} crops/s on one core (CPU time, batch {min(512, len(images))}, median of 5)")


if __name__ == "__main__":
    main()
