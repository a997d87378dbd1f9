"""The records of one bag: its arrays (`Bag`), its provenance (`BagMeta`, the group's attrs) and the encoder
identity a store pins (`EncoderIdentity`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from features import __version__
from features.bagstore.layout import SCHEMA_VERSION, json_safe
from features.core.errors import StoreError


class BagExists(StoreError):
    """The slide already has a complete bag: from an earlier run, or another writer landed it first."""


@dataclass(frozen=True)
class EncoderIdentity:
    """What makes two bags' features comparable. A store holds one identity."""

    name: str
    weights_sha256: str  # "random" for explicitly random weights, "none" for weight-free encoders
    dim: int
    unit: str  # "cells" or "tiles"

    def describe(self) -> str:
        return f"{self.name} (weights {self.weights_sha256[:12]}, dim {self.dim}, unit {self.unit})"


@dataclass(frozen=True)
class BagMeta:
    """Provenance of one bag, stored as the group's attrs."""

    slide_id: str
    patient_id: str
    n_instances: int
    encoder: EncoderIdentity
    source_path: str
    source_kind: str  # "slide", "cells" or "h5"
    mpp: float | None = None
    mpp_source: str | None = None
    crop_um: float | None = None
    crop_px: int | None = None
    weights_path: str | None = None
    source_size: int | None = None
    source_mtime: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # extraction settings that shaped this bag
    qc: dict[str, Any] = field(default_factory=dict)  # per-slide QC summary
    skipped: list[list[str]] = field(default_factory=list)  # [file, reason] of each input left out
    every_chunk_stored: bool = False  # set by the writer; older bags left all-fill chunks unwritten
    mil_version: str = __version__
    schema_version: int = SCHEMA_VERSION
    created_at: str = ""

    def to_attrs(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> BagMeta:
        attrs = dict(attrs)
        attrs["encoder"] = EncoderIdentity(**attrs["encoder"])
        return cls(**attrs)


@dataclass
class Bag:
    """One slide's instances. `coords` for slides, `paths` for cell folders; `obs` holds extra columns."""

    features: np.ndarray  # N x D float32
    coords: np.ndarray | None = None  # N x 2 int64, level-0 px (x, y)
    paths: np.ndarray | None = None  # N str
    obs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.features.ndim != 2:
            raise ValueError(f"features must be N x D, got shape {self.features.shape}")
        for name, arr in [("coords", self.coords), ("paths", self.paths), *self.obs.items()]:
            if arr is not None and len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} rows, features has {n}")
        if self.coords is not None and (self.coords.ndim != 2 or self.coords.shape[1] != 2):
            raise ValueError(f"coords must be N x 2, got shape {self.coords.shape}")


__all__ = ["Bag", "BagExists", "BagMeta", "EncoderIdentity"]
