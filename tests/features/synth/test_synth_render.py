"""Rendering contracts of features.synth: render_cells' API, visible morphology, site stain shifts."""

from __future__ import annotations

import numpy as np
import pytest

from features.core.errors import InputError
from features.synth import CELL_TYPES, render_cells, site_stains
from features.synth.celltypes import MAX_DIAMETER_UM


def _render(types, seed=0, **kw):
    return render_cells(types, np.random.default_rng(seed), **kw)


def test_render_cells_shapes_masks_and_determinism():
    types = list(CELL_TYPES)
    a = _render(types, size_px=96)
    assert a.images.shape == (len(types), 96, 96, 3) and a.images.dtype == np.uint8
    assert a.cell_mask.shape == a.nucleus_mask.shape == (len(types), 96, 96)
    assert a.types == tuple(types) and a.mpp == 0.25
    # every cell is centred, has a nucleus inside its membrane, and fits its textbook size
    assert a.cell_mask[:, 48, 48].all() or a.nucleus_mask.any(axis=(1, 2)).all()
    assert not (a.nucleus_mask & ~a.cell_mask).any()
    assert a.nucleus_mask.sum(axis=(1, 2)).min() > 0
    for t, d in zip(types, a.diameter_um, strict=True):
        lo, hi = CELL_TYPES[t].diameter_um
        assert lo <= d <= hi
    b = _render(types, size_px=96)
    assert np.array_equal(a.images, b.images), "same rng state must give the same pixels"


def test_render_cells_physical_size_follows_mpp():
    """The same cell at half the mpp covers four times the pixels: sizes are physical, not pixel constants."""
    fine = _render(["lymphocyte"] * 20, mpp=0.25, size_px=96, background=False)
    coarse = _render(["lymphocyte"] * 20, mpp=0.5, size_px=96, background=False)
    ratio = fine.cell_mask.sum() / coarse.cell_mask.sum()
    assert 3.3 < ratio < 4.7


def test_unknown_type_is_a_one_line_error():
    with pytest.raises(InputError, match="unknown cell type") as err:
        _render(["myeloblast", "megakaryoblast"])
    assert "\n" not in str(err.value)


def _mean_rgb(batch, mask):
    return np.array([batch.images[..., c][mask].mean() for c in range(3)])


def test_morphology_that_a_morphologist_and_an_encoder_rely_on():
    n = 24
    blasts = _render(["myeloblast"] * n, background=False)
    lymphs = _render(["lymphocyte"] * n, background=False)
    # blasts are large with a high nucleus/cytoplasm ratio; lymphocytes small with an even thinner rim
    assert blasts.cell_mask.sum() > 2.2 * lymphs.cell_mask.sum()
    blast_nc = blasts.nucleus_mask.sum() / blasts.cell_mask.sum()
    assert 0.5 < blast_nc < 0.8
    # fine, pale blast chromatin vs dense lymphocyte chromatin
    assert _mean_rgb(blasts, blasts.nucleus_mask)[1] > _mean_rgb(lymphs, lymphs.nucleus_mask)[1] + 15
    # blue cytoplasm in blasts (blue > red), orange granules in eosinophils (red >> blue)
    cyto = blasts.cell_mask & ~blasts.nucleus_mask
    r, _, b = _mean_rgb(blasts, cyto)
    assert b > r + 30
    eos = _render(["eosinophil"] * n, background=False)
    r, g, b = _mean_rgb(eos, eos.cell_mask & ~eos.nucleus_mask)
    assert r > b + 60 and r > g + 40
    # neutrophils: multilobed nucleus = several nuclear components; blasts: one
    from scipy import ndimage

    segs = _render(["segmented_neutrophil"] * n, background=False)
    lobes = [ndimage.label(segs.nucleus_mask[i] & _thin_free(segs.nucleus_mask[i]))[1] for i in range(n)]
    assert np.mean(lobes) >= 2.0
    assert all(ndimage.label(m)[1] == 1 for m in blasts.nucleus_mask)


def _thin_free(mask):
    """The nucleus without its thin chromatin filaments (an opening removes bridges under ~3 px)."""
    from scipy import ndimage

    return ndimage.binary_opening(mask, iterations=1)


def test_auer_rods_are_red_needles_in_apl_promyelocytes():
    """Faggot cells carry bundles of pink-red rods: red-dominant pixels that normal promyelocytes lack."""
    n = 16

    def red_needles(batch):
        img = batch.images.astype(int)
        return ((img[..., 0] - img[..., 2] > 45) & (img[..., 1] < 110) & batch.cell_mask).sum(axis=(1, 2))

    faggot = red_needles(_render(["faggot_cell"] * n, background=False))
    normal = red_needles(_render(["promyelocyte"] * n, background=False))
    assert np.median(faggot) > 40 and np.median(normal) < 5


def test_red_cells_are_pink_without_a_dark_nucleus():
    batch = _render(["lymphocyte"] * 30)
    from scipy import ndimage

    img = batch.images.astype(int)
    outside = ~ndimage.binary_dilation(batch.cell_mask, iterations=3, structure=np.ones((1, 3, 3)))
    redish = (img[..., 0] > img[..., 1] + 40) & (img[..., 0] > img[..., 2] + 15) & outside
    assert redish.mean() > 0.1, "neighbouring red cells should show at the crop edges"
    assert np.percentile(img[..., 1][redish], 1) > 90, "red cells are never as dark as chromatin"


def test_sites_shift_colour_statistics():
    types = ["segmented_neutrophil", "lymphocyte", "myeloblast", "polychromatic_normoblast"] * 6
    stains = site_stains(3, seed=1)

    def stats(stain, seed=5):  # colour of the stained cells and spread of the whole crop, per channel
        b = _render(types, seed=seed, stain=stain)
        return np.concatenate([b.images[b.cell_mask].mean(axis=0), b.images.reshape(-1, 3).std(axis=0)])

    feats = [stats(s) for s in stains]
    within = np.abs(stats(stains[0], seed=6) - feats[0]).max()  # other cells, same site
    for i in range(3):
        for j in range(i + 1, 3):
            between = np.abs(feats[i] - feats[j]).max()
            assert between > 5 and between > 1.5 * within
    assert stains[0].name == "site1" and stains[0].hue_rad == 0.0
    assert site_stains(3, seed=1) == stains
    # `site=k` is site k of the default (seed 0) stains; `site=1` and no stain at all are the reference
    by_site = _render(types[:4], seed=2, site=2).images
    assert np.array_equal(by_site, _render(types[:4], seed=2, stain=site_stains(2, seed=0)[1]).images)
    assert np.array_equal(_render(types[:4], seed=2, site=1).images, _render(types[:4], seed=2).images)


def test_crop_size_and_max_cell_fit():
    big = _render(["promyelocyte"] * 4, size_px=128)
    assert big.images.shape[1:3] == (128, 128)
    assert MAX_DIAMETER_UM / 0.25 < 128
