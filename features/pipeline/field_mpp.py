"""One mpp for a whole run of microscope fields, from the red cells of a sample of every patient's fields.

Used when `fields.mpp_scope` is "run": a lab archive or a public dataset is photographed through one camera and
objective, and crowded fields hold few separate red cells each (BCCD: ~1.3 per field), so a patient with a few
crowded fields cannot pin its own pixel size while the cohort together can. Up to `PER_PATIENT` fields per
patient (evenly spaced) are measured, over the whole input and not only this shard's share, so every shard
of a run gets the same estimate. The refs of the fields without a given mpp (a manifest row's, `--mpp`) get
it, with the estimate for their provenance; a run with too few red cells is one `InputError`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from features.core.errors import InputError, SlideError
from features.smear.field_params import FieldParams
from features.sources.base import SlideRef, implausible_mpp

PER_PATIENT = 8
SOURCE = "red cells (run)"


def pool_run_mpp(found: list[SlideRef], refs: list[SlideRef], params: FieldParams) -> list[SlideRef]:
    """`refs` with the run's red-cell mpp set on the fields refs that need one (measured over `found`)."""
    from features.smear.mpp_estimate import estimate_mpp, measure_red_cells
    from features.sources.fields import read_field_image

    def needs(ref: SlideRef) -> bool:
        return ref.kind == "fields" and ref.mpp is None

    measured = {}
    for ref in filter(needs, found):
        names = [n for i, n in enumerate(ref.images) if ref.mpp_of(i)[0] is None]
        for i in np.unique(np.linspace(0, len(names) - 1, min(PER_PATIENT, len(names))).astype(int)):
            path = ref.path / names[i]
            try:
                measured[str(path)] = measure_red_cells(read_field_image(path))
            except SlideError:
                continue  # the field job reports it, one line, when it reaches that patient
    if not measured:
        return refs
    estimate = estimate_mpp(measured, params.rbc_diameter_um, params.min_red_cells)
    if estimate is None:
        found_cells = sum(len(m.diameters_px) for m in measured.values())
        raise InputError(
            f"too few red cells to estimate the run's pixel size ({found_cells} single cell(s) in "
            f"{len(measured)} field(s)); pass --mpp, or an mpp column in a manifest"
        )
    implausible = implausible_mpp(estimate.mpp)
    if implausible:
        raise InputError(
            f"the run's red cells give {implausible}; pass --mpp, or an mpp column in a manifest"
        )
    lo, hi = estimate.ci95
    if max(estimate.mpp - lo, hi - estimate.mpp) > params.max_mpp_uncertainty * estimate.mpp:
        raise InputError(
            f"the run's pixel size is too uncertain: red cells give {estimate.mpp:.4f} µm/px (95 % "
            f"{lo:.4f}-{hi:.4f}); pass --mpp, or an mpp column in a manifest"
        )
    record = {**estimate.to_dict(), "scope": "run", "fields_sampled": len(measured)}
    return [
        replace(ref, mpp=estimate.mpp, mpp_source=SOURCE, mpp_estimate=record) if needs(ref) else ref
        for ref in refs
    ]


__all__ = ["pool_run_mpp"]
