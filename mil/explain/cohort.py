"""A run and a bag store opened together for explanations: checked once, then explained patient by patient.

Why patients and not slides: training concatenated each patient's slides into one bag (`mil.training.data`), so the
attention a cell got only exists in the context of its patient's whole bag. Slides are mapped to patients the
way training did: through the run's labels CSV (recorded in its config.yaml; `--labels` replaces it, and a
recorded file that is missing is an error, not a silent fallback) where it lists the slide, else through the
store's `BagMeta.patient_id`.

Which patients belong to a class (for cohort galleries and discovery) is the task kind's rule
(`Task.cohort_groups`): for classes and labels, the truth of the run's out-of-fold predictions.csv where the
patient has one, else the ensemble's prediction (shown as "(predicted)", so a report on an unlabelled cohort
says it grouped by prediction); for survival, the patients above the median predicted risk.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.bagstore import BagMeta, BagStore
from features.core.errors import InputError
from mil.config import TrainConfig
from mil.explain.attention import PatientAttention, explain_patient, method_of
from mil.tasks import TaskSpec, create_task
from mil.training.checkpoint import FoldModel
from mil.training.data import PatientBag, read_patient_bag
from mil.training.store_check import check_store_settings


@dataclass
class Explainer:
    """`Explainer.open(run, bags)`; then `explain(patient_id)` for each patient of `patient_slides`."""

    run: Path
    store: BagStore
    config: TrainConfig
    models: list[FoldModel]
    spec: TaskSpec
    names: list[str]  # output names: classes, labels, or ["risk"] (`Task.output_names`)
    method: str  # "attention" or the attribution method
    patient_slides: dict[str, list[str]]  # patient -> every stored slide of that patient (the model's bag)
    predictions: pd.DataFrame | None  # the run's out-of-fold predictions.csv, if present
    device: str = "cpu"
    metas: dict[str, BagMeta] = field(default_factory=dict)
    off_task: set[str] = field(default_factory=set)  # listed in the labels with an empty target: no group

    @classmethod
    def open(cls, run: Path, bags: Path, labels: Path | None = None, device: str = "cpu") -> Explainer:
        """Load the run's fold models and the store; refuse a run trained on another encoder's features."""
        from mil.training.predict import load_run

        run, bags = Path(run), Path(bags)
        if not run.is_dir():
            raise InputError(f"{run}: not a folder; pass a run folder written by `mil train`")
        config, models, spec = load_run(run, device)
        store = BagStore(bags)
        trained_on = models[0].encoder
        if store.encoder != trained_on:
            raise InputError(
                f"{bags}: bags are {store.encoder.describe()}, but run {run} was trained on "
                f"{trained_on.describe()}; pass a store extracted with the run's encoder"
            )
        check_store_settings(run, store)
        metas = {m.slide_id: m for m in store.metas()}
        if not metas:
            raise InputError(f"{bags}: the store holds no bags")
        labels = labels_of(run, labels)
        predictions = None
        if (run / "predictions.csv").is_file():
            from mil.evaluate.predictions import read_predictions

            predictions, _ = read_predictions(run / "predictions.csv")
        return cls(
            run=run,
            store=store,
            config=config,
            models=models,
            spec=spec,
            names=create_task(spec).output_names(),
            method=method_of(models),
            patient_slides=_patient_slides(metas, labels),
            predictions=predictions,
            device=device,
            metas=metas,
            off_task=_off_task(labels, spec),
        )

    @property
    def head_name(self) -> str:
        return self.models[0].head_name

    @property
    def class_agnostic(self) -> bool:
        one_row = self.models[0].head.attention_kind == "attention"
        return self.method == "attention" and one_row and len(self.names) > 1

    def slide_patient(self) -> dict[str, str]:
        return {s: p for p, slides in self.patient_slides.items() for s in slides}

    def explain(
        self, patient_id: str, models: list[FoldModel] | None = None
    ) -> tuple[PatientBag, PatientAttention]:
        """The patient's bag as the models saw it and its explanation (all fold models unless `models`)."""
        bag = read_patient_bag(self.store, patient_id, self.patient_slides[patient_id])
        att = explain_patient(
            models or self.models, bag.features, self.names, patient_id, bag.slides, self.device
        )
        return bag, att

    def cohort_groups(self, outputs: dict[str, np.ndarray]) -> dict[str, tuple[set[str], str]]:
        """patient -> (output names it belongs to, how the report shows it), from the ensemble's `outputs`
        (`PatientAttention.prediction`) and the truth of the run's predictions (see the module doc)."""
        rows = {}
        if self.predictions is not None:
            rows = {str(r["patient_id"]): r for _, r in self.predictions.iterrows()}
        return create_task(self.spec).cohort_groups(outputs, rows, self.off_task)


def recorded_labels(run: Path) -> Path | None:
    """The labels CSV the run was trained with, as its config.yaml records it (it may no longer exist), or
    None when the run records none (runs trained through the API)."""
    try:
        record = yaml.safe_load((Path(run) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    provenance = record.get("provenance") if isinstance(record, dict) else None
    path = provenance.get("labels") if isinstance(provenance, dict) else None
    return Path(path) if isinstance(path, str) and path else None


def explain_inputs(
    run: Path, bags: Path, labels: Path | None, cells: Path | None = None
) -> dict[str, Path | None]:
    """What `mil heatmap` and `mil report` read, so what their output may never be, hold or (but for the run,
    which takes new outputs beside its own files) lie inside (`mil.training.rundir.refuse_inputs`): the run,
    the store, the labels (given, else the run's own) and the cell model."""
    return {
        "run": Path(run),
        "bag store": Path(bags),
        "labels file": Path(labels) if labels is not None else recorded_labels(run),
        "cell model": Path(cells) if cells is not None else None,
    }


def labels_of(run: Path, labels: Path | None) -> Path | None:
    """The labels CSV that maps slides to patients: `labels`, else the run's own. A run whose recorded labels
    file is gone is refused: the store's own patient ids would silently regroup the slides (one bag per slide
    instead of per patient), which is not what the models were trained on."""
    if labels is not None:
        return Path(labels)
    recorded = recorded_labels(run)
    if recorded is not None and not recorded.is_file():
        raise InputError(
            f"{recorded}: the labels file run {run} was trained with is missing; pass --labels PATH "
            "(the labels CSV with slide_id and patient_id)"
        )
    return recorded


def _off_task(labels: Path | None, spec: TaskSpec) -> set[str]:
    if labels is None:
        return set()
    from mil.cohort.labels import read_labels

    table = read_labels(labels)
    target = spec.label_columns()
    if "patient_id" not in table.columns or any(c not in table.columns for c in target):
        return set()
    empty = table[target].isna().all(axis=1)  # read_labels turns empty cells into NaN
    listed = empty.groupby(table["patient_id"].astype(str)).all()
    return set(listed.index[listed])


def _patient_slides(metas: dict[str, BagMeta], labels: Path | None) -> dict[str, list[str]]:
    mapping: dict[str, str] = {}
    if labels is not None:
        from mil.cohort.labels import read_labels, slide_patients

        table = read_labels(labels)
        if "slide_id" in table.columns:
            mapping = slide_patients(table, labels)
    slides: dict[str, list[str]] = defaultdict(list)
    for slide_id, meta in metas.items():
        slides[mapping.get(slide_id, meta.patient_id)].append(slide_id)
    return {p: sorted(s) for p, s in sorted(slides.items())}
