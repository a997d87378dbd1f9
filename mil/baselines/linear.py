"""The regularised linear models every baseline shares, one per task kind (`Task.baseline_model` picks one).

All three minimise C x (sum of per-patient losses) + ||w||^2 / 2 on features z-scored with the training
patients' mean and SD (a constant feature is centred and left at 0), so one C grid means the same thing for
each kind; C is chosen by the inner cross-validation (`mil.baselines.cv`).

- `LogisticModel`: binary or multinomial logistic regression (sklearn, lbfgs), classes weighted inversely to
  their frequency as the heads' default loss is. Outputs class probabilities, like `Classification.outputs`.
- `OneVsRestLogistic`: one binary logistic regression per label (multi-label), outputs P x L probabilities.
- `RidgeCox`: Cox partial likelihood (Breslow ties, as `mil.tasks.survival.cox_ph_loss`) with an L2 penalty,
  minimised by L-BFGS in numpy; outputs the log relative hazard. A p >> n penalised Cox fit in lifelines takes
  Newton steps on a p x p Hessian (seconds per fit at p = 1,920); this costs O(n p) per step.

Degenerate training data are not errors: a class (or label value) absent from the training patients gets
probability 0, the only class present gets 1, and no events give a zero risk; each case adds a note that the
run records. That is what the fitted model is in the limit, not a substitute for it.
"""

from __future__ import annotations

import warnings

import numpy as np

MIN_SD = 1e-8  # below this a training feature counts as constant: centred, not scaled
MAX_ITER = 2000


class LinearBaselineModel:
    """fit(x, y) / predict(x) on raw patient features; z-scoring with the training rows lives here."""

    def __init__(self, c: float):
        self.c = float(c)
        self.notes: list[str] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearBaselineModel:
        x = np.asarray(x, np.float64)
        self.mean = x.mean(axis=0)
        sd = x.std(axis=0)
        self.sd = np.where(sd > MIN_SD, sd, 1.0)
        self._fit(self._z(x), np.asarray(y))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._predict(self._z(np.asarray(x, np.float64)))

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.sd

    def _fit(self, z: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _Binary:
    """P(y = 1) from one logistic regression, or a constant when the training rows hold one value only."""

    def __init__(self, z: np.ndarray, y: np.ndarray, c: float, notes: list[str], what: str):
        values = np.unique(y)
        self.constant = float(values[0]) if len(values) == 1 else None
        if self.constant is not None:
            notes.append(f"{what}: the training patients are all {int(self.constant)}; predicted constant")
            return
        self.model = _logistic(z, y, c, notes, what)

    def proba(self, z: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.full(len(z), self.constant)
        return self.model.predict_proba(z)[:, 1]


class LogisticModel(LinearBaselineModel):
    """Class probabilities (P x n_classes) from a class-weighted binary or multinomial logistic regression."""

    def __init__(self, c: float, n_classes: int):
        super().__init__(c)
        self.n_classes = n_classes

    def _fit(self, z: np.ndarray, y: np.ndarray) -> None:
        y = y.astype(int)
        self.present = np.unique(y)
        if len(self.present) < 2:
            self.notes.append(
                f"the training patients hold one class only (index {self.present[0]}); predicted constant"
            )
            self.model = None
            return
        self.model = _logistic(z, y, self.c, self.notes, "classes")

    def _predict(self, z: np.ndarray) -> np.ndarray:
        out = np.zeros((len(z), self.n_classes))
        if self.model is None:
            out[:, self.present[0]] = 1.0
        else:
            out[:, self.present] = self.model.predict_proba(z)  # absent classes keep probability 0
        return out


class OneVsRestLogistic(LinearBaselineModel):
    """One class-weighted logistic regression per label: P x L probabilities."""

    def _fit(self, z: np.ndarray, y: np.ndarray) -> None:
        self.labels = [
            _Binary(z, y[:, j].astype(int), self.c, self.notes, f"label {j}") for j in range(y.shape[1])
        ]

    def _predict(self, z: np.ndarray) -> np.ndarray:
        return np.stack([label.proba(z) for label in self.labels], axis=1)


class RidgeCox(LinearBaselineModel):
    """Cox proportional hazards with an L2 penalty; outputs P x 1 log relative hazard (higher = worse)."""

    def _fit(self, z: np.ndarray, y: np.ndarray) -> None:
        from scipy.optimize import minimize

        time, event = y[:, 0].astype(np.float64), y[:, 1].astype(np.float64)
        self.beta = np.zeros(z.shape[1])
        if event.sum() == 0:
            self.notes.append("no event among the training patients; predicted risk 0 for all")
            return
        objective = penalised_cox(z, time, event, self.c)
        found = minimize(objective, self.beta, jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITER})
        if not found.success:
            self.notes.append(f"Cox fit at C={self.c:g} stopped early ({found.message})")
        self.beta = found.x

    def _predict(self, z: np.ndarray) -> np.ndarray:
        return (z @ self.beta)[:, None]


def penalised_cox(z: np.ndarray, time: np.ndarray, event: np.ndarray, c: float):
    """beta -> (C x negative Breslow partial log-likelihood + ||beta||^2 / 2, its gradient).

    Sorted by time descending, each risk set is a prefix, extended over tied times to the last tied patient
    (as `cox_ph_loss`); cumulative sums of w = exp(eta - max eta) give every denominator and its gradient."""
    order = np.argsort(-time, kind="stable")
    z, time, event = z[order], time[order], event[order]
    ascending = -time
    last_tied = np.searchsorted(ascending, ascending, side="right") - 1

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = z @ beta
        top = eta.max()
        w = np.exp(eta - top)
        s0 = np.cumsum(w)[last_tied]
        s1 = np.cumsum(w[:, None] * z, axis=0)[last_tied]
        nll = -np.sum(event * (eta - np.log(s0) - top))
        grad = -(event[:, None] * (z - s1 / s0[:, None])).sum(axis=0)
        return c * nll + 0.5 * beta @ beta, c * grad + beta

    return objective


def _logistic(z: np.ndarray, y: np.ndarray, c: float, notes: list[str], what: str):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=MAX_ITER).fit(z, y)
    for w in caught:  # convergence becomes a note of the run; anything else is warned as usual
        if issubclass(w.category, ConvergenceWarning):
            notes.append(f"{what}: logistic regression at C={c:g} did not converge in {MAX_ITER} iterations")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model
