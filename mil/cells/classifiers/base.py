"""What every cell classifier shares: z-scoring with the training cells, classes absent from a fit, and the
log-softmax. Classifiers subclass `CellClassifier` and fill in `_fit`, `_log_proba` and their arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

FLOOR = -30.0  # log-probability of a class the classifier never saw in training (e^-30: never chosen)
# Below this many feature values (cells x dims) a fit runs BLAS on one thread: an lbfgs step on a few thousand
# cells is a small matrix product, and two BLAS threads on a busy 2-core machine made the linear probe's CV of
# 3,478 cytomorph cells 14x slower (18 s against 1.3 s), with identical results.
SMALL_FIT = 4_000_000


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class CellClassifier:
    """fit(x N x D, y N codes, n_classes) -> self; log_proba(x) -> N x n_classes; arrays() / from_arrays()."""

    kind = ""

    def __init__(self, **params: Any):
        self.params = params
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.present_: np.ndarray | None = None  # class codes seen in training
        self.n_classes_ = 0

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> CellClassifier:
        x = np.asarray(x, np.float32)
        self.mean_ = x.mean(0)
        sd = x.std(0)
        self.scale_ = np.where(sd > 1e-8, sd, 1.0).astype(np.float32)
        self.present_ = np.unique(y)
        self.n_classes_ = int(n_classes)
        code = np.searchsorted(self.present_, y)  # 0..len(present)-1
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1 if x.size < SMALL_FIT else None):
            self._fit(self._z(x), code)
        return self

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.full((len(x), self.n_classes_), FLOOR, np.float64)
        if len(x):
            out[:, self.present_] = np.maximum(self._log_proba(self._z(np.asarray(x, np.float32))), FLOOR)
        return out

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_

    def arrays(self) -> dict[str, np.ndarray]:
        base = {"mean": self.mean_, "scale": self.scale_, "present": self.present_}
        return {**base, **self._arrays()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_classes: int, **params: Any) -> CellClassifier:
        model = cls(**params)
        model.mean_, model.scale_ = arrays["mean"], arrays["scale"]
        model.present_, model.n_classes_ = arrays["present"].astype(np.int64), int(n_classes)
        model._restore(arrays)
        return model

    # -- for each kind -------------------------------------------------------------------------------------
    def _fit(self, z: np.ndarray, code: np.ndarray) -> None:
        raise NotImplementedError

    def _log_proba(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError
