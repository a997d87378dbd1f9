"""The linear probe: multinomial logistic regression on z-scored embeddings (how DinoBloom and DINOv2 are
evaluated: the encoder stays frozen, only a linear map is learnt)."""

from __future__ import annotations

import numpy as np

from mil.cells.classifiers import CLASSIFIERS
from mil.cells.classifiers.base import CellClassifier, log_softmax

C_INVERSE_L2 = 1.0  # sklearn's default; on z-scored features it needs no tuning for a probe's use here


@CLASSIFIERS.register("linear")
class LinearProbe(CellClassifier):
    """Linear probe: multinomial logistic regression (L2, lbfgs) on z-scored embeddings."""

    kind = "linear"

    def _fit(self, z: np.ndarray, code: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        if len(self.present_) == 1:  # one class: nothing to separate
            self.coef_ = np.zeros((1, z.shape[1]), np.float32)
            self.intercept_ = np.zeros(1, np.float32)
            return
        fit = LogisticRegression(C=C_INVERSE_L2, max_iter=2000, tol=1e-4).fit(z, code)
        coef, intercept = fit.coef_, fit.intercept_
        if len(self.present_) == 2:  # sklearn keeps one row for two classes: logit of class 1 vs 0
            coef, intercept = (
                np.vstack([-coef / 2, coef / 2]),
                np.array([-intercept[0] / 2, intercept[0] / 2]),
            )
        self.coef_, self.intercept_ = coef.astype(np.float32), intercept.astype(np.float32)

    def _log_proba(self, z: np.ndarray) -> np.ndarray:
        return log_softmax(z @ self.coef_.T + self.intercept_)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_, "intercept": self.intercept_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]
