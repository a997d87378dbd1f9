"""The measurements behind `cytomorph`: masks + optical density in, one named (B,) array per feature out.

Why each group exists (what separates which cells):
* shape: segmented neutrophils have 3-4 lobes on thin filaments (low core share, many lobes after erosion),
  pseudo-Pelger cells two round lobes or one round nucleus; the NPM1 cup and the kidney of a metamyelocyte are
  convexity defects of the nucleus; plasma cells have an eccentric nucleus.
* chromatin: blasts have fine, pale chromatin and nucleoli; lymphocytes and dysplastic neutrophils dense clumps.
* granules: APL cells are packed with coarse azurophilic granules (also over the nucleus), eosinophils with
  orange ones, inv(16) eosinophils add large purple-black ones; dysplastic neutrophils are hypogranular.
* ridges: Auer rods are thin straight lines, which a Hessian sees as one strongly negative curvature (a dark
  line in OD is a ridge of high density) with a small other one; round granules curve in both directions.
"""

from __future__ import annotations

import numpy as np

from features.encoders import morph_ops as M

EPS = 1e-3
# name -> what it measures (areas are shares of the crop, which has a fixed physical size; "density" is summed
# optical density; texture and granule measures are relative to the region's density and the scan's sharpness)
FEATURES: dict[str, str] = {
    "cell_area": "cell area / crop area",
    "cell_solidity": "cell area / convex hull area",
    "cell_elongation": "1 - minor/major axis of the cell's second-moment ellipse",
    "cell_roughness": "cell perimeter / perimeter of a disc of the same area",
    "nuc_area": "nuclear area / crop area",
    "nc_ratio": "nuclear area / cell area (N:C)",
    "nuc_offset": "distance between nuclear and cell centroids / cell radius (eccentric nucleus)",
    "nuc_solidity": "nuclear area / its convex hull area (lobes, folds, cups lower it)",
    "nuc_elongation": "1 - minor/major axis of the nucleus",
    "nuc_roughness": "nuclear perimeter / perimeter of a disc of the same area",
    "nuc_defect_deep": "deep convexity defects / hull area (NPM1 cup, kidney hilum, gaps between lobes)",
    "nuc_defect_count": "log1p number of deep convexity defects",
    "nuc_fragments": "log1p number of separate nuclear pieces",
    "nuc_lobes": "log1p number of lobes left when parts under 1.5 µm wide (filaments) are eroded away",
    "nuc_thin_share": "share of the nucleus in filaments and thin bands (lost by an opening)",
    "nuc_core1_share": "share of the nucleus more than 0.5 µm inside its edge",
    "nuc_core3_share": "share of the nucleus more than 1.5 µm inside its edge (thick, round nuclei)",
    "nuc_od": "mean nuclear density (chromatin condensation)",
    "nuc_cyto_od_ratio": "log nuclear / cytoplasmic density",
    "nuc_od_cv": "coefficient of variation of nuclear density",
    "nuc_grain": "full-resolution (0.25 µm) chromatin grain",
    "nuc_tex_fine": "nuclear texture at 0.5-1.5 µm",
    "nuc_tex_coarse": "nuclear texture at 1.5-3.5 µm (clumps)",
    "nuc_clump_share": "share of the nucleus in dense clumps",
    "nucleoli_share": "share of the nucleus in pale spots well inside it (nucleoli)",
    "nucleoli_count": "log1p number of such pale spots",
    "nuc_red_share": "red-channel share of nuclear density (hue)",
    "nuc_blue_share": "blue-channel share of nuclear density (hue)",
    "nuc_chromatin_dye": "chromatin-dye share of the nucleus (colour deconvolution)",
    "cyto_od": "mean cytoplasmic density",
    "cyto_od_cv": "coefficient of variation of cytoplasmic density",
    "cyto_red_share": "red-channel share of cytoplasmic density (basophilia absorbs red)",
    "cyto_blue_share": "blue-channel share of cytoplasmic density (orange granules absorb blue)",
    "cyto_chromatin_dye": "purple (azurophilic) dye share of the cytoplasm",
    "cyto_azure_dye": "blue (basophilic, RNA) dye share of the cytoplasm",
    "cyto_eosin_dye": "eosin (pink/orange) dye share of the cytoplasm",
    "cyto_grain": "full-resolution cytoplasmic grain (fine granules)",
    "cyto_tex_fine": "cytoplasmic texture at 0.5-1.5 µm",
    "cyto_tex_coarse": "cytoplasmic texture at 1.5-3.5 µm",
    "cyto_pale_share": "share of the cytoplasm much paler than its mean (vacuoles, hof)",
    "perinuclear_pale": "log density next to the nucleus / cytoplasm mean (perinuclear hof)",
    "granule_density": "granule peaks per 10 cytoplasm pixels",
    "granule_prominence": "how far granules stand out from their 1.5 µm surround",
    "cell_granule_density": "granule peaks per 10 cell pixels (granules over the nucleus count: APL)",
    "orange_share": "share of the cytoplasm in orange (eosinophilic) granules",
    "dark_granule_share": "share of the cytoplasm in purple-black granules (inv(16) eosinophils, basophils)",
    "dark_granule_count": "log1p number of purple-black granule clusters",
    "purple_granule_share": "purple (azurophilic) granule peaks per 10 cell pixels",
    "ridge_max": "strongest thin straight ridge in the cell (Auer rod)",
    "ridge_share": "share of the cell on strong ridges (bundles of rods: faggot cells)",
    "ridge_count": "log1p number of strong ridge segments",
    "ridge_long_count": "log1p number of long ridge segments",
    "crimson_ridge_share": "share of the cell on crimson ridges (Auer rods; APL granule chains)",
    "crimson_share": "share of the cell in dense crimson material (Auer rods, APL coarse granules)",
    "cell_od": "mean density of the whole cell",
    "cell_grain": "full-resolution grain of the whole cell",
    "cell_tex_fine": "whole-cell texture at 0.5-1.5 µm",
    "cell_tex_coarse": "whole-cell texture at 1.5-3.5 µm",
    "cell_dark_share": "share of the cell 1.5x denser than its mean",
    "cell_chromatin_dye": "chromatin-dye share of the whole cell",
    "cell_eosin_dye": "eosin-dye share of the whole cell",
}
MIN_RIM_PX = 30  # half-resolution rim pixels of red cells needed to read the scan's sharpness off them
PEAK_PROMINENCE = 0.5  # a granule stands out from its 1.5 µm surround by this share of a rim's band-pass


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a / np.maximum(b, EPS)


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(a / b) that is 0 when both are 0 (an empty region), not -7."""
    return np.log((a + 0.01) / (b + 0.01))


def _tex(fine: np.ndarray, coarse: np.ndarray, mask: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Mean absolute band-pass (difference of two box means) over the mask, relative to the region's density."""
    return _ratio(M.masked_mean(np.abs(fine - coarse), mask), level)


def _shape(mask: np.ndarray, area_px: np.ndarray) -> dict[str, np.ndarray]:
    support = M.hull_support(mask)
    hull = M.hull_area(support)
    _, cy, cx, elong = M.moments(mask)
    rough = _ratio(M.perimeter(mask), 2 * np.sqrt(np.pi * area_px))
    return {"solidity": np.minimum(_ratio(area_px, hull), 1), "elong": elong, "rough": rough, "hull": hull,
            "support": support, "cy": cy, "cx": cx}  # fmt: skip


def _ridges(dens: np.ndarray) -> np.ndarray:
    """Anisotropic ridge strength from the Hessian's eigenvalues l1 <= l2 (central differences):
    max(-l1 - |l2|, 0), i.e. strong curvature across a line and little along it; a round granule curves both
    ways and scores 0. With l = h -/+ d (h half the trace, d >= 0) this is 2 * max(min(-h, d), 0)."""
    c = dens[:, 1:-1, 1:-1]
    dxx = dens[:, 1:-1, 2:] + dens[:, 1:-1, :-2] - 2 * c
    dyy = dens[:, 2:, 1:-1] + dens[:, :-2, 1:-1] - 2 * c
    dxy = (dens[:, 2:, 2:] + dens[:, :-2, :-2] - dens[:, 2:, :-2] - dens[:, :-2, 2:]) * 0.25
    disc = np.sqrt(((dxx - dyy) * 0.5) ** 2 + dxy * dxy)
    out = np.zeros_like(dens)
    out[:, 1:-1, 1:-1] = 2 * np.maximum(np.minimum(-(dxx + dyy) * 0.5, disc), 0)
    return out


def _sharpness(
    dens: np.ndarray, box1: np.ndarray, grain: np.ndarray, stained: np.ndarray, cell: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How sharp this scan is, read off the red-cell rims (the cell's own rim where there are too few).

    Optical blur differs between scanners and lowers every fine-texture measure; dividing those by the same
    measure on a step edge in the same crop cancels most of it (sites with 2.5x the blur then read alike).
    Returns the full-resolution grain and the half-resolution band-pass on the rim, each as a ratio.
    """
    rim = (stained & ~M.erode(stained, 1)) & ~M.dilate(cell, 1)
    few = M.count(rim) < MIN_RIM_PX
    rim = np.where(few[:, None, None], cell & ~M.erode(cell, 1), rim)
    grain_ref = np.maximum(M.masked_mean(grain, rim), 1e-5)
    tex_ref = _ratio(M.masked_mean(np.abs(dens - box1), rim), M.masked_mean(dens, M.dilate(rim, 1) & stained))
    return grain_ref, np.maximum(tex_ref, 0.02)


def measure(
    od: np.ndarray, dens: np.ndarray, dyes: np.ndarray, grain: np.ndarray, seg: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """All features of a batch from stain-normalised planar OD (B x 3 x h x w), its sum, its dyes, the
    full-resolution grain and the masks, at half resolution (0.5 µm per pixel for 24 µm crops)."""
    nuc, cell, cyto = seg["nuc"], seg["cell"], seg["cyto"]
    b, h, w = nuc.shape
    crop_px = float(h * w)
    f: dict[str, np.ndarray] = {}

    n_nuc, n_cell, n_cyto = (M.count(m) for m in (nuc, cell, cyto))
    w_nuc, w_cell, w_cyto = (m.astype(np.float32) for m in (nuc, cell, cyto))  # one conversion, many means
    cs, ns = _shape(cell, n_cell), _shape(nuc, n_nuc)
    f["cell_area"], f["nuc_area"] = n_cell / crop_px, n_nuc / crop_px
    f["nc_ratio"] = _ratio(n_nuc, n_cell)
    f["cell_solidity"], f["cell_elongation"], f["cell_roughness"] = cs["solidity"], cs["elong"], cs["rough"]
    f["nuc_solidity"], f["nuc_elongation"], f["nuc_roughness"] = ns["solidity"], ns["elong"], ns["rough"]
    offset = _ratio(np.hypot(ns["cy"] - cs["cy"], ns["cx"] - cs["cx"]), np.sqrt(n_cell / np.pi))
    f["nuc_offset"] = np.where(n_nuc > 0, offset, 0)

    # convexity defects: the cup of NPM1 blasts, the hilum of a kidney, the gaps between lobes. A deep defect
    # survives erosion; the thin sliver between a round nucleus and its hull polygon does not.
    defects = M.hull_mask(ns["support"], (h, w)) & ~nuc
    deep = M.erode(defects, 1)
    f["nuc_defect_deep"] = _ratio(M.count(deep), ns["hull"])
    f["nuc_defect_count"] = np.log1p(M.count_blobs(deep))
    f["nuc_fragments"] = np.log1p(M.count_blobs(nuc))
    core1 = M.erode(nuc, 1)
    f["nuc_lobes"] = np.log1p(M.count_blobs(core1))
    f["nuc_thin_share"] = _ratio(n_nuc - M.count(M.dilate(core1, 1) & nuc), n_nuc)
    f["nuc_core1_share"] = _ratio(M.count(core1), n_nuc)
    f["nuc_core3_share"] = _ratio(M.count(M.erode(core1, 2)), n_nuc)

    # densities and texture: full-resolution grain (2 x 2 blocks), then band-passes at 1.5 and 3.5 µm
    box1, box3 = M.box_mean(dens, 1), M.box_mean(dens, 3)
    nuc_od, cyto_od, cell_od = (
        M.masked_mean(dens, m, c) for m, c in ((w_nuc, n_nuc), (w_cyto, n_cyto), (w_cell, n_cell))
    )
    grain_ref, tex_ref = _sharpness(dens, box1, grain, seg["stained"], cell)
    f["nuc_od"], f["cyto_od"], f["cell_od"] = nuc_od, cyto_od, cell_od
    f["nuc_cyto_od_ratio"] = _log_ratio(nuc_od, cyto_od)
    f["nuc_od_cv"] = _ratio(M.masked_std(dens, w_nuc, nuc_od), nuc_od)
    f["cyto_od_cv"] = _ratio(M.masked_std(dens, w_cyto, cyto_od), cyto_od)
    for region, mask, count, level in (("nuc", w_nuc, n_nuc, nuc_od), ("cyto", w_cyto, n_cyto, cyto_od),
                                       ("cell", w_cell, n_cell, cell_od)):  # fmt: skip
        f[f"{region}_grain"] = np.sqrt(M.masked_mean(grain, mask, count) / grain_ref)
        f[f"{region}_tex_fine"] = _tex(dens, box1, mask, level) / tex_ref
        f[f"{region}_tex_coarse"] = _tex(box1, box3, mask, level)
    f["nuc_clump_share"] = _ratio(M.count((box1 > 1.12 * box3) & nuc), n_nuc)  # 12 % above the 3.5 µm mean
    pale_spots = M.erode(core1, 1) & (dens < 0.8 * box3)  # nucleoli: pale spots well inside the nucleus
    f["nucleoli_share"] = _ratio(M.count(pale_spots), n_nuc)
    f["nucleoli_count"] = np.log1p(M.count_blobs(pale_spots))

    # colour: channel shares of OD (hue) and deconvolved dye shares
    for region, mask, count in (("nuc", w_nuc, n_nuc), ("cyto", w_cyto, n_cyto)):
        total = M.masked_mean(dens, mask, count)
        f[f"{region}_red_share"] = _ratio(M.masked_mean(od[:, 0], mask, count), total)
        f[f"{region}_blue_share"] = _ratio(M.masked_mean(od[:, 2], mask, count), total)
    dye_total = np.abs(dyes[:, 0]) + np.abs(dyes[:, 1]) + np.abs(dyes[:, 2]) + EPS
    chrom_share, eosin_share = dyes[:, 0] / dye_total, dyes[:, 2] / dye_total
    f["nuc_chromatin_dye"] = M.masked_mean(chrom_share, w_nuc, n_nuc)
    f["cyto_chromatin_dye"] = M.masked_mean(chrom_share, w_cyto, n_cyto)
    f["cyto_azure_dye"] = M.masked_mean(dyes[:, 1] / dye_total, w_cyto, n_cyto)
    f["cyto_eosin_dye"] = M.masked_mean(eosin_share, w_cyto, n_cyto)
    f["cell_chromatin_dye"] = M.masked_mean(chrom_share, w_cell, n_cell)
    f["cell_eosin_dye"] = M.masked_mean(eosin_share, w_cell, n_cell)
    f["cell_dark_share"] = _ratio(M.count((dens > 1.5 * cell_od[:, None, None]) & cell), n_cell)
    f["cyto_pale_share"] = _ratio(M.count((box1 < 0.6 * cyto_od[:, None, None]) & cyto), n_cyto)
    ring = M.dilate(nuc, 2) & cyto  # the perinuclear hof of plasma cells and promyelocytes
    f["perinuclear_pale"] = _log_ratio(M.masked_mean(dens, ring), cyto_od)

    # granules: local density maxima standing out from their surroundings
    prominence = dens - box1
    peaks = M.local_maxima(dens) & (prominence > PEAK_PROMINENCE * (tex_ref * cell_od)[:, None, None])
    f["granule_density"] = _ratio(M.count(peaks & cyto), n_cyto) * 10
    f["cell_granule_density"] = _ratio(M.count(peaks & cell), n_cell) * 10
    f["granule_prominence"] = _ratio(
        M.masked_mean(np.maximum(prominence, 0), w_cyto, n_cyto), cyto_od * tex_ref
    )
    # orange granules absorb blue: in the dye basis they come out as strongly negative chromatin
    f["orange_share"] = _ratio(M.count((chrom_share < -0.25) & seg["stained"] & cyto), n_cyto)
    # purple-black granules (inv(16) eosinophils, basophils): they absorb red light as chromatin does, which
    # orange eosinophil granules do not; "well above the rest of the cytoplasm" keeps a uniformly deep-blue
    # (red-absorbing) plasma-cell cytoplasm out
    off_nuc = cyto & ~M.dilate(nuc, 1)
    red = od[:, 0]
    nuc_red, cyto_red = M.masked_mean(red, w_nuc, n_nuc), M.masked_mean(red, off_nuc)
    dark = off_nuc & (red > np.maximum(1.5 * cyto_red, 0.4 * nuc_red)[:, None, None])
    f["dark_granule_share"] = _ratio(M.count(dark), n_cyto)
    f["dark_granule_count"] = np.log1p(M.count_blobs(dark))
    f["purple_granule_share"] = _ratio(M.count(peaks & (chrom_share > 0.5) & cell), n_cell) * 10

    # Auer rods: strong anisotropic ridges inside the cell, off the nuclear rim
    ridge = _ridges(dens) / np.maximum(cell_od * tex_ref, EPS)[:, None, None]
    zone = cell & ~(M.dilate(nuc, 1) & ~M.erode(nuc, 1))
    zone_ridge = np.where(zone, M.box_mean(ridge, 1), 0)
    f["ridge_max"] = zone_ridge.reshape(b, -1).max(1)
    strong = zone & (ridge > 2.0)  # ridge in units of a red-cell rim's band-pass: rods score 3-10
    f["ridge_share"] = _ratio(M.count(strong), M.count(zone))
    f["ridge_count"] = np.log1p(M.count_blobs(strong))
    f["ridge_long_count"] = np.log1p(M.count_blobs(zone & (zone_ridge > 1.3)))
    # Auer rods are crimson (they absorb green far more than red: negative azure in the dye basis), as are the
    # packed coarse granules of APL promyelocytes; ordinary azurophilic granules and chromatin are purple
    crimson = (dyes[:, 1] / dye_total < -0.15) & zone
    f["crimson_ridge_share"] = _ratio(M.count(strong & crimson), M.count(zone))
    f["crimson_share"] = _ratio(M.count(crimson & (dens > 1.2 * cell_od[:, None, None])), M.count(zone))
    return f
