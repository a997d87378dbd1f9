"""Multi-label: several 0/1 labels from one head (NPM1 and CBFB::MYH11 from one bag), one sigmoid each.

A patient needs every label to be used (a partly empty row is left out and counted, like an empty target):
masking single labels inside the loss would let patients count for some labels and not others, and the
per-label metrics would then describe different cohorts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from features.core.errors import InputError
from mil.tasks import TASKS
from mil.tasks.base import Task, binary_auc


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

    def parse(self, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        y = np.stack([parse_binary(table[c], source, c) for c in self.spec.columns()], axis=1)
        has = ~np.isnan(y).any(axis=1)
        return np.nan_to_num(y, nan=-1).astype(np.float32), has

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

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        aucs = [binary_auc(y[:, i], out[:, i]) for i in range(y.shape[1])]
        aucs = [a for a in aucs if not np.isnan(a)]
        return float(np.mean(aucs)) if aucs else float("nan")

    def frame(
        self, patients: list[str], fold: int | None, y: np.ndarray | None, out: np.ndarray
    ) -> pd.DataFrame:
        df = pd.DataFrame({"patient_id": patients, "fold": fold})
        for i, c in enumerate(self.spec.classes):
            df[f"true_{c}"] = np.nan if y is None else y[:, i].astype(int)
        for i, c in enumerate(self.spec.classes):
            df[f"prob_{c}"] = out[:, i]
        return df

    def strata(self, y: np.ndarray) -> np.ndarray:
        # The label combination ("10", "01", ...); the splitter merges combinations rarer than the fold count.
        return np.array(["".join(str(int(v)) for v in row) for row in y], dtype=object)
