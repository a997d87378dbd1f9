"""Nuclear shapes as small sets of ellipses: added ones form the nucleus, subtracted ones carve indentations.

Every shape a morphologist names is a union/difference of ellipses: a round blast nucleus is one ellipse, a
metamyelocyte's kidney is an ellipse minus a circle on its flank, the NPM1 cup is an ellipse minus a circle
sitting inside its edge (the pale "fish-mouth" invagination), a band is a chain of overlapping circles along an
arc, a segmented neutrophil is 3-4 lobes joined by thin filaments (very thin ellipses), pseudo-Pelger is two
round dense lobes on a filament ("spectacles") or a peanut / round non-segmented nucleus. Keeping the
representation this small lets the renderer evaluate every shape of a batch with the same array code.
Coordinates are pixels relative to the cell centre; each generator also returns where nucleoli and the
perinuclear zone go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Prim = tuple[float, float, float, float, float, float]  # x, y, a, b, angle, sign (+1 add, -1 carve)
MAX_PRIMS = 10


@dataclass
class NucleusShape:
    prims: list[Prim]
    centre: tuple[float, float]  # where nucleoli are placed around
    radius: float  # nuclear radius used for nucleoli and the hof


def _dir(angle: float) -> tuple[float, float]:
    return float(np.cos(angle)), float(np.sin(angle))


def _offset(rng: np.random.Generator, room: float, eccentric: float) -> tuple[float, float]:
    """Displace the nucleus towards the membrane by a share of the free room (plasma cells: most of it)."""
    dist = max(room, 0.0) * eccentric * rng.uniform(0.6, 1.0)
    dx, dy = _dir(rng.uniform(0, 2 * np.pi))
    return dist * dx, dist * dy


def round_(rng, R, rn, eccentric) -> NucleusShape:
    e = rng.uniform(0.84, 1.0)
    x, y = _offset(rng, R - rn, eccentric)
    return NucleusShape([(x, y, rn / np.sqrt(e), rn * np.sqrt(e), rng.uniform(0, np.pi), 1.0)], (x, y), rn)


def _indented(rng, R, rn, eccentric, depth, carve_r) -> NucleusShape:
    """An ellipse with a circle carved out of one flank; `depth` is how far (share of the minor axis) it bites."""
    a, b, th = rn * 1.12, rn * 0.88, rng.uniform(0, 2 * np.pi)
    x, y = _offset(rng, R - a, eccentric)
    nx, ny = -np.sin(th), np.cos(th)
    rs = carve_r * rn
    d = b + rs - depth * 2 * b
    prims = [(x, y, a, b, th, 1.0), (x + nx * d, y + ny * d, rs, rs, 0.0, -1.0)]
    return NucleusShape(prims, (x - nx * 0.2 * b, y - ny * 0.2 * b), rn * 0.8)


def myelocyte(rng, R, rn, eccentric) -> NucleusShape:
    return _indented(rng, R, rn, eccentric, rng.uniform(0.0, 0.12), 0.7)


def kidney(rng, R, rn, eccentric) -> NucleusShape:
    return _indented(rng, R, rn, eccentric, rng.uniform(0.3, 0.5), rng.uniform(0.5, 0.65))


def monocyte(rng, R, rn, eccentric) -> NucleusShape:
    shape = _indented(rng, R, rn, eccentric, rng.uniform(0.25, 0.55), rng.uniform(0.45, 0.7))
    if rng.random() < 0.4:  # a second fold
        x, y, a, *_ = shape.prims[0]
        fx, fy = _dir(rng.uniform(0, 2 * np.pi))
        r2 = 0.35 * rn
        shape.prims.append((x + fx * (a + 0.3 * r2), y + fy * (a + 0.3 * r2), r2, r2, 0.0, -1.0))
    return shape


def cup(rng, R, rn, eccentric) -> NucleusShape:
    """NPM1 cup-like blast: a deep, narrow-mouthed invagination taking about a quarter of the nucleus."""
    e = rng.uniform(0.88, 1.0)
    x, y = _offset(rng, R - rn, eccentric)
    ang = rng.uniform(0, 2 * np.pi)
    dx, dy = _dir(ang)
    rs = rng.uniform(0.3, 0.4) * rn
    d = rn * rng.uniform(1.05, 1.15) - 1.3 * rs  # the pocket opens on the nuclear edge by a narrow mouth
    prims = [(x, y, rn / np.sqrt(e), rn * np.sqrt(e), rng.uniform(0, np.pi), 1.0),
             (x + dx * d, y + dy * d, 1.3 * rs, rs, ang, -1.0)]  # fmt: skip
    return NucleusShape(prims, (x - dx * 0.35 * rn, y - dy * 0.35 * rn), rn * 0.55)


def _arc(rng, R, n, span, radius_share) -> tuple[np.ndarray, np.ndarray, float]:
    rho = radius_share * R * rng.uniform(0.9, 1.1)
    start = rng.uniform(0, 2 * np.pi)
    ang = start + np.linspace(-span / 2, span / 2, n) + rng.normal(0, 0.04, n)
    rad = rho * (1 + rng.normal(0, 0.05, n))
    ox, oy = rng.normal(0, 0.05 * R, 2)
    return ox + rad * np.cos(ang), oy + rad * np.sin(ang), start


def band(rng, R, rn, eccentric) -> NucleusShape:
    n = MAX_PRIMS
    xs, ys, start = _arc(rng, R, n, np.deg2rad(rng.uniform(190, 280)), rng.uniform(0.44, 0.54))
    w = rng.uniform(0.15, 0.19) * R
    prims = [
        (float(x), float(y), w, w * rng.uniform(0.9, 1.0), 0.0, 1.0) for x, y in zip(xs, ys, strict=True)
    ]
    return NucleusShape(prims, (0.0, 0.0), w)


def _lobes(rng, R, xs, ys, a_share, b_share, filament_share) -> list[Prim]:
    """Lobes at the given centres, each joined to the next by a thin chromatin filament."""
    prims: list[Prim] = []
    for x, y in zip(xs, ys, strict=True):
        a, b = rng.uniform(*a_share) * R, rng.uniform(*b_share) * R
        prims.append((float(x), float(y), a, b, rng.uniform(0, np.pi), 1.0))
    for j in range(len(xs) - 1):
        x0, y0, x1, y1 = xs[j], ys[j], xs[j + 1], ys[j + 1]
        half = 0.5 * float(np.hypot(x1 - x0, y1 - y0))
        th = float(np.arctan2(y1 - y0, x1 - x0))
        prims.append(((x0 + x1) / 2, (y0 + y1) / 2, half, filament_share * R, th, 1.0))
    return prims


def segmented(rng, R, rn, eccentric) -> NucleusShape:
    k = int(rng.choice([2, 3, 4, 5], p=[0.06, 0.46, 0.38, 0.10]))
    span = np.deg2rad(rng.uniform(120, 170) if k == 2 else rng.uniform(200, 300))
    xs, ys, _ = _arc(rng, R, k, span, rng.uniform(0.38, 0.46))
    prims = _lobes(rng, R, xs, ys, (0.21, 0.27), (0.16, 0.21), rng.uniform(0.035, 0.05))
    return NucleusShape(prims, (0.0, 0.0), 0.2 * R)


def bilobed(rng, R, rn, eccentric) -> NucleusShape:
    th = rng.uniform(0, 2 * np.pi)
    d = rng.uniform(0.27, 0.36) * R
    cx, cy = rng.normal(0, 0.05 * R, 2)
    xs = np.array([cx - d * np.cos(th), cx + d * np.cos(th)])
    ys = np.array([cy - d * np.sin(th), cy + d * np.sin(th)])
    bridge = rng.uniform(0.04, 0.06) if rng.random() < 0.6 else rng.uniform(0.09, 0.13)
    return NucleusShape(_lobes(rng, R, xs, ys, (0.25, 0.3), (0.19, 0.23), bridge), (cx, cy), 0.25 * R)


def pelger(rng, R, rn, eccentric) -> NucleusShape:
    """Pseudo-Pelger-Huet: spectacles (two round lobes on a filament), a peanut, or a round nucleus."""
    u = rng.random()
    th = rng.uniform(0, 2 * np.pi)
    if u < 0.5:
        d = rng.uniform(0.26, 0.33) * R
        xs, ys = np.array([-d, d]) * np.cos(th), np.array([-d, d]) * np.sin(th)
        return NucleusShape(_lobes(rng, R, xs, ys, (0.2, 0.24), (0.19, 0.23), 0.04), (0.0, 0.0), 0.22 * R)
    if u < 0.8:
        d, r = rng.uniform(0.15, 0.2) * R, rng.uniform(0.24, 0.28) * R
        prims = [(-d * np.cos(th), -d * np.sin(th), r, r * 0.95, 0.0, 1.0),
                 (d * np.cos(th), d * np.sin(th), r, r * 0.95, 0.0, 1.0)]  # fmt: skip
        return NucleusShape(prims, (0.0, 0.0), r)
    return round_(rng, R, rng.uniform(0.34, 0.4) * R, 0.3)


def apl(rng, R, rn, eccentric) -> NucleusShape:
    """APL: bilobed 'butterfly' / sliding-plates nucleus with a deep cleft, or reniform."""
    if rng.random() < 0.35:
        return kidney(rng, R, rn, eccentric)
    th = rng.uniform(0, 2 * np.pi)
    x, y = _offset(rng, R - rn, eccentric)
    d, tilt = rng.uniform(0.3, 0.4) * rn, rng.uniform(0.25, 0.5)
    a, b = rng.uniform(0.68, 0.78) * rn, rng.uniform(0.5, 0.6) * rn
    dx, dy = _dir(th)
    prims = [(x - dx * d, y - dy * d, b, a, th + tilt, 1.0), (x + dx * d, y + dy * d, b, a, th - tilt, 1.0)]
    return NucleusShape(prims, (x, y), rn * 0.6)


def basophil(rng, R, rn, eccentric) -> NucleusShape:
    return bilobed(rng, R, rn, eccentric) if rng.random() < 0.6 else kidney(rng, R, rn, eccentric)


def abnormal_eosinophil(rng, R, rn, eccentric) -> NucleusShape:
    """inv(16) eosinophils are often immature: a round eccentric nucleus as often as a bilobed one."""
    return bilobed(rng, R, rn, eccentric) if rng.random() < 0.5 else round_(rng, R, rn, eccentric)


SHAPES: dict[str, Callable[..., NucleusShape]] = {
    "round": round_,
    "myelocyte": myelocyte,
    "kidney": kidney,
    "monocyte": monocyte,
    "cup": cup,
    "band": band,
    "segmented": segmented,
    "bilobed": bilobed,
    "pelger": pelger,
    "apl": apl,
    "basophil": basophil,
    "abnormal_eosinophil": abnormal_eosinophil,
}
