"""Single-label classification: multiclass (APL vs AML vs healthy) and binary (NPM1 mutated or not).

Binary is a 2-class softmax, not a single sigmoid logit. The two are the same model (the softmax of two logits
is the sigmoid of their difference), but the 2-class form keeps one code path: per-class attention heads
(clam_mb, scemila) get one branch per class, the predictions table has prob_<class> for both classes, and
evaluation treats binary and multiclass alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from features.core.errors import InputError
from mil.evaluate.columns import label_text  # one rule for training's labels and evaluation's columns
from mil.tasks import TASKS
from mil.tasks.base import Task, mean_auc

# An integer-coded column with at most this many distinct values is a class label (0/1, 1/2/3 grades);
# more look like a measurement, where guessing classes would be wrong.
MAX_INTEGER_CODES = 10


def infer_classes(values: pd.Series) -> list[str] | None:
    """Sorted distinct labels (integer codes numerically), or None if the column looks continuous."""
    labels = label_text(values).dropna()
    distinct = sorted(set(labels))
    ints = [v for v in distinct if v.lstrip("-").isdigit()]
    if ints and len(ints) == len(distinct):
        return sorted(distinct, key=int) if len(distinct) <= MAX_INTEGER_CODES else None
    numeric = pd.to_numeric(pd.Series(distinct), errors="coerce")
    if len(distinct) and numeric.notna().all():
        return None  # non-integer numbers: a measurement, not a class
    return distinct


@TASKS.register("classification")
class Classification(Task):
    """Single-label classification (binary = 2 classes); cross-entropy with optional class weights."""

    kind = "classification"
    metric_name = "macro_auc"

    def parse(self, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        col = self.spec.target
        labels = label_text(table[col])
        has = labels.notna().to_numpy()
        index = {c: i for i, c in enumerate(self.spec.classes)}
        unknown = sorted(set(labels[has]) - set(index))
        if unknown:
            raise InputError(
                f"{source}: column {col!r} has value(s) {', '.join(map(repr, unknown[:5]))} not in the classes "
                f"{self.spec.classes}; fix the CSV or list them in train.classes"
            )
        y = np.array([index[v] if ok else -1 for v, ok in zip(labels, has, strict=True)], dtype=np.float32)
        return y, has

    def fit_weights(self, y: np.ndarray, enabled: bool) -> None:
        # Inverse frequency n / (C * n_c): each class contributes equally to the loss, as sklearn's
        # class_weight="balanced". A class absent from the training part gets the weight of a singleton.
        if not enabled:
            self.weights = None
            return
        counts = np.bincount(y.astype(int), minlength=self.n_outputs).astype(np.float64)
        self.weights = torch.tensor(len(y) / (self.n_outputs * np.maximum(counts, 1)), dtype=torch.float32)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        weight = None if self.weights is None else self.weights.to(logits.device)
        return F.cross_entropy(logits, y.long(), weight=weight)

    def outputs(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits.float(), dim=1)

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        onehot = np.eye(self.n_outputs)[y.astype(int)]
        if self.n_outputs == 2:  # binary: the AUROC of the positive class (the two are equal)
            onehot, out = onehot[:, 1:], out[:, 1:]
        return mean_auc(onehot, out)

    def frame(
        self, patients: list[str], fold: int | None, y: np.ndarray | None, out: np.ndarray
    ) -> pd.DataFrame:
        classes = np.asarray(self.spec.classes, dtype=object)
        df = pd.DataFrame({"patient_id": patients, "fold": fold})
        df["y_true"] = None if y is None else classes[y.astype(int)]
        df["y_pred"] = classes[out.argmax(axis=1)]
        for i, c in enumerate(self.spec.classes):
            df[f"prob_{c}"] = out[:, i]
        return df

    def strata(self, y: np.ndarray) -> np.ndarray:
        return y.astype(int)

    def sample_weights(self, y: np.ndarray) -> np.ndarray | None:
        counts = np.bincount(y.astype(int), minlength=self.n_outputs)
        return 1.0 / counts[y.astype(int)]
