"""A trained cell-type model: the classifier's arrays, its classes, temperature, vocabulary and encoder.

CELLMODEL/ holds `cellmodel.json` (what it is: classifier kind and params, classes, temperature, the
vocabulary as it was, the encoder identity of the embeddings it learnt, the slides and patients it learnt
from, config and provenance) and `model.npz` (the classifier's arrays). Plain numbers, no pickle: a model
loads in any later mil without running code from the file.

A model reads only embeddings of its own encoder: `check_store` refuses any other store in one line (a
DinoBloom-S probe applied to cytomorph features would return confident nonsense).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.bagstore import BagStore, EncoderIdentity
from features.core.errors import InputError, StoreError
from mil.cells.calibration import apply_temperature
from mil.cells.classifiers import CellClassifier, load_classifier
from mil.cells.vocabulary import Vocabulary

SCHEMA = "mil.cellmodel/1"
PREDICT_BATCH = 65_536  # cells per block: bounds the knn distance matrix and the MLP's hidden layer


@dataclass
class CellModel:
    classifier: CellClassifier
    kind: str
    params: dict[str, Any]
    classes: list[str]
    temperature: float
    vocabulary: Vocabulary
    encoder: EncoderIdentity
    trained_on: dict[str, Any] = field(default_factory=dict)  # "bags" (resolved path), "slides", "patients"
    record: dict[str, Any] = field(default_factory=dict)  # config, account, provenance, as written
    path: Path | None = None

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """N x C calibrated probabilities over `classes`."""
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or features.shape[1] != self.encoder.dim:
            raise InputError(f"features are {features.shape}, this cell model reads N x {self.encoder.dim}")
        out = np.empty((len(features), len(self.classes)), np.float64)
        for start in range(0, len(features), PREDICT_BATCH):
            block = features[start : start + PREDICT_BATCH]
            out[start : start + len(block)] = apply_temperature(
                self.classifier.log_proba(block), self.temperature
            )
        return out

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N type names, N probabilities of those types)."""
        proba = self.predict_proba(features)
        top = proba.argmax(1) if len(proba) else np.zeros(0, np.int64)
        return np.asarray(self.classes, dtype=object)[top], proba[np.arange(len(top)), top]

    def type_counts(self, features: np.ndarray) -> np.ndarray:
        """C cells per type of one slide's or patient's N cells, each typed as its most probable class (what
        `mil cells count` counts and the `cell_composition` baseline shares)."""
        from mil.cells.count import count_types

        return count_types(self.predict_proba(features).argmax(1), len(self.classes))

    def counted(self) -> np.ndarray:
        """C booleans: the classes that enter percentages (artefact, smudge, unknown, platelet do not)."""
        return np.array([self.vocabulary.counted(c) for c in self.classes], bool)

    def colours(self) -> dict[str, tuple[int, int, int]]:
        return self.vocabulary.colours(self.classes)

    def check_store(
        self, store: BagStore, use: str = "count a store extracted with the model's encoder"
    ) -> None:
        """A store of another encoder is refused in one line; `use` is the fix that line suggests."""
        if store.encoder != self.encoder:
            raise StoreError(
                f"{store.path}: bags are {store.encoder.describe()}, but cell model {self.path} learnt "
                f"{self.encoder.describe()}; {use}"
            )

    def save(self, folder: Path, record: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "model.npz", **self.classifier.arrays())
        doc = {
            "schema": SCHEMA,
            "classifier": self.kind,
            "params": self.params,
            "classes": self.classes,
            "temperature": self.temperature,
            "vocabulary": self.vocabulary.to_dict(),
            "encoder": asdict(self.encoder),
            "trained_on": self.trained_on,
            **record,
        }
        from features.core.io import write_json

        write_json(doc, folder / "cellmodel.json", indent=1)

    @classmethod
    def load(cls, folder: str | Path) -> CellModel:
        folder = Path(folder)
        meta = folder / "cellmodel.json"
        if not meta.is_file() or not (folder / "model.npz").is_file():
            raise InputError(
                f"{folder}: not a cell model (no cellmodel.json / model.npz); train one with `mil cells train`"
            )
        doc = json.loads(meta.read_text())
        if doc.get("schema") != SCHEMA:
            raise InputError(f"{folder}: cell model schema {doc.get('schema')!r}, this mil reads {SCHEMA}")
        with np.load(folder / "model.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        classes = list(doc["classes"])
        classifier = load_classifier(doc["classifier"], arrays, {**doc["params"], "n_classes": len(classes)})
        record = {k: v for k, v in doc.items() if k not in ("schema", "classifier", "params", "classes", "temperature",
                                                            "vocabulary", "encoder", "trained_on")}  # fmt: skip
        return cls(
            classifier=classifier,
            kind=doc["classifier"],
            params=doc["params"],
            classes=classes,
            temperature=float(doc["temperature"]),
            vocabulary=Vocabulary.from_dict(doc["vocabulary"]),
            encoder=EncoderIdentity(**doc["encoder"]),
            trained_on=doc.get("trained_on", {}),
            record=record,
            path=folder,
        )
