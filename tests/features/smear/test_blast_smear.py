"""Detection must not bias the count: an AML smear painted without `features.synth` (tests.smear_painter).

The failure this reproduces: on an independently rendered AML smear, region QC called the blast-rich
monolayer beside two particles "particle" (so its blasts were never read) and detection missed a quarter of
the large pale blasts of the trail while finding the neutrophils. Scored here as the count would see it:
QC + detection with the defaults, cells matched within 6 µm one to one.
"""

from __future__ import annotations

import numpy as np
import pytest

from features.smear.detect import DetectParams, detect_cells, match_truth
from features.smear.qc import REGIONS, QCParams, assess_regions
from features.sources.openslide_reader import SlideReader
from tests.smear_painter import aml_slide, write_tiff

PARTICLE, TRAIL = REGIONS.index("particle"), REGIONS.index("trail")


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def aml(request, tmp_path_factory):
    painted = aml_slide(seed=request.param)
    path = write_tiff(tmp_path_factory.mktemp("aml") / "aml.tiff", painted.image, painted.mpp, levels=3)
    with SlideReader(path) as reader:
        region_map = assess_regions(reader, QCParams())
        det = detect_cells(reader, region_map, DetectParams())
    cells, kinds = np.array(painted.cells), np.array(painted.kinds)
    in_particle = np.zeros(len(cells), bool)
    for x, y, r in painted.particles:
        in_particle |= np.hypot(*(cells - [x, y]).T) < r + 10 / painted.mpp
    found = np.zeros(len(cells), bool)
    match = match_truth(det.xy, cells, 6 / painted.mpp)
    found[match[match >= 0]] = True
    return painted, region_map, det, cells, kinds, in_particle, found, match


def test_particles_stay_particles_and_the_blast_monolayer_beside_them_is_trail(aml):
    painted, region_map, _, cells, kinds, in_particle, _, _ = aml
    centres = np.array([[x, y] for x, y, _ in painted.particles])
    assert (region_map.region_at(centres) == PARTICLE).all()
    # Most of each particle's disc (the map's 4 µm pixels inside it, away from the rim) is particle.
    x, y, r = painted.particles[0]
    ring = np.random.default_rng(0).uniform(-0.8, 0.8, (400, 2)) * r
    inside = ring[np.hypot(*ring.T) < 0.8 * r] + [x, y]
    assert (region_map.region_at(inside) == PARTICLE).mean() > 0.95
    # Beside the particles: the packed monolayer of large pale blasts; beyond: isolated large blasts.
    qc = region_map.region_at(cells[~in_particle])
    assert (qc == PARTICLE).mean() < 0.02
    assert (qc == TRAIL).mean() > 0.95


@pytest.mark.parametrize("kind", ["pale_blast", "neutrophil", "lymphocyte"])
def test_every_cell_type_is_found_in_the_counting_region(aml, kind):
    _, region_map, _, cells, kinds, in_particle, found, _ = aml
    counted = ~in_particle & (region_map.region_at(cells) == TRAIL) & (kinds == kind)
    assert counted.sum() >= 30
    assert found[counted].mean() >= 0.95, f"{kind}: recall {found[counted].mean():.3f}"


def test_detections_are_cells_and_the_blast_share_is_unbiased(aml):
    _, region_map, det, cells, kinds, in_particle, _, match = aml
    assert (match >= 0).mean() >= 0.97  # precision against every painted cell
    monolayer_blasts = (kinds[~in_particle] == "pale_blast").mean()
    counted_blasts = (kinds[match[match >= 0]] == "pale_blast").mean()
    assert abs(counted_blasts - monolayer_blasts) < 0.02
