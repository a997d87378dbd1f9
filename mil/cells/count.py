"""The differential count of one slide or patient: cells per type, % of the counted cells with 95 % intervals,
and the measures a hematologist reads first (blast %, M:E ratio, % dysplastic neutrophils).

Each cell counts once, as its most probable type (as a morphologist assigns one class per cell). The
denominator is the counted nucleated cells: every class of the vocabulary with `counted: true`; artefacts,
smudge cells, unknown cells and platelets are counted as cells (`n_cells`, their own counts) and left out of
every percentage. Intervals are exact binomial (Clopper-Pearson): the count is a sample of the smear, and a
200-cell differential of 20 % blasts is 14.7-26.2 %, about ± 6 points, which the report says in words.

Measures, from the classes' roles (`mil.cells.vocabulary`): blast % = `blast` classes over counted cells;
M:E = `myeloid` over `erythroid` lineage cells (monocytes, lymphocytes, plasma cells in neither); % dysplastic
neutrophils = `dysplastic` cells over the `neutrophil` series (band, segmented, lumped and dysplastic forms).
A measure the model's classes cannot give is absent, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mil.cells.vocabulary import Vocabulary

LEVEL = 0.95


def clopper_pearson(k: np.ndarray, n: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval of k / n (arrays, as proportions 0..1); NaN where n = 0."""
    from scipy.stats import beta

    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    alpha = 1 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


@dataclass
class Measure:
    value: float | None  # % for percentages, a ratio for me_ratio; None when undefined (0 cells below)
    lo: float | None = None
    hi: float | None = None
    numerator: int = 0
    denominator: int = 0


@dataclass
class Differential:
    """One row of the count: a slide or a patient (its slides summed)."""

    id: str
    patient_id: str
    counts: dict[str, int]  # every class of the model, counted or not
    n_cells: int  # every stored cell
    n_counted: int  # the denominator of every percentage
    pct: dict[str, Measure]  # counted classes only
    measures: dict[str, Measure] = field(
        default_factory=dict
    )  # blast_pct, me_ratio, dysplastic_neutrophil_pct
    flags: list[str] = field(default_factory=list)
    in_training: bool = False  # the cell model learnt from this slide's (or patient's) labels

    def value(self, measure: str) -> Measure | None:
        """`n_counted`, a derived measure, or `pct:<class>`; None when the model cannot give it."""
        if measure == "n_counted":
            return Measure(float(self.n_counted), numerator=self.n_counted, denominator=self.n_counted)
        if measure.startswith("pct:"):
            return self.pct.get(measure[4:])
        return self.measures.get(measure)


def count_types(type_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """C counts of one slide's N predicted type codes."""
    return np.bincount(np.asarray(type_codes, np.int64), minlength=n_classes)


def shares(counts: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """K x C: each row's cells per type over its counted cells (the `counted` classes' sum), as proportions;
    a row without counted cells is NaN (no composition, not a composition of zeros)."""
    counts = np.asarray(counts, np.float64)
    n_counted = counts[:, counted].sum(1, keepdims=True)
    return np.divide(counts, n_counted, out=np.full(counts.shape, np.nan), where=n_counted > 0)


def differentials(
    counts: np.ndarray, ids: list[str], patients: list[str], classes: list[str], vocabulary: Vocabulary
) -> list[Differential]:
    """One Differential per row of `counts` (K x C cells per type), all rows computed at once."""
    counts = np.asarray(counts, np.int64).reshape(len(ids), len(classes))
    roles = [vocabulary.classes[c] for c in classes]
    counted = np.array([r.counted for r in roles], bool)
    n_counted = counts[:, counted].sum(1)
    lo, hi = clopper_pearson(counts, n_counted[:, None])
    pct = 100.0 * shares(counts, counted)
    derived = _derived(counts, n_counted, roles, vocabulary.own_names)
    rows = []
    for i, (row_id, patient) in enumerate(zip(ids, patients, strict=True)):
        rows.append(
            Differential(
                id=row_id,
                patient_id=patient,
                counts={c: int(counts[i, j]) for j, c in enumerate(classes)},
                n_cells=int(counts[i].sum()),
                n_counted=int(n_counted[i]),
                pct={
                    c: Measure(
                        _num(pct[i, j]),
                        _num(100 * lo[i, j]),
                        _num(100 * hi[i, j]),
                        int(counts[i, j]),
                        int(n_counted[i]),
                    )  # fmt: skip
                    for j, c in enumerate(classes)
                    if counted[j]
                },
                measures={name: per_row[i] for name, per_row in derived.items()},
            )
        )
    return rows


def _derived(counts: np.ndarray, n_counted: np.ndarray, roles, own_names: bool) -> dict[str, list[Measure]]:
    if own_names:
        return {}
    out: dict[str, list[Measure]] = {}
    mask = {k: np.array([getattr(r, k) for r in roles], bool) for k in ("blast", "neutrophil", "dysplastic")}
    lineage = np.array([r.lineage or "" for r in roles], object)
    if mask["blast"].any():
        out["blast_pct"] = _percent(counts[:, mask["blast"]].sum(1), n_counted)
    if mask["dysplastic"].any():
        out["dysplastic_neutrophil_pct"] = _percent(
            counts[:, mask["dysplastic"]].sum(1), counts[:, mask["neutrophil"]].sum(1)
        )
    myeloid, erythroid = lineage == "myeloid", lineage == "erythroid"
    if myeloid.any() and erythroid.any():
        m, e = counts[:, myeloid].sum(1), counts[:, erythroid].sum(1)
        out["me_ratio"] = [
            Measure(float(a / b) if b else None, numerator=int(a), denominator=int(b))
            for a, b in zip(m, e, strict=True)
        ]
    return out


def _percent(k: np.ndarray, n: np.ndarray) -> list[Measure]:
    lo, hi = clopper_pearson(k, n)
    value = np.divide(100.0 * k, n, out=np.full(len(k), np.nan), where=n > 0)
    return [Measure(_num(v), _num(100 * a), _num(100 * b), int(kk), int(nn))
            for v, a, b, kk, nn in zip(value, lo, hi, k, n, strict=True)]  # fmt: skip


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def interval_words(n: int, pct: float = 20.0, level: float = LEVEL) -> str:
    """The plain-words size of a count's uncertainty, e.g. for the report: "with 200 counted cells, 20 % is
    14.7-26.2 % (95 % CI), about ± 6 points"."""
    k = round(pct / 100 * n)
    lo, hi = clopper_pearson(np.array([k]), np.array([n]), level)
    lo_pct, hi_pct = 100 * float(lo[0]), 100 * float(hi[0])
    half = (hi_pct - lo_pct) / 2
    return (
        f"with {n} counted cells, {100 * k / n:.0f} % is {lo_pct:.1f}-{hi_pct:.1f} % ({level:.0%} CI), "
        f"about ± {half:.0f} points"
    )
