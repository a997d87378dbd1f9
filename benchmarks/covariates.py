"""Clinical covariates: covariates only vs image only vs fused, on synthetic cohorts, 10 seeds, mean ± SD.

    python benchmarks/covariates.py [--seeds 0 1 ... 9] [--patients 120] [--epochs 40] [--json PATH]

Each cohort is a bag store of random 16-d cells plus a labels CSV with covariates, written under .bench/
(nothing of it is committed). Binary target y (half the patients). Two independent channels, both driven by y
only (so, given y, they carry independent evidence):

    image       a share `witness` of the cells of y = 1 patients is shifted by 1.5 along feature 0
    covariates  `count` ~ N(strength * y, 1) (log-count-like, 5 % missing), `age` ~ N(60, 12) noise,
                `sex` M/F at random (a categorical column that carries nothing)

Cohorts: `both` (image and count each informative, neither perfect), `image` (the covariates carry nothing),
`covariates` (the cells carry nothing), `synth_clinical` (APL vs AML with the blood counts, age and sex that
`mil synth` draws for them, `features.synth.clinical`, and a weak image signal), `survival` (a Cox task:
hazard exp(0.9 y + 0.7 z_age) with y shown by the cells as above and age = 60 + 12 z_age; 75 % events;
the metric is the c-index). Every model runs inside one
`mil train` on the same folds: covariates only = ridge logistic (C by inner CV), image only = abmil without
covariates, fused = abmil + `FusedHead`; pooled out-of-fold AUC. Acceptance (#15): fused >= max(covariates
only, image only) - 0.01 on every cohort (mean over seeds), better where both carry signal.

Ten seeds by default, not three: where one channel is noise the margin sits near 0 and a 3-seed mean of it has
a standard error of about 0.01, the size of the threshold (RESULTS.md, "Clinical covariates": 3-seed blocks of
the same design swung from -0.019 to +0.018). The SE of the per-seed margin is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR  # noqa: E402

from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity  # noqa: E402

ENCODER = EncoderIdentity(name="bench-covariates", weights_sha256="0" * 64, dim=16, unit="cells")
COHORTS = {  # name: (image witness share, covariate strength)
    "both": (0.12, 1.0),
    "image": (0.12, 0.0),
    "covariates": (0.0, 1.2),
    "synth_clinical": (0.08, None),
    "survival": (0.12, 0.7),
}
COVARIATES = {
    "synth_clinical": ["wbc", "hemoglobin", "platelets", "age", "sex"],
}


def write_cohort(root: Path, name: str, patients: int, seed: int) -> tuple[Path, Path, list[str]]:
    witness, strength = COHORTS[name]
    rng = np.random.default_rng([seed, 15])
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    store = BagStore(root / "bags", "a", ENCODER)
    y = np.arange(patients) % 2
    rows = []
    if strength is None:  # APL (1) vs AML (0) with the covariates `mil synth` draws for them
        from features.synth.clinical import CLINICAL_COLUMNS, clinical_rows
        from features.synth.cohort import Patient

        fake = [
            Patient(f"P{i:03d}", "APL" if y[i] else "AML", "", "s", 0.0, 0.0, 0.5, {}, float(rng.exponential(30) + 1), 1)
            for i in range(patients)
        ]  # fmt: skip
        clinical = pd.DataFrame(clinical_rows(fake, seed), columns=CLINICAL_COLUMNS)
    for i in range(patients):
        pid = f"P{i:03d}"
        n = int(rng.integers(30, 60))
        x = rng.normal(size=(n, ENCODER.dim)).astype(np.float32)
        if y[i]:
            x[rng.random(n) < witness, 0] += 1.5
        meta = BagMeta(
            pid, pid, n, ENCODER, f"/slides/{pid}.svs", "slide", mpp=0.25, crop_um=24.0, crop_px=96
        )
        store.write(Bag(x, coords=rng.integers(0, 10_000, size=(n, 2))), meta)
        row = {"patient_id": pid, "slide_id": pid, "label": str(y[i])}
        if name == "survival":
            z_age = rng.normal()
            row["age"] = int(60 + 12 * z_age)
            row["sex"] = "M" if rng.random() < 0.5 else "F"
            row["os_months"] = round(
                float(rng.exponential(24 * np.exp(-(0.9 * y[i] + strength * z_age)))) + 0.1, 1
            )
            row["os_event"] = int(rng.random() < 0.75)
        elif strength is not None:
            count = strength * y[i] + rng.normal()
            row["count"] = "" if rng.random() < 0.05 else round(float(count), 3)
            row["age"] = int(rng.normal(60, 12))
            row["sex"] = "M" if rng.random() < 0.5 else "F"
        rows.append(row)
    labels = pd.DataFrame(rows)
    if strength is None:
        labels = labels.merge(clinical, on="patient_id")
    labels.to_csv(root / "labels.csv", index=False)
    default = ["age", "sex"] if name == "survival" else ["count", "age", "sex"]
    return root / "bags", root / "labels.csv", COVARIATES.get(name, default)


def run_one(
    name: str, seed: int, patients: int, epochs: int, sets: dict | None = None, tag: str = ""
) -> dict:
    import torch

    from mil.config import EvaluateConfig, TrainConfig
    from mil.training.train import train_cv

    torch.set_num_threads(1)
    root = BENCH_DIR / "covariates" / f"{name}_{seed}{tag}"
    bags, labels, covariates = write_cohort(root, name, patients, seed)
    task = dict(time_col="os_months", event_col="os_event") if name == "survival" else dict(target="label")
    config = TrainConfig(
        **task, head="abmil", folds=5, epochs=epochs, patience=10, batch_size=16, device="cpu",
        seed=seed, covariates=covariates, baselines=[], **(sets or {}),
    )  # fmt: skip
    started = time.perf_counter()
    summary = train_cv(
        bags, labels, config, root / "run", evaluate=EvaluateConfig(n_bootstrap=200, seed=seed)
    )
    models = {k: v["estimate"] for k, v in summary.covariates["models"].items()}
    diff = summary.covariates["differences"]
    return {
        "cohort": name,
        "seed": seed,
        **models,
        "fused_minus_best_ci": [
            diff[f"fused - {best}"]["difference"][k]
            for best in [max(("covariates_only", "image_only"), key=models.get)]
            for k in ("low", "high")
        ],  # fmt: skip
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--patients", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--cohorts", nargs="+", default=list(COHORTS))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig field for every run (e.g. selection=validation: the single model)",
    )
    parser.add_argument("--tag", default="", help="suffix of the cohort folders (runs side by side)")
    args = parser.parse_args()
    sets = dict(item.split("=", 1) for item in args.set)
    results = []
    for name in args.cohorts:
        for seed in args.seeds:
            r = run_one(name, seed, args.patients, args.epochs, sets, args.tag)
            results.append(r)
            print(
                f"{name:15s} seed {seed}: covariates only {r['covariates_only']:.3f}  image only "
                f"{r['image_only']:.3f}  fused {r['fused']:.3f}  (fused - best, paired 95% CI "
                f"{r['fused_minus_best_ci'][0]:+.3f} to {r['fused_minus_best_ci'][1]:+.3f}; {r['seconds']:.0f} s)",
                flush=True,
            )
    table = pd.DataFrame(results)
    print(
        "\ncohort           covariates only   image only        fused             fused - max(other two)  ok"
    )
    for name, part in table.groupby("cohort", sort=False):
        mean, sd = (
            part[["covariates_only", "image_only", "fused"]].mean(),
            part[["covariates_only", "image_only", "fused"]].std(ddof=1),
        )
        best = max(("covariates_only", "image_only"), key=lambda k: mean[k])
        margin = mean["fused"] - mean[best]
        paired = part["fused"] - part[best]
        se = paired.std(ddof=1) / np.sqrt(len(paired)) if len(paired) > 1 else float("nan")
        cells = "  ".join(
            f"{mean[k]:.3f} ± {sd[k]:.3f}   " for k in ("covariates_only", "image_only", "fused")
        )
        print(f"{name:15s}  {cells} {margin:+.3f} (SE {se:.3f})      {'yes' if margin >= -0.01 else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
