"""A one-hidden-layer MLP (ReLU, Adam, early stopping on a 10 % hold-out of the training cells), for
embeddings whose classes a linear map does not separate."""

from __future__ import annotations

import numpy as np

from mil.cells.classifiers import CLASSIFIERS
from mil.cells.classifiers.base import CellClassifier, log_softmax


@CLASSIFIERS.register("mlp")
class MLPProbe(CellClassifier):
    """One-hidden-layer MLP (ReLU) on z-scored embeddings, early-stopped."""

    kind = "mlp"

    def _fit(self, z: np.ndarray, code: np.ndarray) -> None:
        from sklearn.neural_network import MLPClassifier

        hidden, seed = int(self.params.get("hidden", 256)), int(self.params.get("seed", 0))
        if len(self.present_) == 1:
            self.w1_, self.b1_ = np.zeros((z.shape[1], 1), np.float32), np.zeros(1, np.float32)
            self.w2_, self.b2_ = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
            return
        early = len(z) >= 200 and np.bincount(code).min() >= 2
        fit = MLPClassifier(
            hidden_layer_sizes=(hidden,), alpha=1e-3, max_iter=300, early_stopping=early, random_state=seed
        ).fit(z, code)
        (w1, w2), (b1, b2) = fit.coefs_, fit.intercepts_
        if w2.shape[1] == 1:  # two classes: sklearn's single logistic unit is the logit of class 1 vs 0
            w2, b2 = np.hstack([-w2 / 2, w2 / 2]), np.array([-b2[0] / 2, b2[0] / 2])
        self.w1_, self.b1_, self.w2_, self.b2_ = (a.astype(np.float32) for a in (w1, b1, w2, b2))

    def _log_proba(self, z: np.ndarray) -> np.ndarray:
        hidden = np.maximum(z @ self.w1_ + self.b1_, 0.0)
        return log_softmax(hidden @ self.w2_ + self.b2_)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"w1": self.w1_, "b1": self.b1_, "w2": self.w2_, "b2": self.b2_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.w1_, self.b1_, self.w2_, self.b2_ = (arrays[k] for k in ("w1", "b1", "w2", "b2"))
