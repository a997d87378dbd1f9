"""Survival: a Cox proportional-hazards head, trained with the negative partial log-likelihood.

The head's single logit is the log relative hazard (risk, higher = worse). Ties in follow-up time use
Breslow's approximation: every patient still at risk at time t (time >= t, including the tied ones) is in the
denominator of each event at t. The loss is computed over the patients of one batch (as in DeepSurv-style
MIL training), and over all validation patients at once for early stopping. Concordance comes from lifelines.

Predictions table: patient_id, fold, time, event (0/1), risk (higher = worse). Cohort explanations have no
classes: "risk" groups the patients the ensemble puts above the median predicted risk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from features.core.errors import ConfigError, InputError
from mil.config import EvaluateConfig
from mil.evaluate.columns import check_binary
from mil.tasks import TASKS
from mil.tasks.base import Task, median_split, require_columns
from mil.tasks.multilabel import parse_binary

# A Cox risk is a log relative hazard, not a probability: there is nothing to calibrate, and a run must not
# record a calibration it did not apply
NO_CALIBRATION = (
    "calibration {}: survival risks are not calibrated (a Cox risk is a relative hazard, not a probability); "
    "set train.calibration to none"
)


def cox_ph_loss(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), averaged over events; 0 if there is no event.

    sum over events i of [ r_i - log sum_{j: t_j >= t_i} exp(r_j) ] / n_events. Sorting by time descending
    turns each risk set into a prefix, so a cumulative logsumexp gives every denominator in O(n log n); for
    tied times the prefix is extended to the last tied patient (searchsorted on the sorted times).
    """
    risk, time, event = risk.reshape(-1).float(), time.reshape(-1).float(), event.reshape(-1).float()
    n_events = event.sum()
    if n_events == 0:
        return risk.sum() * 0.0  # keeps the graph; a batch without events carries no signal
    order = torch.argsort(time, descending=True)
    r, t, e = risk[order], time[order], event[order]
    log_cum = torch.logcumsumexp(r, dim=0)
    ascending = -t  # ascending copy, so the last index of each tied group is a right-searchsorted
    last_tied = torch.searchsorted(ascending, ascending, right=True) - 1
    log_denominator = log_cum[last_tied]
    return -((r - log_denominator) * e).sum() / n_events


@TASKS.register("survival")
class Survival(Task):
    """Cox partial likelihood (Breslow ties) on time/event columns; risk = log relative hazard."""

    kind = "survival"
    shift_invariant = True  # Cox risks: a model is defined up to an additive constant
    metric_name = "c_index"
    metric_label = "c-index"
    headline = ("c_index",)
    plots = {"km.png": "Kaplan-Meier curves"}

    @property
    def n_outputs(self) -> int:
        return 1

    @classmethod
    def infers(cls, config) -> bool:
        return config.target is None and bool(config.time_col and config.event_col)

    @classmethod
    def check_config(cls, config) -> None:
        if not (config.time_col and config.event_col):
            raise ValueError("task survival needs time_col and event_col")
        if config.calibration != "none":
            raise ValueError(NO_CALIBRATION.format(config.calibration))

    @classmethod
    def resolve(cls, table: pd.DataFrame, config, source: str):
        from mil.tasks.spec import TaskSpec

        if not (config.time_col and config.event_col):
            raise ConfigError("survival needs train.time_col and train.event_col (--time-col, --event-col)")
        if config.calibration != "none":  # an inferred survival task (no train.task) reaches this first
            raise ConfigError(NO_CALIBRATION.format(config.calibration))
        return TaskSpec("survival", require_columns(table, [config.time_col, config.event_col], source), [])

    @classmethod
    def check_spec(cls, spec) -> None:
        if isinstance(spec.target, str) or len(spec.target) != 2 or spec.classes:
            raise InputError("task spec: survival needs target [time_col, event_col] and no classes")

    def parse(self, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        time_col, event_col = self.spec.label_columns()
        time = pd.to_numeric(table[time_col], errors="coerce")
        bad = time.isna() & table[time_col].notna() & (table[time_col].astype(str).str.strip() != "")
        bad |= (time < 0) | np.isinf(time)  # inf / -inf parse as numbers; no follow-up is infinite
        if bad.any():
            at = int(np.flatnonzero(bad.to_numpy())[0])
            who = (
                f"patient {table['patient_id'].iloc[at]!r}"
                if "patient_id" in table.columns
                else f"row {at + 1}"
            )
            raise InputError(
                f"{source}: column {time_col!r} must be a finite time >= 0 (or empty), found "
                f"{table[time_col].iloc[at]!r} for {who}; fix the time or leave it empty"
            )
        event = parse_binary(table[event_col], source, event_col)
        has = time.notna().to_numpy() & ~np.isnan(event)
        # float64: the times go back into predictions.csv as the labels gave them (float32 turns 9.3 into
        # 9.300000190734863); the training tensors are cast to float32 where they are built (mil.training.data)
        return np.stack([time.fillna(-1).to_numpy(np.float64), np.nan_to_num(event, nan=-1)], axis=1), has

    def fold_counts(self, y: np.ndarray) -> tuple[dict[str, int], str, str]:
        return {"event": int(y[:, 1].sum())}, "patients with an event", "wait for more events"

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return cox_ph_loss(logits[:, 0], y[:, 0], y[:, 1])

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float()

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        from mil.evaluate.survival import concordance  # lifelines, with the one risk-sign convention

        return float("nan") if y[:, 1].sum() == 0 else concordance(y[:, 0], y[:, 1], out[:, 0])

    def strata(self, y: np.ndarray) -> np.ndarray:
        return y[:, 1].astype(int)  # event status: every fold gets its share of events

    def baseline_model(self, c: float):
        from mil.baselines.linear import RidgeCox

        return RidgeCox(c)

    def truth_columns(self) -> list[str]:
        return ["time", "event"]

    def prediction_columns(self) -> list[str]:
        return ["risk"]

    def frame(
        self, patients: list[str], fold: int | None, y: np.ndarray | None, out: np.ndarray
    ) -> pd.DataFrame:
        df = pd.DataFrame({"patient_id": patients, "fold": fold})
        df["time"] = np.nan if y is None else y[:, 0]
        df["event"] = np.nan if y is None else y[:, 1].astype(int)
        df["risk"] = out[:, 0]
        return df

    def check_table(self, table: pd.DataFrame, source: str) -> None:
        check_binary(table, ["event"], source)
        if (table["time"].isna() != table["event"].isna()).any():
            raise InputError(f"{source}: time and event must be both given or both empty for each patient")
        if (table["time"] < 0).any() or np.isinf(table["time"]).any():
            raise InputError(f"{source}: column time must be finite and >= 0")

    def metric_block(self, df: pd.DataFrame, evaluate: EvaluateConfig) -> dict:
        from mil.evaluate.survival import survival_metrics

        time, event, risk = df["time"].to_numpy(float), df["event"].to_numpy(int), df["risk"].to_numpy(float)
        return survival_metrics(time, event, risk, evaluate)

    def figures(self, df: pd.DataFrame) -> list:
        from mil.evaluate.plots import new_figure, plot_km
        from mil.evaluate.survival import GROUP_METHODS, kaplan_meier, risk_groups, survival_metrics

        time, event, risk = (df[c].to_numpy(float) for c in ("time", "event", "risk"))
        groups, _ = risk_groups(risk, "median")
        fig, ax = new_figure(7, 5.5, bottom=0.3)
        plot_km(ax, kaplan_meier(time, event, groups, GROUP_METHODS["median"]))
        p = survival_metrics(time, event, risk, EvaluateConfig(n_bootstrap=0))["logrank_p"]
        ax.set_title(
            f"risk split at the median, log-rank p = {p:.3g}" if p is not None else "risk split at the median"
        )
        return [("km.png", fig)]

    def paired_metric(self, df: pd.DataFrame):
        from mil.evaluate.survival import concordance_weighted

        time, event, risk = df["time"].to_numpy(float), df["event"].to_numpy(int), df["risk"].to_numpy(float)
        return (
            lambda weights: concordance_weighted(time, event, risk, weights)
        ), None  # unstratified, as the CI

    def comparison_figure(self, tables: dict[str, pd.DataFrame]):
        from mil.evaluate.plots import km_comparison_figure
        from mil.evaluate.survival import GROUP_METHODS, kaplan_meier, risk_groups, survival_metrics

        panels = {}
        for name, df in tables.items():
            time, event, risk = (df[c].to_numpy(float) for c in ("time", "event", "risk"))
            fits = kaplan_meier(time, event, risk_groups(risk, "median")[0], GROUP_METHODS["median"])
            p = survival_metrics(time, event, risk, EvaluateConfig(n_bootstrap=0))["logrank_p"]
            panels[name] = (
                fits,
                "split at the median risk" + (f", log-rank p = {p:.3g}" if p is not None else ""),
            )
        return km_comparison_figure(panels)

    def headline_rows(self, block: dict) -> list[tuple[str, str, str]]:
        p = block.get("logrank_p")
        return [
            *super().headline_rows(block),
            ("log-rank p (median split)", "-" if p is None else f"{p:.3g}", ""),
        ]

    def report_html(self, block: dict, level: int) -> str:
        from mil.report.html import table

        if not block.get("groups"):
            return ""
        rows = [
            [g, b.get("n"), b.get("n_events"), b.get("median_survival")] for g, b in block["groups"].items()
        ]
        heading = "<h3>Risk groups (split at the median predicted risk)</h3>"
        return heading + table(["group", "patients", "events", "median survival"], rows)

    def output_names(self) -> list[str]:
        return ["risk"]

    def cohort_groups(
        self, outputs: dict[str, np.ndarray], rows: dict[str, pd.Series], off_task: set[str]
    ) -> dict[str, tuple[set[str], str]]:
        return median_split(outputs, off_task, "risk", ("high risk", "low risk"))
