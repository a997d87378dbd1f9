"""Cohort contracts of features.synth: diagnoses, genetics, compositions, witness, sites, survival, labels."""

from __future__ import annotations

import numpy as np
import pytest

from features.core.errors import ConfigError
from features.synth import SynthConfig, build_cohort, make_config
from features.synth.cohort import LABEL_COLUMNS, labels_row

BLASTS = ("myeloblast", "npm1_blast")


@pytest.fixture(scope="module")
def cohort():
    return build_cohort(SynthConfig(patients=300, seed=4, sites=4))


def _mean(patients, dx, types):
    return np.mean([sum(p.composition.get(t, 0.0) for t in types) for p in patients if p.diagnosis == dx])


def test_diagnoses_and_genetics_follow_the_rules(cohort):
    dx = {p.diagnosis for p in cohort}
    assert dx == {"healthy", "AML", "APL", "MDS", "AA"}
    for p in cohort:
        if p.diagnosis == "APL":
            assert p.genetic == "PML::RARA"
        elif p.diagnosis == "AML":
            assert p.genetic in ("none", "NPM1", "CBFB::MYH11")
        else:
            assert p.genetic == "none"
    assert {p.genetic for p in cohort if p.diagnosis == "AML"} == {"none", "NPM1", "CBFB::MYH11"}
    # exact allocation of the default mix
    assert sum(p.diagnosis == "AML" for p in cohort) == 90


def test_compositions_follow_the_diagnosis(cohort):
    assert _mean(cohort, "AML", BLASTS) > 5 * _mean(cohort, "healthy", BLASTS)
    assert _mean(cohort, "MDS", BLASTS) > 2 * _mean(cohort, "healthy", BLASTS)
    assert _mean(cohort, "MDS", BLASTS) < 0.5 * _mean(cohort, "AML", BLASTS)
    apl = ("abnormal_promyelocyte", "faggot_cell")
    assert _mean(cohort, "APL", apl) > 0.3
    assert all(sum(p.composition.get(t, 0) for t in apl) == 0 for p in cohort if p.diagnosis != "APL")
    assert all(p.composition.get("npm1_blast", 0) == 0 for p in cohort if p.genetic != "NPM1")
    assert all(p.composition.get("abnormal_eosinophil", 0) == 0 for p in cohort if p.genetic != "CBFB::MYH11")
    assert all(p.composition.get("dysplastic_neutrophil", 0) == 0 for p in cohort if p.diagnosis != "MDS")
    lymph_plasma = ("lymphocyte", "plasma_cell")
    assert _mean(cohort, "AA", lymph_plasma) > 2.5 * _mean(cohort, "healthy", lymph_plasma)
    assert _mean(cohort, "AA", ("myelocyte", "promyelocyte")) < 0.5 * _mean(cohort, "healthy", ("myelocyte",))
    cellularity = {d: np.mean([p.cellularity for p in cohort if p.diagnosis == d]) for d in ("AA", "healthy")}
    assert cellularity["AA"] < 0.5 * cellularity["healthy"]
    for p in cohort:
        assert abs(sum(p.composition.values()) - 1) < 1e-9


def test_diagnostic_cell_mapping(cohort):
    seen = {}
    for p in cohort:
        seen[(p.diagnosis, p.genetic)] = p.diagnostic_types
    assert seen[("healthy", "none")] == {} and seen[("AA", "none")] == {}
    assert seen[("MDS", "none")] == {"dysplastic_neutrophil": "MDS"}
    assert seen[("AML", "none")] == {"myeloblast": "AML"}
    assert seen[("AML", "NPM1")] == {"npm1_blast": "NPM1", "myeloblast": "AML"}
    assert seen[("AML", "CBFB::MYH11")] == {"myeloblast": "AML", "abnormal_eosinophil": "CBFB::MYH11"}
    assert seen[("APL", "PML::RARA")] == {"abnormal_promyelocyte": "APL", "faggot_cell": "APL"}


def test_witness_scales_defining_cells_but_not_labels():
    full = build_cohort(SynthConfig(patients=60, seed=2, witness=1.0))
    third = build_cohort(SynthConfig(patients=60, seed=2, witness=0.3))
    none = build_cohort(SynthConfig(patients=60, seed=2, witness=0.0))
    rows = [[labels_row(p, p.patient_id) for p in c] for c in (full, third, none)]
    assert rows[0] == rows[1] == rows[2], "witness must not change who the patients are"
    for a, b, c in zip(full, third, none, strict=True):
        if a.disease_share == 0:
            continue
        mix = [t for t in a.diagnostic_types if t not in ("myeloblast",)] or ["myeloblast"]
        extra = {t: a.composition[t] - c.composition[t] for t in mix}
        assert all(v > 0 for v in extra.values())
        ratio = sum(b.composition[t] - c.composition[t] for t in mix) / sum(extra.values())
        assert ratio == pytest.approx(0.3, abs=0.08)


def test_sites_are_deterministic_and_mixed(cohort):
    again = build_cohort(SynthConfig(patients=300, seed=4, sites=4))
    assert [p.site for p in cohort] == [p.site for p in again]
    for site in ("site1", "site2", "site3", "site4"):
        assert {p.diagnosis for p in cohort if p.site == site} == {"healthy", "AML", "APL", "MDS", "AA"}
    other_seed = build_cohort(SynthConfig(patients=300, seed=5, sites=4))
    assert [p.diagnosis for p in cohort] != [p.diagnosis for p in other_seed]


def test_survival_depends_on_diagnosis_genetics_and_blasts(cohort):
    def death_rate(ps):
        return sum(p.os_event for p in ps) / sum(p.os_months for p in ps)  # events per month at risk

    by = {d: [p for p in cohort if p.diagnosis == d] for d in ("healthy", "AA", "MDS", "AML", "APL")}
    assert death_rate(by["AML"]) > 3 * death_rate(by["APL"])
    assert death_rate(by["AML"]) > 3 * death_rate(by["healthy"])
    assert death_rate(by["MDS"]) > death_rate(by["AA"])
    aml = by["AML"]
    good = [p for p in aml if p.genetic in ("NPM1", "CBFB::MYH11")]
    other = [p for p in aml if p.genetic == "none"]
    assert death_rate(other) > 1.3 * death_rate(good)
    censored = [p for p in cohort if p.os_event == 0]
    assert 0.2 < len(censored) / len(cohort) < 0.9
    assert all(0 < p.os_months <= 120 for p in cohort)


def test_labels_rows_leave_inapplicable_tasks_empty(cohort):
    for p in cohort:
        row = labels_row(p, p.patient_id)
        assert list(row) == LABEL_COLUMNS
        assert row["apl_aml_healthy"] == (p.diagnosis if p.diagnosis in ("APL", "AML", "healthy") else "")
        assert row["mds_aa_aml"] == (p.diagnosis if p.diagnosis in ("MDS", "AA", "AML") else "")
        if p.diagnosis == "AML":
            assert row["npm1"] in (0, 1) and row["cbfb_myh11"] in (0, 1)
            assert row["npm1"] + row["cbfb_myh11"] <= 1
        else:
            assert row["npm1"] == "" and row["cbfb_myh11"] == ""


@pytest.mark.parametrize(
    "bad",
    [
        {"patients": 0},
        {"layout": "tiles"},
        {"witness": 1.5},
        {"witness": -0.1},
        {"sites": 0},
        {"diagnosis_mix": {"CML": 1.0}},
        {"diagnosis_mix": {"AML": 0.0}},
        {"unknown_knob": 1},
    ],
)
def test_bad_config_is_one_line(bad):
    with pytest.raises(ConfigError) as err:
        make_config(**bad)
    assert "\n" not in str(err.value) and str(err.value).startswith("synth ")
