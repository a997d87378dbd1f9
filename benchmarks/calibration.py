"""Why temperature calibration raised the ECE (#11): every way to apply it, on the very same fitted members.

    python benchmarks/calibration.py --cohorts synth:w0.3:n60:c100,pbc:left_shift:n120 --seeds 3 --json ...

Per cohort, seed and recipe (`crossfit`: 5 members, held-out logits of every training patient; `validation`: one
model, its validation patients), each fold is fitted once by `mil.training.recipe.train_fold` with calibration
on; the calibration's own input (the held-out logits it was fitted on) is captured, and the fold's test patients
are scored by every variant from the same members' logits:

    raw_prob    mean of the members' probabilities, uncalibrated (what `calibration: none` reports)
    raw_logit   probabilities of the members' mean logit, uncalibrated
    first       the calibration as first shipped: T and bias by maximum likelihood (a 1e-3 L2 on the bias
                only), applied to each member, the calibrated probabilities averaged
    first_ens   the same fit applied to the members' mean logit (isolates the averaging)
    map_member  the MAP fit (prior on log T and the bias, `mil.training.calibrate`) applied to each member,
                probabilities averaged (isolates the prior)
    shipped     what train_fold reports now: the MAP fit on the members' mean logit (`Fitted.test_out`)

Printed per variant: ECE (10 bins, `mil.evaluate.calibration`), negative log-likelihood and Brier score of the
pooled out-of-fold probabilities, mean ± SD over seeds, and the fitted temperatures. NLL and Brier are less
noisy than a 10-bin ECE on 60 patients; all three are shown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bagset_from_list, mean_std, write_json  # noqa: E402
from recipe import _ece, fold_positions, load_cohort  # noqa: E402

import mil.training.recipe as recipe_module  # noqa: E402
from mil.cohort.splits import make_splits  # noqa: E402
from mil.config import TrainConfig  # noqa: E402
from mil.tasks import TaskSpec, create_task  # noqa: E402
from mil.training.calibrate import fit_calibration  # noqa: E402
from mil.training.fit import FitSetup, eval_batch_instances, infer  # noqa: E402

VARIANTS = ("raw_prob", "raw_logit", "first", "first_ens", "map_member", "shipped")
RECIPES = {
    "crossfit": {"selection": "crossfit", "prior": "pooled_stats", "calibration": "temperature"},
    "validation": {"selection": "validation", "prior": "none", "calibration": "temperature"},
}


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits, dim=1).numpy()


def run(spec: str, recipe: str, seeds: int, folds: int) -> dict:
    captured: list = []
    original = recipe_module.fit_calibration

    def capture(task, logits, y):
        captured.append((logits.detach().clone(), y.detach().clone()))
        return original(task, logits, y)

    recipe_module.fit_calibration = capture
    scores = {v: {"ece": [], "nll": [], "brier": []} for v in VARIANTS}
    temperatures = []
    try:
        for rep in range(seeds):
            cohort = load_cohort(spec, rep)
            task = create_task(TaskSpec("classification", "label", cohort.classes))
            ids = [f"B{i:04d}" for i in range(len(cohort.y))]
            bags = bagset_from_list(cohort.bags, cohort.y, ids)
            config = TrainConfig(**{**RECIPES[recipe], "device": "cpu", "seed": rep})
            inner = config.inner_folds if config.selection == "crossfit" else None
            split = make_splits(ids, cohort.y, folds, seed=rep, inner_folds=inner)
            out = {v: np.zeros((len(ids), len(cohort.classes))) for v in VARIANTS}
            for f in split.folds:
                parts = fold_positions(f, ids)
                captured.clear()
                res = recipe_module.train_fold(task, bags, parts, config,
                                               FitSetup(torch.device("cpu"), rep * 1000 + f.index, f.index))  # fmt: skip
                held, held_y = captured[-1]
                members = [getattr(m, "head", m) for m in res.chosen.models]  # behind CalibratedHead
                batch = eval_batch_instances(config, torch.device("cpu"))
                logits = torch.stack(
                    [infer(m, bags, parts.test, torch.device("cpu"), batch) for m in members]
                )
                first, cal = _first_fit(task, held, held_y), fit_calibration(task, held, held_y)
                temperatures.append((first.temperature, cal.temperature))
                mean_logit = logits.mean(0)
                te = parts.test
                out["raw_prob"][te] = _softmax(logits.flatten(0, 1)).reshape(*logits.shape).mean(0)
                out["raw_logit"][te] = _softmax(mean_logit)
                out["first"][te] = np.mean([_softmax(first.apply(m)) for m in logits], axis=0)
                out["first_ens"][te] = _softmax(first.apply(mean_logit))
                out["map_member"][te] = np.mean([_softmax(cal.apply(m)) for m in logits], axis=0)
                out["shipped"][te] = res.chosen.test_out
            for v in VARIANTS:
                p = np.clip(out[v], 1e-7, 1)
                onehot = np.eye(len(cohort.classes))[cohort.y]
                scores[v]["ece"].append(_ece(task, cohort, out[v]))
                scores[v]["nll"].append(float(-np.log(p[np.arange(len(p)), cohort.y]).mean()))
                scores[v]["brier"].append(float(((out[v] - onehot) ** 2).sum(1).mean()))
            line = "  ".join(f"{v} {scores[v]['ece'][-1]:.3f}" for v in VARIANTS)
            print(f"{spec} {recipe} seed {rep} ECE: {line}", flush=True)
    finally:
        recipe_module.fit_calibration = original
    return {"scores": scores, "temperatures": temperatures}


def _first_fit(task, logits: torch.Tensor, y: torch.Tensor):
    """The fit as first shipped: no prior on T, an L2 of 1e-3 per patient-averaged loss on the bias (the
    MAP code with a flat log-T prior and the bias SD that gives the same penalty)."""
    import mil.training.calibrate as calibrate

    saved = calibrate.LOG_T_SD, calibrate.BIAS_SD
    calibrate.LOG_T_SD, calibrate.BIAS_SD = 1e6, float(np.sqrt(500.0 / len(logits)))
    try:
        return calibrate.fit_calibration(task, logits, y)
    finally:
        calibrate.LOG_T_SD, calibrate.BIAS_SD = saved


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cohorts", required=True)
    parser.add_argument("--recipes", default="crossfit,validation")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    results: dict = {}
    for spec in args.cohorts.split(","):
        for recipe in args.recipes.split(","):
            results[f"{spec} {recipe}"] = run(spec, recipe, args.seeds, args.folds)
            write_json(args.json, {"benchmark": "calibration", "results": results})
    print(f"\n{'cohort recipe':40s} {'variant':10s} {'ECE':>14s} {'NLL':>14s} {'Brier':>14s}")
    for key, r in results.items():
        t = np.asarray(r["temperatures"])  # folds x (first, MAP)
        print(f"{key:40s} T first: median {np.median(t[:, 0]):.2f}, {t[:, 0].min():.2f}-{t[:, 0].max():.2f}; "
              f"MAP: median {np.median(t[:, 1]):.2f}, {t[:, 1].min():.2f}-{t[:, 1].max():.2f}")  # fmt: skip
        for v in VARIANTS:
            s = r["scores"][v]
            cells = "  ".join("{:.3f} ± {:.3f}".format(*mean_std(s[k])) for k in ("ece", "nll", "brier"))
            print(f"{'':40s} {v:10s} {cells}")


if __name__ == "__main__":
    main()
