"""Two prediction tables of the same patients, compared on the kind's headline metric with a PAIRED bootstrap.

Each bootstrap draw resamples patients once and scores both tables on that same draw, so the difference's
interval reflects only how the two models disagree, not the cohort's luck twice over (two independent CIs
that overlap say little about a difference; a paired one does). The draws are the ones `metric_block` uses
for the metric's own CI (same seed, same strata: `Task.paired_metric`), so the estimates and intervals of
each model here equal those in its metrics block (survival: lifelines' c-index to rounding).

`compare_predictions` is the one generic function (head vs baseline in every `mil train`, head vs head for
model selection, image vs covariates vs fused models); `baseline_comparison` builds the metrics.json blocks
`baselines` and `comparison` of a run from its head table and its baselines' tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.core.errors import InputError
from mil.config import EvaluateConfig
from mil.evaluate.bootstrap import CI, bootstrap_ci
from mil.evaluate.predictions import require_truth
from mil.tasks import TaskSpec, create_task
from mil.tasks.formatting import comparison_line


def compare_predictions(
    a: pd.DataFrame,
    b: pd.DataFrame,
    spec: TaskSpec,
    evaluate: EvaluateConfig,
    names: tuple[str, str] = ("a", "b"),
) -> dict:
    """{metric, n, <names[0]>: CI, <names[1]>: CI, difference: CI of names[0] - names[1]}, JSON-ready.

    Both tables must hold the same patients with the same truth (an InputError names the first mismatch).
    """
    task = create_task(spec)
    a, b = _aligned(a, b, spec, names)
    n_boot = evaluate.n_bootstrap
    out: dict = {"metric": task.metric_name, "n": len(a)}
    paired_a, paired_b = task.paired_metric(a), task.paired_metric(b)
    if paired_a is None or paired_b is None:
        undefined = CI.undefined(f"the {spec.kind} kind has no paired metric to compare", n_boot).to_dict()
        return {**out, names[0]: undefined, names[1]: undefined, "difference": undefined}
    (metric_a, strata), (metric_b, _) = paired_a, paired_b
    rows = np.arange(len(a))

    def ci(metric) -> dict:  # same seed, same strata: every CI here uses the same patient resamples
        return bootstrap_ci(
            lambda _, weights: metric(weights), rows, n=n_boot, rng=evaluate.seed, strata=strata
        ).to_dict()

    return {
        **out,
        names[0]: ci(metric_a),
        names[1]: ci(metric_b),
        "difference": ci(lambda weights: metric_a(weights) - metric_b(weights)),
    }


def baseline_comparison(
    head: pd.DataFrame,
    spec: TaskSpec,
    baselines: dict[str, tuple[pd.DataFrame, str]],
    evaluate: EvaluateConfig,
) -> tuple[dict, dict]:
    """(baselines, comparison) blocks of metrics.json: each baseline's pooled metrics, and head minus that
    baseline on the headline metric with its paired CI and a one-line verdict. `baselines` maps a name to
    (its predictions table, what the verdict calls it: "the pooled statistics")."""
    task = create_task(spec)
    blocks, comparisons = {}, {}
    for name, (table, describes) in baselines.items():
        blocks[name] = {"describes": describes, "pooled": task.metric_block(table, evaluate)}
        compared = compare_predictions(head, table, spec, evaluate, ("head", "baseline"))
        compared["verdict"] = comparison_line(compared, task.metric_label, name, describes)
        comparisons[name] = compared
    return blocks, comparisons


def baselines_beside(
    predictions: Path,
    head: pd.DataFrame,
    spec: TaskSpec,
    evaluate: EvaluateConfig,
    labels: Path | None = None,
) -> tuple[dict, dict, list[str]]:
    """For `mil evaluate` on a run's predictions.csv: compare it with the run's `baselines/<name>/predictions.csv`
    (labels attached alike). Returns (baselines, comparison, notes); a baseline table that does not cover the
    evaluated patients (predictions of another cohort in the run folder) is left out with a note."""
    from mil.baselines import describe_baseline
    from mil.evaluate.predictions import attach_labels, read_predictions

    folder = Path(predictions).parent / "baselines"
    found = sorted(folder.glob("*/predictions.csv")) if folder.is_dir() else []
    tables, notes = {}, []
    for path in found:
        table, their_spec = read_predictions(path)
        if their_spec != spec:
            notes.append(f"{path}: another task ({their_spec.kind} of {their_spec.target}); not compared")
            continue
        if labels is not None:
            table = attach_labels(table, spec, labels)
        missing = set(head["patient_id"]) - set(table["patient_id"])
        if missing:
            notes.append(
                f"{path}: lacks {len(missing)} of the evaluated patients (e.g. {sorted(missing)[0]}); not compared"
            )
            continue
        table = table[table["patient_id"].isin(set(head["patient_id"]))]
        tables[path.parent.name] = (table, describe_baseline(path.parent.name))
    blocks, comparison = baseline_comparison(head, spec, tables, evaluate)
    return blocks, comparison, notes


def covariates_beside(
    predictions: Path,
    head: pd.DataFrame,
    spec: TaskSpec,
    evaluate: EvaluateConfig,
    labels: Path | None = None,
) -> tuple[dict, list[str]]:
    """For `mil evaluate` on the predictions.csv of a run with covariates (the fused model's): the three models
    side by side (`model_comparison`) with the run's image_only/ and baselines/covariates/ tables, over the
    evaluated patients. ({}, notes) for a run without covariates or tables that do not cover those patients."""
    import yaml

    from mil.evaluate.predictions import attach_labels, read_predictions

    run = Path(predictions).parent
    found = {"image_only": run / "image_only" / "predictions.csv",
             "covariates_only": run / "baselines" / "covariates" / "predictions.csv"}  # fmt: skip
    if not found["image_only"].is_file():
        return {}, []
    tables, notes = {"fused": head}, []
    for name, path in found.items():
        if not path.is_file():
            continue
        table, their_spec = read_predictions(path)
        if their_spec != spec:
            notes.append(f"{path}: another task ({their_spec.kind} of {their_spec.target}); not compared")
            continue
        table = attach_labels(table, spec, labels) if labels is not None else table
        missing = set(head["patient_id"]) - set(table["patient_id"])
        if missing:
            notes.append(f"{path}: lacks {len(missing)} of the evaluated patients (e.g. {sorted(missing)[0]}); "
                         "not compared")  # fmt: skip
            continue
        tables[name] = table[table["patient_id"].isin(set(head["patient_id"]))]
    if len(tables) < 2:
        return {}, notes
    block = model_comparison(tables, spec, evaluate)
    config = run / "config.yaml"
    train = (yaml.safe_load(config.read_text()) or {}).get("train", {}) if config.is_file() else {}
    block["columns"] = list(train.get("covariates") or [])
    return block, notes


def _aligned(
    a: pd.DataFrame, b: pd.DataFrame, spec: TaskSpec, names: tuple[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables sorted by patient id, after checking they hold the same patients with the same truth."""
    truth = create_task(spec).truth_columns()
    for table, name in zip((a, b), names, strict=True):
        require_truth(table, spec, name)
    only_a = sorted(set(a["patient_id"]) - set(b["patient_id"]))
    only_b = sorted(set(b["patient_id"]) - set(a["patient_id"]))
    if only_a or only_b:
        which, ids = (names[0], only_a) if only_a else (names[1], only_b)
        raise InputError(
            f"compare {names[0]} with {names[1]}: {len(ids)} patient(s) only in {which} (e.g. {ids[0]}); "
            "a paired comparison needs the same patients in both"
        )
    a = a.sort_values("patient_id", kind="stable").reset_index(drop=True)
    b = b.sort_values("patient_id", kind="stable").reset_index(drop=True)
    for col in truth:
        left, right = a[col].to_numpy(), b[col].to_numpy()
        same = left == right if left.dtype == object else np.isclose(left.astype(float), right.astype(float))
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            raise InputError(
                f"compare {names[0]} with {names[1]}: truth {col} differs for patient {a['patient_id'][i]} "
                f"({left[i]!r} vs {right[i]!r}); both tables must be scored against the same labels"
            )
    return a, b


# The three models of a run with clinical covariates, and the differences a user asks about, in this order:
# what the smear adds beyond the numbers, what the numbers add beyond the smear, smear vs numbers alone.
COVARIATE_MODELS = ("covariates_only", "image_only", "fused")
COVARIATE_PAIRS = (("fused", "covariates_only"), ("fused", "image_only"), ("image_only", "covariates_only"))
_SAYS = {
    ("fused", "covariates_only"): "what the smear adds beyond the covariates",
    ("fused", "image_only"): "what the covariates add beyond the smear",
    ("image_only", "covariates_only"): "the smear alone vs the covariates alone",
}


def model_comparison(tables: dict[str, pd.DataFrame], spec: TaskSpec, evaluate: EvaluateConfig) -> dict:
    """metrics.json `covariates`: {metric, models: {name: CI}, differences: {"a - b": compared + says}} over
    the models of COVARIATE_MODELS present in `tables`, every pair through `compare_predictions` (paired, the
    same bootstrap draws for every model and difference)."""
    task = create_task(spec)
    models, differences = {}, {}
    for a, b in COVARIATE_PAIRS:
        if a not in tables or b not in tables:
            continue
        compared = compare_predictions(tables[a], tables[b], spec, evaluate, (a, b))
        models.setdefault(a, compared[a])
        models.setdefault(b, compared[b])
        compared["says"] = _SAYS[(a, b)]
        differences[f"{a} - {b}"] = compared
    ordered = {name: models[name] for name in COVARIATE_MODELS if name in models}
    return {"metric": task.metric_name, "models": ordered, "differences": differences}
