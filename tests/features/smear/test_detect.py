"""Nucleated-cell detection on painted smears with known cells, grid tiles, and the point matcher's slow twin."""

from __future__ import annotations

import numpy as np
import pytest

from features.smear.detect import Detections, DetectParams, detect_cells, grid_tiles, match_points
from features.smear.nuclei import segment_nuclei
from features.smear.qc import REGIONS, QCParams, RegionMap, assess_regions
from features.sources.openslide_reader import SlideReader
from tests.smear_painter import Painter, trail_slide, write_tiff


def _all_trail(reader: SlideReader) -> RegionMap:
    """A region map calling the whole slide good trail, so these tests exercise detection alone."""
    w, h = reader.dimensions
    ds = 8.0
    shape = (int(np.ceil(h / ds)), int(np.ceil(w / ds)))
    trail = np.full(shape, REGIONS.index("trail"), np.uint8)
    return RegionMap(trail, ds, np.full((1, 1), np.nan, np.float32), float(max(w, h)), np.ones((1, 1), bool))


def _detect(tmp_path, painted, **params) -> Detections:
    path = write_tiff(tmp_path / "s.tiff", painted.image, painted.mpp, levels=2)
    with SlideReader(path) as reader:
        return detect_cells(reader, _all_trail(reader), DetectParams(**params))


@pytest.fixture(scope="module")
def trail(tmp_path_factory):
    painted = trail_slide(1200, 1000, mpp=0.5, seed=0)
    path = write_tiff(tmp_path_factory.mktemp("det") / "trail.tiff", painted.image, painted.mpp, levels=2)
    return path, painted


def test_recall_and_precision_on_painted_trail(trail):
    path, painted = trail
    calls = []
    with SlideReader(path) as reader:
        region_map = assess_regions(reader, QCParams())
        det = detect_cells(reader, region_map, DetectParams(), progress=lambda e, **kw: calls.append(kw))
    tp, fp, fn = match_points(det.xy, np.array(painted.cells), radius_px=6 / painted.mpp)
    assert tp / (tp + fn) >= 0.97 and tp / (tp + fp) >= 0.97
    assert calls and calls[-1]["done"] == calls[-1]["total"]
    assert det.xy.dtype == np.int64 and det.area_um2.dtype == np.float32 and (det.region == 2).all()


def test_three_lobed_neutrophils_count_once(trail):
    path, painted = trail
    with SlideReader(path) as reader:
        det = detect_cells(reader, _all_trail(reader), DetectParams())
    truth = np.array(painted.cells)
    lobed = truth[np.array(painted.kinds) == "neutrophil"]
    d = np.hypot(*(det.xy[None, :, :] - lobed[:, None, :]).transpose(2, 0, 1))
    per_cell = (d < 6 / painted.mpp).sum(axis=1)
    assert len(lobed) > 50 and (per_cell == 1).mean() > 0.97


def test_touching_nuclei_are_split_and_red_cells_platelets_ignored(tmp_path):
    p = Painter(400, 300, mpp=0.5, seed=1)
    for x in np.arange(20, 380, 18):  # red cells and platelets only in the top band
        p.rbc(x, 30)
        p.platelet(x + 9, 55)
    # Nuclei 0.8 µm apart: blur, smoothing and lobe-merging closing fuse each pair into one blob with a
    # neck, which the split must cut. (Flush-touching nuclei with a neck under 20% narrower stay one: known.)
    p.cell(100, 150, "lymphocyte")
    p.cell(100 + p.um(3.6 * 2 + 0.8), 150, "lymphocyte")
    p.cell(280, 150, "blast")
    p.cell(280 + p.um(4.8 * 2 + 0.8), 150, "blast")
    det = _detect(tmp_path, p.finish())
    tp, fp, fn = match_points(det.xy, np.array(p.out.cells), radius_px=p.um(3))
    assert (tp, fp, fn) == (4, 0, 0)


def test_physical_sizes_give_the_same_cells_at_another_mpp(tmp_path):
    counts = []
    for mpp in (0.25, 0.5):
        painted = trail_slide(round(400 / mpp), round(300 / mpp), mpp=mpp, seed=5)
        det = _detect(tmp_path, painted)
        tp, fp, fn = match_points(det.xy, np.array(painted.cells), radius_px=4 / mpp)
        counts.append((len(painted.cells), fp, fn))
    assert all(fp <= 1 and fn <= 1 for _, fp, fn in counts)


def test_tiles_overlap_without_duplicates(tmp_path):
    painted = trail_slide(900, 700, mpp=0.5, seed=2)
    big = _detect(tmp_path, painted, tile_px=2048)
    small = _detect(tmp_path, painted, tile_px=96, overlap_um=20)  # many tile borders through cells
    assert len(small) == len(big)
    assert match_points(small.xy, big.xy, radius_px=1.5) == (len(big), 0, 0)


def test_only_searched_regions_are_read(trail):
    path, _ = trail
    with SlideReader(path) as reader:
        region_map = _all_trail(reader)
        region_map.labels[:, : region_map.labels.shape[1] // 2] = REGIONS.index("particle")
        det = detect_cells(reader, region_map, DetectParams())
        assert len(det) > 0 and (det.xy[:, 0] >= reader.dimensions[0] / 2 - 8).all()
        assert len(detect_cells(reader, region_map, DetectParams(regions=("hemodiluted",)))) == 0


def test_segment_nuclei_on_blank_and_tiny():
    blank = np.full((64, 64, 3), 240, np.uint8)
    centres, areas = segment_nuclei(blank, 0.5, DetectParams())
    assert centres.shape == (0, 2) and areas.shape == (0,)
    speck = blank.copy()
    speck[30:33, 30:33] = (90, 50, 140)  # 2.25 µm²: debris, below min_area_um2
    assert len(segment_nuclei(speck, 0.5, DetectParams())[0]) == 0


def test_grid_tiles_cover_chosen_regions():
    labels = np.zeros((40, 60), np.uint8)
    labels[:, :30] = REGIONS.index("trail")  # left half of a 600 x 400 level-0 px slide (map ds 10)
    rm = RegionMap(labels, 10.0, np.full((1, 1), np.nan, np.float32), 600.0, np.ones((1, 1), bool))
    tiles = grid_tiles(rm, tile_um=50.0, mpp=0.5, regions=("trail",))  # 100 px tiles
    assert len(tiles) == 3 * 4
    assert set(tiles.xy[:, 0]) == {50, 150, 250} and set(tiles.xy[:, 1]) == {50, 150, 250, 350}
    assert (tiles.area_um2 == 2500).all() and (tiles.region == REGIONS.index("trail")).all()
    assert len(grid_tiles(rm, 50.0, 0.5, ("particle",))) == 0


# ---- match_points and its slow twin -------------------------------------------------------------------------


def _slow_match(pred: np.ndarray, true: np.ndarray, r: float) -> tuple[int, int, int]:
    """Maximum one-to-one matching by plain augmenting paths over all pairs (Kuhn's algorithm)."""
    adj = [[j for j in range(len(true)) if np.hypot(*(pred[i] - true[j])) <= r] for i in range(len(pred))]
    owner: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j in adj[i]:
            if j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    tp = sum(augment(i, set()) for i in range(len(pred)))
    return tp, len(pred) - tp, len(true) - tp


@pytest.mark.parametrize("seed", range(6))
def test_match_points_equals_slow_twin(seed):
    rng = np.random.default_rng(seed)
    true = rng.uniform(0, 100, (rng.integers(0, 40), 2))
    near = true[: len(true) // 2] + rng.normal(0, 3, (len(true) // 2, 2))
    pred = np.concatenate([near, rng.uniform(0, 100, (rng.integers(0, 30), 2))])
    assert match_points(pred, true, 6.0) == _slow_match(pred, true, 6.0)


def test_match_points_one_to_one_and_edges():
    # one prediction between two truths can only match one of them; identical points match at distance 0
    assert match_points(np.array([[5, 0]]), np.array([[0, 0], [10, 0]]), 6) == (1, 0, 1)
    assert match_points(np.array([[1, 1], [1, 1]]), np.array([[1, 1]]), 0.5) == (1, 1, 0)
    # greedy nearest-first would pair (4,0)-(5,0) and lose one; the maximum matching keeps both
    assert match_points(np.array([[4, 0], [9, 0]]), np.array([[0, 0], [5, 0]]), 4.5) == (2, 0, 0)
    assert match_points(np.zeros((0, 2)), np.array([[1, 1]]), 3) == (0, 0, 1)
    assert match_points(np.array([[1, 1]]), np.zeros((0, 2)), 3) == (0, 1, 0)


def test_stacked_red_cells_are_vetoed_by_the_slide_red_colour():
    """A thick stack of red cells (eight layers: a rouleau seen end-on) is as dark as chromatin in red AND
    green, but still pure red-cell colour (OD is additive): the veto built from the slide's red-cell colour
    rejects it, a nucleus next to it stays."""
    white = np.array([243.0, 242.0, 238.0])
    red_od = np.log10(white / np.array([226.0, 142.0, 152.0]))  # one red cell's OD (painter colours)
    nucleus_od = np.log10(white / np.array([92.0, 52.0, 138.0]))
    img = np.tile(white, (80, 160, 1))
    yy, xx = np.mgrid[0:80, 0:160]
    img[np.hypot(xx - 40, yy - 40) < 8] = white * 10 ** (-8 * red_od)
    img[np.hypot(xx - 120, yy - 40) < 8] = white * 10 ** (-nucleus_od)
    img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    without, _ = segment_nuclei(img, 0.5, DetectParams())
    with_veto, _ = segment_nuclei(img, 0.5, DetectParams(), red_od=red_od / red_od[1])
    assert len(without) == 2  # darkness alone takes the stack for a nucleus
    assert len(with_veto) == 1 and abs(with_veto[0, 0] - 120.5) < 1


def _disc(img: np.ndarray, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour


def test_two_dark_patches_of_one_pale_nucleus_stay_one_cell():
    # A 20 µm pale nucleus (OD ~0.17: above nuclear_od, below split_od) with two dark chromatin patches 10 µm
    # apart: the core has two blobs, but the nucleus around them has no waist, so it is one cell.
    img = np.full((80, 80, 3), 240, np.uint8)
    _disc(img, 40, 40, 20, (172, 172, 210))
    for dx in (-10, 10):
        _disc(img, 40 + dx, 40, 7, (81, 81, 160))
    centres, _ = segment_nuclei(img, 0.5, DetectParams())
    assert len(centres) == 1
    # The same patches in two pale nuclei that only just touch (a waist) are two cells.
    two = np.full((80, 120, 3), 240, np.uint8)
    for cx in (38, 82):
        _disc(two, cx, 40, 22.5, (172, 172, 210))
        _disc(two, cx, 40, 7, (81, 81, 160))
    centres, _ = segment_nuclei(two, 0.5, DetectParams())
    assert len(centres) == 2
