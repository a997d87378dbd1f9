"""`mil extract` through typer's CliRunner on tiny synthetic cohorts: flags, config precedence, exit codes."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from features.bagstore import BagStore
from features.core.errors import InputError
from mil.cli import app
from tests.extract_fixtures import APERIO, OPENSLIDE_FIXTURES, dinobloom_s_checkpoint, synth_cohort

FAST = ["--workers", "0", "--set", "extract.qc_thumbnail_px=256"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return synth_cohort(tmp_path_factory.mktemp("cohort"), patients=2)


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def test_slides_then_rerun_then_info(cohort, tmp_path):
    store = tmp_path / "bags.zarr"
    result = run("extract", cohort / "slides", "-o", store, "--encoder", "cytomorph", *FAST)
    assert result.exit_code == 0, result.output
    assert "2 written, 0 skipped, 0 failed" in result.output
    again = run("extract", cohort / "slides", "-o", store, *FAST)
    assert again.exit_code == 0 and "0 written, 2 skipped" in again.output
    info = run("bags", "info", store)
    assert info.exit_code == 0 and "P001_s1" in info.output and "2 bags, 2 patients" in info.output
    assert run("bags", "validate", store).exit_code == 0


def test_cell_folders(cohort, tmp_path):
    result = run("extract", cohort / "cells", "-o", tmp_path / "cells.zarr", *FAST)
    assert result.exit_code == 0, result.output
    assert BagStore(tmp_path / "cells.zarr").read("P002").paths is not None


def test_config_precedence(cohort, tmp_path):
    yaml_file = tmp_path / "extract.yaml"
    yaml_file.write_text("extract:\n  crop_um: 20\n  max_instances: 2\n  workers: 0\n")
    store = tmp_path / "bags.zarr"
    # defaults < YAML (crop_um 20, cap 2) < --set (cap 3) < flag (cap 4)
    args = ["--config", yaml_file, "--set", "extract.max_instances=3", "--max-instances", "4"]
    result = run("extract", cohort / "slides", "-o", store, *args, "--set", "extract.qc_thumbnail_px=256")
    assert result.exit_code == 0, result.output
    meta = BagStore(store).meta("P001_s1")
    assert meta.n_instances == 4 and meta.crop_um == 20.0
    bad = run("extract", cohort / "slides", "-o", tmp_path / "x.zarr", "--set", "extract.crop_size=3")
    assert bad.exit_code != 0 and "crop_size" in str(bad.exception)


def test_exit_codes_partial_and_nothing(cohort, tmp_path):
    if not OPENSLIDE_FIXTURES.exists():
        pytest.skip("shared openslide fixtures absent")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("unopenable.tiff", "unreadable.svs"):
        (mixed / name).symlink_to(OPENSLIDE_FIXTURES / name)
    shutil.copy(cohort / "slides" / "P002_s1.tiff", mixed)
    result = run("extract", mixed, "-o", tmp_path / "a.zarr", *FAST)
    assert result.exit_code == 3, result.output
    failed_lines = [line for line in result.output.splitlines() if line.startswith("failed ")]
    assert len(failed_lines) == 2 and any("unopenable" in line for line in failed_lines)
    stop = run("extract", mixed, "-o", tmp_path / "b.zarr", "--no-skip-errors", *FAST)
    assert stop.exit_code == 1 and "stopped at the first failure" in stop.output
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "unopenable.tiff").symlink_to(OPENSLIDE_FIXTURES / "unopenable.tiff")
    assert run("extract", only_bad, "-o", tmp_path / "c.zarr", *FAST).exit_code == 1
    (tmp_path / "empty").mkdir()  # nothing to extract is a mistake in the input (exit 2 through `main`)
    nothing = run("extract", tmp_path / "empty", "-o", tmp_path / "d.zarr", *FAST)
    assert isinstance(nothing.exception, InputError) and "found no slides" in str(nothing.exception)
    assert not (tmp_path / "d.zarr").exists()


def test_aperio_tiles_cli(tmp_path):
    if not APERIO.exists():
        pytest.skip("shared Aperio slide absent")
    result = run("extract", APERIO, "-o", tmp_path / "t.zarr", "--unit", "tiles", *FAST)
    assert result.exit_code == 0, result.output
    assert BagStore(tmp_path / "t.zarr").encoder.unit == "tiles"


@pytest.mark.slow
def test_dinobloom_s_checkpoint_and_random_weights(cohort, tmp_path):
    weights = dinobloom_s_checkpoint(tmp_path / "DinoBloom-S.pth")
    slide = cohort / "slides" / "P001_s1.tiff"
    store = tmp_path / "db.zarr"
    result = run(
        "extract",
        slide,
        "-o",
        store,
        "--encoder",
        "dinobloom-s",
        "--weights",
        weights,
        "--max-instances",
        "3",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    enc = BagStore(store).encoder
    assert enc.name == "dinobloom-s" and enc.dim == 384 and len(enc.weights_sha256) == 64
    meta = BagStore(store).meta("P001_s1")
    assert meta.weights_path == str(weights.resolve()) and meta.crop_px == 224 and meta.n_instances == 3
    assert "RANDOM" not in result.output
    rnd = run(
        "extract",
        slide,
        "-o",
        tmp_path / "rnd.zarr",
        "--encoder",
        "dinobloom-s",
        "--weights",
        "random",
        "--max-instances",
        "2",
        *FAST,
    )
    assert rnd.exit_code == 0, rnd.output
    assert rnd.output.count("RANDOM ENCODER WEIGHTS") == 2  # at the start and under the summary
    assert BagStore(tmp_path / "rnd.zarr").encoder.weights_sha256 == "random"
    info = run("bags", "info", tmp_path / "rnd.zarr")
    assert "RANDOM weights" in info.output


def test_auto_refuses_a_mixed_folder_and_finds_nested_slides(tmp_path):
    """A slide beside a patient's cell folder was extracted alone (the cells never mentioned); a slide one
    folder down was "no slides"."""
    if not APERIO.exists():
        pytest.skip("shared Aperio slide absent")
    mixed = tmp_path / "mix"
    (mixed / "P1").mkdir(parents=True)
    (mixed / "s.svs").symlink_to(APERIO)
    from PIL import Image

    Image.new("RGB", (96, 96), (200, 120, 130)).save(mixed / "P1" / "cell.png")
    refused = run("extract", mixed, "-o", tmp_path / "m.zarr", *FAST)
    assert isinstance(refused.exception, InputError), refused.output
    assert "mixes 1 whole-slide file (s.svs) with 1 folder of cell or field images (P1)" in str(
        refused.exception
    )
    assert not (tmp_path / "m.zarr").exists()
    nested = tmp_path / "nested"
    (nested / "P1").mkdir(parents=True)
    (nested / "P1" / "s1.svs").symlink_to(APERIO)
    result = run("extract", nested, "-o", tmp_path / "n.zarr", "--unit", "tiles", *FAST)
    assert result.exit_code == 0, result.output
    assert [m.slide_id for m in BagStore(tmp_path / "n.zarr").metas()] == ["s1"]
