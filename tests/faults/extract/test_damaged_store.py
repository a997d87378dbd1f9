"""A store damaged on disk (issue 13, item 3): a lost chunk, a truncated chunk, a bag's zarr.json that is not JSON.

zarr reads a missing chunk as the fill value, so a lost chunk used to read back as zeros while `mil bags
validate` said ok; a bag whose zarr.json was not JSON made `bags info` and `train` die with a traceback. Now a
read names the bag and the chunk, `validate` checks every chunk is on disk (`--deep` also decodes them), every
command that reads the store says which bag is damaged in one line, and a rerun of `mil extract` replaces the
damaged bag: the store is again the one a clean run makes.
"""

from __future__ import annotations

import pytest

from features.bagstore import BagStore
from features.core.errors import StoreError
from tests.faults.extract.conftest import FAST, cli, copy_tree, differing, error_lines
from tests.mil.explain.cohort import get_tiny
from tests.train_helpers import SINGLE_MODEL_FLAGS

DAMAGE = {
    "chunk lost": lambda bag: (bag / "features" / "c" / "0" / "0").unlink(),
    "chunk truncated": lambda bag: _truncate(bag / "features" / "c" / "0" / "0"),
    "zarr.json not JSON": lambda bag: (bag / "zarr.json").write_text('{"zarr_format": 3, "attributes": {'),
}


def _truncate(chunk):
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_named_then_repaired_by_a_rerun(cohort, clean_cells, tmp_path, damage, ledger):
    store = copy_tree(clean_cells, tmp_path / "bags.zarr")
    DAMAGE[damage](store / "bags" / "P002")

    # validate: the damage is found (the truncated chunk only when the features are decoded, --deep)
    quick, deep = cli("bags", "validate", store), cli("bags", "validate", store, "--deep")
    assert quick.traceback is None and deep.traceback is None
    assert deep.code == 1 and deep.output.startswith("P002: "), deep.output
    assert quick.code == (0 if damage == "chunk truncated" else 1), quick.output
    if damage == "chunk lost":
        assert "features has lost 1 of 1 chunk(s) (first: features/c/0/0)" in quick.output
    # reading names the bag instead of returning zeros or a traceback
    with pytest.raises(StoreError, match="P002"):
        BagStore(store).read("P002")
    info = cli("bags", "info", store)
    assert info.traceback is None
    if damage == "chunk truncated":  # info looks for chunks on disk, it does not read them
        assert info.code == 0, info.output
    else:  # the other bags are listed, the damaged one named with the fix
        assert info.code == 1 and "P001" in info.output and "P003" in info.output, info.output
        (line,) = [line for line in info.output.splitlines() if line.startswith("damaged bag:")]
        assert "P002" in line and "rerun mil extract on it (it re-extracts damaged bags)" in line
        assert "remove the folder" not in info.output
        assert "--overwrite" not in quick.output  # the same fix in validate: a plain rerun repairs it

    # a rerun replaces what it can see is damaged; a truncated chunk needs --overwrite (found by --deep)
    args = ("extract", cohort / "cells", "-o", store, *FAST)
    rerun = cli(*args, *(["--overwrite"] if damage == "chunk truncated" else []))
    assert rerun.traceback is None and rerun.code == 0, rerun.output
    if damage != "chunk truncated":
        assert "re-extracted 1 damaged bag(s)" in rerun.output and "0 failed" in rerun.output
    assert differing(store, clean_cells) == []
    assert cli("bags", "validate", store, "--deep").code == 0
    ledger("corruption", f"{damage} in one bag's features",
           "named by validate" + (" --deep" if damage == "chunk truncated" else "") + " and on read; "
           "rerun restores the clean store")  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


def test_bad_bag_metadata_is_one_line_in_every_command(tiny, tmp_path, ledger):
    store = copy_tree(tiny.cells, tmp_path / "cells.bags")
    (store / "bags" / "P004" / "zarr.json").write_text("{not json")
    commands = {
        "train": ("train", "--bags", store, "--labels", tiny.labels, "--target", "apl_aml_healthy", "-o",
                  tmp_path / "run", "--epochs", "1", "--device", "cpu", *SINGLE_MODEL_FLAGS),
        "predict": ("predict", tiny.abmil, "--bags", store, "-o", tmp_path / "p.csv"),
        "heatmap": ("heatmap", tiny.abmil, "--bags", store, "-o", tmp_path / "hm"),
    }  # fmt: skip
    for name, args in commands.items():
        run = cli(*args)
        assert run.traceback is None and run.code == 2, f"{name}: {run.output}{run.traceback}"
        lines = error_lines(run)
        assert len(lines) == 1 and "P004" in lines[0] and "not valid JSON" in lines[0], (
            f"{name}: {run.output}"
        )
    info = cli(
        "bags", "info", store
    )  # an inventory: lists the sound bags, names the damaged one (as validate)
    assert info.traceback is None and info.code == 1, info.output
    damaged = [line for line in info.output.splitlines() if line.startswith("damaged bag:")]
    assert len(damaged) == 1 and "P004" in damaged[0] and "not valid JSON" in damaged[0], info.output
    assert error_lines(info) == [] and "P001" in info.output
    ledger("corruption", "a bag's zarr.json not JSON, read by train / predict / heatmap / bags info",
           "one line naming the bag, exit 2 (bags info: the others listed, exit 1)")  # fmt: skip
