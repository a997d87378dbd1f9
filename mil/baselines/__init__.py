"""Baselines: the simplest models one can fit on the same bags, run beside every `mil train` on its folds.

A baseline turns each patient's bag into one row of patient-level features (`Baseline.features`, one bag at a
time, so memory stays bounded) and fits the task kind's regularised linear model on them (`Task.baseline_model`:
logistic regression, one per label, or a ridge Cox model), its strength chosen by an inner cross-validation on
each fold's training patients only (`mil.baselines.cv`). What differs between baselines is only the featuriser,
so "cell-type composition -> the same model" is one more short module that registers here.
A baseline that needs more than the bags takes it in its constructor (`cell_composition`: the cell model);
`mil train` hands it over through `fit_baselines(params=...)`.

    base.py          the `Baseline` contract and `PatientFeatures`; bags from a store, streamed
    pooled_stats.py  per-patient mean, SD and 10/50/90 % quantiles of every feature
    cell_composition.py  per-patient share of each counted cell type, typed by a `mil cells` model
    linear.py        the regularised models (logistic, one-vs-rest logistic, ridge Cox), standardised in the fold
    cv.py            outer folds as given, inner folds for C, out-of-fold outputs
    run.py           the baselines of one training run: predictions tables, metrics and comparisons

`mil list baselines` prints the registry; `train.baselines` (`--baselines`) picks which run.
"""

from __future__ import annotations

from typing import Any

from features.core.registry import Registry
from mil.baselines.base import Baseline, PatientFeatures

BASELINES = Registry("baseline", modules=("mil.baselines.pooled_stats", "mil.baselines.cell_composition"))


def create_baseline(name: str, **params: Any) -> Baseline:
    """The baseline registered as `name` (unknown name -> one ConfigError listing the registered ones)."""
    return BASELINES.create(name, **params)


def describe_baseline(name: str) -> str:
    """What a verdict calls baseline `name`: its own words when registered ("the pooled statistics")."""
    if name == "covariates":  # the covariates-only model of a run with covariates (mil.baselines.covariates)
        return "the covariates alone"
    return BASELINES.get(name).factory.describes if name in BASELINES else f"the {name} baseline"


__all__ = ["BASELINES", "Baseline", "PatientFeatures", "create_baseline", "describe_baseline"]
