"""The task contract shared by classification, multi-label and survival.

A `TaskSpec` is the resolved answer to "what is predicted": the kind, the label column(s) and the output
order. It is written into every checkpoint and into the predictions sidecar (`PredictionSpec`), so prediction
and evaluation never re-infer it from data.

Targets travel as float32 arrays, one row per patient (classification: class index; multi-label: P x L 0/1;
survival: P x 2 = time, event), so the data module can batch them without knowing the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor


@dataclass(frozen=True)
class TaskSpec:
    """kind: a `TASKS` name; target: label column (classification), label columns (multilabel) or
    [time_col, event_col] (survival); classes: output order (class names; label names; [] for survival)."""

    kind: str
    target: str | list[str]
    classes: list[str] = field(default_factory=list)

    def columns(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "target": self.target, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data: dict) -> TaskSpec:
        target = data["target"] if isinstance(data["target"], str) else list(data["target"])
        return cls(kind=data["kind"], target=target, classes=list(data.get("classes") or []))

    def prediction_spec(self):  # -> mil.evaluate.predictions.PredictionSpec
        from mil.evaluate.predictions import PredictionSpec

        return PredictionSpec(kind=self.kind, target=self.target, classes=list(self.classes))


class Task:
    """Base class. Subclasses set `kind`, implement `parse`, `loss`, `outputs`, `metric` and `frame`."""

    kind: ClassVar[str] = ""
    metric_name: ClassVar[str] = ""

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.weights: Tensor | None = None  # loss weights fitted on a fold's training part

    @property
    def n_outputs(self) -> int:
        return max(1, len(self.spec.classes))

    def parse(self, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        """Label rows -> (targets float32, has_label bool). Empty cells are "no label" (the patient is left
        out and counted); any other bad value raises `InputError` naming `source` and the fix."""
        raise NotImplementedError

    def fit_weights(self, y: np.ndarray, enabled: bool) -> None:
        """Derive loss weights from the training part of a fold (never from validation or test)."""
        self.weights = None

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def outputs(self, logits: Tensor) -> Tensor:
        """Logits -> what the predictions table stores (probabilities, or risk)."""
        raise NotImplementedError

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        """Main metric (higher is better); NaN where undefined (e.g. one class only)."""
        raise NotImplementedError

    def frame(
        self, patients: list[str], fold: int | None, y: np.ndarray | None, out: np.ndarray
    ) -> pd.DataFrame:
        """Rows of the predictions table (`mil.evaluate.predictions`); y None = truth unknown."""
        raise NotImplementedError

    def strata(self, y: np.ndarray) -> np.ndarray:
        """One label per patient for stratified splitting."""
        raise NotImplementedError

    def sample_weights(self, y: np.ndarray) -> np.ndarray | None:
        """Per-patient draw weights for balanced sampling, or None where it does not apply."""
        return None

    def target_dtype(self) -> torch.dtype:
        return torch.float32


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """AUROC by the evaluation module's rank formula (one AUC in `mil`); NaN when only one class is present
    (a small validation fold can lack a class). Cheap enough to run every epoch, unlike sklearn's checks."""
    from mil.evaluate.classification import auc_weighted

    y = np.asarray(y).astype(bool)
    return float(auc_weighted(y, np.asarray(score, dtype=float), np.ones((1, len(y))))[0])


def mean_auc(y_onehot: np.ndarray, scores: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the columns where both classes occur (NaN if none)."""
    aucs = [binary_auc(y_onehot[:, c], scores[:, c]) for c in range(y_onehot.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")
