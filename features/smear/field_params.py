"""Settings for microscope field images (`ExtractConfig.fields`): mpp from red cells, field QC, detection gates.

A field is a camera photograph of a smear's reading area, already chosen by the person at the microscope, so
region QC (particle / trail / hemodiluted) does not apply; what stays is whether the picture can be read
(focus, exposure, anything on it) and how large its pixels are. Detection reuses `DetectParams` (smoothing,
lobe merging, touching-nuclei split) with the thresholds below, which BCCD's pale, camera-white-balanced
fields need (benchmarks/fields.py); every size is in µm or µm², so one setting works at any magnification.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FieldParams(BaseModel):
    """Microscope fields: pixel size, QC and detection gates. Sizes in µm, so they hold at any objective."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rbc_diameter_um: float = Field(
        7.5, gt=0, description="median red-cell diameter assumed when the mpp is estimated from red cells"
    )
    mpp_scope: Literal["patient", "run"] = Field(
        "patient",
        description="what an estimated mpp is pooled over: each patient's fields (patients may come from "
        "different microscopes) or the whole run (one camera for the cohort: a lab archive, a public set; "
        "a sample of up to 8 fields per patient, so crowded patients with few separate red cells get one)",
    )
    min_red_cells: int = Field(
        5, ge=1, description="single red cells needed (over a patient's fields) to estimate the mpp"
    )
    max_mpp_uncertainty: float = Field(
        0.1,
        gt=0,
        description="refuse the estimate when its 95 % interval is wider than this share of it (either side)",
    )
    min_side_um: float = Field(
        10.0, gt=0, description="a field whose shorter side is below this holds no whole cell: skipped"
    )
    min_stained_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="below this share of stained pixels a field is empty: skipped (one white cell among glass "
        "is ~2 % of a x100 field, so this only catches glass, a blank frame, a lens cap)",
    )
    max_clipped_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="above this share of pixels white in all three channels (>= 254) a field is overexposed",
    )
    focus_min: float = Field(
        15.0,
        ge=0,
        description="focus score (variance of the Laplacian of Gaussian at focus_mpp, as region QC) below "
        "which a field is flagged out of focus (its cells get in_focus = false)",
    )
    focus_mpp: float = Field(0.5, gt=0, description="resolution at which focus is measured (as region QC)")
    nuclear_od: float = Field(
        0.06,
        gt=0,
        lt=2,
        description="red AND green optical density above which a pixel may be chromatin (replaces "
        "detect.nuclear_od: camera fields are paler than scans; the colour gates below do the rest)",
    )
    beyond_red_od: float = Field(
        0.05,
        ge=0,
        description="OD a chromatin pixel keeps once the field's red-cell colour is removed (replaces "
        "detect.beyond_red_od): keeps the paler mask from spreading into the red cells around a nucleus",
    )
    min_chromatin_od: float = Field(
        0.06,
        ge=0,
        description="mean OD an object keeps once the field's red-cell colour is removed: red cells, their "
        "overlaps and refractile dots have ~0, purple chromatin more",
    )
    min_area_um2: float = Field(
        12.0, ge=0, description="smaller objects are dropped (platelets; replaces detect.min_area_um2)"
    )
    dense_below_um2: float = Field(
        20.0,
        ge=0,
        description="objects smaller than this are kept only when dense (dense_min_od): a small nucleus is a "
        "pyknotic one (late normoblast) or a lymphocyte's, while platelet clumps and fragments are paler",
    )
    dense_min_od: float = Field(
        0.35,
        ge=0,
        description="peak red AND green optical density a small object needs (see dense_below_um2)",
    )
    split_min_radius_um: float = Field(
        4.5,
        gt=0,
        description="a touching-nuclei split needs seeds this deep (replaces detect.split_min_radius_um: the "
        "paler threshold makes lobes fatter, and 2.5 µm split BCCD's neutrophils into their lobes)",
    )
