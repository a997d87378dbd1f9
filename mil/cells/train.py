"""`mil cells train`: a cell-type classifier on a store's embeddings from cell labels, cross-validated by patient.

CELLMODEL/ (built in a temporary sibling and renamed into place when complete, like a training run):

    cellmodel.json        the model (`mil.cells.model`): classes, temperature, vocabulary, encoder, trained_on
    model.npz             the classifier's arrays
    metrics.json          patient-grouped CV: per-class precision / recall / F1, balanced accuracy, log-loss
                          and calibration error before / after temperature, confusion matrix; the label account
    cv_predictions.csv    one row per labelled cell: slide, instance, patient, fold, truth, prediction, probabilities
    confusion.png         the out-of-fold confusion matrix (rows = truth)
    config.yaml           the cells section used, and provenance (versions, seed, encoder, command)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.bagstore import BagStore
from features.core.errors import InputError
from mil.cells.classifiers import create_classifier
from mil.cells.cv import CrossValidation, classifier_params, cross_validate
from mil.cells.dataset import LabelAccount, LabelledCells, collect_labelled
from mil.cells.labels import read_cell_labels
from mil.cells.model import CellModel
from mil.cells.vocabulary import load_vocabulary
from mil.config import CellsConfig


@dataclass
class CellTrainSummary:
    out: Path
    classes: list[str]
    per_class: dict[str, int]
    account: LabelAccount
    metrics: dict
    n_patients: int
    seconds: float


def train_cells(
    bags: Path,
    labels: Path,
    out: Path,
    config: CellsConfig = CellsConfig(),
    overwrite: bool = False,
    progress: Callable[..., None] | None = None,
) -> CellTrainSummary:
    """Fit and cross-validate a cell classifier on the labelled cells of `bags`; write CELLMODEL `out`."""
    from mil.training.rundir import check_out

    started = time.perf_counter()
    emit = progress or (lambda event, **info: None)
    out = Path(out)
    check_out(out, overwrite, lambda path: (path / "cellmodel.json").is_file(), "cell model folder")
    store = BagStore(bags)
    vocabulary = load_vocabulary(config.vocabulary) if config.vocabulary else None
    table, kind = read_cell_labels(labels)
    cells = collect_labelled(store, table, kind, str(labels), vocabulary, config, progress=emit)
    _check_trainable(cells, labels, config)
    emit("cv", total=config.folds)
    cv = cross_validate(cells.features, cells.y, cells.patients, cells.classes, config, progress=emit)
    emit("final")
    model = _fit_model(cells, cv, config, store)
    metrics = {**cv.metrics, "labels": cells.account.to_dict(), "n_patients": len(set(cells.patients))}
    _write_model(out, model, cells, cv, metrics, _config_record(config, store, labels))
    emit("done")
    return CellTrainSummary(
        out, cells.classes, cells.account.per_class, cells.account, cv.metrics, len(set(cells.patients)),
        time.perf_counter() - started,
    )  # fmt: skip


def _fit_model(cells: LabelledCells, cv: CrossValidation, config: CellsConfig, store: BagStore) -> CellModel:
    """The classifier fitted on every labelled cell, with the temperature the cross-validation found."""
    classifier = create_classifier(config.classifier, **classifier_params(config))
    classifier.fit(cells.features, cells.y, len(cells.classes))
    return CellModel(
        classifier=classifier,
        kind=config.classifier,
        params=classifier_params(config),
        classes=cells.classes,
        temperature=cv.temperature,
        vocabulary=cells.vocabulary,
        encoder=store.encoder,
        trained_on={
            "bags": str(Path(store.path).resolve()),
            "slides": sorted(set(cells.slides)),
            "patients": sorted(set(cells.patients)),
        },  # fmt: skip
    )


def _config_record(config: CellsConfig, store: BagStore, labels: Path) -> dict:
    """The section and provenance written beside the model (config.yaml) and inside it (cellmodel.json)."""
    from mil.training.rundir import provenance

    inputs = {"bags": str(Path(store.path).resolve()), "labels": str(Path(labels).resolve())}
    return {
        "cells": config.model_dump(mode="json"),
        "provenance": provenance(config.seed, store.encoder, None, inputs),
    }


def _write_model(
    out: Path, model: CellModel, cells: LabelledCells, cv: CrossValidation, metrics: dict, config_record: dict
) -> None:
    """CELLMODEL written whole into a temporary folder, then swapped in: a failure leaves `out` as it was."""
    import shutil

    from mil.training.rundir import swap_in, temp_dir

    tmp = temp_dir(out)
    try:
        cv_summary = {
            k: metrics[k] for k in ("balanced_accuracy", "accuracy", "n_folds", "n_cells", "n_patients")
        }
        model.save(
            tmp,
            {"cv": cv_summary, "config": config_record["cells"], "provenance": config_record["provenance"]},
        )
        _write_results(tmp, cells, cv, metrics, config_record)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_trainable(cells: LabelledCells, labels: Path, config: CellsConfig) -> None:
    if len(cells.classes) < 2:
        account = cells.account
        found = ", ".join(f"{c} {n}" for c, n in account.per_class.items()) or "none"
        # Why the others went: names the vocabulary does not know, and classes too small to keep.
        why = [
            *(f"{name!r} not in vocabulary {account.vocabulary}" for name in sorted(account.unmapped)[:5]),
            *(f"{c} only {n}" for c, n in sorted(account.small_classes.items())[:5]),
        ]
        more = len(account.unmapped) + len(account.small_classes) - len(why)
        left_out = f"; left out: {', '.join(why)}{f' and {more} more' if more > 0 else ''}" if why else ""
        raise InputError(
            f"{labels}: {len(cells.classes)} class(es) with at least {config.min_cells_per_class} labelled cells "
            f"({found}){left_out}; a classifier needs 2 or more"
        )


def _write_results(
    folder: Path, cells: LabelledCells, cv: CrossValidation, metrics: dict, config: dict
) -> None:
    from features.core.io import atomic_write_text, write_json

    write_json(metrics, folder / "metrics.json", indent=1)
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    names = np.asarray(cells.classes, dtype=object)
    frame = pd.DataFrame(
        {
            "slide_id": cells.slides,
            "instance": cells.instances,
            "patient_id": cells.patients,
            "fold": cv.fold,
            "truth": names[cells.y],
            "prediction": names[cv.proba.argmax(1)],
            **{f"p_{c}": cv.proba[:, i] for i, c in enumerate(cells.classes)},
        }
    )
    frame.to_csv(folder / "cv_predictions.csv", index=False, float_format="%.5g")
    write_confusion(np.asarray(cv.metrics["confusion"]), [c.replace("_", " ") for c in cells.classes],
                    folder / "confusion.png", cv.metrics["balanced_accuracy"])  # fmt: skip


def write_confusion(matrix: np.ndarray, labels: list[str], path: Path, balanced_accuracy: float) -> Path:
    from features.core.io import atomic_write
    from mil.evaluate.plots import new_figure, plot_confusion

    side = 2.5 + 0.45 * len(labels)
    fig, ax = new_figure(side + 1, side)
    plot_confusion(ax, matrix, labels)
    ax.set_title(f"out-of-fold, patient-grouped CV: balanced accuracy {balanced_accuracy:.3f}")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path
