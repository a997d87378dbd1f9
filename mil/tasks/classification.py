"""Single-label classification: multiclass (APL vs AML vs healthy) and binary (NPM1 mutated or not).

Binary is a 2-class softmax, not a single sigmoid logit. The two are the same model (the softmax of two logits
is the sigmoid of their difference), but the 2-class form keeps one code path: per-class attention heads
(clam_mb, scemila) get one branch per class, the predictions table has prob_<class> for both classes, and
evaluation treats binary and multiclass alike.

Predictions table: patient_id, fold, y_true (class name), y_pred (class name), prob_<class> per class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from features.core.errors import ConfigError, InputError
from mil.config import EvaluateConfig
from mil.evaluate.columns import check_classes, label_text  # one rule for training's labels and the table
from mil.tasks import TASKS
from mil.tasks.base import Task, mean_auc, require_columns
from mil.tasks.formatting import per_class_html, per_class_rows

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
    metric_label = "macro AUC"
    headline = ("macro_auc", "balanced_accuracy", "accuracy")
    plots = {"roc.png": "ROC curves", "confusion.png": "confusion matrix"}

    @classmethod
    def infers(cls, config) -> bool:
        return isinstance(config.target, str)

    @classmethod
    def resolve(cls, table: pd.DataFrame, config, source: str):
        from mil.tasks.spec import TaskSpec

        if config.target is None:
            raise ConfigError("no target: pass --target COLUMN or set train.target in the config")
        if not isinstance(config.target, str):
            raise ConfigError(
                "classification reads one target column; several 0/1 columns: --task multilabel"
            )
        (col,) = require_columns(table, [config.target], source)
        classes = list(config.classes) if config.classes is not None else infer_classes(table[col])
        if classes is None:
            raise ConfigError(
                f"{source}: column {col!r} holds non-integer numbers, not classes; for survival pass --task "
                "survival --time-col TIME --event-col EVENT, or list train.classes"
            )
        if config.classes is not None:
            classes = [label_text(pd.Series([c])).iloc[0] for c in classes]
        if len(classes) < 2:
            raise InputError(
                f"{source}: column {col!r} has {len(classes)} class(es) {classes}; a classifier needs 2+"
            )
        return TaskSpec("classification", col, classes)

    @classmethod
    def check_spec(cls, spec) -> None:
        if len(spec.classes) < 2 or not isinstance(spec.target, str):
            raise InputError("task spec: classification needs one target column and at least 2 classes")

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

    def fold_counts(self, y: np.ndarray) -> tuple[dict[str, int], str, str]:
        counts = {c: int((y == i).sum()) for i, c in enumerate(self.spec.classes)}
        return counts, "patients", "merge or drop the class (train.classes)"

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

    def calibration_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y.long())

    def logit_basis(self) -> np.ndarray:
        """Softmax sees logits up to a common shift: binary, the one contrast z1 - z0; else centred logits."""
        if self.n_outputs == 2:
            return np.array([[-1.0], [1.0]])
        return np.eye(self.n_outputs) - 1.0 / self.n_outputs

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        onehot = np.eye(self.n_outputs)[y.astype(int)]
        if self.n_outputs == 2:  # binary: the AUROC of the positive class (the two are equal)
            onehot, out = onehot[:, 1:], out[:, 1:]
        return mean_auc(onehot, out)

    def strata(self, y: np.ndarray) -> np.ndarray:
        return y.astype(int)

    def sample_weights(self, y: np.ndarray) -> np.ndarray | None:
        counts = np.bincount(y.astype(int), minlength=self.n_outputs)
        return 1.0 / counts[y.astype(int)]

    def head_target(self, y: Tensor) -> Tensor | None:
        return y.long()

    def baseline_model(self, c: float):
        from mil.baselines.linear import LogisticModel

        return LogisticModel(c, self.n_outputs)

    def truth_columns(self) -> list[str]:
        return ["y_true"]

    def prediction_columns(self) -> list[str]:
        return ["y_pred", *self.prob_columns()]

    def prob_columns(self) -> list[str]:
        return [f"prob_{c}" for c in self.spec.classes]

    def text_columns(self) -> list[str]:
        return ["y_true", "y_pred"]

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

    def check_table(self, table: pd.DataFrame, source: str) -> None:
        check_classes(table["y_pred"], self.spec.classes, source, "y_pred", allow_na=False)
        check_classes(table["y_true"], self.spec.classes, source, "y_true", allow_na=True)

    def check_new_truth(self, table: pd.DataFrame, source: str) -> None:
        unknown = sorted(set(table["y_true"]) - set(self.spec.classes))
        if unknown:
            raise InputError(
                f"{source}: column {self.spec.target} has class(es) {', '.join(map(repr, unknown[:5]))} that the "
                f"model does not predict (classes: {', '.join(self.spec.classes)}); fix or drop those patients"
            )

    def metric_block(self, df: pd.DataFrame, evaluate: EvaluateConfig) -> dict:
        from mil.evaluate.classification import classification_metrics

        probs = df[self.prob_columns()].to_numpy(float)
        y_true, y_pred = df["y_true"].to_numpy(), df["y_pred"].to_numpy()
        return classification_metrics(y_true, y_pred, probs, self.spec.classes, evaluate)

    def reliability(self, df: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Binary: the positive (second) class; multiclass: top-label confidence vs top label right."""
        probs = df[self.prob_columns()].to_numpy(float)
        truth = df["y_true"].to_numpy()[:, None] == np.asarray(self.spec.classes)[None, :]
        if self.n_outputs == 2:
            return [(self.spec.classes[1], truth[:, 1].astype(float), probs[:, 1])]
        top = probs.argmax(axis=1)
        right = truth[np.arange(len(top)), top].astype(float)
        return [("top class", right, probs.max(axis=1))]

    def figures(self, df: pd.DataFrame) -> list:
        from mil.evaluate.classification import confusion_matrix
        from mil.evaluate.plots import new_figure, plot_confusion, roc_figure

        classes = self.spec.classes
        truth = df["y_true"].to_numpy()[:, None] == np.asarray(classes)[None, :]
        roc = roc_figure(truth, df[self.prob_columns()].to_numpy(float), classes)
        index = {c: i for i, c in enumerate(classes)}
        y, pred = df["y_true"].map(index).to_numpy(int), df["y_pred"].map(index).to_numpy(int)
        size = 2.5 + 0.9 * len(classes)
        fig, ax = new_figure(size, size)
        plot_confusion(ax, confusion_matrix(y, pred, len(classes)), classes)
        ax.set_title("confusion matrix, pooled")
        return [("roc.png", roc), ("confusion.png", fig)]

    def paired_metric(self, df: pd.DataFrame):
        from mil.evaluate.classification import macro_auc_weighted

        y = df["y_true"].map({c: i for i, c in enumerate(self.spec.classes)}).to_numpy(int)
        probs = df[self.prob_columns()].to_numpy(float)
        present = [c for c in range(self.n_outputs) if (y == c).any()]
        if len(present) < 2:  # as `metric_block`: the macro AUC needs two classes present
            return (lambda weights: np.full(len(weights), np.nan)), y
        return (lambda weights: macro_auc_weighted(y, probs, weights, present)), y

    def comparison_figure(self, tables: dict[str, pd.DataFrame]):
        from mil.evaluate.plots import roc_comparison_figure

        first = next(iter(tables.values()))
        truth = first["y_true"].to_numpy()[:, None] == np.asarray(self.spec.classes)[None, :]
        keep = slice(1, None) if self.n_outputs == 2 else slice(None)  # binary: the positive class's curve
        scores = {name: df[self.prob_columns()].to_numpy(float)[:, keep] for name, df in tables.items()}
        return roc_comparison_figure(truth[:, keep], scores, self.spec.classes[keep])

    def detail_rows(self, block: dict) -> list[tuple[str, str, str]]:
        return per_class_rows(block)

    def report_html(self, block: dict, level: int) -> str:
        return per_class_html(block, level, "Per class (pooled, one vs rest)")

    def group(self, row: pd.Series | None, prediction: np.ndarray) -> tuple[set[str], str]:
        if row is not None and pd.notna(row["y_true"]) and str(row["y_true"]) != "":
            return {str(row["y_true"])}, "truth"
        return {self.spec.classes[int(np.argmax(prediction))]}, "predicted"
