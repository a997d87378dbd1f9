"""`cytomorph`: a handcrafted morphometric cell encoder that needs no weights (the offline default).

What a haematologist reads off a May-Grünwald-Giemsa cell, measured on a 96 px crop of fixed physical size
(so areas are fractions of the crop and comparable across scanners): cell and nuclear size, N:C ratio, nuclear
shape (solidity, lobes, cup-like invagination of NPM1 blasts, band/segment thinness), chromatin density and
texture at three scales, nucleoli, cytoplasm colour (basophilia, eosinophilic orange), granules (fine puncta,
purple-black granules of inv(16) eosinophils), and Auer rods (thin, straight, anisotropic ridges). Each of the
`FEATURE_NAMES` is described in `cytomorph_features.FEATURES`.

Pipeline, every step on the whole batch at once (numpy / scipy.ndimage, no per-cell Python loop):
1. 2 x 2 block sums (0.5 µm pixels for a 24 µm crop) plus each block's full-resolution contrast ("grain").
2. Optical density against the crop's own background (its brightest 2 %): white balance and lamp cancel.
3. Colour deconvolution onto three MGG dyes (purple chromatin, blue basophilic cytoplasm, pink eosin / red
   cells). Nucleus: chromatin above a per-image Otsu threshold, grown by hysteresis, opened and closed, and
   kept where it reaches the crop centre. Cell: stained, not eosin-dominated (red cells), connected to the
   nucleus, hole-filled (orange granules and Auer rods inside come back with the holes).
4. Stain normalisation with the crop's red cells as the reference (cytomorph_stain), and texture measures
   divided by the sharpness of the red-cell rims, so sites with other dyes, scanners and focus read alike.
   The cell mask is drawn twice: first to find the red cells, then with the red-cell rule on densities
   normalised by them (the rule fails under a strongly shifted stain; `segment_in_reference_stain`).
Features are O(1): shares, ratios, and log1p of counts. Measured on synthetic cells from three sites, see
benchmarks/cytomorph.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.core.errors import ConfigError
from features.encoders import ENCODERS
from features.encoders import morph_ops as M
from features.encoders.base import Precision, check_batch
from features.encoders.cytomorph_features import FEATURES, measure
from features.encoders.cytomorph_stain import stain_normaliser

INPUT_PX = 96
CHUNK = 64  # crops per vectorised pass: temporaries stay ~30 MB and mostly in cache; 32-128 time alike
FG_OD = 0.25  # summed optical density above which a pixel is stained matter (glass + plasma stay below ~0.15)
RBC_EOSIN_SHARE = 0.7  # a pixel whose deconvolved density is >= 70 % eosin is red-cell-like
HYSTERESIS = 0.7  # nuclei grow down to this share of the Otsu threshold (see segment)
CENTRE_RADIUS = 0.21  # nuclear components must reach this disc around the crop centre (share of the crop)

# MGG dye optical densities (R, G, B absorbance of unit stain): purple azure-eosin chromatin, blue azure-B
# cytoplasm (RNA), pink eosin of red cells. Rows are normalised; the inverse unmixes a pixel's OD.
_DYES = -np.log(np.array([[95, 45, 125], [72, 100, 185], [222, 135, 140]], np.float64) / 255)
_DYES /= np.linalg.norm(_DYES, axis=1, keepdims=True)
_UNMIX = np.linalg.inv(_DYES).astype(np.float32)
_LOG_SUM = np.log(np.maximum(np.arange(1021), 2.0)).astype(np.float32)  # log of a 2 x 2 block sum

FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)  # output order; FEATURES says what each measures


class CytomorphEncoder:
    """Weight-free morphometry; see the module docstring. `encode` is deterministic and batch-independent."""

    name = "cytomorph"
    input_px = INPUT_PX
    weights_sha256 = "none"
    weights_path = None
    feature_names = FEATURE_NAMES
    feature_descriptions = FEATURES
    dim = len(FEATURE_NAMES)
    precision = Precision("fp32", None, None)  # numpy float32 throughout
    device = "cpu"

    def __repr__(self) -> str:
        return f"CytomorphEncoder(dim={self.dim}, input_px={self.input_px})"

    def encode(self, images: Any) -> np.ndarray:
        check_batch(images, self.input_px, self.name)
        rgb = images.cpu().numpy() if hasattr(images, "cpu") else np.asarray(images)  # torch or numpy
        out = np.empty((len(rgb), self.dim), np.float32)
        for start in range(0, len(rgb), CHUNK):
            out[start : start + CHUNK] = cytomorph_features(rgb[start : start + CHUNK])
        return out


@ENCODERS.register("cytomorph", dim=len(FEATURE_NAMES), input_px=INPUT_PX)
def create_cytomorph(
    name: str = "cytomorph", weights: str | None = None, device: str = "cpu", precision: str = "auto"
) -> CytomorphEncoder:
    """Handcrafted morphometry (size, N:C, nuclear shape, chromatin, granules, Auer rods); no weights"""
    if weights not in (None, "none"):
        raise ConfigError(f"cytomorph has no weights; drop --weights {weights}")
    return CytomorphEncoder()


def half_resolution(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2 x 2 block sums of RGB, planar (B x 3 x 48 x 48 uint16, 0-1020), and each block's relative luminance
    variance (B x 48 x 48).

    Shape and colour are measured at half the input resolution (4x fewer pixels for every later pass); the
    full resolution survives as the within-block contrast, which is where fine granules and chromatin grain live.
    Colour planes are kept apart (planar) from here on: numpy loops over a trailing axis of 3 several times
    slower than over a plane.
    """
    b, h, w, _ = rgb.shape
    rows = rgb.reshape(b, h // 2, 2, w * 3)
    rows = rows[:, :, 0].astype(np.uint16) + rows[:, :, 1]  # B x h/2 x (w x 3): row pairs added
    planar = rows.reshape(b, h // 2, w, 3).transpose(0, 3, 1, 2)
    sums = planar[..., 0::2] + planar[..., 1::2]
    lum = rgb[..., 0].astype(np.float32) + rgb[..., 1] + rgb[..., 2]
    l1 = (sums[:, 0] + sums[:, 1] + sums[:, 2]).astype(np.float32) * 0.25
    l2 = M.block_sum2(lum * lum) * 0.25
    grain = np.maximum(l2 - l1 * l1, 0) / np.maximum(l1 * l1, 1.0)
    return sums, grain


def optical_density(block_sums: np.ndarray) -> np.ndarray:
    """Planar 2 x 2 block sums (B x 3 x h x w, 0-1020) -> optical density (same layout, float32) against the
    crop's background, the mean of its brightest 2 % of pixels, so lamp brightness and white balance cancel."""
    b = block_sums.shape[0]
    flat = block_sums.reshape(b, 3, -1)
    lum = (flat[:, 0] + flat[:, 1] + flat[:, 2]) >> 2  # 0..765
    hist = np.bincount((lum + (np.arange(b) * 766)[:, None]).ravel(), minlength=766 * b).reshape(b, 766)
    above = hist[:, ::-1].cumsum(1)
    cut = 765 - np.count_nonzero(above < 0.02 * lum.shape[1], axis=1)
    bright = (lum >= cut[:, None]).astype(np.float32)
    bg = np.matmul(flat.astype(np.float32), bright[:, :, None])[:, :, 0] / bright.sum(1)[:, None]
    log_bg = np.log(np.maximum(bg, 4.0)).astype(np.float32)
    return np.maximum(log_bg[:, :, None, None] - _LOG_SUM[block_sums], 0)


def unmix(od: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Per-pixel linear map of planar OD (B x 3 x h x w): out[:, j] = sum_c od[:, c] * matrix[..., c, j], where
    matrix is 3 x 3 or one B x 3 x 3 per image (one batched 3 x 3 @ 3 x hw product)."""
    m = (matrix if matrix.ndim == 3 else matrix[None]).transpose(0, 2, 1).astype(np.float32)
    return np.matmul(m, od.reshape(od.shape[0], 3, -1)).reshape(od.shape)


def segment(od: np.ndarray) -> dict[str, np.ndarray]:
    """Masks (nucleus, cell, cytoplasm) and the maps the features need, for a planar B x 3 x h x w OD stack."""
    b, _, h, w = od.shape
    dyes = unmix(od, _UNMIX)  # chromatin, azure (blue), eosin
    dens = od[:, 0] + od[:, 1] + od[:, 2]
    stained = dens > FG_OD
    chrom = np.maximum(dyes[:, 0], 0)
    t = M.otsu(chrom, stained)[:, None, None]
    # hysteresis: nuclear components are grown down to HYSTERESIS x Otsu's threshold, and kept when they hold
    # a pixel above it and reach the crop centre. Otsu alone cuts into pale chromatin wherever stained matter
    # is mostly non-nuclear (an eosinophil's orange granules pile up at zero chromatin).
    low = M.erode(M.dilate(M.dilate(M.erode(stained & (chrom > HYSTERESIS * t), 1), 1), 1), 1)
    labels, n = M.label(low)
    keep = np.zeros(n + 1, bool)
    keep[labels[:, _centre_disc(h, w)]] = True
    strong = np.zeros(n + 1, bool)
    strong[labels[chrom > t]] = True
    keep &= strong
    keep[0] = False
    return _cell_masks(keep[labels], stained, _eosin_share(dyes))


def segment_in_reference_stain(od: np.ndarray) -> dict[str, np.ndarray]:
    """`segment`, with the red cells told apart from the cell on densities brought to the reference stain by
    the crop's own red cells (`cytomorph_stain`).

    The red-cell rule (eosin share >= RBC_EOSIN_SHARE under the textbook MGG dyes) holds only near the
    reference stain: at a site whose dyes are turned 0.2 rad in hue and 1.15x as saturated (within the range
    `mil synth` draws for its sites) red cells fall below it, and the cell mask grew over the touching red
    cells (cell elongation 0.08 -> 0.27 on blasts; a probe trained at a milder site typed 11 of the 205 blasts
    of one such AML slide as myelocytes). So the first masks find the red cells, their stain gives the crop's
    normaliser, and the cell is drawn again with the red-cell rule on the normalised densities. The nucleus
    keeps its first mask: drawn again on the normalised densities it grew into the azurophilic granules of
    promyelocytes at a pale site (benchmarks/cytomorph.py, site1 -> site3).
    """
    first = segment(od)
    to_reference = stain_normaliser(od, first["stained"], first["cell"], first["eosin_share"])
    eosin_share = _eosin_share(unmix(unmix(od, to_reference), _UNMIX))
    return _cell_masks(first["nuc"], first["stained"], eosin_share)


def _eosin_share(dyes: np.ndarray) -> np.ndarray:
    """Each pixel's eosin (red-cell) share of its three deconvolved dye densities (B x 3 x h x w -> B x h x w)."""
    return dyes[:, 2] / (np.abs(dyes[:, 0]) + np.abs(dyes[:, 1]) + np.abs(dyes[:, 2]) + 1e-3)


def _cell_masks(nuc: np.ndarray, stained: np.ndarray, eosin_share: np.ndarray) -> dict[str, np.ndarray]:
    """The cell: stained matter that is not red-cell-like, connected to the nucleus, holes filled."""
    body = (stained & (eosin_share < RBC_EOSIN_SHARE)) | nuc
    labels, n = M.label(M.erode(body, 1))
    keep = np.zeros(n + 1, bool)
    keep[labels[M.erode(nuc, 1)]] = True
    keep[0] = False
    cell = M.fill_holes(M.dilate(keep[labels], 1)) | nuc
    return {"nuc": nuc, "cell": cell, "cyto": cell & ~nuc, "stained": stained, "eosin_share": eosin_share}


def _centre_disc(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) < CENTRE_RADIUS * h


def cytomorph_features(rgb: np.ndarray) -> np.ndarray:
    """B x 96 x 96 x 3 uint8 -> B x len(FEATURE_NAMES) float32 (see FEATURE_NAMES for the order)."""
    sums, grain = half_resolution(rgb)
    od = optical_density(sums)
    seg = segment_in_reference_stain(od)
    od = unmix(od, stain_normaliser(od, seg["stained"], seg["cell"], seg["eosin_share"]))
    feats = measure(od, od[:, 0] + od[:, 1] + od[:, 2], unmix(od, _UNMIX), grain, seg)
    return np.stack([feats[name] for name in FEATURE_NAMES], axis=1).astype(np.float32)
