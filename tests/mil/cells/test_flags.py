"""Reference ranges raise flags (worded as flags), quote the interval and say when it crosses the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from features.core.errors import ConfigError
from mil.cells.count import differentials
from mil.cells.flags import load_reference_ranges
from mil.cells.vocabulary import load_vocabulary

CLASSES = ["blast", "segmented_neutrophil", "erythroblast"]


def flags_for(blasts: int, others: int, erythro: int = 20) -> list[str]:
    (row,) = differentials(
        np.array([[blasts, others, erythro]]), ["S"], ["P"], CLASSES, load_vocabulary("munich21")
    )
    return load_reference_ranges("reference_ranges").apply(row)


def test_aml_blast_criterion_is_a_flag_not_a_diagnosis():
    flags = flags_for(blasts=300, others=180)
    aml = [f for f in flags if "AML blast criterion" in f]
    assert len(aml) == 1 and "not a diagnosis" in aml[0] and "95 % CI" in aml[0]
    assert not any("fewer than 200" in f for f in flags)


def test_a_small_count_is_flagged_and_a_crossing_interval_said():
    flags = flags_for(blasts=9, others=21, erythro=20)  # 18 % of 50 cells: 8.6-31.4 %
    assert any("fewer than 200 counted cells" in f for f in flags)
    tens = [f for f in flags if "10-19 %" in f]
    assert tens and "the interval crosses 10" in tens[0]  # 8.6-31.4 % straddles the lower bound


def test_normal_counts_raise_no_blast_flag():
    assert not any("blast" in f for f in flags_for(blasts=4, others=140, erythro=60))


def test_a_flag_without_bounds_is_refused(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("flags:\n  - {measure: blast_pct, text: hi}\n")
    with pytest.raises(ConfigError, match="no bound"):
        load_reference_ranges(bad)
