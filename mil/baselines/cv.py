"""Cross-validation of a baseline on given outer folds, with C chosen inside each fold's training patients.

Outer folds are the run's own (`mil train` passes its splits), so head and baseline predict every patient from
models that never saw it. A fold's baseline trains on its train and validation patients together (the head
uses the validation part only to stop early; the baseline has its own inner selection) and never on its test
patients. Inside, C is chosen by `INNER_FOLDS`-fold stratified CV over those patients alone: for each C of
`C_GRID` (ascending; each inner split walks it with warm starts) the inner out-of-fold outputs are pooled and scored with the kind's headline metric (`Task.metric`:
AUC, macro AUC, c-index); the best C wins, ties going to the stronger penalty (the smaller C). Then the model
is refitted on all the fold's training patients with that C and predicts the test patients.

Standardisation is refitted at every fit on that fit's own training rows (`mil.baselines.linear`), inner fits
included, so no statistic crosses a fold boundary. Seeds: the inner folds of outer fold k use `seed*1000 + k`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mil.cohort.splits import merge_rare
from mil.tasks import Task

C_GRID = tuple(float(c) for c in 10.0 ** np.arange(-4.0, 2.5, 0.5))  # 1e-4 .. 1e2, half-decade steps
INNER_FOLDS = 5
DEFAULT_C = 1.0  # sklearn's default; used only where no inner CV is possible, and noted
# The fits are small (a few hundred patients x a few thousand features): one BLAS thread. With the default
# thread pool, a 60-patient logistic fit took 120-580 ms instead of 2-14 ms on a loaded 2-core machine
# (threads spinning against each other and against the other jobs).


@dataclass
class FoldFit:
    fold: int
    c: float
    inner_metric: float | None  # the headline metric of the chosen C over the inner folds (None: not scored)
    n_train: int
    notes: list[str] = field(default_factory=list)


@dataclass
class CrossValidated:
    outputs: np.ndarray  # P x K out-of-fold outputs (rows of patients in no test fold stay NaN)
    folds: list[FoldFit]


def inner_splits(strata: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Stratified folds over positions 0..n-1 (rare strata merged, as the outer splitter does); None when
    fewer than 2 patients or only one stratum make a stratified split meaningless."""
    from sklearn.model_selection import StratifiedKFold

    n = len(strata)
    k = min(n_folds, n)
    if k < 2:
        return None
    merged = merge_rare(strata, k)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(n), merged))


def select_c(
    x: np.ndarray,
    y: np.ndarray,
    task: Task,
    seed: int,
    grid: tuple[float, ...] = C_GRID,
    n_folds: int = INNER_FOLDS,
    by: str = "metric",
    penalty_factor: np.ndarray | None = None,
    tolerance: float = 0.0,
) -> tuple[float, float | None, list[str]]:
    """(C, its inner score, notes) from an inner CV over the rows of x/y alone. `by="metric"` scores the pooled
    inner outputs with the kind's headline metric (a ranking: right for a model that is read on its own);
    `by="deviance"` with minus the pooled held-out deviance of the model's logits, for a model whose logits are
    added to another's (`mil.training.fusion.fuse`): AUC cannot see a logit's size, so on noise it picked a weak
    penalty whose noise logits then swamped the other model's. The one-SE rule (or keeping the strongest
    penalty unless beaten by one SE) shrank age's Cox weight too far: the fused survival model fell back to
    c-index 0.570 / 0.590 against 0.637 with the plain minimum (RESULTS.md, "Clinical covariates").
    `tolerance`: the smallest C whose score is within it of the best wins (deviance: nats per patient), so a
    near-tie goes to the stronger penalty (`mil.training.fusion.STACK_TOLERANCE` says why and how much)."""
    grid = tuple(sorted(grid))  # ascending: warm starts go from strong to weak penalty, ties to the smaller C
    splits = inner_splits(task.strata(y), n_folds, seed)
    if splits is None:
        return DEFAULT_C, None, [f"{len(y)} training patient(s): no inner CV, C = {DEFAULT_C:g}"]
    oof: dict[float, np.ndarray] = {}
    for train, test in splits:
        previous = None
        for c in grid:  # ascending: each fit warm-starts from the previous C's (`mil.baselines.linear`)
            previous = _model(task, c, penalty_factor).fit(x[train], y[train], start=previous)
            out = previous.predict(x[test]) if by == "metric" else previous.logits(x[test])
            oof.setdefault(c, np.full((len(y), out.shape[1]), np.nan))[test] = out
    score = task.metric if by == "metric" else (lambda y_, logits: -held_out_deviance(task, y_, logits))
    scores = np.array([score(y, oof[c]) for c in grid], dtype=float)
    if np.isnan(scores).all():
        why = f"the inner folds could not score any C ({task.metric_label} undefined); C = {DEFAULT_C:g}"
        return DEFAULT_C, None, [why]
    # the first: the smallest C wins ties (and near-ties, within `tolerance`)
    best = int(np.flatnonzero(scores >= np.nanmax(scores) - max(tolerance, 1e-12))[0])
    return grid[best], float(scores[best]), []


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    task: Task,
    folds: list[tuple[int, np.ndarray, np.ndarray]],
    seed: int,
    grid: tuple[float, ...] = C_GRID,
    n_inner: int = INNER_FOLDS,
    blas_threads: int | None = 1,
) -> CrossValidated:
    """Out-of-fold outputs for `folds` = [(fold index, training positions, test positions)]. `blas_threads`:
    the BLAS pool during the fits (1, see above; None leaves it as it is)."""
    from threadpoolctl import threadpool_limits

    outputs: np.ndarray | None = None
    fits = []
    with threadpool_limits(limits=blas_threads):
        for k, train, test in folds:
            if set(train.tolist()) & set(test.tolist()):
                raise ValueError(f"fold {k}: a patient is both in training and test")  # a caller's bug
            c, score, notes = select_c(x[train], y[train], task, seed * 1000 + k, grid, n_inner)
            model = task.baseline_model(c).fit(x[train], y[train])
            out = model.predict(x[test])
            if outputs is None:
                outputs = np.full((len(x), out.shape[1]), np.nan)
            outputs[test] = out
            inner = None if score is None or math.isnan(score) else score
            fits.append(FoldFit(k, c, inner, len(train), notes + model.notes))
    return CrossValidated(outputs if outputs is not None else np.zeros((len(x), 0)), fits)


def held_out_deviance(task: Task, y: np.ndarray, logits: np.ndarray) -> float:
    """The kind's unweighted proper loss (cross-entropy; survival: the Cox partial likelihood) of logits."""
    import torch

    logits_t, y_t = torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(y)
    loss = task.calibration_loss(logits_t, y_t)
    return float(task.loss(logits_t, y_t) if loss is None else loss)


def fit_selected(
    x: np.ndarray,
    y: np.ndarray,
    task: Task,
    seed: int,
    by: str = "metric",
    penalty_factor: np.ndarray | None = None,
    tolerance: float = 0.0,
):
    """The kind's regularised linear model on all rows of x/y, C chosen by `select_c` (`by`) over those rows
    alone (the fitted `LinearBaselineModel`; None where the kind has none). `penalty_factor`: per column, a
    multiplier of its ridge penalty (`LinearBaselineModel.penalty_factor`); `tolerance`: see `select_c`."""
    from threadpoolctl import threadpool_limits

    if task.baseline_model(1.0) is None:
        return None
    with threadpool_limits(limits=1):  # small fits: one BLAS thread (see above)
        c, _, _ = select_c(x, y, task, seed, by=by, penalty_factor=penalty_factor, tolerance=tolerance)
        return _model(task, c, penalty_factor).fit(x, y)


def _model(task: Task, c: float, penalty_factor: np.ndarray | None):
    model = task.baseline_model(c)
    model.penalty_factor = penalty_factor
    return model
