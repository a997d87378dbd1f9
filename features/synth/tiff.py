"""Pyramidal tiled TIFF that OpenSlide opens as `generic-tiff` with `openslide.mpp-x` set.

OpenSlide reads the pyramid from the top-level pages (it ignores SubIFD pyramids), wants tiled pages, and derives
`openslide.mpp-x/-y` from XResolution/YResolution when ResolutionUnit is centimetre: px per cm = 10,000 / mpp.
Each level halves the previous one (2x2 mean) until a level would fall below one tile. JPEG tiles keep a 6000 px
slide near 10 MB; tifffile writes no timestamp, so the same pixels give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

TILE_PX = 256


def pyramid(rgb: np.ndarray, tile_px: int = TILE_PX) -> list[np.ndarray]:
    levels = [rgb]
    while max(levels[-1].shape[:2]) // 2 >= tile_px:
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        s = a[:h, :w].astype(np.uint16)
        half = (s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2] + 2) // 4
        levels.append(half.astype(np.uint8))
    return levels


def write_pyramid_tiff(
    path: Path, rgb: np.ndarray, mpp: float, quality: int = 90, description: str = ""
) -> int:
    """Write `rgb` (H, W, 3 uint8, level 0 at `mpp`) as a JPEG-tiled pyramid; returns the number of levels."""
    levels = pyramid(rgb)
    with tifffile.TiffWriter(path, bigtiff=rgb.nbytes > 3_000_000_000) as tw:
        for k, level in enumerate(levels):
            px_per_cm = 10_000.0 / (mpp * rgb.shape[1] / level.shape[1])
            tw.write(
                level,
                tile=(TILE_PX, TILE_PX),
                compression="jpeg",
                compressionargs={"level": quality},
                photometric="rgb",
                resolution=(px_per_cm, px_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if k == 0 else 1,
                description=description if k == 0 else None,
                metadata=None,
            )
    return len(levels)
