"""A tiny smear painter for the source/QC/detection/crop tests: known cells at known places, in seconds.

Not a realistic generator (that is `features.synth`); it paints exactly the corner cases the tests need:
pink red cells without nucleus, round nuclei, three-lobed neutrophil nuclei that must count once, touching
nuclei that must count twice, platelets too small to count, dense particles, red-cell-packed hemodiluted
areas and plain glass, written as a tiled pyramidal TIFF that OpenSlide opens with a known mpp.

It is also the independent check of `features.synth` for detection: `aml_slide` paints an AML smear the way
another renderer did when the detector lost a quarter of its blasts (large pale blasts with fine chromatin
and big nuclei, packed beside two particles and isolated in a thin trail), with none of the generator's code.
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
BLAST_CYTO = (178, 194, 232)  # pale basophilic blue rim of a myeloblast
PARTICLE_FILM = (196, 168, 212)  # the thick lilac ground of a marrow particle
# Chromatin's OD direction (against glass), scaled so that min(red OD, green OD) = 1: pale blasts are drawn as
# a share of it, which is what the detector thresholds.
_CHROMATIN_OD = np.log10(np.array(GLASS) / np.array(NUCLEUS))
_CHROMATIN_OD = _CHROMATIN_OD / min(_CHROMATIN_OD[0], _CHROMATIN_OD[1])


@dataclass
class Painted:
    image: np.ndarray  # H x W x 3 uint8
    mpp: float
    cells: list[tuple[float, float]] = field(default_factory=list)  # nucleated cell centres (x, y) px
    kinds: list[str] = field(default_factory=list)
    particles: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, radius) px


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
        self.pale_nuclei: list[tuple[float, float, float, float]] = []  # x, y, radius px, nuclear OD

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

    def pale_blast(self, x: float, y: float, diameter_um: float, nuclear_od: float) -> None:
        """A large myeloblast as another renderer draws it: a big round nucleus (N:C 0.8) of fine, open
        chromatin whose red AND green optical density is about `nuclear_od` (a faint stipple, no clumps),
        one to three paler nucleoli, a thin rim of pale blue cytoplasm."""
        _disc(self.img, x, y, self.um(diameter_um / 2), BLAST_CYTO)
        self.pale_nuclei.append((x, y, self.um(0.8 * diameter_um / 2), nuclear_od))
        self.out.cells.append((x, y))
        self.out.kinds.append("pale_blast")

    def particle(self, x: float, y: float, radius_um: float) -> None:
        """A marrow particle: a thick lilac ground packed with overlapping nucleated cells (several layers)."""
        r = self.um(radius_um)
        _disc(self.img, x, y, r, PARTICLE_FILM, soft=self.um(4.0))
        step = self.um(7.0)
        for yy in np.arange(y - r, y + r, step):
            for xx in np.arange(x - r, x + r, step):
                jx, jy = self.rng.uniform(-2, 2, 2)
                if np.hypot(xx + jx - x, yy + jy - y) < r - self.um(5):
                    kind = ("blast", "lymphocyte", "neutrophil")[int(self.rng.integers(3))]
                    self.cell(xx + jx, yy + jy, kind)
        self.out.particles.append((x, y, r))

    def scatter_rbc(self, x0, y0, x1, y1, per_100um2: float) -> None:
        n = int((x1 - x0) * (y1 - y0) * self.mpp**2 / 100 * per_100um2)
        for x, y in zip(self.rng.uniform(x0, x1, n), self.rng.uniform(y0, y1, n), strict=True):
            self.rbc(x, y)

    def finish(self, blur_px: float = 0.6, noise: float = 2.0) -> Painted:
        for x, y, r in self.nuclei:
            _disc(self.img, x, y, r, NUCLEUS)
        for x, y, r, od in self.pale_nuclei:
            self._pale_nucleus(x, y, r, od)
        img = ndimage.gaussian_filter(self.img, (blur_px, blur_px, 0))
        img += self.rng.normal(0, noise, img.shape)
        self.out.image = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return self.out

    def _pale_nucleus(self, x: float, y: float, r: float, od: float) -> None:
        """Fine chromatin: OD `od` x (1 + a 0.3 µm stipple of +-12 %), nucleoli at 55 % of it."""
        half = int(r + 2)
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
        stipple = ndimage.gaussian_filter(self.rng.standard_normal(xx.shape), self.um(0.3))
        density = od * (1 + 0.12 * stipple / max(float(stipple.std()), 1e-9))
        for _ in range(int(self.rng.integers(1, 4))):
            a, d = self.rng.uniform(0, 2 * np.pi), self.rng.uniform(0, 0.5 * r)
            nx, ny, nr = d * np.cos(a), d * np.sin(a), self.um(self.rng.uniform(0.8, 1.4))
            density = np.where(np.hypot(xx - nx, yy - ny) < nr, 0.55 * od, density)
        colour = np.array(GLASS) * 10 ** (-density[..., None] * _CHROMATIN_OD)
        alpha = np.clip(r - np.hypot(xx, yy) + 0.5, 0, 1)[..., None]
        cx, cy = int(round(x)), int(round(y))
        h, w = self.img.shape[:2]
        if half <= cx < w - half and half <= cy < h - half:
            box = self.img[cy - half : cy + half + 1, cx - half : cx + half + 1]
            box += (colour - box) * alpha


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


def aml_slide(mpp: float = 0.5, seed: int = 0) -> Painted:
    """An AML marrow smear, 1400 x 900 µm, as another renderer painted it (none of `features.synth`):

    - two particles (radius 90 µm) at the left;
    - beside them (x 290-570 µm) a blast-rich monolayer: large pale blasts 17-21 µm across on a 24 µm grid
      (cells never touch), one cell in five a neutrophil or a lymphocyte, red cells between;
    - the thin trail beyond (x 600-1400 µm, few red cells): isolated large pale blasts 18-26 µm across and
      neutrophils, ~55 µm apart.

    Blast nuclei have a red AND green optical density of 0.15-0.25 (fine chromatin): paler than the
    generator's blasts and than any nucleus of PBC's CellaVision images (the palest monocyte ~0.26), the
    pale end of scanned marrow smears. `kinds`: pale_blast, neutrophil, lymphocyte, blast (in particles).
    """
    p = Painter(round(1400 / mpp), round(900 / mpp), mpp, seed)
    u = p.um
    p.scatter_rbc(0, 0, u(600), u(900), per_100um2=0.6)
    p.scatter_rbc(u(600), 0, u(1400), u(900), per_100um2=0.3)
    for cy in (220, 680):
        p.particle(u(180), u(cy), 90)
    for y in np.arange(u(14), u(900 - 14), u(24)):
        for x in np.arange(u(290), u(570), u(24)):
            jx, jy = p.rng.uniform(-u(1), u(1), 2)
            roll = p.rng.random()
            if roll < 0.8:
                p.pale_blast(x + jx, y + jy, p.rng.uniform(17, 21), p.rng.uniform(0.15, 0.25))
            else:
                p.cell(x + jx, y + jy, "neutrophil" if roll < 0.9 else "lymphocyte")
    for y in np.arange(u(30), u(900 - 30), u(55)):
        for x in np.arange(u(630), u(1400 - 30), u(55)):
            jx, jy = p.rng.uniform(-u(8), u(8), 2)
            if p.rng.random() < 0.7:
                p.pale_blast(x + jx, y + jy, p.rng.uniform(18, 26), p.rng.uniform(0.15, 0.25))
            else:
                p.cell(x + jx, y + jy, "neutrophil")
    for x, y in zip(p.rng.uniform(0, u(1400), 80), p.rng.uniform(0, u(900), 80), strict=True):
        p.platelet(x, y)
    return p.finish()
