"""Whole smears: lay objects out (features.synth.smear), paste their OD sprites, stain, write a pyramidal TIFF.

Optical densities are summed on a uint16 canvas (OD x 1000, 2 bytes per channel, a third of a float canvas), so
overlapping cells in the particle and red cells under a cell's edge darken each other as on glass. The stain,
blur and noise of the site are applied afterwards strip by strip (with a margin, so the blur has no seams).
Truth rows carry every object: nucleated cells (their type, `diagnostic`, `defines`), red cells and platelets
(`nucleated` 0), with level-0 centres and the smear region they lie in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.synth import smear
from features.synth.cells import render_grouped, sample_params
from features.synth.celltypes import CELL_TYPES, PLASMA_RGB, od
from features.synth.cohort import Patient
from features.synth.config import SynthConfig
from features.synth.crops import paste
from features.synth.layout_cells import write_csv
from features.synth.redcells import platelet_sprites, rbc_sprites
from features.synth.stain import (
    LEVEL_OFFSET,
    SiteStain,
    add_noise,
    blur_od,
    jitter,
    light_lut,
    lookup,
    stained,
    to_levels,
)
from features.synth.tiff import write_pyramid_tiff

STRIP_PX, SPRITE_BATCH = 512, 128
PARTICLE_TINT_RGB = (196, 176, 214)  # lilac haze of the thick particle film
TRUTH_SLIDE_COLUMNS = ["x", "y", "cell_type", "diagnostic", "defines", "nucleated", "region", "diameter_um"]


@dataclass(frozen=True)
class SmearKnobs:
    """What `SynthConfig` widens in a smear beyond the generator's defaults (see its field descriptions)."""

    cell_size_scale: float = 1.0
    particles: int | None = None
    particle_size_scale: float = 1.0

    @staticmethod
    def of(config: SynthConfig) -> SmearKnobs:
        return SmearKnobs(config.cell_size_scale, config.particles, config.particle_size_scale)


def _draw_types(rng: np.random.Generator, mix: dict[str, float], n: int) -> np.ndarray:
    names = sorted(mix)
    p = np.array([mix[k] for k in names])
    return np.array(names)[rng.choice(len(names), size=n, p=p / p.sum())] if n else np.zeros(0, "<U32")


def _u16(od_sprites: np.ndarray, stain: SiteStain, mpp: float) -> np.ndarray:
    """Sprites as the canvas stores them: blurred, through the site's dyes, fixed-point OD.

    Blur and dye matrix are linear in OD, so applying them per sprite equals applying them to the summed
    canvas, at a fraction of the pixels.
    """
    return to_levels(stained(blur_od(od_sprites, stain, mpp), stain))


def render_smear(
    patient: Patient,
    stain: SiteStain,
    rng: np.random.Generator,
    size_px: int,
    mpp: float,
    layout: smear.SmearLayout | None = None,
    knobs: SmearKnobs = SmearKnobs(),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(size, size, 3) uint8 RGB of one smear and its truth columns (TRUTH_SLIDE_COLUMNS). `layout` replaces
    the drawn wedge-smear layout (microscope fields use one region throughout: features.synth.field_images);
    `knobs` widen cell sizes and particles beyond the defaults (`SynthConfig`)."""
    if layout is None:
        layout = smear.smear_layout(rng, size_px, mpp, knobs.particles, knobs.particle_size_scale)
    xy_n, reg_n = smear.scatter(rng, layout, smear.NUCLEATED_PER_UM2, mpp, scale=patient.cellularity)
    types = np.where(
        reg_n == smear.HEMODILUTED,
        _draw_types(rng, patient.hemodiluted_mix(), len(xy_n)),
        _draw_types(rng, patient.composition, len(xy_n)),
    )
    r_max = np.array([CELL_TYPES[t].diameter_um[1] / 2 / mpp for t in types]) * knobs.cell_size_scale
    spread = reg_n != smear.PARTICLE
    keep = smear.thin(np.rint(xy_n), r_max, 2.0 / mpp, spread)
    xy_n, reg_n, types, r_max, spread = xy_n[keep], reg_n[keep], types[keep], r_max[keep], spread[keep]
    xy_n = np.rint(xy_n).astype(np.int64)

    canvas = _film(layout, stain, size_px)
    rbc_bank, rbc_d = rbc_sprites(rng, 96, mpp)
    rbc_bank = _u16(rbc_bank, stain, mpp)
    xy_r, reg_r = smear.scatter(rng, layout, smear.RBC_PER_UM2, mpp)
    pick_r = rng.integers(0, len(rbc_bank), len(xy_r))
    # red cells barely touch in the monolayer, overlap somewhat where hemodiluted, pile up in the particle
    share = np.select([reg_r == smear.MONOLAYER, reg_r == smear.HEMODILUTED], [0.45, 0.32], 0.0)
    keep_r = smear.thin(xy_r, share * rbc_d[pick_r] / mpp, 0.0, share > 0)
    keep_r &= smear.clear_around(xy_r, xy_n[spread], r_max[spread] + 1.2 / mpp)
    xy_r, reg_r, pick_r = np.rint(xy_r[keep_r]).astype(np.int64), reg_r[keep_r], pick_r[keep_r]
    for (x, y), k in zip(xy_r, pick_r, strict=True):
        paste(canvas, rbc_bank[k], x, y)
    plt_bank, plt_d = platelet_sprites(rng, 32, mpp)
    plt_bank = _u16(plt_bank, stain, mpp)
    xy_p, reg_p = smear.scatter(rng, layout, smear.PLATELET_PER_UM2, mpp)
    keep_p = smear.clear_around(xy_p, xy_n[spread], r_max[spread] + 1.0 / mpp)
    xy_p, reg_p = np.rint(xy_p[keep_p]).astype(np.int64), reg_p[keep_p]
    pick_p = rng.integers(0, len(plt_bank), len(xy_p))
    for (x, y), k in zip(xy_p, pick_p, strict=True):
        paste(canvas, plt_bank[k], x, y)

    thick = ~spread  # cells in the particle do not spread: smaller, denser
    size_scale = np.where(thick, 0.85, 1.0) * knobs.cell_size_scale
    params = sample_params(list(types), rng, mpp, size_scale=size_scale, od_scale=np.where(thick, 1.25, 1.0))
    for idx, cells in render_grouped(params, rng, mpp, margin_px=3 * stain.blur_um / mpp):
        sprites = _u16(cells.od, stain, mpp)
        for j, i in enumerate(idx):
            paste(canvas, sprites[j], *xy_n[i])

    rgb = _finish(canvas, stain, rng)
    diameters = [params.diameter_um, rbc_d[pick_r], plt_d[pick_p]]
    truth = _truth(patient, xy_n, types, reg_n, xy_r, reg_r, xy_p, reg_p, diameters)
    return rgb, truth


def _film(layout: smear.SmearLayout, stain: SiteStain, size_px: int) -> np.ndarray:
    """The canvas, initialised with the stained background film (offset levels) of each coarse cell.

    The film is smoothed over several µm, so neighbouring coarse cells differ by a thousandth of OD or so and
    a nearest-neighbour gather shows no steps; writing it first also touches the canvas' memory in order.
    """
    film = layout.thickness[..., None]
    extra = np.maximum(film - 1.0, 0)
    coarse = to_levels(
        stained(film * od(PLASMA_RGB) + extra * (0.6 * od(PARTICLE_TINT_RGB)), stain), LEVEL_OFFSET
    )
    index = np.minimum((np.arange(size_px) / layout.step_px).astype(np.int64), coarse.shape[0] - 1)
    wide = np.repeat(coarse, np.bincount(index, minlength=coarse.shape[1]), axis=1)  # (Hc, W, 3)
    canvas = np.empty((size_px, size_px, 3), np.uint16)
    for y0 in range(0, size_px, STRIP_PX):
        canvas[y0 : y0 + STRIP_PX] = wide[index[y0 : y0 + STRIP_PX]]
    return canvas


def _finish(canvas: np.ndarray, stain: SiteStain, rng: np.random.Generator) -> np.ndarray:
    """Offset stained levels -> 8-bit RGB, strip by strip: noise added in place, then one table lookup.

    The canvas already holds blurred, stained OD, so light is a per-channel lookup (exp and white balance
    folded into a 65,536-entry table) and the slide never exists as floats.
    """
    rgb = np.empty(canvas.shape, np.uint8)
    lut = light_lut(stain)
    for y0 in range(0, canvas.shape[0], STRIP_PX):
        levels = add_noise(canvas[y0 : y0 + STRIP_PX], stain, rng)
        rgb[y0 : y0 + STRIP_PX] = lookup(levels, lut)
    return rgb


def _truth(patient, xy_n, types, reg_n, xy_r, reg_r, xy_p, reg_p, diameters) -> dict[str, np.ndarray]:
    diagnostic = patient.diagnostic_types
    n_r, n_p = len(xy_r), len(xy_p)
    return {
        "x": np.concatenate([xy_n[:, 0], xy_r[:, 0], xy_p[:, 0]]).astype(np.int64),
        "y": np.concatenate([xy_n[:, 1], xy_r[:, 1], xy_p[:, 1]]).astype(np.int64),
        "cell_type": np.concatenate([types.astype(object), ["rbc"] * n_r, ["platelet"] * n_p]),
        "diagnostic": np.array([int(t in diagnostic) for t in types] + [0] * (n_r + n_p)),
        "defines": np.array([diagnostic.get(t, "") for t in types] + [""] * (n_r + n_p), dtype=object),
        "nucleated": np.array([1] * len(types) + [0] * (n_r + n_p)),
        "region": np.array([smear.REGIONS[r] for r in np.concatenate([reg_n, reg_r, reg_p])], dtype=object),
        "diameter_um": np.concatenate(diameters),
    }


@dataclass(frozen=True)
class SlideInfo:
    slide_id: str
    patient_id: str
    levels: int
    n_nucleated: int
    n_diagnostic: int


def write_slide(
    out: Path, patient: Patient, index: int, slide: int, config: SynthConfig, stain: SiteStain
) -> SlideInfo:
    """Render one smear of a patient and write OUT/slides/<slide_id>.tiff and OUT/truth/slides/<slide_id>.csv."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2, index, slide)))
    stain = jitter(stain, rng)
    rgb, truth = render_smear(patient, stain, rng, config.slide_px, config.mpp, knobs=SmearKnobs.of(config))
    slide_id = f"{patient.patient_id}_s{slide + 1}"
    folder = out / "slides"
    folder.mkdir(parents=True, exist_ok=True)
    desc = f"mil synth slide {slide_id}; patient {patient.patient_id}; mpp {config.mpp}"
    levels = write_pyramid_tiff(folder / f"{slide_id}.tiff", rgb, config.mpp, config.jpeg_quality, desc)
    diameters = [f"{d:.2f}" for d in truth["diameter_um"]]
    columns = [truth[c] for c in TRUTH_SLIDE_COLUMNS[:-1]] + [diameters]
    write_csv(
        out / "truth" / "slides" / f"{slide_id}.csv", TRUTH_SLIDE_COLUMNS, list(zip(*columns, strict=True))
    )
    nucleated = truth["nucleated"] == 1
    return SlideInfo(
        slide_id, patient.patient_id, levels, int(nucleated.sum()), int(truth["diagnostic"].sum())
    )
