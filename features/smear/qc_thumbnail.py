"""The QC overview a person looks at: the slide small, its regions tinted, blur crossed out, cells as dots.

Drawing only: the caller (features.pipeline.slide_job) writes the PNG. Region codes and colours come from
`features.smear.qc`, the map itself from `features.smear.qc.assess_regions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from features.smear.qc import REGION_COLOURS, REGIONS, RegionMap

if TYPE_CHECKING:
    from features.sources.openslide_reader import SlideReader

OUT_OF_FOCUS_COLOUR = (255, 140, 0)
CELL_COLOUR = (20, 20, 120)


def qc_thumbnail(
    reader: SlideReader, region_map: RegionMap, cells_xy: np.ndarray | None, max_px: int = 1024
) -> np.ndarray:
    """An RGB overview for a person: regions tinted and outlined, out-of-focus tiles crossed, cells as dots,
    and a legend. The caller writes it (PNG); nothing here touches the file system."""
    from PIL import Image, ImageDraw

    width, height = reader.dimensions
    target_mpp = max(width, height) * reader.mpp / max_px
    img, ds = reader.read_downsampled(max(target_mpp, reader.mpp))
    scale = min(1.0, max_px / max(img.shape[:2]))
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    thumb = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize(size, Image.BOX), np.float32)
    ds = ds * img.shape[1] / size[0]  # level-0 px per thumbnail px
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    centres = np.column_stack([(xs.ravel() + 0.5) * ds, (ys.ravel() + 0.5) * ds])
    labels = region_map.region_at(centres).reshape(size[1], size[0])
    palette = np.array([REGION_COLOURS[n] for n in REGIONS], np.float32)
    tint = palette[labels]
    inside = labels > 0
    thumb[inside] = 0.75 * thumb[inside] + 0.25 * tint[inside]
    edge = np.zeros_like(inside)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    thumb[edge] = tint[edge]
    if cells_xy is not None and len(cells_xy):
        c = (np.asarray(cells_xy) / ds).astype(int)
        for dy in (-1, 0, 1):  # 3 x 3 px dots, visible at thumbnail scale
            for dx in (-1, 0, 1):
                y = np.clip(c[:, 1] + dy, 0, size[1] - 1)
                x = np.clip(c[:, 0] + dx, 0, size[0] - 1)
                thumb[y, x] = CELL_COLOUR
    out = Image.fromarray(np.clip(thumb + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    fds = region_map.focus_downsample / ds
    for gy, gx in zip(*np.nonzero(~region_map.in_focus), strict=True):
        x0, y0, x1, y1 = gx * fds, gy * fds, (gx + 1) * fds - 1, (gy + 1) * fds - 1
        draw.line((x0, y0, x1, y1), fill=OUT_OF_FOCUS_COLOUR)
        draw.line((x0, y1, x1, y0), fill=OUT_OF_FOCUS_COLOUR)
    legend = [(n, REGION_COLOURS[n]) for n in REGIONS[1:]] + [
        ("out of focus", OUT_OF_FOCUS_COLOUR),
        ("cell", CELL_COLOUR),
    ]
    draw.rectangle((2, 2, 110, 6 + 12 * len(legend)), fill=(255, 255, 255), outline=(0, 0, 0))
    for i, (name, colour) in enumerate(legend):
        y = 5 + 12 * i
        draw.rectangle((6, y, 14, y + 8), fill=colour)
        draw.text((18, y - 1), name, fill=(0, 0, 0))
    return np.asarray(out)


__all__ = ["qc_thumbnail"]
