"""--overwrite replaces only an earlier result of the same command: a CELLMODEL or COUNTS folder."""

from __future__ import annotations

import pytest

from features.core.errors import InputError, MilError
from mil.cells.differential import count_cells
from mil.cells.train import train_cells


@pytest.mark.parametrize(
    ("command", "own_file"),
    [
        (lambda out, ow: train_cells(out.parent / "no.zarr", out.parent / "no.csv", out, overwrite=ow), "cellmodel.json"),
        (lambda out, ow: count_cells(out.parent / "nomodel", out.parent / "no.zarr", out, overwrite=ow), "counts.json"),
    ],
)  # fmt: skip
def test_overwrite_replaces_only_the_commands_own_folder(tmp_path, command, own_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")
    with pytest.raises(InputError, match="not empty"):
        command(out, False)
    with pytest.raises(InputError, match="holds files that are not"):
        command(out, True)
    (out / own_file).write_text("{}")  # an earlier result: --overwrite goes on to the inputs
    with pytest.raises(MilError) as caught:  # the missing store or model, one line
        command(out, True)
    assert "holds files that are not" not in str(caught.value)
    assert (out / "notes.txt").is_file()  # nothing replaced before the inputs were read
