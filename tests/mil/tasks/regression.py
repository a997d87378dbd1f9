"""A task kind written the way a new one is added to `mil/tasks/`: one module, registered in `TASKS`.

Regression of a continuous patient-level value (e.g. a blast percentage): squared-error loss on the head's one
output, R^2 and mean absolute error with bootstrap CIs, a predicted-vs-true scatter, and cohort explanations
that group the patients predicted above the median. `tests/mil/tasks/test_new_kind.py` registers it for one
test and runs it through `mil list`, `mil train`, `mil evaluate` and `mil report`.

Predictions table: patient_id, fold, y_true (number), y_pred (number).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch.nn.functional as F
from torch import Tensor

from features.core.errors import ConfigError, InputError
from mil.config import EvaluateConfig
from mil.tasks import TASKS, TaskSpec
from mil.tasks.base import Task, median_split, require_columns


def r2_weighted(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Coefficient of determination for each row of bootstrap weights (B x n); NaN for a constant truth."""
    total = weights.sum(axis=1, keepdims=True)
    mean = (weights * y).sum(axis=1, keepdims=True) / total
    residual = (weights * (y - pred) ** 2).sum(axis=1)
    spread = (weights * (y - mean) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, 1 - residual / np.where(spread > 0, spread, 1), np.nan)


def mae_weighted(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (weights * np.abs(y - pred)).sum(axis=1) / weights.sum(axis=1)


@TASKS.register("regression")
class Regression(Task):
    """Continuous target (e.g. blast percentage): squared error; R^2 and MAE with bootstrap CIs."""

    kind = "regression"
    metric_name = "r2"
    metric_label = "R^2"
    headline = ("r2", "mae")
    plots = {"scatter.png": "predicted vs true values"}

    @classmethod
    def resolve(cls, table: pd.DataFrame, config, source: str) -> TaskSpec:
        if not isinstance(config.target, str):
            raise ConfigError("regression reads one target column: pass --target COLUMN")
        return TaskSpec("regression", require_columns(table, [config.target], source)[0], [])

    @classmethod
    def check_spec(cls, spec: TaskSpec) -> None:
        if not isinstance(spec.target, str) or spec.classes:
            raise InputError("task spec: regression needs one target column and no classes")

    def parse(self, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        raw = table[self.spec.target]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna()
        if bad.any():
            raise InputError(
                f"{source}: column {self.spec.target!r} must be a number, found {raw[bad].iloc[0]!r}"
            )
        return values.fillna(0).to_numpy(np.float32), values.notna().to_numpy()

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(logits[:, 0], y.float())

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float()

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        return float(r2_weighted(y, out[:, 0], np.ones((1, len(y))))[0])

    def strata(self, y: np.ndarray) -> np.ndarray:
        return np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))  # low / middle / high thirds in every fold

    def truth_columns(self) -> list[str]:
        return ["y_true"]

    def prediction_columns(self) -> list[str]:
        return ["y_pred"]

    def frame(
        self, patients: list[str], fold: int | None, y: np.ndarray | None, out: np.ndarray
    ) -> pd.DataFrame:
        df = pd.DataFrame({"patient_id": patients, "fold": fold})
        df["y_true"] = np.nan if y is None else y
        df["y_pred"] = out[:, 0]
        return df

    def metric_block(self, df: pd.DataFrame, evaluate: EvaluateConfig) -> dict:
        from mil.evaluate.bootstrap import bootstrap_ci

        y, pred = df["y_true"].to_numpy(float), df["y_pred"].to_numpy(float)

        def ci(metric):
            return bootstrap_ci(
                metric, y, pred, n=evaluate.n_bootstrap, rng=np.random.default_rng(evaluate.seed)
            ).to_dict()

        return {"n": len(df), "r2": ci(r2_weighted), "mae": ci(mae_weighted)}

    def figures(self, df: pd.DataFrame) -> list:
        from mil.evaluate.plots import new_figure

        fig, ax = new_figure(6, 6)
        ax.scatter(df["y_true"], df["y_pred"], s=12)
        ax.set(xlabel="true", ylabel="predicted", title=f"predicted vs true, pooled (n={len(df)})")
        return [("scatter.png", fig)]

    def report_html(self, block: dict, level: int) -> str:
        from mil.report.html import table

        return "<h3>Regression errors (pooled)</h3>" + table(
            ["patients", "MAE"], [[block["n"], block["mae"]["estimate"]]]
        )

    def output_names(self) -> list[str]:
        return ["value"]

    def cohort_groups(self, outputs: dict, rows: dict, off_task: set[str]) -> dict:
        return median_split(outputs, off_task, "value", ("high value", "low value"))
