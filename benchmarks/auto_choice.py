"""`--model auto`'s choice, replayed: how other choice rules would have done on the very same fitted candidates.

    python benchmarks/auto_choice.py dump --cohorts elephant,musk2,synth:w0.1:n60:c100 --seeds 5
    python benchmarks/auto_choice.py replay

`dump` runs `--model auto` exactly as benchmarks/recipe.py does (same cohorts, folds and seeds; `--method`
picks the recipe, default `auto_default` = `--model auto` with the default selection) and keeps, per outer
fold, every candidate's inner held-out logits (what the choice may look at) and its outer test outputs, one
file per cohort and seed under .bench/auto_choice/<method>/. `replay` applies each rule in `RULES` to those
dumps: a rule sees only a fold's inner figures and returns the fold's test outputs (one candidate's, or a
mixture), so every rule is scored on the same models and folds, without training anything again.

Printed per cohort: each candidate alone (pooled out-of-fold AUC, mean over seeds), the best of them in
hindsight (chosen after seeing the test folds: optimistic), and each rule as pooled AUC minus that best, the
difference taken per seed on the same folds, mean ± SE. The shipped rule must reproduce the dumped run's own
choice; `replay` stops if it does not.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR  # noqa: E402
from recipe import RECIPES, run_cohort  # noqa: E402

from mil.tasks import Task, TaskSpec, create_task  # noqa: E402
from mil.training.auto import AUTO_GRID, better  # noqa: E402
from mil.training.calibrate import fit_calibration  # noqa: E402

DUMPS = BENCH_DIR / "auto_choice"
NAMES = [c.name for c in AUTO_GRID]
DEFAULT = NAMES[0]  # abmil: the head `mil train` uses without --model


# -- dump ----------------------------------------------------------------------------------------------------
def dump(cohort: str, seed: int, method: str, base: dict | None = None, n_folds: int = 5) -> Path:
    """Run `method` on one cohort and seed as benchmarks/recipe.py does; keep every candidate of every fold."""
    if RECIPES.get(method, {}).get("head") != "auto":
        auto = ", ".join(m for m, r in RECIPES.items() if r.get("head") == "auto")
        raise SystemExit(
            f"--method {method}: not a recipe with head auto in benchmarks/recipe.py (one of: {auto})"
        )
    folds: list[dict] = []

    def keep(_method, _rep, parts, result, y) -> None:
        folds.append({
            "y": y.copy(), "test": parts.test.copy(), "chosen": result.chosen.candidate.name,
            "cands": {f.candidate.name: {"held_index": f.held_index.copy(), "held_logits": f.held_logits.numpy().copy(),
                                         "test_out": f.test_out.copy(), "inner_metric": f.inner_metric,
                                         "inner_loss": f.inner_loss} for f in result.candidates},
        })  # fmt: skip

    base = base or {"device": "cpu"}
    result = run_cohort(cohort, [method], 1, n_folds, base, only_seed=seed, on_fold=keep)
    path = DUMPS / method / f"{cohort.replace(':', '_')}_{seed}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pkl.partial")  # an interrupted write never replaces an earlier dump
    with open(partial, "wb") as f:
        pickle.dump({"result": result, "folds": folds}, f)
    partial.replace(path)
    return path


# -- rules: (fold's candidates, inner labels, task) -> the fold's test outputs ---------------------------------
Rule = Callable[[dict, np.ndarray, Task], np.ndarray]


def _probs(task: Task, logits) -> np.ndarray:
    return task.outputs(torch.as_tensor(logits, dtype=torch.float32)).numpy()


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y.astype(int)], 1e-12, 1))))


def shipped_choice(c: dict) -> str:
    best, chosen = None, DEFAULT
    for n in NAMES:  # mil.training.recipe.train_fold: best inner metric, ties to the lower inner loss
        if better(c[n]["inner_metric"], c[n]["inner_loss"], best):
            best, chosen = (c[n]["inner_metric"], c[n]["inner_loss"]), n
    return chosen


def shipped(c: dict, y: np.ndarray, task: Task) -> np.ndarray:
    return c[shipped_choice(c)]["test_out"]


def keep_default_unless(margin: float) -> Rule:
    def rule(c, y, task):
        best = max(NAMES, key=lambda n: c[n]["inner_metric"])
        pick = best if c[best]["inner_metric"] > c[DEFAULT]["inner_metric"] + margin else DEFAULT
        return c[pick]["test_out"]

    return rule


def _resamples(y: np.ndarray, k: int, n: int = 200) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    draws = (rng.choice(len(y), len(y)) for _ in range(n))
    return [b for b in draws if len(np.unique(y[b])) == k]


def keep_default_unless_se(z: float) -> Rule:
    """Another candidate only where its paired inner gain over the default exceeds z bootstrap SEs."""

    def rule(c, y, task):
        k = int(y.max()) + 1
        p = {n: _probs(task, c[n]["held_logits"]) for n in NAMES}
        boots = _resamples(y, k)
        gain = {n: task.metric(y, p[n]) - task.metric(y, p[DEFAULT]) for n in NAMES[1:]}
        se = {n: np.std([task.metric(y[b], p[n][b]) - task.metric(y[b], p[DEFAULT][b]) for b in boots])
              for n in NAMES[1:]}  # fmt: skip
        ok = [n for n in NAMES[1:] if gain[n] > z * se[n]]
        return c[max(ok, key=gain.get) if ok else DEFAULT]["test_out"]

    return rule


def bootstrap_vote(c, y, task):
    k = int(y.max()) + 1
    p = {n: _probs(task, c[n]["held_logits"]) for n in NAMES}
    votes = np.zeros(len(NAMES))
    for b in _resamples(y, k):
        votes[np.argmax([task.metric(y[b], p[n][b]) for n in NAMES])] += 1
    return c[NAMES[int(votes.argmax())]]["test_out"]


def temperature_scaled(c, y, task):
    chosen = shipped_choice(c)
    cal = fit_calibration(task, torch.as_tensor(c[chosen]["held_logits"]), torch.as_tensor(y))
    # log-probabilities are the logits up to a per-patient shift, which the softmax ignores
    logits = torch.as_tensor(np.log(np.clip(c[chosen]["test_out"], 1e-12, 1)))
    return task.outputs(cal.apply(logits)).numpy() if cal is not None else c[chosen]["test_out"]


def best_of(names: list[str], key: str = "metric") -> Rule:
    def rule(c, y, task):
        if key == "metric":
            pick = max(names, key=lambda n: (c[n]["inner_metric"], -c[n]["inner_loss"]))
        else:
            pick = min(names, key=lambda n: _log_loss(_probs(task, c[n]["held_logits"]), y))
        return c[pick]["test_out"]

    return rule


def mean_of(names: list[str]) -> Rule:
    return lambda c, y, task: np.mean([c[n]["test_out"] for n in names], 0)


def best_subset(c, y, task):
    """The mean of whichever subset of candidates scores best on the inner patients."""
    p = {n: _probs(task, c[n]["held_logits"]) for n in NAMES}

    def score(s):
        q = np.mean([p[n] for n in s], 0)
        return task.metric(y, q), -_log_loss(q, y)

    subsets = [s for r in range(1, len(NAMES) + 1) for s in itertools.combinations(NAMES, r)]
    return np.mean([c[n]["test_out"] for n in max(subsets, key=score)], 0)


def greedy_ensemble(c, y, task, steps: int = 10):
    """Ensemble selection with replacement (Caruana et al. 2004) on the inner held-out probabilities."""
    p = {n: _probs(task, c[n]["held_logits"]) for n in NAMES}
    chosen: list[str] = []
    for _ in range(steps):
        chosen.append(max(NAMES, key=lambda n: task.metric(y, np.mean([p[m] for m in [*chosen, n]], 0))))
    return np.mean([c[n]["test_out"] for n in chosen], 0)


SHIPPED = "shipped: best inner AUC, ties to the lower inner loss"
RULES: dict[str, Rule] = {
    SHIPPED: shipped,
    **{
        f"keep {DEFAULT} unless another's inner AUC is higher by > {m}": keep_default_unless(m)
        for m in (0.0025, 0.005, 0.01, 0.02)
    },
    **{
        f"keep {DEFAULT} unless another is higher by > {z} bootstrap SE": keep_default_unless_se(z)
        for z in (0.5, 1.0)
    },
    "the candidate best on most bootstrap resamples": bootstrap_vote,
    "temperature-scale the chosen candidate (inner logits)": temperature_scaled,
    "attention heads only (no mean_pool)": best_of([n for n in NAMES if n != "mean_pool"]),
    "lowest inner log-loss": best_of(NAMES, key="loss"),
    "mean of all candidates": mean_of(NAMES),
    "mean of the attention heads": mean_of([n for n in NAMES if n != "mean_pool"]),
    "mean of the subset best on inner AUC": best_subset,
    "greedy ensemble selection, 10 steps": greedy_ensemble,
}


# -- replay --------------------------------------------------------------------------------------------------
def replay(method: str) -> dict[str, dict[str, list[float]]]:
    """Print each cohort's table; return {cohort: {candidate or rule: pooled AUC per seed}}."""
    results = {}
    files = sorted((DUMPS / method).glob("*.pkl"))
    if not files:
        raise SystemExit(f"no dumps under {DUMPS / method}: run `python {Path(__file__).name} dump` first")
    by_cohort: dict[str, list[Path]] = {}
    for f in files:
        by_cohort.setdefault(f.stem.rsplit("_", 1)[0], []).append(f)
    for cohort, paths in by_cohort.items():
        scores: dict[str, list[float]] = {}
        for path in sorted(paths, key=lambda p: int(p.stem.rsplit("_", 1)[1])):
            with open(path, "rb") as fh:
                run = pickle.load(fh)
            folds = run["folds"]
            y = folds[0]["y"]
            k = int(y.max()) + 1
            task = create_task(TaskSpec("classification", "label", [str(i) for i in range(k)]))
            outs = {name: np.zeros((len(y), k)) for name in [*NAMES, *RULES]}
            for fold in folds:
                c, test = fold["cands"], fold["test"]
                held_y = y[c[DEFAULT]["held_index"]].astype(np.float32)
                assert all(np.array_equal(c[n]["held_index"], c[DEFAULT]["held_index"]) for n in NAMES)
                if shipped_choice(c) != fold["chosen"]:
                    raise SystemExit(f"{path}: the shipped rule does not reproduce the run's choice")
                for n in NAMES:
                    outs[n][test] = c[n]["test_out"]
                for name, rule in RULES.items():
                    outs[name][test] = rule(c, held_y, task)
            for name, out in outs.items():
                scores.setdefault(name, []).append(task.metric(y.astype(np.float32), out))
            if abs(scores[SHIPPED][-1] - run["result"][method]["auc"][-1]) > 1e-9:
                raise SystemExit(f"{path}: the replayed choice does not score what the run scored")
        best = max(NAMES, key=lambda n: np.mean(scores[n]))
        print(f"\n{cohort}: {len(paths)} seeds; alone: "
              + ", ".join(f"{n} {np.mean(scores[n]):.4f}" for n in NAMES) + f"; best in hindsight {best}")  # fmt: skip
        for name in RULES:
            diff = np.array(scores[name]) - np.array(scores[best])
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            print(f"  {np.mean(scores[name]):.4f}  {diff.mean():+.4f} ± {se:.4f}  {name}")
        results[cohort] = scores
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("verb", choices=["dump", "replay"])
    parser.add_argument("--cohorts", default="elephant,musk2,synth:w0.1:n60:c100")
    parser.add_argument("--seeds", type=int, default=5, help="dump: seeds 0 .. n-1 (or --only-seed)")
    parser.add_argument("--only-seed", type=int)
    parser.add_argument(
        "--method", default="auto_default", help="a recipe of benchmarks/recipe.py with head auto"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.verb == "replay":
        replay(args.method)
        return
    seeds = [args.only_seed] if args.only_seed is not None else range(args.seeds)
    for cohort in args.cohorts.split(","):
        for seed in seeds:
            print(f"{cohort} seed {seed}: {dump(cohort, seed, args.method)}", flush=True)


if __name__ == "__main__":
    main()
