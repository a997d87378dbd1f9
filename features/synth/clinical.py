"""Clinical covariates of the synthetic patients: blood counts, age and sex, per diagnosis, in clinical.csv.

What a hematologist sees before the smear, drawn to overlap so that neither the counts nor the smear alone
separate the diagnoses perfectly (textbook directions, wide spreads):

    diagnosis  WBC (G/L)        hemoglobin (g/dL)  platelets (G/L)  age (years)  sex (P male)
    healthy    7, x/÷ 1.35      13.5 ± 1.6         240, x/÷ 1.4     50 ± 16      0.50
    AML        12, x/÷ 3.3      9.5 ± 1.8          70, x/÷ 2.2      64 ± 14      0.55
    APL        3, x/÷ 2.2       9.5 ± 1.8          35, x/÷ 1.8      46 ± 16      0.50
    MDS        3.8, x/÷ 1.6     9.8 ± 1.5          110, x/÷ 2.0     71 ± 10      0.60
    AA         2.6, x/÷ 1.5     8.5 ± 1.6          25, x/÷ 1.8      42 ± 19      0.50

(x/÷ s: log-normal with median m and geometric SD s.) APL has low platelets and WBC, aplastic anemia is
pancytopenic, MDS is older. Age also carries prognosis, as in AML: for AML and MDS it is shifted up for
patients whose (already drawn) survival is short, by 5 years per halving of the time below 24 months (at
most ±10), so age is prognostic in the Cox model without touching os_months. About 3% of each count is
missing (empty cell), as in real tables.

Determinism and compatibility: everything is drawn from its own generator, `default_rng([seed, STREAM])`,
patient by patient in cohort order, after everything else is drawn, so adding this file changed no byte of
labels.csv, cohort.json or any image of a cohort with the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.synth.cohort import Patient

STREAM = 0xC11  # the clinical generator's own stream: the other streams never see it
CLINICAL_COLUMNS = ["patient_id", "wbc", "hemoglobin", "platelets", "age", "sex"]
MISSING_SHARE = 0.03
# diagnosis -> (WBC median, geometric SD), (Hb mean, SD), (platelets median, geometric SD), (age mean, SD), P(male)
PROFILE: dict[
    str, tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float], float]
] = {
    "healthy": ((7.0, 1.35), (13.5, 1.6), (240.0, 1.4), (50.0, 16.0), 0.50),
    "AML": ((12.0, 3.3), (9.5, 1.8), (70.0, 2.2), (64.0, 14.0), 0.55),
    "APL": ((3.0, 2.2), (9.5, 1.8), (35.0, 1.8), (46.0, 16.0), 0.50),
    "MDS": ((3.8, 1.6), (9.8, 1.5), (110.0, 2.0), (71.0, 10.0), 0.60),
    "AA": ((2.6, 1.5), (8.5, 1.6), (25.0, 1.8), (42.0, 19.0), 0.50),
}
PROGNOSTIC_AGE = ("AML", "MDS")


def clinical_rows(patients: list[Patient], seed: int) -> list[list[object]]:
    """One row per patient, CLINICAL_COLUMNS order; empty string = missing."""
    rng = np.random.default_rng([seed, STREAM])
    rows = []
    for p in patients:
        (wbc_m, wbc_s), (hb_m, hb_s), (plt_m, plt_s), (age_m, age_s), male = PROFILE[p.diagnosis]
        wbc = wbc_m * float(np.exp(np.log(wbc_s) * rng.normal()))
        hb = hb_m + hb_s * rng.normal()
        plt = plt_m * float(np.exp(np.log(plt_s) * rng.normal()))
        age = age_m + age_s * rng.normal()
        if p.diagnosis in PROGNOSTIC_AGE:
            age += float(np.clip(5.0 * np.log2(24.0 / max(p.os_months, 0.1)), -10.0, 10.0))
        sex = "M" if rng.random() < male else "F"
        missing = rng.random(3) < MISSING_SHARE
        values = [
            round(wbc, 2),
            round(float(np.clip(hb, 4.0, 18.0)), 1),
            round(plt),
            int(np.clip(age, 18, 95)),
        ]
        values[:3] = ["" if gone else v for v, gone in zip(values[:3], missing, strict=True)]
        rows.append([p.patient_id, *values, sex])
    return rows


def write_clinical(path: Path, patients: list[Patient], seed: int) -> None:
    from features.synth.layout_cells import write_csv

    write_csv(path, CLINICAL_COLUMNS, clinical_rows(patients, seed))
