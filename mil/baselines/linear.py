"""The regularised linear models every baseline shares, one per task kind (`Task.baseline_model` picks one).

All three minimise C x (sum of per-patient losses) + ||w||^2 / 2 on features z-scored with the training
patients' mean and SD (a constant feature is centred and left at 0), so one C grid means the same thing for
each kind; C is chosen by the inner cross-validation (`mil.baselines.cv`).

- `LogisticModel`: binary or multinomial logistic regression (sklearn, lbfgs), classes weighted inversely to
  their frequency as the heads' default loss is. Outputs class probabilities, like `Classification.outputs`.
- `OneVsRestLogistic`: one binary logistic regression per label (multi-label), outputs P x L probabilities.
- `RidgeCox`: Cox partial likelihood (Breslow ties, as `mil.tasks.survival.cox_ph_loss`) with an L2 penalty,
  minimised by L-BFGS in numpy, O(n p) per step; outputs the log relative hazard. lifelines' penalised
  CoxPHFitter takes Newton steps on a p x p Hessian: one fit on 240 patients x 1,920 features took 286 s
  against 3.0 s here, same coefficients to 2e-4 (benchmarks/baselines.py, a loaded machine).

`fit(x, y, start=model)` warm-starts from `model`, the same kind fitted on the same rows with a smaller C: the
inner CV walks the C grid upwards per inner split, as glmnet walks its path, and the weakly penalised fits that
dominate the cost start near their answer (ridge Cox on 240 x 1,920: 4.9x fewer seconds for the 13 values,
warm-started and with `COX_FTOL` 1e-7 instead of scipy's 2.2e-9). The optimum does not depend on the start.

Degenerate training data are not errors: a class (or label value) absent from the training patients gets
probability 0, the only class present gets 1, and no events give a zero risk; each case adds a note that the
run records. That is what the fitted model is in the limit, not a substitute for it.
"""

from __future__ import annotations

import warnings

import numpy as np

MIN_SD = 1e-8  # below this a training feature counts as constant: centred, not scaled
MAX_ITER = 2000
COX_FTOL = 1e-7  # relative decrease that ends a Cox fit: far below what moves a c-index


class LinearBaselineModel:
    """fit(x, y) / predict(x) on raw patient features; z-scoring with the training rows lives here."""

    def __init__(self, c: float):
        self.c = float(c)
        self.notes: list[str] = []
        # Per-feature multiplier of the penalty (glmnet's penalty.factor), None = 1 for all: the fit runs on
        # z-scores divided by sqrt(factor), which is the same ridge with factor x w^2 for that weight; inf
        # leaves the feature out (its z-scores are 0, so its weight stays 0).
        self.penalty_factor: np.ndarray | None = None

    def fit(
        self, x: np.ndarray, y: np.ndarray, start: LinearBaselineModel | None = None
    ) -> LinearBaselineModel:
        """Fit on rows x (patients x features), targets y; `start`: a fit on the same rows to start from."""
        x = np.asarray(x, np.float64)
        self.mean = x.mean(axis=0)
        sd = x.std(axis=0)
        self.sd = np.where(sd > MIN_SD, sd, 1.0)
        if self.penalty_factor is not None:
            self.sd = self.sd * np.sqrt(np.asarray(self.penalty_factor, np.float64))
        self._fit(self._z(x), np.asarray(y), start)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._predict(self._z(np.asarray(x, np.float64)))

    def logit_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(mean, sd, weight K x F, bias K) with logits = ((x - mean) / sd) @ weight.T + bias, the fitted model
        as a layer a head can start from (`mil.training.prior`); None where it has no such form."""
        return None

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The model's logits on rows x (`logit_weights`); its outputs where it has no logit form."""
        weights = self.logit_weights()
        if weights is None:
            return self.predict(x)
        mean, sd, weight, bias = weights
        return ((np.asarray(x, np.float64) - mean) / sd) @ weight.T + bias

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.sd

    def _fit(self, z: np.ndarray, y: np.ndarray, start: LinearBaselineModel | None) -> None:
        raise NotImplementedError

    def _predict(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _Binary:
    """P(y = 1) from one logistic regression, or a constant when the training rows hold one value only."""

    def __init__(self, z: np.ndarray, y: np.ndarray, c: float, notes: list[str], what: str, start=None):
        values = np.unique(y)
        self.constant = float(values[0]) if len(values) == 1 else None
        self.model = None
        if self.constant is not None:
            notes.append(f"{what}: the training patients are all {int(self.constant)}; predicted constant")
            return
        self.model = _logistic(z, y, c, notes, what, None if start is None else start.model)

    def proba(self, z: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.full(len(z), self.constant)
        return self.model.predict_proba(z)[:, 1]


class LogisticModel(LinearBaselineModel):
    """Class probabilities (P x n_classes) from a class-weighted binary or multinomial logistic regression."""

    def __init__(self, c: float, n_classes: int):
        super().__init__(c)
        self.n_classes = n_classes

    def _fit(self, z: np.ndarray, y: np.ndarray, start: LogisticModel | None) -> None:
        y = y.astype(int)
        self.present = np.unique(y)
        if len(self.present) < 2:
            self.notes.append(
                f"the training patients hold one class only (index {self.present[0]}); predicted constant"
            )
            self.model = None
            return
        self.model = _logistic(z, y, self.c, self.notes, "classes", None if start is None else start.model)

    def logit_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Softmax logits; binary: one logit on the positive class. One class only: None (nothing to start from)."""
        if self.model is None:
            return None
        weight, bias = np.zeros((self.n_classes, len(self.mean))), np.zeros(self.n_classes)
        if len(self.present) == 2:
            weight[self.present[1]], bias[self.present[1]] = self.model.coef_[0], self.model.intercept_[0]
        else:
            weight[self.present], bias[self.present] = self.model.coef_, self.model.intercept_
        return self.mean, self.sd, weight, bias

    def _predict(self, z: np.ndarray) -> np.ndarray:
        out = np.zeros((len(z), self.n_classes))
        if self.model is None:
            out[:, self.present[0]] = 1.0
        else:
            out[:, self.present] = self.model.predict_proba(z)  # absent classes keep probability 0
        return out


class OneVsRestLogistic(LinearBaselineModel):
    """One class-weighted logistic regression per label: P x L probabilities."""

    def _fit(self, z: np.ndarray, y: np.ndarray, start: OneVsRestLogistic | None) -> None:
        starts = [None] * y.shape[1] if start is None else start.labels
        self.labels = [
            _Binary(z, y[:, j].astype(int), self.c, self.notes, f"label {j}", starts[j])
            for j in range(y.shape[1])
        ]

    def _predict(self, z: np.ndarray) -> np.ndarray:
        return np.stack([label.proba(z) for label in self.labels], axis=1)

    def logit_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """One sigmoid logit per label; a label constant among the training patients: its clipped log-odds."""
        weight, bias = np.zeros((len(self.labels), len(self.mean))), np.zeros(len(self.labels))
        for j, label in enumerate(self.labels):
            if label.constant is not None:
                rate = min(max(label.constant, 1e-3), 1 - 1e-3)
                bias[j] = np.log(rate / (1 - rate))
            else:
                weight[j], bias[j] = label.model.coef_[0], label.model.intercept_[0]
        return self.mean, self.sd, weight, bias


class RidgeCox(LinearBaselineModel):
    """Cox proportional hazards with an L2 penalty; outputs P x 1 log relative hazard (higher = worse)."""

    def _fit(self, z: np.ndarray, y: np.ndarray, start: RidgeCox | None) -> None:
        from scipy.optimize import minimize

        time, event = y[:, 0].astype(np.float64), y[:, 1].astype(np.float64)
        self.beta = np.zeros(z.shape[1])
        if event.sum() == 0:
            self.notes.append("no event among the training patients; predicted risk 0 for all")
            return
        objective = penalised_cox(z, time, event, self.c)
        first = self.beta if start is None else start.beta
        options = {"maxiter": MAX_ITER, "ftol": COX_FTOL}
        found = minimize(objective, first, jac=True, method="L-BFGS-B", options=options)
        if not found.success:
            self.notes.append(f"Cox fit at C={self.c:g} stopped early ({found.message})")
        self.beta = found.x

    def _predict(self, z: np.ndarray) -> np.ndarray:
        return (z @ self.beta)[:, None]

    def logit_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The log relative hazard as one output (no intercept: a Cox model has none)."""
        return self.mean, self.sd, self.beta[None, :].copy(), np.zeros(1)


def penalised_cox(z: np.ndarray, time: np.ndarray, event: np.ndarray, c: float):
    """beta -> (C x negative Breslow partial log-likelihood + ||beta||^2 / 2, its gradient), in O(n p).

    Sorted by time descending, each risk set is a prefix, extended over tied times to the last tied patient k
    (as `cox_ph_loss`), so every log-denominator is a running log-sum-exp, LS_k = logaddexp.accumulate(eta)
    (stable for any eta, unlike one exp(eta - max eta), which underflows to log 0 when the optimiser tries
    large steps). The gradient's risk-set means, sum over events i of sum_{j <= k_i} exp(eta_j - LS_{k_i}) z_j,
    are regrouped by patient j: z^T (exp(eta_j) x sum_{k >= j} n_k exp(-LS_k)) with n_k the events whose risk
    set ends at k, a reverse running log-sum-exp; two matrix-vector products instead of an n x p cumsum."""
    order = np.argsort(-time, kind="stable")
    z, time, event = z[order], time[order], event[order]
    ascending = -time
    last_tied = np.searchsorted(ascending, ascending, side="right") - 1
    with np.errstate(divide="ignore"):  # log 0 = -inf: no event ends a risk set there
        log_events_at = np.log(np.bincount(last_tied, weights=event, minlength=len(time)))
    event_z = event @ z

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = z @ beta
        log_s0 = np.logaddexp.accumulate(eta)
        nll = -np.sum(event * (eta - log_s0[last_tied]))
        log_a = np.logaddexp.accumulate((log_events_at - log_s0)[::-1])[::-1]  # sum over k >= j
        grad = -event_z + z.T @ np.exp(eta + log_a)
        return c * nll + 0.5 * beta @ beta, c * grad + beta

    return objective


def _logistic(z: np.ndarray, y: np.ndarray, c: float, notes: list[str], what: str, start=None):
    """A class-weighted sklearn logistic regression; `start`: a fitted one on the same rows and classes."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(
            C=c, class_weight="balanced", max_iter=MAX_ITER, warm_start=start is not None
        )
        if start is not None and np.array_equal(start.classes_, np.unique(y)):
            model.coef_, model.intercept_ = start.coef_.copy(), start.intercept_.copy()
        model.fit(z, y)
    for w in caught:  # convergence becomes a note of the run; anything else is warned as usual
        if issubclass(w.category, ConvergenceWarning):
            notes.append(f"{what}: logistic regression at C={c:g} did not converge in {MAX_ITER} iterations")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model
