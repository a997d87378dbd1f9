"""A tiny smear painter for the source/QC/detection/crop tests: known cells at known places, in seconds.

Not a realistic generator (that is `features.synth`); it paints exactly the corner cases the tests need:
pink red cells without nucleus, round nuclei, three-lobed neutrophil nuclei that must count once, touching
nuclei that must count twice, platelets too small to count, dense particles, red-cell-packed hemodiluted
areas and plain glass, written as a tiled pyramidal TIFF that OpenSlide opens with a known mpp.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

GLASS = (243, 242, 238)
RBC = (226, 142, 152)
RBC_PALLOR = (236, 182, 186)
CYTO = ((214, 190, 214), (176, 186, 222))  # neutrophil lilac, lymphocyte blue
NUCLEUS = (92, 52, 138)
PLATELET = (150, 105, 175)


@dataclass
class Painted:
    image: np.ndarray  # H x W x 3 uint8
    mpp: float
    cells: list[tuple[float, float]] = field(default_factory=list)  # nucleated cell centres (x, y) px
    kinds: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=64)
def _alpha(r: float, soft: float) -> np.ndarray:
    """Anti-aliased disc coverage, centred on the middle pixel (cached: the painter reuses a few radii)."""
    half = int(r + 2)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    return np.clip((r - np.hypot(xx, yy)) / soft + 0.5, 0, 1)[..., None]


def _disc(img: np.ndarray, cx: float, cy: float, r: float, colour, soft: float = 0.8) -> None:
    a = _alpha(round(r, 1), soft)
    half = a.shape[0] // 2
    x, y = int(round(cx)), int(round(cy))
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x - half, 0), max(y - half, 0), min(x + half + 1, w), min(y + half + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    a = a[y0 - (y - half) : y1 - (y - half), x0 - (x - half) : x1 - (x - half)]
    img[y0:y1, x0:x1] += (np.asarray(colour, float) - img[y0:y1, x0:x1]) * a


class Painter:
    def __init__(self, w: int, h: int, mpp: float = 0.5, seed: int = 0):
        self.mpp = mpp
        self.rng = np.random.default_rng(seed)
        self.img = np.empty((h, w, 3), float)
        self.img[:] = GLASS
        self.out = Painted(self.img, mpp)
        self.nuclei: list[tuple[float, float, float]] = []

    def um(self, v: float) -> float:
        return v / self.mpp

    def rbc(self, x: float, y: float) -> None:
        _disc(self.img, x, y, self.um(3.7), RBC)
        _disc(self.img, x, y, self.um(1.4), RBC_PALLOR, soft=2.0)

    def platelet(self, x: float, y: float) -> None:
        _disc(self.img, x, y, self.um(1.1), PLATELET)

    def cell(self, x: float, y: float, kind: str = "lymphocyte") -> None:
        """A nucleated cell centred at (x, y); kind: lymphocyte | blast | neutrophil."""
        # Nuclei are painted in finish(), after every cytoplasm, so a neighbour's cytoplasm never covers them.
        if kind == "neutrophil":
            _disc(self.img, x, y, self.um(6.0), CYTO[0])
            angle = self.rng.uniform(0, 2 * np.pi)
            for k in range(3):  # three lobes ~1.1 µm apart: one cell, one count
                a = angle + k * 2 * np.pi / 3
                self.nuclei.append((x + self.um(2.6) * np.cos(a), y + self.um(2.6) * np.sin(a), self.um(1.7)))
        else:
            r_cyto, r_nuc = (5.0, 3.6) if kind == "lymphocyte" else (7.0, 4.8)
            _disc(self.img, x, y, self.um(r_cyto), CYTO[1])
            self.nuclei.append((x, y, self.um(r_nuc)))
        self.out.cells.append((x, y))
        self.out.kinds.append(kind)

    def scatter_rbc(self, x0, y0, x1, y1, per_100um2: float) -> None:
        n = int((x1 - x0) * (y1 - y0) * self.mpp**2 / 100 * per_100um2)
        for x, y in zip(self.rng.uniform(x0, x1, n), self.rng.uniform(y0, y1, n), strict=True):
            self.rbc(x, y)

    def finish(self, blur_px: float = 0.6, noise: float = 2.0) -> Painted:
        for x, y, r in self.nuclei:
            _disc(self.img, x, y, r, NUCLEUS)
        img = ndimage.gaussian_filter(self.img, (blur_px, blur_px, 0))
        img += self.rng.normal(0, noise, img.shape)
        self.out.image = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return self.out


def write_tiff(path: Path, image: np.ndarray, mpp: float, levels: int = 2, tile: int = 256) -> Path:
    """A tiled pyramidal TIFF (generic-tiff in OpenSlide): resolution in cm so OpenSlide sets openslide.mpp-x."""
    res = 1e4 / mpp
    with tifffile.TiffWriter(path) as tif:
        level = image
        for i in range(levels):
            tif.write(
                level,
                tile=(tile, tile),
                photometric="rgb",
                compression="zlib",
                resolution=(res / 2**i, res / 2**i),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,
            )
            h2, w2 = level.shape[0] // 2, level.shape[1] // 2
            level = level[: h2 * 2, : w2 * 2].reshape(h2, 2, w2, 2, 3).mean((1, 3)).astype(np.uint8)
    return path


def trail_slide(w: int = 1200, h: int = 1000, mpp: float = 0.5, seed: int = 0) -> Painted:
    """A good-trail field: spread red cells, isolated nucleated cells of three kinds, a touching pair, platelets."""
    p = Painter(w, h, mpp, seed)
    p.scatter_rbc(0, 0, w, h, per_100um2=0.9)
    margin = p.um(14)
    step = p.um(34)
    kinds = ("lymphocyte", "neutrophil", "blast")
    i = 0
    for y in np.arange(margin, h - margin, step):
        for x in np.arange(margin, w - margin, step):
            p.cell(x + p.rng.uniform(-3, 3), y + p.rng.uniform(-3, 3), kinds[i % 3])
            i += 1
    for x, y in zip(p.rng.uniform(0, w, 30), p.rng.uniform(0, h, 30), strict=True):
        p.platelet(x, y)
    return p.finish()


def regions_slide(side_um: float = 480, mpp: float = 1.0, seed: int = 1) -> Painted:
    """2 x 2 fields of `side_um`: glass | trail over particle | hemodiluted (top-left, top-right, ...)."""
    p = Painter(round(2 * side_um / mpp), round(2 * side_um / mpp), mpp, seed)
    s = round(side_um / mpp)
    # top-right: good trail
    p.scatter_rbc(s, 0, 2 * s, s, per_100um2=0.9)
    for y in np.arange(p.um(20), s - p.um(20), p.um(34)):
        for x in np.arange(s + p.um(20), 2 * s - p.um(20), p.um(34)):
            p.cell(x, y, "lymphocyte")
    # bottom-left: particle, nucleated cells packed and overlapping
    p.scatter_rbc(0, s, s, 2 * s, per_100um2=1.5)
    for y in np.arange(s + p.um(6), 2 * s - p.um(6), p.um(9)):
        for x in np.arange(p.um(6), s - p.um(6), p.um(9)):
            p.cell(x + p.rng.uniform(-2, 2), y + p.rng.uniform(-2, 2), "blast")
    # bottom-right: hemodiluted, a carpet of red cells with one nucleated cell
    p.scatter_rbc(s, s, 2 * s, 2 * s, per_100um2=3.0)
    p.cell(1.5 * s, 1.5 * s, "lymphocyte")
    return p.finish()
