"""k nearest neighbours (Euclidean on z-scored embeddings): no fit at all, so a label set is usable at once;
the model keeps every training cell. Votes are smoothed (half a vote spread over the classes) so no class gets
probability 0, which calibration and a log-loss need."""

from __future__ import annotations

import numpy as np

from mil.cells.classifiers import CLASSIFIERS
from mil.cells.classifiers.base import CellClassifier

SMOOTHING = 0.5  # votes added in total, spread evenly over the classes seen in training


@CLASSIFIERS.register("knn")
class KNNClassifier(CellClassifier):
    """k nearest neighbours on z-scored embeddings (smoothed votes)."""

    kind = "knn"

    def _fit(self, z: np.ndarray, code: np.ndarray) -> None:
        self.train_, self.code_ = z.astype(np.float32), code.astype(np.int64)
        self._index = None

    def _log_proba(self, z: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import NearestNeighbors

        k = min(int(self.params.get("neighbours", 15)), len(self.train_))
        if self._index is None:
            self._index = NearestNeighbors(n_neighbors=k).fit(self.train_)
        _, nearest = self._index.kneighbors(z, n_neighbors=k)
        n_present = len(self.present_)
        votes = np.zeros((len(z), n_present))
        np.add.at(votes, (np.repeat(np.arange(len(z)), k), self.code_[nearest].ravel()), 1.0)
        return np.log((votes + SMOOTHING / n_present) / (k + SMOOTHING))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"train": self.train_, "code": self.code_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.train_, self.code_, self._index = arrays["train"], arrays["code"].astype(np.int64), None
