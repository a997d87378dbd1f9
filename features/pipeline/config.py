"""`ExtractConfig`: the `extract` section of the configuration, consumed whole by `features.pipeline.extract.extract`.

It lives in `features/` (which never imports `mil`) and is composed into `mil.config.MilConfig`. Fields split
in two: those that shape a bag's content (`shaping_settings`: crop size, QC and detection parameters, mpp
override, subsampling), which must match for a rerun to skip an existing bag, and run-time choices
(workers, batch size, device, precision, error policy) that may change between reruns of one store.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.core.errors import ConfigError
from features.smear.detect_params import DetectParams
from features.smear.field_params import FieldParams
from features.smear.qc import QCParams, region_codes


class ExtractConfig(BaseModel):
    """From slides or cell-image folders to a bag store (`mil extract`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(
        "auto",
        description="Input kind: auto | slides | cells | fields | manifest | h5 (`mil list sources`); auto looks "
        "at the input (a .csv is a manifest, .h5 files are imported, slide files, else patient folders of "
        "single-cell crops or of microscope fields, told apart by how many red cells wide the images are).",
    )
    encoder: str = Field(
        "cytomorph",
        description="Cell encoder (`mil list encoders`). For h5 import: the name of the encoder that made the "
        "features (CLAM/TRIDENT files do not record it; STAMP's `extractor` attr is used when this is unset).",
    )
    weights: str | None = Field(
        None,
        description="Encoder weights file, or `random` (loudly flagged, for tests and timing only); empty: "
        "look in $MIL_WEIGHTS_DIR and ~/.cache/mil/weights.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Encoder arithmetic: auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16.",
    )
    device: str = Field(
        "auto",
        description="Encoder device: auto (cuda, else mps, else cpu) | cpu | cuda | cuda:1 | mps; "
        "a device that is not here is an error.",
    )
    unit: Literal["cells", "tiles"] = Field(
        "cells",
        description="Instances: detected nucleated cells, or grid tiles over the QC regions (as H&E pipelines "
        "do, for comparison). Cell-image folders are always one instance per image.",
    )
    mpp: float | None = Field(
        None,
        gt=0,
        description="µm per level-0 pixel: overrides the slides' own (for files without it); for microscope "
        "fields, their mpp (empty: estimated from the red cells).",
    )
    crop_um: float = Field(24.0, gt=0, description="Side of the square crop centred on each cell, in µm.")
    tile_um: float = Field(112.0, gt=0, description="Tile side in µm for unit=tiles (224 px at 0.5 µm/px).")
    tile_regions: tuple[str, ...] | None = Field(
        None,
        description="QC regions tiled for unit=tiles; empty: the regions searched for cells (detect.regions), "
        "so tiles and cells cover the same area.",
    )
    max_instances: int | None = Field(
        None,
        ge=1,
        description="Cap per slide: a seeded random subsample of this many instances (kept in spatial order); "
        "empty: all.",
    )
    seed: int = Field(0, description="Seeds the per-slide subsample (with the slide id, so shards agree).")
    batch_size: int = Field(
        64, ge=1, description="Crops per encoder batch (and per chunk streamed from a worker)."
    )
    workers: int = Field(
        2,
        ge=0,
        description="Loader processes reading, QC-ing, detecting and cropping slides while the main process "
        "encodes; 0 runs everything inline.",
    )
    skip_errors: bool = Field(
        True, description="Report a failing slide in one line and go on; off: stop at the first failure."
    )
    strict: bool = Field(
        False,
        description="Fail a slide (a patient's folder) at its first input that cannot be read (a corrupt cell "
        "image or field); off: leave that image out in one line, recorded in the bag (`skipped`).",
    )
    qc_thumbnail_px: int = Field(
        1024, ge=64, description="Longest side of the QC thumbnail written per slide."
    )
    qc: QCParams = Field(default_factory=QCParams, description="Region map and focus QC (smears).")
    detect: DetectParams = Field(default_factory=DetectParams, description="Nucleated-cell detection.")
    fields: FieldParams = Field(
        default_factory=FieldParams,
        description="Microscope field images: mpp from red cells, field QC, detection gates.",
    )

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value != "auto":
            from features.sources import SOURCES

            SOURCES.check(value)
        return value

    @field_validator("mpp")
    @classmethod
    def _plausible_mpp(cls, value: float | None) -> float | None:
        from features.sources.base import implausible_mpp

        problem = implausible_mpp(value)
        if problem:
            raise ValueError(f"{problem}; give micrometres per pixel")
        return value

    @field_validator("tile_regions")
    @classmethod
    def _known_regions(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            region_codes(value)
        return value

    @model_validator(mode="after")
    def _known_encoder(self) -> ExtractConfig:
        # h5 import names whatever encoder made the features (uni_v1, conch, ...), so only a run that encodes
        # checks the registry. With source auto or manifest the input may be .h5 files: the check waits
        # until the input's kind is known (`features.pipeline.extract`).
        if self.source not in ("h5", "auto", "manifest"):
            from features.encoders import ENCODERS

            if self.encoder not in ENCODERS:
                try:
                    ENCODERS.check(self.encoder)
                except ConfigError as exc:
                    raise ConfigError(f"{exc} (importing h5 features? add --source h5)") from None
        return self

    @property
    def regions_tiled(self) -> tuple[str, ...]:
        return self.tile_regions if self.tile_regions is not None else self.detect.regions

    @property
    def instance_um(self) -> float:
        """Physical side of one instance's crop: the cell crop or the tile."""
        return self.crop_um if self.unit == "cells" else self.tile_um


def shaping_settings(config: ExtractConfig, kind: str) -> dict[str, Any]:
    """The settings a bag of this `kind` ("slide", "cells", "fields", "h5") depends on; a rerun skips a bag
    only when these match. Encoder and weights are not here: the store's encoder identity already pins them."""
    out: dict[str, Any] = {"mpp": config.mpp}
    if config.max_instances is not None:
        out.update(max_instances=config.max_instances, seed=config.seed)
    if kind == "slide":
        out.update(unit=config.unit, qc=config.qc.model_dump(mode="json"))
        if config.unit == "cells":
            out.update(crop_um=config.crop_um, detect=config.detect.model_dump(mode="json"))
        else:
            out.update(tile_um=config.tile_um, tile_regions=list(config.regions_tiled))
    elif kind == "fields":
        out.update(
            crop_um=config.crop_um,
            detect=config.detect.model_dump(mode="json"),
            fields=config.fields.model_dump(mode="json"),
        )
    return out


__all__ = ["ExtractConfig", "shaping_settings"]
