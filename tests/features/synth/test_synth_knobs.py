"""The knobs that widen `mil synth` beyond its defaults (blast share, cellularity, cell size, particles), and
the promise that a cohort of default settings is the cohort it was before they existed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from features.core.errors import ConfigError
from features.synth import SynthConfig, generate_cohort, make_config
from features.synth.celltypes import CELL_TYPES
from features.synth.cohort import BLAST_TYPES, build_cohort, labels_row
from features.synth.slides import SmearKnobs, render_smear
from features.synth.smear import PARTICLE, smear_layout
from features.synth.stain import REFERENCE


def _csv_digest(out: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(out.rglob("*.csv")):
        h.update(f.relative_to(out).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize(
    "config, digest",
    [
        (
            dict(patients=2, layout="both", slide_px=768, cells_per_patient=5, seed=5, sites=2),
            "a6cf081c7681fce3",
        ),
        (
            dict(patients=2, layout="fields", fields_per_patient=2, field_px=256, seed=5, sites=2),
            "d77f2450de8240cb",
        ),
    ],
)
def test_default_settings_render_the_cohort_of_before_the_knobs(tmp_path, config, digest):
    """Labels and every truth table (positions, types, sizes: the random streams) hash as they did before the
    knobs were added (digests taken with that commit); the image bytes follow from the same streams."""
    generate_cohort(tmp_path / "c", SynthConfig(**config))
    assert _csv_digest(tmp_path / "c") == digest
    meta = json.loads((tmp_path / "c" / "cohort.json").read_text())
    assert "blast_share" not in meta["config"] and "particles" not in meta["config"]
    assert SynthConfig(**meta["config"]) == SynthConfig(**config)


@pytest.mark.parametrize(
    "given, parsed",
    [("0.3", (0.3, 0.3)), ("0:0.95", (0.0, 0.95)), (0.5, (0.5, 0.5)), ([0.1, 0.2], (0.1, 0.2)), (None, None)],
)
def test_blast_share_accepts_a_value_or_a_range(given, parsed):
    assert make_config(blast_share=given).blast_share == parsed


@pytest.mark.parametrize("bad", ["0.9:0.1", "abc", 1.5, "-0.1", [0.1, 0.2, 0.3]])
def test_bad_blast_share_is_one_line(bad):
    with pytest.raises(ConfigError) as err:
        make_config(blast_share=bad)
    assert str(err.value).startswith("synth blast_share") and "\n" not in str(err.value)


def test_blast_share_spreads_patients_and_keeps_labels_and_the_rest_of_the_marrow():
    plain = build_cohort(SynthConfig(patients=10, seed=3))
    spread = build_cohort(SynthConfig(patients=10, seed=3, blast_share=(0.0, 0.95)))
    assert [labels_row(p, p.patient_id) for p in plain] == [labels_row(p, p.patient_id) for p in spread]
    shares = np.array([sum(p.composition.get(t, 0.0) for t in BLAST_TYPES) for p in spread])
    # stratified: one patient in each tenth of 0-95 %
    assert np.array_equal(np.sort(np.floor(shares / 0.095 + 1e-9)).astype(int), np.arange(10))
    for a, b in zip(plain, spread, strict=True):
        assert sum(b.composition.values()) == pytest.approx(1.0)
        rest = [t for t in a.composition if t not in BLAST_TYPES]
        ratio = np.array([b.composition[t] / a.composition[t] for t in rest])
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)  # the rest keeps its proportions
        if a.genetic == "NPM1":  # the patient's own mix of blast kinds stays
            assert b.composition["npm1_blast"] / b.composition["myeloblast"] == pytest.approx(
                a.composition["npm1_blast"] / a.composition["myeloblast"]
            )
    fixed = build_cohort(SynthConfig(patients=4, seed=3, blast_share=0.6))
    assert all(sum(p.composition.get(t, 0) for t in BLAST_TYPES) == pytest.approx(0.6) for p in fixed)


def _smear(knobs: SmearKnobs = SmearKnobs(), cellularity: float = 1.0, seed: int = 4):
    config = SynthConfig(patients=1, seed=seed, diagnosis_mix={"AML": 1.0}, cellularity_scale=cellularity)
    patient = build_cohort(config)[0]
    _, truth = render_smear(patient, REFERENCE, np.random.default_rng(seed), 1600, 0.5, knobs=knobs)
    return truth


def test_cellularity_and_cell_size_scale_the_nucleated_cells():
    plain, dense = _smear(), _smear(cellularity=3.0)
    monolayer = [(t["nucleated"] == 1) & (t["region"] == "monolayer") for t in (plain, dense)]
    assert monolayer[1].sum() > 1.6 * monolayer[0].sum()  # fewer than 3x: monolayer cells never touch
    large = _smear(SmearKnobs(cell_size_scale=1.4))

    def relative_size(truth):
        keep = (truth["nucleated"] == 1) & (truth["region"] == "monolayer")
        mean = [np.mean(CELL_TYPES[t].diameter_um) for t in truth["cell_type"][keep]]
        return float(np.mean(truth["diameter_um"][keep] / mean))

    assert relative_size(plain) == pytest.approx(1.0, abs=0.05)
    assert relative_size(large) == pytest.approx(1.4, abs=0.07)


def test_particle_count_and_size():
    def particles(count, scale=1.0, seed=1):
        layout = smear_layout(np.random.default_rng(seed), 3000, 0.5, count, scale)
        mask = layout.regions == PARTICLE
        return ndimage.label(mask)[1], mask.mean()

    assert particles(0) == (0, 0.0)
    n_five, area_five = particles(5)
    assert n_five >= 4  # neighbours may touch
    _, area_one = particles(1)
    _, area_big = particles(1, 2.0)
    assert area_five > 2 * area_one and 3 < area_big / area_one < 5


def test_cli_takes_the_knobs(tmp_path):
    from typer.testing import CliRunner

    from mil.cli import app

    out = tmp_path / "c"
    args = ["synth", str(out), "--layout", "slides", "--patients", "2", "--slide-px", "768", "--sites", "1"]
    knobs = [
        "--blast-share",
        "0:0.9",
        "--cellularity-scale",
        "2",
        "--cell-size-scale",
        "1.2",
        "--particles",
        "3",
    ]
    result = CliRunner().invoke(app, args + knobs + ["--particle-size-scale", "1.5"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "cohort.json").read_text())["config"]
    assert config["blast_share"] == [0.0, 0.9] and config["particles"] == 3
    assert config["cell_size_scale"] == 1.2 and config["particle_size_scale"] == 1.5
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "d"), "--blast-share", "0.9:0.1"])
    assert "blast_share" in str(bad.exception) and not (tmp_path / "d").exists()
