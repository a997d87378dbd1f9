"""Class vocabularies: the shipped standard and mappings, name matching, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from features.core.errors import ConfigError
from mil.cells.vocabulary import load_vocabulary, normalise
from mil.config import named_configs

MUNICH_CODES = {"ABE", "ART", "BAS", "BLA", "EBO", "EOS", "FGC", "HAC", "KSC", "LYI", "LYT", "MMZ", "MON",
                "MYB", "NGB", "NGS", "NIF", "OTH", "PEB", "PLM", "PMO"}  # fmt: skip


def test_shipped_vocabularies_are_listed():
    assert {"munich21", "synth20", "pbc8", "reference_ranges"} <= set(named_configs("celltypes"))


def test_munich21_holds_the_21_munich_classes_with_their_roles():
    voc = load_vocabulary("munich21")
    codes = {c.code for c in voc.classes.values()}
    assert MUNICH_CODES <= codes
    not_counted = {c.name for c in voc.classes.values() if not c.counted}
    assert not_counted == {"artefact", "smudge_cell", "unknown", "platelet"}
    assert [c.name for c in voc.classes.values() if c.blast] == ["blast"]
    assert voc.classes["dysplastic_neutrophil"].neutrophil and voc.classes["dysplastic_neutrophil"].dysplastic
    assert (
        voc.classes["erythroblast"].lineage == "erythroid" and voc.classes["myelocyte"].lineage == "myeloid"
    )


def test_synth20_maps_every_generator_type():
    from features.synth import CELL_TYPES

    voc = load_vocabulary("synth20")
    mapped = voc.lookup(np.array([*CELL_TYPES, "rbc", "platelet"], dtype=object))
    assert all(m is not None for m in mapped)
    assert dict(zip(CELL_TYPES, mapped[:-2], strict=True))["npm1_blast"] == "blast"
    assert list(mapped[-2:]) == ["artefact", "platelet"]  # not nucleated: left out of the percentages
    assert not voc.counted("artefact") and not voc.counted("platelet")


def test_pbc8_maps_the_eight_folders_and_platelets_are_not_counted():
    voc = load_vocabulary("pbc8")
    folders = [
        "basophil",
        "eosinophil",
        "erythroblast",
        "ig",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ]
    mapped = dict(zip(folders, voc.lookup(np.array(folders, dtype=object)), strict=True))
    assert mapped["ig"] == "immature_granulocyte" and mapped["neutrophil"] == "neutrophil"
    assert [f for f in folders if not voc.counted(mapped[f])] == ["platelet"]


@pytest.mark.parametrize(
    "written, standard",
    [
        ("Band neutrophils", "band_neutrophil"),
        ("band_neutrophil", "band_neutrophil"),
        ("NGB", "band_neutrophil"),
        ("Lymphocytes, variant", "lymphocyte"),  # plural and a comma
        ("  Plasma   cells ", "plasma_cell"),
        ("Stabkernige", "band_neutrophil"),
        ("not identifiable", "unknown"),
        ("Smudge cells", "smudge_cell"),
    ],
)
def test_names_match_whatever_the_spelling(written, standard):
    assert load_vocabulary("munich21").lookup(np.array([written], dtype=object))[0] == standard


def test_unicode_is_matched_in_either_composition():
    assert normalise("E\u0301rythroblaste") == normalise("\u00c9rythroblaste") == "érythroblaste"


def test_a_name_not_in_the_vocabulary_is_none():
    assert load_vocabulary("munich21").lookup(np.array(["Gumprecht shadow X"], dtype=object))[0] is None


def test_a_name_claimed_by_two_classes_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("standard: true\nclasses:\n  - {name: a, aliases: [x]}\n  - {name: b, aliases: [X]}\n")
    with pytest.raises(ConfigError, match="maps to both"):
        load_vocabulary(bad)


def test_a_mapping_onto_a_class_the_standard_lacks_is_refused(tmp_path):
    bad = tmp_path / "map.yaml"
    bad.write_text("standard: munich21\naliases:\n  Foo: not_a_class\n")
    with pytest.raises(ConfigError, match="not a class of munich21"):
        load_vocabulary(bad)


def test_an_unknown_vocabulary_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="munich21"):
        load_vocabulary("munich99")


def test_a_reference_ranges_file_is_neither_offered_nor_read_as_a_vocabulary():
    from mil.cells.flags import load_reference_ranges

    with pytest.raises(ConfigError) as unknown:
        load_vocabulary("nosuch")
    assert "munich21" in str(unknown.value) and "reference_ranges" not in str(unknown.value)
    with pytest.raises(ConfigError, match="a reference ranges file, not a vocabulary"):
        load_vocabulary("reference_ranges")
    with pytest.raises(ConfigError, match="a vocabulary file, not a reference ranges"):
        load_reference_ranges("pbc8")
