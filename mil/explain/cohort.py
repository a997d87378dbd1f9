"""A run and a bag store opened together for explanations: checked once, then explained patient by patient.

Why patients and not slides: training concatenated each patient's slides into one bag (`mil.training.data`), so the
attention a cell got only exists in the context of its patient's whole bag. Slides are mapped to patients the
way training did: through the run's labels CSV (recorded in its config.yaml) where it lists the slide, else
through the store's `BagMeta.patient_id`.

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
        labels = labels if labels is not None else _recorded_labels(run)
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


def _recorded_labels(run: Path) -> Path | None:
    """The labels CSV the run was trained with, if its config.yaml records it and it still exists."""
    try:
        record = yaml.safe_load((run / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    path = (record.get("provenance") or {}).get("labels")
    return Path(path) if path and Path(path).is_file() else None


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
        from mil.cohort.labels import read_labels

        table = read_labels(labels)
        if "slide_id" in table.columns:
            mapping = dict(zip(table["slide_id"].astype(str), table["patient_id"].astype(str), strict=False))
    slides: dict[str, list[str]] = defaultdict(list)
    for slide_id, meta in metas.items():
        slides[mapping.get(slide_id, meta.patient_id)].append(slide_id)
    return {p: sorted(s) for p, s in sorted(slides.items())}
