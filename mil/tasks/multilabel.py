"""Multi-label: several 0/1 labels from one head (NPM1 and CBFB::MYH11 from one bag), one sigmoid each.

A patient needs every label to be used (a partly empty row is left out and counted, like an empty target):
masking single labels inside the loss would let patients count for some labels and not others, and the
per-label metrics would then describe different cohorts.

Predictions table: patient_id, fold, true_<label> (0/1) per label, prob_<label> per label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from features.core.errors import ConfigError, InputError
from mil.config import EvaluateConfig
from mil.evaluate.columns import check_binary
from mil.tasks import TASKS
from mil.tasks.base import Task, binary_auc, require_columns
from mil.tasks.formatting import per_class_html, per_class_rows


def parse_binary(values: pd.Series, source: str, col: str) -> np.ndarray:
    """0/1 (also 0.0/1.0, true/false) -> float; empty -> NaN; anything else -> InputError."""
    lowered = values.map(
        lambda v: {"true": "1", "false": "0"}.get(str(v).strip().lower(), v) if pd.notna(v) else v
    )
    numbers = pd.to_numeric(lowered, errors="coerce")
    bad = numbers.isna() & lowered.notna() & (lowered.astype(str).str.strip() != "")
    bad |= numbers.notna() & ~numbers.isin([0, 1])
    if bad.any():
        raise InputError(
            f"{source}: column {col!r} must be 0/1 (or empty), found {values[bad].iloc[0]!r}; fix the CSV"
        )
    return numbers.to_numpy(dtype=np.float64)


@TASKS.register("multilabel")
class MultiLabel(Task):
    """Several binary labels from one head; binary cross-entropy per label with optional pos_weight."""

    kind = "multilabel"
    metric_name = "macro_auc"
    metric_label = "macro AUC"
    headline = ("macro_auc",)
    plots = {"roc.png": "ROC curves"}

    @classmethod
    def infers(cls, config) -> bool:
        return isinstance(config.target, list)

    @classmethod
    def resolve(cls, table: pd.DataFrame, config, source: str):
        from mil.tasks.spec import TaskSpec

        target = config.target
        if target is None:
            raise ConfigError("no target: pass --target COLUMN or set train.target in the config")
        cols = require_columns(table, [target] if isinstance(target, str) else list(target), source)
        if config.classes is not None and list(config.classes) != cols:
            raise ConfigError("multilabel: the labels are the target columns; leave train.classes empty")
        return TaskSpec("multilabel", cols, cols)

    @classmethod
    def check_spec(cls, spec) -> None:
        target = spec.target
        if isinstance(target, str) or len(target) != len(spec.classes) or not spec.classes:
            raise InputError(
                "task spec: multilabel needs one target column per label (same order as classes)"
            )

    def parse(self, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        y = np.stack([parse_binary(table[c], source, c) for c in self.spec.label_columns()], axis=1)
        has = ~np.isnan(y).any(axis=1)
        return np.nan_to_num(y, nan=-1).astype(np.float32), has

    def fold_counts(self, y: np.ndarray) -> tuple[dict[str, int], str, str]:
        counts = {c: int(y[:, i].sum()) for i, c in enumerate(self.spec.classes)}
        return counts, "positive patients", "drop the label from train.target"

    def fit_weights(self, y: np.ndarray, enabled: bool) -> None:
        # pos_weight = negatives / positives per label: a rare mutation weighs as much as its absence.
        if not enabled:
            self.weights = None
            return
        pos = y.sum(axis=0)
        self.weights = torch.tensor((len(y) - pos) / np.maximum(pos, 1), dtype=torch.float32)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        pos_weight = None if self.weights is None else self.weights.to(logits.device)
        return F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=pos_weight)

    def outputs(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits.float())

    def calibration_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, y.float())

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        aucs = [binary_auc(y[:, i], out[:, i]) for i in range(y.shape[1])]
        aucs = [a for a in aucs if not np.isnan(a)]
        return float(np.mean(aucs)) if aucs else float("nan")

    def strata(self, y: np.ndarray) -> np.ndarray:
        # The label combination ("10", "01", ...); the splitter merges combinations rarer than the fold count.
        return np.array(["".join(str(int(v)) for v in row) for row in y], dtype=object)

    def baseline_model(self, c: float):
        from mil.baselines.linear import OneVsRestLogistic

        return OneVsRestLogistic(c)

    def reliability(self, df: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return [
            (c, df[f"true_{c}"].to_numpy(float), df[f"prob_{c}"].to_numpy(float)) for c in self.spec.classes
        ]

    def truth_columns(self) -> list[str]:
        return [f"true_{c}" for c in self.spec.classes]

    def prediction_columns(self) -> list[str]:
        return self.prob_columns()

    def prob_columns(self) -> list[str]:
        return [f"prob_{c}" for c in self.spec.classes]

    def frame(
        self, patients: list[str], fold: int | None, y: np.ndarray | None, out: np.ndarray
    ) -> pd.DataFrame:
        df = pd.DataFrame({"patient_id": patients, "fold": fold})
        for i, c in enumerate(self.spec.classes):
            df[f"true_{c}"] = np.nan if y is None else y[:, i].astype(int)
        for i, c in enumerate(self.spec.classes):
            df[f"prob_{c}"] = out[:, i]
        return df

    def check_table(self, table: pd.DataFrame, source: str) -> None:
        check_binary(table, self.truth_columns(), source)

    def metric_block(self, df: pd.DataFrame, evaluate: EvaluateConfig) -> dict:
        from mil.evaluate.multilabel import multilabel_metrics

        truth = df[self.truth_columns()].to_numpy(int)
        probs = df[self.prob_columns()].to_numpy(float)
        return multilabel_metrics(truth, probs, self.spec.classes, evaluate)

    def figures(self, df: pd.DataFrame) -> list:
        from mil.evaluate.plots import roc_figure

        truth = df[self.truth_columns()].to_numpy(int) == 1
        return [("roc.png", roc_figure(truth, df[self.prob_columns()].to_numpy(float), self.spec.classes))]

    def paired_metric(self, df: pd.DataFrame):
        from mil.evaluate.classification import auc_weighted

        truth = df[self.truth_columns()].to_numpy(int)
        probs = df[self.prob_columns()].to_numpy(float)
        usable = [j for j in range(truth.shape[1]) if 0 < truth[:, j].sum() < len(truth)]
        strata = np.unique(truth, axis=0, return_inverse=True)[1].ravel()  # as `multilabel_metrics` draws

        def macro(weights: np.ndarray) -> np.ndarray:
            if not usable:
                return np.full(len(weights), np.nan)
            return np.mean([auc_weighted(truth[:, j] == 1, probs[:, j], weights) for j in usable], axis=0)

        return macro, strata

    def comparison_figure(self, tables: dict[str, pd.DataFrame]):
        from mil.evaluate.plots import roc_comparison_figure

        truth = next(iter(tables.values()))[self.truth_columns()].to_numpy(int) == 1
        scores = {name: df[self.prob_columns()].to_numpy(float) for name, df in tables.items()}
        return roc_comparison_figure(truth, scores, self.spec.classes)

    def detail_rows(self, block: dict) -> list[tuple[str, str, str]]:
        return per_class_rows(block)

    def report_html(self, block: dict, level: int) -> str:
        return per_class_html(block, level, "Per class (pooled, one vs rest)")

    def group(self, row: pd.Series | None, prediction: np.ndarray) -> tuple[set[str], str]:
        from mil.evaluate.multilabel import THRESHOLD  # the metrics' fixed threshold

        names, truth = self.spec.classes, self.truth_columns()
        if row is not None and all(pd.notna(row[c]) for c in truth):
            return {c for c, t in zip(names, truth, strict=True) if int(row[t]) == 1}, "truth"
        return {c for c, p in zip(names, prediction, strict=True) if p >= THRESHOLD}, "predicted"
