"""Detection settings, apart from the detector so that the nuclear segmentation can read them too.

`features.smear.nuclei` segments with these parameters and `features.smear.detect` tiles the slide with them;
keeping the schema in its own module lets both import it without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.smear.qc import region_codes


class DetectParams(BaseModel):
    """Nucleated-cell detection. Every size is physical (µm, µm²), so one setting works at any mpp."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    detect_mpp: float = Field(
        0.5, gt=0, description="working resolution in µm/px (the slide's own if coarser)"
    )
    nuclear_od: float = Field(
        0.15,
        gt=0,
        lt=2,
        description="a pixel is nuclear when its red AND green optical density exceed this (pale blast "
        "chromatin reaches ~0.15; red cells, however stacked, are vetoed by colour: beyond_red_od)",
    )
    beyond_red_od: float = Field(
        0.03,
        ge=0,
        description="OD a nuclear pixel keeps once red-cell colour is removed (0 = no red-cell veto)",
    )
    granule_ratio: float = Field(
        1.4,
        ge=0,
        description="eosinophilic granules join the mask where blue OD exceeds this multiple of green OD x the "
        "red cells' own blue-to-green ratio (orange granules absorb blue; 0 = no granule cue)",
    )
    granule_min_od: float = Field(
        0.15, gt=0, description="green OD a granular pixel needs (granules are darker than a red cell)"
    )
    granule_min_um2: float = Field(
        20.0, ge=0, description="smaller granular patches (red-cell rims, debris) are not granules"
    )
    smooth_um: float = Field(
        0.5, ge=0, description="Gaussian sigma evening out chromatin texture before the threshold"
    )
    merge_um: float = Field(1.0, ge=0, description="closing radius that merges the lobes of one nucleus")
    split_min_radius_um: float = Field(
        3.0, gt=0, description="a touching-nuclei split needs seeds at least this deep (lobes are thinner)"
    )
    split_od: float = Field(
        0.2,
        gt=0,
        lt=2,
        description="touching nuclei are split on their core darker than this (at the paler nuclear_od, blur "
        "and cytoplasm fill the waist between them)",
    )
    split_sep_um: float = Field(4.0, gt=0, description="minimum distance between two split seeds")
    split_neck: float = Field(
        0.8, gt=0, le=1, description="split only where the distance map narrows below this share of the seeds"
    )
    min_area_um2: float = Field(8.0, ge=0, description="smaller objects (platelets, debris) are dropped")
    max_area_um2: float = Field(
        1200.0,
        gt=0,
        description="larger objects (clumps, smudges) are dropped; a large blast or a cell with deep-blue "
        "cytoplasm (read whole at nuclear_od) reaches ~600",
    )
    regions: tuple[str, ...] = Field(("trail",), description="region classes searched for cells")
    require_in_focus: bool = Field(False, description="drop cells in tiles flagged out of focus")
    tile_px: int = Field(1024, ge=64, description="tile side at the working resolution")
    overlap_um: float = Field(24.0, ge=0, description="overlap on each tile side; must exceed a nucleus")

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        region_codes(value)
        return value
