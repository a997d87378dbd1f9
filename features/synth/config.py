"""`SynthConfig`: every knob of a synthetic cohort, validated before anything is written."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.core.errors import ConfigError

DIAGNOSES = ("healthy", "AML", "APL", "MDS", "AA")
AML_GENETICS = ("none", "NPM1", "CBFB::MYH11")


class SynthConfig(BaseModel):
    """A synthetic bone-marrow smear cohort. Sizes are physical (µm) inside; `mpp` sets the pixels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patients: int = Field(24, ge=1, le=100_000, description="Number of patients.")
    layout: Literal["cells", "slides", "both", "fields"] = Field(
        "both",
        description="cells: CellaVision-like crops per patient; slides: pyramidal TIFF smears; both (cells and "
        "slides); fields: microscope-camera JPEG fields per patient.",
    )
    sites: int = Field(
        3, ge=1, le=50, description="Number of sites (stain/scanner shifts); site1 = reference."
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seeds everything; same seed => identical labels and truth."
    )
    witness: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Scales the share of disease-defining cells (0 = none, 1 = textbook); labels do not change.",
    )
    cells_per_patient: int = Field(200, ge=1, le=100_000, description="Crops per patient (cells layout).")
    crop_px: int = Field(96, ge=32, le=512, description="Crop side in px (96 px at 0.25 mpp = 24 µm).")
    slide_px: int = Field(
        6000, ge=512, le=200_000, description="Slide side in px at level 0 (slides layout)."
    )
    slides_per_patient: int = Field(1, ge=1, le=20, description="Slides per patient (<patient_id>_s1, ...).")
    fields_per_patient: int = Field(12, ge=1, le=10_000, description="Fields per patient (fields layout).")
    field_px: int = Field(
        640,
        ge=64,
        le=8192,
        description="Field width in px (fields layout); fields are 4:3 like camera frames.",
    )
    mpp: float = Field(
        0.25, ge=0.05, le=2.0, description="Microns per pixel of crops, fields and slide level 0."
    )
    diagnosis_mix: dict[str, float] = Field(
        default_factory=lambda: {"healthy": 0.2, "AML": 0.3, "APL": 0.15, "MDS": 0.2, "AA": 0.15},
        description="Relative share of each diagnosis; counts are allocated exactly (largest remainder).",
    )
    aml_genetics: dict[str, float] = Field(
        default_factory=lambda: {"none": 0.4, "NPM1": 0.3, "CBFB::MYH11": 0.3},
        description="Relative share of the genetic groups within AML.",
    )
    blast_share: tuple[float, float] | None = Field(
        None,
        description="Share of blasts (myeloblasts and NPM1 cup-like blasts) among each patient's nucleated "
        "cells: one value for every patient, or LO:HI to spread patients evenly over that range; the rest "
        "of the marrow keeps its proportions. Composition only: labels and survival do not change. Empty: "
        "the diagnosis decides.",
    )
    cellularity_scale: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Multiplies every patient's nucleated-cell density on slides and fields (a packed "
        "leukaemic trail: 3; an aplastic one: 0.3). Monolayer cells still never touch.",
    )
    cell_size_scale: float = Field(
        1.0,
        ge=0.5,
        le=2.0,
        description="Multiplies the diameter of every nucleated cell on slides and fields.",
    )
    particles: int | None = Field(
        None, ge=0, le=12, description="Marrow particles per slide (empty: 1 or 2, drawn per slide)."
    )
    particle_size_scale: float = Field(
        1.0, ge=0.2, le=4.0, description="Multiplies the radius of every marrow particle on slides."
    )
    jpeg_quality: int = Field(90, ge=50, le=100, description="JPEG quality of the slide tiles.")
    contact_sheet: bool = Field(False, description="Also write contact_sheet.png (every type x every site).")

    @field_validator("diagnosis_mix", "aml_genetics")
    @classmethod
    def _mix(cls, value: dict[str, float], info) -> dict[str, float]:
        known = DIAGNOSES if info.field_name == "diagnosis_mix" else AML_GENETICS
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; choose from {', '.join(known)}")
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("shares must be >= 0 with a positive sum")
        return {k: float(value[k]) for k in known if k in value}

    @field_validator("blast_share", mode="before")
    @classmethod
    def _share_range(cls, value):
        """A number, a [lo, hi] pair, or the CLI's "LO:HI" / "X" string -> (lo, hi) within [0, 1]."""
        if value is None:
            return None
        if isinstance(value, str):
            value = value.split(":") if ":" in value else [value, value]
        elif isinstance(value, int | float):
            value = [value, value]
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError("give a share in [0, 1] or LO:HI") from None
        if not 0 <= lo <= hi <= 1:
            raise ValueError("shares must satisfy 0 <= LO <= HI <= 1")
        return lo, hi

    def recorded(self) -> dict:
        """The config as cohort.json records it: the smear knobs added after the first release appear only
        when set, so a cohort of default settings keeps the bytes it had before they existed."""
        return self.model_dump(exclude={k for k, v in SMEAR_KNOB_DEFAULTS.items() if getattr(self, k) == v})


SMEAR_KNOB_DEFAULTS = {
    "blast_share": None,
    "cellularity_scale": 1.0,
    "cell_size_scale": 1.0,
    "particles": None,
    "particle_size_scale": 1.0,
}


def make_config(**values) -> SynthConfig:
    """Validate into a `SynthConfig`, turning the first pydantic error into a one-line `ConfigError`."""
    try:
        return SynthConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        got = (
            f" (got {first['input']!r})" if "input" in first and not isinstance(first["input"], dict) else ""
        )
        raise ConfigError(f"synth {where}: {first['msg']}{got}") from None
