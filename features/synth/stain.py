"""Stain and scanner of each site: how one smear's optical densities become 8-bit RGB there.

Sites differ the way labs do: the MGG bath (hue of the dyes, how saturated and how strong the staining is), the
scanner (white balance, brightness, focus) and sensor noise. All dye changes act on optical density, so glass
stays white at every site and only stained matter shifts: a hue rotation of the OD vectors around the grey axis,
a saturation scale away from grey, and a strength scale; illumination, blur and noise act on the light.
Site 1 is the reference stain; the others are drawn from the cohort seed with alternating signs so that any
two sites differ visibly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

F32 = np.float32


@dataclass(frozen=True)
class SiteStain:
    """One site's staining and scanning. `blur_um` is the sigma of the optical blur in µm."""

    name: str
    hue_rad: float = 0.0
    saturation: float = 1.0
    strength: float = 1.0
    illumination: tuple[float, float, float] = (0.975, 0.965, 0.975)
    blur_um: float = 0.13
    noise: float = 1.5  # sensor noise std, 8-bit levels

    def to_dict(self) -> dict:
        return asdict(self)

    def od_matrix(self) -> np.ndarray:
        """3x3 matrix applied to OD vectors: strength * (grey part + saturation * rotated chroma part)."""
        axis = np.ones(3) / np.sqrt(3)
        grey = np.outer(axis, axis)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + np.sin(self.hue_rad) * k + (1 - np.cos(self.hue_rad)) * (k @ k)
        return (self.strength * (grey + self.saturation * rot @ (np.eye(3) - grey))).astype(F32)


REFERENCE = SiteStain("site1")


def site_stains(n_sites: int, seed: int) -> list[SiteStain]:
    """Stains of `n_sites` sites: site1 is the reference, the others shifted deterministically from `seed`."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    stains = [REFERENCE]
    for k in range(1, n_sites):
        sign = 1.0 if k % 2 else -1.0
        stains.append(
            SiteStain(
                name=f"site{k + 1}",
                hue_rad=float(sign * rng.uniform(0.12, 0.26)),
                saturation=float(rng.uniform(1.12, 1.3) if k % 2 else rng.uniform(0.65, 0.85)),
                strength=float(rng.uniform(0.78, 0.9) if (k // 2) % 2 else rng.uniform(1.06, 1.18)),
                illumination=tuple(float(v) for v in rng.uniform(0.9, 1.0, 3)),
                blur_um=float(rng.uniform(0.15, 0.28)),
                noise=float(rng.uniform(1.0, 3.0)),
            )
        )
    return stains


def jitter(stain: SiteStain, rng: np.random.Generator) -> SiteStain:
    """Slide-to-slide variation within a site (a fresh bath, a refocus): small next to the site shifts."""
    return replace(
        stain,
        hue_rad=stain.hue_rad + float(rng.normal(0, 0.02)),
        saturation=stain.saturation * float(rng.uniform(0.95, 1.05)),
        strength=stain.strength * float(rng.uniform(0.95, 1.05)),
        blur_um=max(0.05, stain.blur_um * float(rng.uniform(0.85, 1.15))),
    )


OD_SCALE = 1000.0  # fixed-point optical density: uint16 holds 0..65.5 in steps of 0.001
NOISE_BLOCK = 1 << 18
LEVEL_OFFSET = 256  # canvases hold level = OD * OD_SCALE + LEVEL_OFFSET


def blur_od(od: np.ndarray, stain: SiteStain, mpp: float) -> np.ndarray:
    """The scanner's optical blur over the two image axes before the last (..., H, W, 3).

    Applied to optical density rather than light, and per sprite: for blurs of about a pixel the two are
    indistinguishable, and a linear blur of OD commutes with pasting, so renderers blur each sprite (and each
    bank of red cells) once instead of every pixel of a 36-megapixel canvas.
    """
    sigma_px = stain.blur_um / mpp
    if sigma_px <= 0.05:
        return od
    sigma = (0,) * (od.ndim - 3) + (sigma_px, sigma_px, 0)
    return ndimage.gaussian_filter(od, sigma, mode="constant", truncate=3.0)


def stained(od: np.ndarray, stain: SiteStain) -> np.ndarray:
    """OD after the site's dyes (hue, saturation, strength), clipped at 0 (no stain is brighter than glass)."""
    out = od.astype(F32, copy=False) @ stain.od_matrix().T
    return np.maximum(out, 0, out=out)


def to_levels(stained_od: np.ndarray, offset: int = 0) -> np.ndarray:
    """Fixed-point uint16 OD (x OD_SCALE, plus `offset`), saturating.

    Canvases carry LEVEL_OFFSET so that signed sensor noise can be added in place without going negative;
    sprites are pasted without it.
    """
    levels = np.rint(stained_od * F32(OD_SCALE))
    levels += F32(offset)
    return np.minimum(levels, 65535, out=levels).astype(np.uint16)


def light_lut(stain: SiteStain) -> np.ndarray:
    """(3, 65536) uint8: each channel's 8-bit value for a level (OD = (level - LEVEL_OFFSET) / OD_SCALE)."""
    od = (np.arange(65536, dtype=F32) - F32(LEVEL_OFFSET)) / F32(OD_SCALE)
    light = np.exp(-od)[None, :] * (np.asarray(stain.illumination, dtype=F32)[:, None] * F32(255.0))
    return np.clip(np.rint(light), 0, 255).astype(np.uint8)


def add_noise(levels: np.ndarray, stain: SiteStain, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise added in place to offset levels (..., 3), in the OD domain.

    The noise is set so its std on glass equals `stain.noise` grey levels; in OD it shrinks in dark areas, as
    shot noise does. It comes from one block of normals repeated at a random offset: fresh normals for every
    value of a slide would cost more than the rest of the rendering, and a quarter-million-value block
    repeated is invisible at 1-3 grey levels. Signed noise is added as wrapped uint16, exact because the
    offset keeps every sum within range.
    """
    if stain.noise <= 0:
        return levels
    sigma = stain.noise / 245.0 * OD_SCALE
    block = np.clip(np.rint(rng.standard_normal(NOISE_BLOCK) * sigma), -LEVEL_OFFSET + 1, LEVEL_OFFSET - 1)
    start = int(rng.integers(0, NOISE_BLOCK))
    noise = np.resize(np.roll(block.astype(np.int16), -start), levels.size).view(np.uint16)
    levels += noise.reshape(levels.shape)
    return levels


def lookup(levels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Offset uint16 levels (..., 3) -> uint8 RGB through the per-channel table."""
    out = np.empty(levels.shape, np.uint8)
    for c in range(3):
        out[..., c] = lut[c][levels[..., c]]
    return out


def to_rgb(od: np.ndarray, stain: SiteStain, rng: np.random.Generator) -> np.ndarray:
    """Blurred, unstained OD (..., 3) -> uint8 RGB through the site's dyes, white balance and sensor noise."""
    levels = add_noise(to_levels(stained(od, stain), LEVEL_OFFSET), stain, rng)
    return lookup(levels, light_lut(stain))
