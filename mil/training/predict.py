"""`mil predict`: the ensemble of a run's fold models on new bags, and the per-model outputs behind it.

The ensemble is the mean of the fold models' outputs: class probabilities (softmax), label probabilities
(sigmoid) or Cox risks. Each fold model saw a different 80% of the patients; averaging them is the usual
cross-validation ensemble and needs no retraining on all patients (which would have no validation set for
early stopping). With cross-fitting every fold holds several member models (`model.pt`, `model.1.pt`, ...);
all of them enter the mean, each fold with the same number. Calibrated members give calibrated
probabilities: the temperature and bias fitted on the fold's inner data are part of each checkpoint, and a
fold's calibrated members are combined by their mean logit, as `mil train` combined them
(`mil.training.calibrate.ensemble_outputs_of`). Cox risks of different models differ by an additive constant each, which shifts the mean by a
constant and so keeps the ranking that the c-index and risk groups use.

Predictions on a new store are streamed patient by patient in chunks of bounded size, so a cohort of
200k-cell smears never has to fit in memory at once.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import yaml

from features.bagstore import BagStore
from features.core.device import resolve_device
from features.core.errors import InputError
from features.core.outputs import check_output_file
from mil.config import TrainConfig
from mil.evaluate.predictions import spec_path, write_predictions
from mil.heads.base import HeadOutput
from mil.tasks import TaskSpec, create_task
from mil.training.checkpoint import FoldModel, load_checkpoint
from mil.training.data import load_bags
from mil.training.fit import eval_batch_instances, infer
from mil.training.prior import add_statistics, bag_statistics
from mil.training.rundir import refuse_inputs, refuse_run_file
from mil.training.store_check import check_store_settings

# New slides are read in chunks of about this many instances (1.5 GB as 384-d float32), so memory stays
# bounded however large the cohort.
LOAD_INSTANCES = 1 << 20
CHECKPOINT = re.compile(r"model(\.\d+)?\.pt")  # a fold's members; a stray model.bak.pt is not one


class LoadedRun(NamedTuple):
    """`config, models, spec = load_run(run)`."""

    config: TrainConfig
    models: list[FoldModel]
    spec: TaskSpec


def load_run(run: Path, device: torch.device | str = "cpu") -> LoadedRun:
    """The run's train config, its fold models (eval mode, on `device`) and their task spec."""
    run = Path(run)
    config_file = run / "config.yaml"
    if not config_file.is_file():
        raise InputError(f"{run}: no config.yaml; pass a run folder written by `mil train`")
    try:
        record = yaml.safe_load(config_file.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{config_file}: not a valid run config ({str(exc).splitlines()[0]})") from None
    fix = "restore the run's config.yaml or retrain"
    if not isinstance(record, dict):
        raise InputError(
            f"{config_file}: not a valid run config (a {type(record).__name__}, not a mapping); {fix}"
        )
    train = record.get("train")
    if not train or "provenance" not in record:  # emptied or foreign: the defaults would stand in silently
        raise InputError(f"{config_file}: not a run config (no train or provenance section); {fix}")
    if not isinstance(train, dict):
        raise InputError(
            f"{config_file}: not a valid run config (its train section is a {type(train).__name__}); {fix}"
        )
    train = dict(train)
    train.pop("n_bootstrap", None)  # runs written before the evaluate section kept it here; unused to predict
    try:
        config = TrainConfig.model_validate(train)
    except ValueError as exc:
        raise InputError(f"{config_file}: not a valid run config ({str(exc).splitlines()[0]})") from None
    paths = sorted(
        (p for p in run.glob("folds/*/model*.pt") if CHECKPOINT.fullmatch(p.name)), key=_checkpoint_order
    )
    if not paths:
        raise InputError(f"{run}: no folds/<k>/model.pt; the run did not finish or is not a `mil train` run")
    models = [load_checkpoint(p, device) for p in paths]
    _check_complete(run, models)
    first = models[0]
    for m in models[1:]:
        if m.spec != first.spec or m.encoder != first.encoder:
            raise InputError(
                f"{m.path}: fold models of {run} disagree on task or encoder; the run folder is mixed"
            )
    return LoadedRun(config, models, first.spec)


def _check_complete(run: Path, models: list[FoldModel]) -> None:
    """Every fold of splits.json with every member it wrote: a run copied in part (a fold or a member lost
    to an interrupted rsync) would otherwise predict with part of its ensemble and exit 0."""
    fix = "restore the run folder or retrain"
    by_fold: dict[int, list[FoldModel]] = defaultdict(list)
    for m in models:
        by_fold[m.fold].append(m)
    splits = run / "splits.json"
    if splits.is_file():
        try:
            expected = {int(f["index"]) for f in json.loads(splits.read_text())["folds"]}
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"{splits}: not a mil splits file; {fix}") from None
        lost = sorted(expected - set(by_fold))
        if lost:
            raise InputError(
                f"{run}: splits.json has {len(expected)} folds, but folds/{lost[0]} has no model.pt "
                f"({len(lost)} fold(s) missing); {fix}"
            )
    for fold, members in sorted(by_fold.items()):
        wrote = {m.members for m in members}  # {None}: checkpoints older than the count, not checked
        if None not in wrote and wrote != {len(members)}:
            raise InputError(
                f"{run}: folds/{fold} holds {len(members)} of the {max(wrote)} member models it was trained "
                f"with; {fix}"
            )


def _checkpoint_order(path: Path) -> tuple:
    """folds/<k>/model.pt, model.1.pt, ...: by fold number, then member number."""
    fold, member = path.parent.name, path.name.removeprefix("model").removesuffix(".pt").lstrip(".")
    return (not fold.isdigit(), fold.zfill(6), int(member) if member.isdigit() else 0, path.name)


def ensemble_outputs(
    models: list[FoldModel], features: np.ndarray | torch.Tensor, device: torch.device | str | None = None
) -> list[HeadOutput]:
    """Run every fold model on ONE patient's bag (N x D); per-model `HeadOutput`s on the CPU, batch dim kept
    (logits 1 x C, attention 1 x K x N), for explanations that need each model's attention per instance."""
    device = torch.device(device) if device is not None else next(models[0].head.parameters()).device
    x = torch.as_tensor(features, dtype=torch.float32, device=device)[None]
    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
    outputs = []
    with torch.inference_mode():
        given = {}
        if any(getattr(m.head, "takes_statistics", False) for m in models):
            given["statistics"] = bag_statistics(x, mask)  # once for the bag, not once per model
        for m in models:
            m.head.to(device).eval()
            out = m.head(x, mask, **given) if getattr(m.head, "takes_statistics", False) else m.head(x, mask)
            for name in ("logits", "attention", "instance_scores"):
                value = getattr(out, name)
                if value is not None:
                    setattr(out, name, value.float().cpu())
            out.aux_losses = {k: v.cpu() for k, v in out.aux_losses.items()}
            outputs.append(out)
    return outputs


def fold_ensemble(task, models: list[FoldModel], logits: list[torch.Tensor]) -> torch.Tensor:
    """The run's ensemble from each model's logits: each fold's members combined as `mil train` combined them
    for its test patients (`ensemble_outputs_of`: calibrated members by their mean logit), then the mean over
    folds of their outputs."""
    from mil.training.calibrate import ensemble_outputs_of

    by_fold: dict[int, list[int]] = defaultdict(list)
    for i, m in enumerate(models):
        by_fold[m.fold].append(i)
    folds = [
        ensemble_outputs_of(task, [logits[i] for i in rows], models[rows[0]].calibration is not None)
        for rows in by_fold.values()
    ]
    return torch.stack(folds).mean(0)


def predict(
    run: Path,
    bags: Path,
    out: Path,
    labels: Path | None = None,
    device: str | None = None,
    progress: Callable[..., None] | None = None,
    overwrite: bool = False,
    clinical: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Ensemble predictions for every patient in the store -> `out` (predictions table + spec sidecar).

    Patients are the store's `BagMeta.patient_id`, or, with a `labels` CSV that has `slide_id`, the CSV's
    mapping (then every stored slide must be listed). Truth columns are filled where `labels` has the target,
    so `mil evaluate out` can score it directly; otherwise they stay empty for `mil evaluate --labels`.
    An existing `out` is replaced only with `overwrite`, and never when it is a file of the run itself.

    A run trained with covariates reads them from `clinical` (else from `labels`) and encodes them with each
    fold's saved statistics (`CovariateEncoder`); a missing column is one InputError before any bag is read,
    a category never seen in training encodes as all zeros and is reported through `warn`.
    """
    emit = progress or (lambda event, **info: None)
    out = Path(out)
    check_predict_out(Path(run), out, overwrite, labels, Path(bags))
    config, models, spec = load_run(run)
    dev = resolve_device(device or config.device, "--device" if device else "train.device")
    store = BagStore(bags)
    trained_on = models[0].encoder
    if store.encoder != trained_on:
        raise InputError(
            f"{bags}: bags are {store.encoder.describe()}, but run {run} was trained on {trained_on.describe()}; "
            "extract these slides with the run's encoder"
        )
    check_store_settings(run, store)
    for m in models:
        m.head.to(dev)
    task = create_task(spec)
    slides, table = _patient_slides(store, labels, spec)
    patients = sorted(slides)
    _warn_in_sample(Path(run), Path(bags), patients, warn or _warn)
    designs = _covariate_designs(models, labels, clinical, patients, warn or _warn)
    sizes = {p: sum(store.meta(s).n_instances for s in slides[p]) for p in patients}
    chunks, current, filled = [], [], 0
    for p in patients:
        if current and filled + sizes[p] > LOAD_INSTANCES:
            chunks.append(current)
            current, filled = [], 0
        current.append(p)
        filled += sizes[p]
    chunks.append(current)
    outputs, batch_instances = [], eval_batch_instances(config, dev)
    row_of = {p: i for i, p in enumerate(patients)}
    steps = len(chunks) * len(models)
    for i, chunk in enumerate(chunks):
        data = load_bags(store, chunk, slides, None, torch.float32, progress=emit)
        if any(getattr(m.head, "takes_statistics", False) for m in models):
            add_statistics(data)  # once per chunk, not once per model and batch
        index = np.arange(len(chunk))
        per_model = []
        for m, design in zip(models, designs, strict=True):
            if design is not None:
                rows = [row_of[p] for p in chunk]
                data.covariates = torch.from_numpy(design[rows])
            per_model.append(infer(m.head, data, index, dev, batch_instances))
            # one event per model: a cohort is often one chunk, and 25 models on it take minutes on a CPU
            emit("predict", done=i * len(models) + len(per_model), total=steps, patients=len(chunk))
        outputs.append(fold_ensemble(task, models, per_model).numpy())
    frame = task.frame(patients, None, None, np.concatenate(outputs))
    if table is not None:
        frame = _fill_truth(frame, task, table, str(labels))
    write_predictions(frame, spec, out)
    return out


def _warn_in_sample(run: Path, bags: Path, patients: list[str], warn: Callable[[str], None]) -> None:
    """Predicting the store a run was trained on scores patients that all fold models but one learnt from
    (in-sample, optimistic): say so, and where the honest out-of-fold figures are."""
    try:
        record = yaml.safe_load((run / "config.yaml").read_text())
        trained_on = Path(record["provenance"]["bags"])
        split = json.loads((run / "splits.json").read_text())["folds"]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return  # a run without that record (trained through the API) cannot be checked
    if not trained_on.exists() or trained_on.resolve() != bags.resolve():
        return
    seen = {str(p) for fold in split for part in ("train", "val", "test") for p in fold.get(part, [])}
    both = seen & set(patients)
    which = f"{len(both)} of the {len(patients)} patients here are" if both else "the patients it holds are"
    warn(
        f"{bags} is the store run {run} was trained on: {which} the run's own, which all fold models but one "
        f"learnt from, so their predictions are in-sample (optimistic); the honest out-of-fold ones are "
        f"{run / 'predictions.csv'}"
    )


def _warn(line: str) -> None:
    import warnings

    warnings.warn(line, stacklevel=3)


def _covariate_designs(
    models: list[FoldModel],
    labels: Path | None,
    clinical: Path | None,
    patients: list[str],
    warn: Callable[[str], None],
) -> list[np.ndarray | None]:
    """Each fold model's encoded covariates for `patients` (None for a model without covariates)."""
    from mil.cohort.covariates import CovariateEncoder, covariate_source, read_covariates

    encoders = [None if m.covariates is None else CovariateEncoder.from_dict(m.covariates) for m in models]
    used = next((e for e in encoders if e is not None), None)
    if used is None:
        if clinical is not None:
            raise InputError(f"--clinical {clinical}: this run was trained without covariates; omit it")
        return [None] * len(models)
    wanted = ", ".join(used.required)
    if labels is None and clinical is None:
        raise InputError(
            f"this run was trained with covariates ({wanted}); pass --clinical CSV (patient_id + those columns)"
        )
    frame, source = covariate_source(labels, clinical)
    fix = f"the run was trained with covariates {wanted}; add the column or pass --clinical with them"
    table = read_covariates(used.required, frame, source, patients, used.kinds, fix)
    designs, said = [], set()
    for encoder in encoders:
        design, lines = encoder.transform(table, patients)
        for line in lines:
            if line not in said:  # each fold model says the same; once is enough
                said.add(line)
                warn(line)
        designs.append(design)
    return designs


def check_predict_out(
    run: Path, out: Path, overwrite: bool, labels: Path | None = None, bags: Path | None = None
) -> None:
    """The table and its sidecar may be written: never onto a file of the run (its out-of-fold predictions.csv
    is what `mil evaluate` and `mil report` read; replacing it would lose the truth and the folds), onto the
    labels or into the bag store, even with `overwrite`; anything else existing only with it."""
    for path in (out, spec_path(out)):
        refuse_run_file(run, path)
        refuse_inputs(path, {"bag store": bags})
        if labels is not None and path.resolve() == Path(labels).resolve():
            raise InputError(f"{path} is the labels file this command reads; write the predictions elsewhere")
        check_output_file(path, overwrite, "predictions.csv")


def _patient_slides(
    store: BagStore, labels: Path | None, spec: TaskSpec
) -> tuple[dict[str, list[str]], pd.DataFrame | None]:
    """patient -> stored slides (through the labels' slide_id column where it has one) and the labels table,
    checked before any bag is read: a slide listed twice, or a patient whose rows disagree on the target."""
    from mil.cohort.labels import read_labels, slide_patients
    from mil.evaluate.columns import label_text, refuse_conflicting

    metas = store.metas()
    if not metas:
        raise InputError(f"{store.path}: the store holds no bags")
    table = read_labels(labels) if labels is not None else None
    targets = spec.label_columns()
    if table is not None and all(c in table.columns for c in targets):
        refuse_conflicting(table["patient_id"], table[targets].apply(label_text), labels, targets)
    slides: dict[str, list[str]] = defaultdict(list)
    if table is not None and "slide_id" in table.columns:
        mapping = slide_patients(table, labels)
        unlisted = [m.slide_id for m in metas if m.slide_id not in mapping]
        if unlisted:
            raise InputError(
                f"{labels}: {len(unlisted)} stored slides are not listed in its slide_id column (e.g. "
                f"{unlisted[0]}); add them, or omit --labels to use the store's patient ids"
            )
        for m in metas:
            slides[mapping[m.slide_id]].append(m.slide_id)
    else:
        for m in metas:
            slides[m.patient_id].append(m.slide_id)
    return {p: sorted(s) for p, s in slides.items()}, table


def _fill_truth(frame: pd.DataFrame, task, table: pd.DataFrame, source: str) -> pd.DataFrame:
    """Truth from the labels CSV where it has the target column(s) (a patient's rows agree: `_patient_slides`)."""
    if any(c not in table.columns for c in task.spec.label_columns()):
        return frame
    rows = table.drop_duplicates("patient_id").set_index("patient_id")
    known = [p for p in frame["patient_id"] if p in rows.index]
    if not known:
        return frame
    y, has = task.parse(rows.loc[known].reset_index(), source)
    truth = task.frame(
        [p for p, h in zip(known, has, strict=True) if h],
        None,
        y[has],
        np.zeros((int(has.sum()), task.n_outputs)),
    )
    cols = task.truth_columns()
    merged = frame.drop(columns=cols).merge(truth[["patient_id", *cols]], on="patient_id", how="left")
    return merged[frame.columns]
