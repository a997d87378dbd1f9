"""Region QC: the four smear regions on a painted slide, focus flags, summary and thumbnail; a real H&E slide."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from features.core.errors import ConfigError
from features.smear.detect import grid_tiles
from features.smear.imageops import focus_scores
from features.smear.qc import REGIONS, QCParams, RegionMap, assess_regions, qc_summary, region_codes
from features.smear.qc_thumbnail import qc_thumbnail
from features.sources.openslide_reader import SlideReader
from tests.paths import DATA  # noqa: E402
from tests.smear_painter import Painter, regions_slide, trail_slide, write_tiff


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    painted = regions_slide()
    path = write_tiff(tmp_path_factory.mktemp("qc") / "regions.tiff", painted.image, painted.mpp, levels=2)
    with SlideReader(path) as reader:
        yield reader, assess_regions(reader, QCParams()), painted


def test_four_regions_where_painted(regions):
    reader, region_map, _ = regions
    w, h = reader.dimensions
    # centres of the four painted fields: glass | trail / particle | hemodiluted
    centres = np.array([[w / 4, h / 4], [3 * w / 4, h / 4], [w / 4, 3 * h / 4], [3 * w / 4, 3 * h / 4]])
    assert [REGIONS[c] for c in region_map.region_at(centres)] == [
        "outside",
        "trail",
        "particle",
        "hemodiluted",
    ]
    # Most of each field (away from the borders, where the smoothing window mixes fields) is labelled right.
    quarter = region_map.labels.shape[0] // 2
    inner = slice(quarter // 5, quarter - quarter // 5)
    field = region_map.labels[inner, quarter:][:, inner]
    assert (field == REGIONS.index("trail")).mean() > 0.95


def test_out_of_focus_tile_is_flagged(tmp_path):
    painted = trail_slide(1400, 1000, mpp=0.5, seed=3)
    image = painted.image.copy()
    blurred = ndimage.gaussian_filter(image.astype(float), (6, 6, 0))
    image[:, 700:] = blurred[:, 700:].astype(np.uint8)  # right half defocused (sigma 3 µm)
    path = write_tiff(tmp_path / "focus.tiff", image, 0.5, levels=1)
    with SlideReader(path) as reader:
        region_map = assess_regions(reader, QCParams(focus_tile_um=128))
        left = region_map.in_focus_at(np.array([[x, y] for x in (100, 500) for y in (200, 700)]))
        right = region_map.in_focus_at(np.array([[x, y] for x in (900, 1300) for y in (200, 700)]))
    assert left.all() and not right.any()
    measured = region_map.focus[~np.isnan(region_map.focus)]
    assert measured.max() > 5 * QCParams().focus_min > 5 * measured.min()


def test_focus_tiles_use_the_shared_focus_measure(tmp_path, monkeypatch):
    # Region QC and cell-image folders share one focus measure (features.smear.imageops.focus_scores): every
    # measured tile's score is that function applied to the patch QC read for it, at `focus_mpp`.
    import features.smear.qc

    calls = []

    def spy(images):
        out = focus_scores(images)
        calls.append((images.copy(), out))
        return out

    monkeypatch.setattr(features.smear.qc, "focus_scores", spy)
    painted = trail_slide(600, 500, mpp=0.25, seed=4)
    path = write_tiff(tmp_path / "spy.tiff", painted.image, 0.25, levels=1)
    with SlideReader(path) as reader:
        region_map = assess_regions(reader, QCParams(focus_tile_um=64))
    measured = region_map.focus[~np.isnan(region_map.focus)]
    assert len(calls) == len(measured) > 1
    np.testing.assert_array_equal(measured, np.concatenate([out for _, out in calls]))
    # 48 µm patches at 0.5 µm/px: read at 0.25 µm/px and block-averaged by 2 before measuring.
    assert all(images.shape == (1, 96, 96, 3) and images.dtype == np.uint8 for images, _ in calls)


def test_summary_is_json_and_consistent(regions):
    reader, region_map, painted = regions
    cells = np.array(painted.cells)
    summary = qc_summary(region_map, reader.mpp, cells)
    json.dumps(summary)
    w, h = reader.dimensions
    total = sum(summary["area_mm2"].values())
    # the map's last row/column may reach past the slide edge by less than one map pixel
    assert total == pytest.approx(w * h * reader.mpp**2 / 1e6, rel=0.02)
    assert summary["nucleated_cells"] == len(cells) == sum(summary["nucleated_cells_per_region"].values())
    trail = summary["nucleated_cells_per_region"]["trail"]
    assert summary["cellularity_per_mm2"] == pytest.approx(trail / summary["area_mm2"]["trail"])
    assert summary["share_in_focus"] == 1.0


def test_thumbnail_is_rgb_within_bounds(regions):
    reader, region_map, painted = regions
    thumb = qc_thumbnail(reader, region_map, np.array(painted.cells), max_px=300)
    assert thumb.dtype == np.uint8 and thumb.ndim == 3 and thumb.shape[2] == 3 and max(thumb.shape[:2]) <= 300


def test_region_map_lookup_clips_to_edges():
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    rm = RegionMap(labels, 10.0, np.full((1, 1), np.nan, np.float32), 20.0, np.ones((1, 1), bool))
    xy = np.array([[0, 0], [15, 3], [3, 15], [19.9, 19.9], [500, 500], [-5, -5]])
    assert rm.region_at(xy).tolist() == [0, 1, 2, 3, 3, 0]
    assert rm.in_focus_at(xy).all()


def test_unknown_region_name():
    with pytest.raises(ConfigError, match="choose from"):
        region_codes(("trial",))


def test_aperio_he_tissue_can_be_tiled():
    """H&E tissue is not a smear, but QC must find stained regions so `--unit tiles` has something to tile."""
    path = DATA / "wsi-aperio-cmu-1-small-region" / "CMU-1-Small-Region.svs"
    if not path.exists():
        pytest.skip(f"{path} not present")
    with SlideReader(path) as reader:
        region_map = assess_regions(reader, QCParams())
        tiles = grid_tiles(region_map, 112.0, reader.mpp, ("particle", "trail", "hemodiluted"))
        summary = qc_summary(region_map, reader.mpp, tiles.xy)
    non_outside = sum(v for k, v in summary["area_mm2"].items() if k != "outside")
    assert non_outside > 0.3  # mm², about half of the 1.1 x 1.5 mm field is tissue
    assert len(tiles) > 20 and (tiles.region > 0).all()
    assert summary["share_in_focus"] > 0.9


def test_red_cell_colour_is_estimated_from_the_slide(regions):
    _, region_map, _ = regions
    expected = np.log10(np.array([243, 242, 238]) / np.array([226, 142, 152]))  # painter glass / red cell
    np.testing.assert_allclose(region_map.red_od, expected / expected[1], atol=0.08)


def test_leucocytes_in_a_hemodiluted_carpet_stay_hemodiluted(tmp_path):
    """Peripheral blood's leucocytes must not turn their own neighbourhood into countable trail: the open
    share is read between nucleated cells, so a small group of them among crowded red cells stays
    hemodiluted (judged on nuclear density, as before #12, the group made its 100 µm neighbourhood trail and
    its cells entered the count), while the spread trail beside it stays trail."""
    side = 480
    p = Painter(2 * side, side, mpp=1.0, seed=3)
    p.scatter_rbc(0, 0, side, side, per_100um2=0.9)  # left: good trail, a cell every 34 µm
    for y in np.arange(20, side - 20, 34):
        for x in np.arange(20, side - 20, 34):
            p.cell(x, y, "lymphocyte")
    p.scatter_rbc(side, 0, 2 * side, side, per_100um2=3.0)  # right: a carpet of red cells
    groups = [(side + 120, 120), (side + 330, 200), (side + 160, 360)]
    for gx, gy in groups:  # three leucocytes side by side in each group
        for dx in (-14, 0, 14):
            p.cell(gx + dx, gy, "neutrophil" if dx else "lymphocyte")
    painted = p.finish()
    path = write_tiff(tmp_path / "hemo.tiff", painted.image, painted.mpp, levels=2)
    with SlideReader(path) as reader:
        region_map = assess_regions(reader, QCParams())
    cells = np.array(painted.cells)
    in_hemo_field = cells[:, 0] > side
    regions = [REGIONS[c] for c in region_map.region_at(cells[in_hemo_field])]
    assert regions == ["hemodiluted"] * len(regions) and len(regions) == 9
    trail = region_map.region_at(cells[~in_hemo_field & (cells[:, 0] < side - 60)])
    assert (trail == REGIONS.index("trail")).all()
