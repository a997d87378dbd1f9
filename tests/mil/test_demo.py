"""`mil demo` end to end on its smallest cohort: every stage runs, and the report shows the differential count
from the cell model the demo trained on the synthetic truth."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mil.demo import run_demo


@pytest.mark.slow
def test_demo_trains_a_cell_model_and_its_report_shows_the_differential(tmp_path):
    result = run_demo(tmp_path / "demo", patients=15, slide_px=2000)
    stages = [name for name, _, _ in result.stages]
    assert stages == ["synth", "extract", "train", "cells", "count", "heatmap", "report"]
    out = result.out
    model = json.loads((out / "cellmodel" / "cellmodel.json").read_text())
    assert model["vocabulary"]["name"] == "synth20" and "blast" in model["classes"]
    assert model["cv"]["balanced_accuracy"] > 0.8  # patient-grouped CV of the cell types
    patients = pd.read_csv(out / "counts" / "patients.csv")
    assert len(patients) == 15 and patients["in_training"].all()  # learnt from this cohort's truth: said so
    html = result.report.read_text()
    assert 'id="differential"' in html and "Differential count (15 patients)" in html
    assert "blast % (95% CI)" in html and "Clopper-Pearson" in html and "not a test" in html
    some = next(p for p in (out / "heatmaps").iterdir() if p.is_dir())
    assert "cell_type" in pd.read_csv(some / "attention.csv").columns
