"""QC of one microscope field: can it be read, and how sharp is it? (No region map: a field is the counting area.)

A person at the microscope chose the field, so region QC (particle / trail / hemodiluted, `features.smear.qc`)
would only veto it: a 46 µm field is a dozen pixels on a 4 µm/px map. What can still go wrong is the picture:
- too small: shorter side under `min_side_um` (a thumbnail, a crop mistaken for a field) holds no whole cell;
- empty: under `min_stained_share` of its pixels stained (OD of R+G+B against the field's own glass above
  `STAIN_OD`): glass, a blank frame, a lens cap;
- overexposed: over `max_clipped_share` of its pixels white in all three channels (>= 254): the lamp burnt the
  cells out. Glass at 255 in one channel is normal (CellaVision exports clip red on glass) and is not counted;
- blurred: the focus score (`features.smear.imageops.focus_scores`, the measure of region QC and cell folders,
  taken at `focus_mpp`) under `focus_min`. Blur is a flag, not a veto: its cells are kept with in_focus = false,
  as on slides (set `detect.require_in_focus` to drop them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from features.smear.field_detect import working_copy
from features.smear.field_params import FieldParams
from features.smear.imageops import focus_scores
from features.smear.stain_od import channel_od

STAIN_OD = 0.1  # summed RGB OD above which a pixel is stained (as region QC's default `stain_od`)


@dataclass(frozen=True)
class FieldQC:
    """One field's QC figures and verdict; `problem` is None for a usable field, else one line."""

    width_um: float
    height_um: float
    stained_share: float
    clipped_share: float
    focus: float
    in_focus: bool
    problem: str | None

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def assess_field(rgb: np.ndarray, mpp: float, params: FieldParams) -> FieldQC:
    """QC of one RGB field whose pixel size is `mpp`."""
    h, w = rgb.shape[:2]
    width_um, height_um = w * mpp, h * mpp
    flat = rgb.reshape(-1, 3)
    clipped = float((flat[:: max(1, len(flat) // 50_000)] >= 254).all(axis=1).mean())
    # Shares and focus on the focus_mpp copy (~0.5 µm/px: a cell is still ~20 px across), ~1/40 of the pixels
    # of a x100 field.
    small, _ = working_copy(rgb, mpp, params.focus_mpp)
    white = np.clip(np.percentile(small.reshape(-1, 3), 99, axis=0), 64, 255)
    od = channel_od(small, white)
    stained = float(((od[0] + od[1] + od[2]) > STAIN_OD).mean())
    focus = float(focus_scores(small[None])[0]) if min(small.shape[:2]) >= 3 else float("nan")
    problem = None
    if min(width_um, height_um) < params.min_side_um:
        problem = (
            f"field is {width_um:.1f} x {height_um:.1f} µm, smaller than one cell "
            f"(fields.min_side_um {params.min_side_um:g} µm)"
        )
    elif clipped > params.max_clipped_share:
        problem = (
            f"overexposed: {clipped:.0%} of the pixels are white in all channels "
            f"(fields.max_clipped_share {params.max_clipped_share:g}); lower the lamp or the exposure"
        )
    elif stained < params.min_stained_share:
        problem = (
            f"empty field: {stained:.1%} of the pixels stained, no cells "
            f"(fields.min_stained_share {params.min_stained_share:g})"
        )
    in_focus = not (focus < params.focus_min)  # NaN (too small to measure) counts as in focus
    return FieldQC(width_um, height_um, stained, clipped, focus, in_focus, problem)


__all__ = ["FieldQC", "assess_field"]
