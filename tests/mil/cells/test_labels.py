"""Cell labels from class folders, CSVs and synth truth, placed on a store's bags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.bagstore import Bag, BagMeta, BagStore
from features.core.errors import InputError
from mil.cells.dataset import collect_labelled
from mil.cells.join import UNLABELLED, place_labels
from mil.cells.labels import read_cell_labels
from mil.cells.vocabulary import load_vocabulary
from mil.config import CellsConfig
from tests.mil.cells.helpers import ENCODER, FOLDERS, UNLABELLED_PER_PATIENT, class_folders, store_for


def test_folder_classes_keep_spaces_commas_unicode_and_any_nesting(tmp_path):
    root = class_folders(tmp_path / "export")
    table, kind = read_cell_labels(root)
    assert kind == "folders"
    assert set(table["cell_type"]) == {*FOLDERS, ""}
    patients = sorted(table["slide_id"].unique())
    assert patients == ["Patient 1, Ünit A", "Patient 2, Ünit A", "Patient 3, Ünit A"]
    nested = table[(table["slide_id"] == "Patient 2, Ünit A") & (table["cell_type"] == "Lymphocyte, variant")]
    assert len(nested) == FOLDERS["Lymphocyte, variant"] and nested["file"].str.startswith("scan 1/").all()
    loose = table[table["cell_type"] == ""]
    assert len(loose) == 3 * UNLABELLED_PER_PATIENT and not loose["file"].str.contains("/").any()


def test_folder_labels_train_with_the_vocabulary_and_account_for_the_rest(tmp_path):
    root = class_folders(tmp_path / "export")
    store = BagStore(store_for(root, tmp_path / "bags"))
    table, kind = read_cell_labels(root)
    cells = collect_labelled(store, table, kind, str(root), load_vocabulary("munich21"), CellsConfig())
    assert cells.classes == ["blast", "band_neutrophil", "lymphocyte", "smudge_cell"]
    assert cells.account.small_classes == {"hairy_cell": 3}  # under min_cells_per_class: left out
    assert cells.account.unmapped == {"Érythroblaste": 18}  # munich21 has no French names: reported
    assert cells.account.unlabelled == 3 * UNLABELLED_PER_PATIENT
    n_all = 3 * (sum(FOLDERS.values()) + UNLABELLED_PER_PATIENT)
    assert cells.account.stored_cells == n_all == cells.account.used + 3 + 18 + cells.account.unlabelled
    lines = cells.account.lines(5)
    assert any("hairy_cell has 3 labelled cells (< 5" in line for line in lines)
    assert any("'Érythroblaste' (18 cells) is not in vocabulary munich21" in line for line in lines)
    assert any(
        f"{3 * UNLABELLED_PER_PATIENT} stored cells" in line and "unlabelled" in line for line in lines
    )
    # a site's own mapping onto the standard adds its names
    mapping = tmp_path / "site.yaml"
    mapping.write_text("standard: munich21\naliases:\n  Érythroblaste: erythroblast\n", encoding="utf-8")
    cells = collect_labelled(store, table, kind, str(root), load_vocabulary(mapping), CellsConfig())
    assert cells.classes == ["blast", "band_neutrophil", "lymphocyte", "erythroblast", "smudge_cell"]
    assert not cells.account.unmapped


def test_own_names_without_a_vocabulary(tmp_path):
    root = class_folders(tmp_path / "export")
    store = BagStore(store_for(root, tmp_path / "bags"))
    table, kind = read_cell_labels(root)
    cells = collect_labelled(store, table, kind, str(root), None, CellsConfig())
    assert set(cells.classes) == set(FOLDERS) - {"Hairy cells"}
    assert cells.vocabulary.own_names and all(c.counted for c in cells.vocabulary.classes.values())


def test_labels_naming_no_stored_slide_are_refused(tmp_path):
    root = class_folders(tmp_path / "export")
    store = BagStore(store_for(root, tmp_path / "bags"))
    table = pd.DataFrame({"slide_id": ["elsewhere"], "instance": [0], "cell_type": ["blast"]})
    with pytest.raises(InputError, match="names no slide"):
        collect_labelled(store, table, "csv", "x.csv", None, CellsConfig())


@pytest.mark.parametrize(
    "text, message",
    [
        ("slide_id,file\na,b.png\n", "missing column 'cell_type'"),
        ("slide_id,cell_type\na,blast\n", "no column to find the cells"),
        ("slide_id,instance,cell_type\na,1.5,blast\n", "whole numbers"),
    ],
)
def test_bad_csvs_are_one_line(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_cell_labels(path)


def _slide_bag(xy, mpp=0.5) -> tuple[Bag, BagMeta]:
    xy = np.asarray(xy, np.int64)
    bag = Bag(np.zeros((len(xy), ENCODER.dim), np.float32), coords=xy)
    return bag, BagMeta("S1", "P1", len(xy), ENCODER, "/s.tiff", "slide", mpp=mpp)


def test_position_labels_take_the_nearest_cell_within_the_radius():
    bag, meta = _slide_bag([[100, 100], [200, 100], [400, 400]])
    table = pd.DataFrame(
        {"slide_id": "S1", "x": [104, 197, 900], "y": [100, 103, 900], "cell_type": ["a", "b", "c"]}
    )
    names, unplaced = place_labels(table, bag, meta, radius_um=5.0)  # 5 µm = 10 px at 0.5 mpp
    assert list(names) == ["a", "b", UNLABELLED] and unplaced == 1


def test_nucleated_truth_wins_over_a_nearer_red_cell():
    bag, meta = _slide_bag([[100, 100], [300, 300]])
    table = pd.DataFrame({"slide_id": "S1", "x": [101, 106, 302], "y": [100, 100, 300],
                          "cell_type": ["rbc", "myeloblast", "rbc"], "nucleated": [0, 1, 0]})  # fmt: skip
    names, _ = place_labels(table, bag, meta, radius_um=5.0)
    # cell 0: the blast 6 px away beats the red cell 1 px away; cell 1 has only a red cell: a detection on it
    assert list(names) == ["myeloblast", "rbc"]


def test_instance_labels_out_of_range_are_refused():
    bag, meta = _slide_bag([[1, 1], [2, 2]])
    table = pd.DataFrame({"slide_id": "S1", "instance": [0, 5], "cell_type": ["a", "b"]})
    with pytest.raises(InputError, match="instance 5"):
        place_labels(table, bag, meta, radius_um=5.0)


def test_field_labels_join_by_file_then_position():
    bag = Bag(np.zeros((3, ENCODER.dim), np.float32), coords=np.array([[10, 10], [10, 10], [50, 50]]),
              paths=np.array(["f1.jpg", "f2.jpg", "f2.jpg"], dtype=object))  # fmt: skip
    meta = BagMeta("P1", "P1", 3, ENCODER, "/fields/P1", "fields", mpp=0.5)
    table = pd.DataFrame({"slide_id": "P1", "file": ["f2.jpg", "f2.jpg"], "x": [11, 49], "y": [9, 52],
                          "cell_type": ["lymphocyte", "monocyte"]})  # fmt: skip
    names, _ = place_labels(table, bag, meta, radius_um=5.0)
    assert list(names) == [UNLABELLED, "lymphocyte", "monocyte"]  # the same x, y in f1 is another cell


def test_synth_truth_folder_is_recognised(tmp_path):
    from features.synth import SynthConfig, generate_cohort

    generate_cohort(tmp_path / "c", SynthConfig(patients=2, layout="cells", cells_per_patient=5, sites=1))
    for path in (tmp_path / "c", tmp_path / "c" / "truth"):
        table, kind = read_cell_labels(path)
        assert kind == "synth" and set(table["layout"]) == {"cells"} and len(table) == 10
