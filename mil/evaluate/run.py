"""`mil evaluate` as one library call: read the table, attach labels, compute, record provenance, write.

The CLI only parses flags and prints; this module is what a notebook would call too. Outputs that exist are
refused before anything is computed or written (`check_outputs`), so a refused run leaves no file behind.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from features.core.errors import InputError
from features.core.io import write_json
from features.core.outputs import check_output_file
from mil.config import EvaluateConfig
from mil.evaluate.predictions import attach_labels, read_predictions, require_truth
from mil.tasks import TaskSpec

_VERSIONED = ("mil", "numpy", "scipy", "pandas", "scikit-learn", "lifelines", "matplotlib")


@dataclass(frozen=True)
class Evaluation:
    metrics: dict  # the metrics.json document, provenance included
    predictions: pd.DataFrame  # the rows that were evaluated (truth attached)
    spec: TaskSpec
    unlabelled: list[str] = field(default_factory=list)  # patient ids dropped for lack of a label
    notes: list[str] = field(default_factory=list)  # baselines beside the predictions that were not compared


def evaluate_files(
    predictions: Path, labels: Path | None = None, evaluate: EvaluateConfig = EvaluateConfig()
) -> Evaluation:
    """Metrics of a predictions CSV (+ its spec sidecar), optionally with truth from a labels CSV. A run's
    predictions.csv is also compared with the baselines beside it (RUN/baselines/<name>/predictions.csv)."""
    from mil.evaluate.compare import baselines_beside, covariates_beside
    from mil.evaluate.metrics import compute_metrics, jsonable

    df, spec = read_predictions(Path(predictions))
    unlabelled: list[str] = []
    if labels is not None:
        df = attach_labels(df, spec, Path(labels))
        unlabelled = list(df.attrs.get("unlabelled_patients", []))
    else:  # truth filled by `mil predict --labels` where the labels had it: the rest are left out, counted
        df, unlabelled = _with_truth(df, spec)
    require_truth(df, spec, str(predictions))
    metrics = compute_metrics(df, spec, evaluate)
    baselines, comparison, notes = baselines_beside(Path(predictions), df, spec, evaluate, labels)
    if baselines:
        metrics["baselines"], metrics["comparison"] = jsonable(baselines), jsonable(comparison)
    three, more = covariates_beside(Path(predictions), df, spec, evaluate, labels)
    if three:
        metrics["covariates"] = jsonable(three)
    metrics["provenance"] = {
        "predictions": _file_record(Path(predictions)),
        "labels": _file_record(Path(labels)) if labels is not None else None,
        **evaluate.model_dump(),
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in _VERSIONED}},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return Evaluation(metrics, df, spec, unlabelled, notes + more)


def _with_truth(df: pd.DataFrame, spec: TaskSpec) -> tuple[pd.DataFrame, list[str]]:
    """The rows with truth and the patient ids of the others, where some rows have it; with none, all rows
    (`require_truth` then asks for --labels)."""
    from mil.tasks import create_task

    empty = df[create_task(spec).truth_columns()].isna().any(axis=1)
    if not empty.any() or empty.all():
        return df, []
    dropped = sorted(df.loc[empty, "patient_id"].astype(str))
    kept = df[~empty].reset_index(drop=True)
    kept.attrs["unlabelled_patients"] = dropped  # metrics.json counts them (n_unlabelled_dropped)
    return kept, dropped


def run_around(path: Path) -> Path | None:
    """The `mil train` run folder that holds `path` (at any depth), or None."""
    from mil.training.rundir import is_run

    return next((parent for parent in Path(path).absolute().parents if is_run(parent)), None)


def default_output(predictions: Path) -> Path:
    """metrics.json beside the predictions, unless they lie inside a run: there it would replace (or add to)
    the run's own files (RUN/metrics.json holds the train-time blocks: cohort, selection, calibration,
    baselines), so `-o` is required, named in one line with a suggestion outside the run."""
    predictions = Path(predictions)
    run = run_around(predictions)
    if run is None:
        return predictions.parent / "metrics.json"
    parts = predictions.absolute().relative_to(run).parent.parts  # () for RUN/predictions.csv
    suggestion = run.parent / ".".join((run.name, *(["-".join(parts)] if parts else []), "evaluate.json"))
    if not predictions.is_absolute():  # as the user typed it: relative to the working directory
        run, suggestion = _shown(run), _shown(suggestion)
    raise InputError(
        f"{predictions} lies inside run {run}, where metrics.json is the run's own (written by mil train); "
        f"pass -o with a file outside the run, e.g. -o {suggestion}"
    )


def check_outputs(paths: list[Path], overwrite: bool, inputs: tuple[Path | None, ...] = ()) -> None:
    """Refuse to replace existing results unless asked, outputs that are folders or cannot be written, and
    (even with `overwrite`) an output that is one of the `inputs` or an existing file of a `mil train` run
    (`--plots RUN/plots` would replace the run's own plots): one line naming the first such file."""
    from mil.training.rundir import refuse_run_file

    read = {Path(p).resolve() for p in inputs if p is not None}
    for path in paths:
        if Path(path).resolve() in read:
            raise InputError(f"{path} is an input of this command; choose another output (-o, --plots)")
        run = run_around(Path(path))
        if run is not None:
            refuse_run_file(run, Path(path))
        check_output_file(Path(path), overwrite, "metrics.json")


def _shown(path: Path) -> Path:
    """`path` relative to the working directory where it lies below it (what the user typed), else absolute."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def write_metrics(metrics: dict, path: Path) -> None:
    """metrics.json of `mil evaluate` and `mil train`: strict JSON (NaN is refused, never written as a bare
    `NaN` token), written atomically."""
    write_json(metrics, Path(path))


def _file_record(path: Path) -> dict:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path.resolve()), "sha256": digest}


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None
