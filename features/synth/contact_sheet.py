"""A labelled sheet of example crops: one row per cell type, a few cells per site in columns.

It is the generator's visual check (is a blast recognisable? do sites shift colour as labs do?) and the README
picture. The examples are drawn fresh from the seed, not taken from a cohort.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from features.synth.celltypes import CELL_TYPES
from features.synth.crops import render_cells
from features.synth.stain import SiteStain

LABEL_PX, HEADER_PX, GAP_PX = 230, 26, 8


def contact_sheet(
    stains: list[SiteStain], seed: int, *, mpp: float = 0.25, size_px: int = 96, per_site: int = 3
) -> np.ndarray:
    """(H, W, 3) uint8 sheet: rows = cell types, column groups = sites (`per_site` cells each)."""
    types = list(CELL_TYPES)
    n_sites = len(stains)
    width = LABEL_PX + n_sites * (per_site * size_px + GAP_PX)
    height = HEADER_PX + len(types) * size_px
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=11)
    for s, stain in enumerate(stains):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(9, s)))
        batch = render_cells(
            [t for t in types for _ in range(per_site)], rng, stain=stain, mpp=mpp, size_px=size_px
        )
        x0 = LABEL_PX + s * (per_site * size_px + GAP_PX)
        draw.text((x0 + 4, 5), stain.name, fill=(0, 0, 0), font=font)
        for i, img in enumerate(batch.images):
            row, col = divmod(i, per_site)
            sheet.paste(Image.fromarray(img), (x0 + col * size_px, HEADER_PX + row * size_px))
    for row, name in enumerate(types):
        y = HEADER_PX + row * size_px
        draw.text((6, y + size_px // 2 - 16), name.replace("_", " "), fill=(0, 0, 0), font=font)
        lo, hi = CELL_TYPES[name].diameter_um
        draw.text((6, y + size_px // 2 + 2), f"{lo:g}-{hi:g} um", fill=(90, 90, 90), font=small)
    return np.asarray(sheet)


def write_contact_sheet(path: Path, stains: list[SiteStain], seed: int, **kw) -> Path:
    Image.fromarray(contact_sheet(stains, seed, **kw)).save(path, optimize=True)
    return path
