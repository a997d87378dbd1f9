"""Patients: diagnosis, genetics, site, marrow composition, cellularity and survival.

Composition. Each patient has a background marrow (drawn around the diagnosis' textbook differential) and, for
AML, APL and MDS, a latent disease share of disease-defining cells. The cells drawn follow
    p(type) = witness * share * disease_mix + (1 - witness * share) * background,
so `witness` (0..1) only changes how often the defining cells appear; the patient (labels, survival) is drawn
from a stream that does not see it, so cohorts that differ only in witness share labels.csv byte for byte.

Diagnostic cells (the `diagnostic` flag of the truth tables; `defines` names what they define):
    healthy, AA            : none
    MDS                    : dysplastic_neutrophil (MDS)
    AML (no listed lesion) : myeloblast (AML)
    AML with NPM1          : myeloblast (AML), npm1_blast (NPM1)
    AML with CBFB::MYH11   : myeloblast (AML), abnormal_eosinophil (CBFB::MYH11)
    APL (always PML::RARA) : abnormal_promyelocyte, faggot_cell (APL)
Cells of those types in other patients (the few normal myeloblasts of a healthy marrow) are not diagnostic.

Survival: exponential time to death with a monthly hazard set by diagnosis, genetics and blast burden
(APL and CBFB::MYH11 good, NPM1 better than other AML, MDS and AML worse with more blasts), censored by a uniform
follow-up of 6-120 months.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from features.synth.config import SynthConfig

GENETIC_OF = {"APL": "PML::RARA"}
BLAST_TYPES = ("myeloblast", "npm1_blast")  # what `SynthConfig.blast_share` sets (APL promyelocytes stay)

# Textbook marrow differentials (%), normalised per patient after a Dirichlet draw around them.
_NORMAL = {
    "myeloblast": 1.5, "promyelocyte": 3.5, "myelocyte": 12, "metamyelocyte": 10, "band_neutrophil": 11,
    "segmented_neutrophil": 13, "eosinophil": 3, "basophil": 0.4, "monocyte": 2.5, "lymphocyte": 13,
    "plasma_cell": 1.2, "proerythroblast": 0.8, "basophilic_normoblast": 2.5, "polychromatic_normoblast": 14,
    "orthochromatic_normoblast": 7,
}  # fmt: skip
BACKGROUND = {
    "healthy": _NORMAL,
    "AML": _NORMAL,
    "APL": _NORMAL,
    "MDS": {**_NORMAL, "myeloblast": 9, "segmented_neutrophil": 8, "band_neutrophil": 8,
            "polychromatic_normoblast": 17, "orthochromatic_normoblast": 9},
    "AA": {**_NORMAL, "myeloblast": 0.3, "promyelocyte": 0.8, "myelocyte": 4, "metamyelocyte": 4,
           "band_neutrophil": 6, "segmented_neutrophil": 12, "eosinophil": 1.5, "basophil": 0.2, "monocyte": 3,
           "lymphocyte": 45, "plasma_cell": 8, "proerythroblast": 0.2, "basophilic_normoblast": 0.8,
           "polychromatic_normoblast": 8, "orthochromatic_normoblast": 5},
}  # fmt: skip
# (diagnosis, genetic) -> (range of the disease share at witness 1, mix of the defining cells)
DISEASE: dict[tuple[str, str], tuple[tuple[float, float], dict[str, float]]] = {
    ("AML", "none"): ((0.3, 0.75), {"myeloblast": 1.0}),
    ("AML", "NPM1"): ((0.35, 0.8), {"npm1_blast": 0.6, "myeloblast": 0.4}),
    ("AML", "CBFB::MYH11"): ((0.3, 0.6), {"myeloblast": 0.6, "abnormal_eosinophil": 0.4}),
    ("APL", "PML::RARA"): ((0.4, 0.85), {"abnormal_promyelocyte": 0.88, "faggot_cell": 0.12}),
    ("MDS", "none"): ((0.15, 0.35), {"dysplastic_neutrophil": 1.0}),
}
DEFINES = {
    "myeloblast": "AML", "npm1_blast": "NPM1", "abnormal_eosinophil": "CBFB::MYH11",
    "abnormal_promyelocyte": "APL", "faggot_cell": "APL", "dysplastic_neutrophil": "MDS",
}  # fmt: skip
# Nucleated cells per area on slides, relative to a healthy marrow: AA is hypocellular, leukaemias packed.
CELLULARITY = {
    "healthy": (0.85, 1.15), "AML": (1.25, 1.6), "APL": (1.25, 1.6), "MDS": (1.05, 1.35), "AA": (0.2, 0.35),
}  # fmt: skip
HAZARD_PER_MONTH = {"healthy": 1 / 900, "AA": 1 / 150, "MDS": 1 / 45, "AML": 1 / 14, "APL": 1 / 300}
GENETIC_HR = {"none": 1.0, "NPM1": 0.5, "CBFB::MYH11": 0.35, "PML::RARA": 1.0}
BLOOD = {
    "segmented_neutrophil": 0.6,
    "lymphocyte": 0.3,
    "monocyte": 0.06,
    "eosinophil": 0.03,
    "basophil": 0.01,
}


@dataclass(frozen=True)
class Patient:
    patient_id: str
    diagnosis: str
    genetic: str
    site: str
    disease_share: float  # latent share of defining cells at witness 1
    blast_fraction: float  # blasts (and APL promyelocytes) at witness 1: drives the hazard
    cellularity: float
    composition: dict[str, float]  # cell-type probabilities at the configured witness
    os_months: float
    os_event: int

    @property
    def diagnostic_types(self) -> dict[str, str]:
        """Cell types that define this patient's diagnosis/genetics -> what they define."""
        if (self.diagnosis, self.genetic) not in DISEASE:
            return {}
        return {t: DEFINES[t] for t in DISEASE[(self.diagnosis, self.genetic)][1]}

    def hemodiluted_mix(self) -> dict[str, float]:
        """Peripheral-blood-like mix of the hemodiluted smear areas: half blood, half this marrow."""
        keys = set(self.composition) | set(BLOOD)
        return {k: 0.5 * self.composition.get(k, 0.0) + 0.5 * BLOOD.get(k, 0.0) for k in sorted(keys)}


def allocate(n: int, shares: dict[str, float]) -> list[str]:
    """Exactly n labels in the given proportions (largest remainder), in a fixed order."""
    keys = list(shares)
    w = np.array([shares[k] for k in keys], float)
    raw = n * w / w.sum()
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return [k for k, c in zip(keys, counts, strict=True) for _ in range(c)]


def build_cohort(config: SynthConfig) -> list[Patient]:
    """The patients of a cohort, deterministic in `config.seed` and independent of `config.witness` (labels)."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0,)))
    n = config.patients
    diagnoses = allocate(n, config.diagnosis_mix)
    rng.shuffle(diagnoses)
    n_aml = diagnoses.count("AML")
    aml_genetics = allocate(n_aml, config.aml_genetics) if n_aml else []
    rng.shuffle(aml_genetics)
    genetics = iter(aml_genetics)
    width = max(3, len(str(n)))
    patients = []
    site_of = _assign_sites(diagnoses, config.sites)
    for i, dx in enumerate(diagnoses):
        genetic = next(genetics) if dx == "AML" else GENETIC_OF.get(dx, "none")
        base = BACKGROUND[dx]
        names = sorted(base)
        alpha = 80 * np.array([base[k] for k in names]) / sum(base.values())
        background = dict(zip(names, rng.dirichlet(alpha), strict=True))
        share_range, mix = DISEASE.get((dx, genetic), ((0.0, 0.0), {}))
        share = float(rng.uniform(*share_range)) if mix else 0.0
        w = config.witness * share
        comp = {k: (1 - w) * v for k, v in background.items()}
        for k, v in mix.items():
            comp[k] = comp.get(k, 0.0) + w * v
        blasts = ("myeloblast", "npm1_blast", "abnormal_promyelocyte", "faggot_cell")
        latent = {k: (1 - share) * v for k, v in background.items()}
        for k, v in mix.items():
            latent[k] = latent.get(k, 0.0) + share * v
        blast_fraction = float(sum(latent.get(k, 0.0) for k in blasts))
        os_months, os_event = _survival(rng, dx, genetic, blast_fraction)
        patients.append(
            Patient(
                patient_id=f"P{i + 1:0{width}d}",
                diagnosis=dx,
                genetic=genetic,
                site=site_of[i],
                disease_share=round(share, 6),
                blast_fraction=round(blast_fraction, 6),
                cellularity=round(float(rng.uniform(*CELLULARITY[dx])) * config.cellularity_scale, 6),
                composition={k: comp[k] for k in sorted(comp)},
                os_months=os_months,
                os_event=os_event,
            )
        )
    if config.blast_share is not None:
        patients = _with_blast_shares(patients, config)
    return patients


def _with_blast_shares(patients: list[Patient], config: SynthConfig) -> list[Patient]:
    """Patients whose blasts (BLAST_TYPES) make up a share of the composition spread evenly over
    `config.blast_share` (stratified: patient k of n lands in the k-th of n equal slices, order shuffled), the
    rest of the marrow keeping its proportions. A stream of its own, so the patients (labels, survival, sites)
    are those of the same seed without the knob."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(8,)))
    lo, hi = config.blast_share
    n = len(patients)
    shares = lo + (hi - lo) * (rng.permutation(n) + rng.random(n)) / n
    out = []
    for p, share in zip(patients, shares, strict=True):
        blasts = {k: v for k, v in p.composition.items() if k in BLAST_TYPES and v > 0}
        rest = {k: v for k, v in p.composition.items() if k not in blasts}
        b_sum, r_sum = sum(blasts.values()), sum(rest.values())
        comp = {k: share * v / b_sum for k, v in blasts.items()} | {
            k: (1 - share) * v / r_sum for k, v in rest.items()
        }
        out.append(replace(p, composition={k: comp[k] for k in sorted(comp)}))
    return out


def _assign_sites(diagnoses: list[str], n_sites: int) -> list[str]:
    """Round-robin within each diagnosis (continuing across them), so every site sees every diagnosis it can."""
    sites = [""] * len(diagnoses)
    k = 0
    for dx in sorted(set(diagnoses)):
        for i, d in enumerate(diagnoses):
            if d == dx:
                sites[i] = f"site{k % n_sites + 1}"
                k += 1
    return sites


def _survival(rng: np.random.Generator, dx: str, genetic: str, blast_fraction: float) -> tuple[float, int]:
    hazard = HAZARD_PER_MONTH[dx] * GENETIC_HR[genetic]
    if dx in ("AML", "MDS"):
        hazard *= float(np.exp(3.0 * (blast_fraction - (0.5 if dx == "AML" else 0.1))))
    death = rng.exponential(1 / hazard)
    follow_up = rng.uniform(6, 120)
    return round(float(max(min(death, follow_up), 0.1)), 1), int(death <= follow_up)


def labels_row(patient: Patient, slide_id: str) -> dict[str, object]:
    """One labels.csv row. Task columns are empty where the task does not apply to the patient."""
    dx = patient.diagnosis
    aml = dx == "AML"
    return {
        "patient_id": patient.patient_id,
        "slide_id": slide_id,
        "site": patient.site,
        "diagnosis": dx,
        "genetic": patient.genetic,
        "apl_aml_healthy": dx if dx in ("APL", "AML", "healthy") else "",
        "mds_aa_aml": dx if dx in ("MDS", "AA", "AML") else "",
        "npm1": int(patient.genetic == "NPM1") if aml else "",
        "cbfb_myh11": int(patient.genetic == "CBFB::MYH11") if aml else "",
        "os_months": patient.os_months,
        "os_event": patient.os_event,
    }


LABEL_COLUMNS = [
    "patient_id", "slide_id", "site", "diagnosis", "genetic", "apl_aml_healthy", "mds_aa_aml", "npm1",
    "cbfb_myh11", "os_months", "os_event",
]  # fmt: skip
