"""Survival: a Cox proportional-hazards head, trained with the negative partial log-likelihood.

The head's single logit is the log relative hazard (risk, higher = worse). Ties in follow-up time use
Breslow's approximation: every patient still at risk at time t (time >= t, including the tied ones) is in the
denominator of each event at t. The loss is computed over the patients of one batch (as in DeepSurv-style
MIL training), and over all validation patients at once for early stopping. Concordance comes from lifelines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from features.core.errors import InputError
from mil.tasks import TASKS
from mil.tasks.base import Task
from mil.tasks.multilabel import parse_binary


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
    metric_name = "c_index"

    @property
    def n_outputs(self) -> int:
        return 1

    def parse(self, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        time_col, event_col = self.spec.columns()
        time = pd.to_numeric(table[time_col], errors="coerce")
        bad = time.isna() & table[time_col].notna() & (table[time_col].astype(str).str.strip() != "")
        if bad.any() or (time < 0).any():
            found = table[time_col][bad | (time < 0)].iloc[0]
            raise InputError(f"{source}: column {time_col!r} must be a time >= 0 (or empty), found {found!r}")
        event = parse_binary(table[event_col], source, event_col)
        has = time.notna().to_numpy() & ~np.isnan(event)
        y = np.stack([time.fillna(-1).to_numpy(np.float64), np.nan_to_num(event, nan=-1)], axis=1)
        return y.astype(np.float32), has

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return cox_ph_loss(logits[:, 0], y[:, 0], y[:, 1])

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float()

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        from mil.evaluate.survival import concordance  # lifelines, with the one risk-sign convention

        return float("nan") if y[:, 1].sum() == 0 else concordance(y[:, 0], y[:, 1], out[:, 0])

    def frame(
        self, patients: list[str], fold: int | None, y: np.ndarray | None, out: np.ndarray
    ) -> pd.DataFrame:
        df = pd.DataFrame({"patient_id": patients, "fold": fold})
        df["time"] = np.nan if y is None else y[:, 0]
        df["event"] = np.nan if y is None else y[:, 1].astype(int)
        df["risk"] = out[:, 0]
        return df

    def strata(self, y: np.ndarray) -> np.ndarray:
        return y[:, 1].astype(int)  # event status: every fold gets its share of events
