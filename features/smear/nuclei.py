"""Nuclei of one RGB tile: colour mask, lobes merged, touching nuclei split, sizes filtered (numpy/scipy only).

Why a nuclear mask and not a cell mask: in a May-Grünwald-Giemsa / Wright smear chromatin is purple, it
absorbs red AND green light; red cells (eosin-pink) pass red light, cytoplasm absorbs little of one of them.
So "red and green optical density above `nuclear_od`" marks nuclei, and a red-cell colour veto (the slide's
own red-cell hue, estimated by QC) removes stacked red cells, which are dark but pure red-cell colour
(`features.smear.stain_od`). The veto also removes eosin-orange granules, and with them the small pale
nucleus they surround; so packed eosinophilic granules (blue absorbed well beyond the red cells' own ratio:
`features.smear.stain_od.eosinophilic_granules`) join the mask, and an eosinophil is found as one object,
granules and nucleus together, centred on the cell.

On a tile at the working resolution (`features.smear.detect` does the tiling):
1. the nuclear mask, after a `smooth_um` Gaussian that evens out chromatin texture;
2. closing (square of half-side `merge_um`) and hole filling: the lobes of a segmented neutrophil, joined by
   thin filaments or gaps under 2 x merge_um, become ONE object, so a neutrophil counts once;
3. touching nuclei are split where the distance map has a neck (see `_split_touching`): lobes are thinner
   than `split_min_radius_um` and never seed a split, a convex large nucleus has no neck, and the two ends
   of a curved nucleus (a band, a kidney) are joined by a path that leaves the object, not by a neck;
4. objects with area in [min_area_um2, max_area_um2] are kept (platelets and debris are smaller, clumps
   larger); each is returned as its centroid and area.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from features.smear.detect_params import DetectParams
from features.smear.imageops import fill_holes
from features.smear.stain_od import eosinophilic_granules, tile_darkness

OUTLINE_NECK = 0.9  # a split also needs the object itself to narrow by a tenth between the seeds


def segment_nuclei(
    rgb: np.ndarray, mpp: float, params: DetectParams, red_od: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (N x 2, x/y in pixels of `rgb`, pixel centres at integer + 0.5) and areas (µm²) of nuclei."""
    comp = label_nuclei(rgb, mpp, params, red_od)
    centres, area_um2, _ = measure_nuclei(comp, mpp, params)
    return centres, area_um2


def label_nuclei(
    rgb: np.ndarray, mpp: float, params: DetectParams, red_od: np.ndarray | None = None
) -> np.ndarray:
    """Steps 1-3: a label image of nuclei (0 = background; labels may have gaps after a split)."""
    dark, allowed = tile_darkness(rgb, params.smooth_um / mpp, red_od, params.beyond_red_od)
    nuclear = (dark > params.nuclear_od) & allowed
    if params.granule_ratio > 0:  # an eosinophil is its granules and its nucleus together (one object)
        nuclear = nuclear | eosinophilic_granules(
            rgb,
            params.smooth_um / mpp,
            params.granule_ratio,
            params.granule_min_od,
            max(1, round(params.granule_min_um2 / (mpp * mpp))),
            nuclear,
            None if red_od is None else float(red_od[2] / red_od[1]),
        )
    mask = _closed(nuclear, mpp, params)
    comp, n = ndimage.label(mask)
    if n == 0:
        return comp
    # Touching nuclei are told apart on the darker core: at the pale threshold blur and cytoplasm fill the
    # waist between two nuclei, so the shape that has a neck is the darker one.
    # No closing for the core: two core blobs in one object are two nuclei (their path leaves the core).
    if params.split_od > params.nuclear_od:
        core = fill_holes(((dark > params.split_od) & allowed)[None])[0]
    else:
        core = mask
    return _split_touching(core, comp, n, mpp, params)


def _closed(mask: np.ndarray, mpp: float, params: DetectParams) -> np.ndarray:
    """Step 2: lobes merged (closing) and holes filled."""
    if params.merge_um > 0:
        # Closing by a square of side 2 x merge_um: separable min/max filters, ~10x faster than a disk.
        size = 2 * max(1, round(params.merge_um / mpp)) + 1
        mask = ndimage.minimum_filter(ndimage.maximum_filter(mask, size), size)
    return fill_holes(mask[None])[0]  # pale chromatin and nucleoli are holes in the OD mask


def measure_nuclei(
    comp: np.ndarray, mpp: float, params: DetectParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 4: centroids (N x 2), areas (µm²) and labels of the objects of `comp` within the size range."""
    n = int(comp.max())
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64)
    flat = comp.ravel()  # labels may have gaps after a split; empty labels get area 0 and are dropped
    area_px = np.bincount(flat, minlength=n + 1)[1:]
    ys, xs = np.divmod(np.flatnonzero(flat), comp.shape[1])
    labels = flat[flat > 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = np.bincount(labels, weights=xs, minlength=n + 1)[1:] / area_px + 0.5
        cy = np.bincount(labels, weights=ys, minlength=n + 1)[1:] / area_px + 0.5
    area_um2 = area_px * mpp * mpp
    keep = (area_px > 0) & (area_um2 >= params.min_area_um2) & (area_um2 <= params.max_area_um2)
    return np.stack([cx[keep], cy[keep]], axis=1), area_um2[keep], np.flatnonzero(keep) + 1


def _split_touching(
    mask: np.ndarray, comp: np.ndarray, n: int, mpp: float, params: DetectParams
) -> np.ndarray:
    """Split components made of several touching nuclei, the way a distance-transform watershed with
    h-maxima would, but vectorised: seeds are deep, spaced maxima of the distance map of `mask` (the darker
    core, within the components of `comp`); two seeds of one component belong to different nuclei only if
    the distance map dips between them (a neck: the straight path's minimum falls below `split_neck` x the
    shallower seed) without the path leaving the object, and the object itself narrows there (by
    `OUTLINE_NECK`, when the core is darker than the object). In a convex blob (one large or squarish
    nucleus) the distance map is concave, never dips, and extra maxima merge into one seed group."""
    # Seeds come from the taxicab (chamfer) distance, ~7x cheaper than the Euclidean one on a whole tile.
    dist = ndimage.distance_transform_cdt(mask, metric="taxicab").astype(np.float32)
    peak = dist == ndimage.maximum_filter(dist, size=2 * round(params.split_sep_um / mpp) + 1)
    peak &= dist >= params.split_min_radius_um / mpp
    seeds, n_seeds = ndimage.label(peak, structure=np.ones((3, 3)))
    if n_seeds < 2:
        return comp
    sy, sx = np.nonzero(seeds)
    sl = seeds[sy, sx]
    count = np.bincount(sl)[1:]
    centre = np.column_stack([np.bincount(sl, sy)[1:], np.bincount(sl, sx)[1:]]) / count[:, None]
    at = np.round(centre).astype(int)
    seed_comp = comp[at[:, 0], at[:, 1]]
    # The neck test needs the exact (Euclidean) distance, whose error (< 1 px) is small next to a nucleus
    # radius; it is computed only inside components holding two or more seeds (a few per tile).
    candidates = np.flatnonzero(np.bincount(seed_comp, minlength=n + 1)[1:] >= 2) + 1
    if len(candidates) == 0:
        return comp
    boxes = ndimage.find_objects(comp)
    # With a core darker than the object, the object's own distance map must narrow between the seeds too:
    # two dark patches of one large pale nucleus are cores apart, but the nucleus around them has no waist.
    outline = (
        np.zeros(mask.shape, np.float32) if mask is not None and not np.array_equal(mask, comp > 0) else None
    )
    for c in candidates:
        box = boxes[c - 1]
        whole = comp[box] == c
        inside = whole & mask[box]
        exact = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        dist[box][inside] = exact[inside]
        if outline is not None:
            outline[box][whole] = ndimage.distance_transform_edt(np.pad(whole, 1))[1:-1, 1:-1][whole]
    # A seed's depth is the deepest exact distance within 1 µm of it (taxicab plateaus put seed centres
    # slightly off the Euclidean maximum).
    r = max(1, round(1.0 / mpp))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    ny = np.clip(at[:, 0, None] + oy.ravel(), 0, mask.shape[0] - 1)
    nx = np.clip(at[:, 1, None] + ox.ravel(), 0, mask.shape[1] - 1)
    depth = dist[ny, nx].max(axis=1)
    # Seed pairs in the same component (no farther apart than the largest allowed nucleus), then the neck
    # test along the segment joining them (16 samples).
    reach = 2.0 * math.sqrt(params.max_area_um2 / math.pi) / mpp
    pairs = cKDTree(centre).query_pairs(reach, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    same = (seed_comp[i] == seed_comp[j]) & (seed_comp[i] > 0)
    i, j = i[same], j[same]
    if len(i) == 0:
        return comp
    t = np.linspace(0.0, 1.0, 16)[None, :, None]
    path = np.round(centre[i, None, :] * (1 - t) + centre[j, None, :] * t).astype(int)
    neck = dist[path[..., 0], path[..., 1]].min(axis=1)
    # A path that leaves the object joins two ends of one curved nucleus (a band's C, a kidney): two
    # touching nuclei (or two cells joined by their cytoplasm) meet between their centres, so their path
    # stays inside the object.
    curved = (comp[path[..., 0], path[..., 1]] != seed_comp[i, None]).any(axis=1)
    joined = (neck >= params.split_neck * np.minimum(depth[i], depth[j])) | curved
    if outline is not None:  # along the path, between its ends (a disc's distance map has no inner minimum)
        along = outline[path[..., 0], path[..., 1]]
        joined |= along[:, 1:-1].min(axis=1) >= OUTLINE_NECK * np.minimum(along[:, 0], along[:, -1])
    # Seeds joined without a neck are one nucleus: connected components of the "joined" graph are seed groups.
    graph = csr_array((np.ones(int(joined.sum())), (i[joined], j[joined])), shape=(n_seeds, n_seeds))
    _, group = connected_components(graph, directed=False)
    distinct = np.unique(np.column_stack([seed_comp, group]), axis=0)  # (component, group) pairs
    split = np.bincount(distinct[:, 0], minlength=n + 1) >= 2
    split[0] = False
    if not split.any():
        return comp
    # Every pixel of a split component goes to the group of its nearest seed *in the same component*: the
    # component id is a third coordinate scaled far beyond the tile, so the k-d tree never crosses over.
    use = split[seed_comp]
    far = 4.0 * sum(mask.shape)
    tree = cKDTree(np.column_stack([centre[use], seed_comp[use] * far]))
    py, px = np.nonzero(split[comp])
    _, nearest = tree.query(np.column_stack([py, px, comp[py, px] * far]))
    out = comp.copy()
    out[py, px] = n + 1 + group[np.flatnonzero(use)[nearest]]
    return out  # labels of split components are now unused (area 0); segment_nuclei skips empty labels


__all__ = ["label_nuclei", "measure_nuclei", "segment_nuclei"]
