"""The sections of the commands that read a trained run: evaluate, explain (`mil heatmap`), report, and cells.

Each field's default, description and bounds are stated once, here: the CLI builds its flags from them
(`mil.cli.options.field_option`), the library takes the section object, and `mil config template` prints them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**32 - 1  # numpy's SeedSequence takes any non-negative int; this keeps seeds portable


class Section(BaseModel):
    """Base for every config section: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EvaluateConfig(Section):
    """`mil evaluate`, and the metrics.json that `mil train` writes: bootstrap confidence intervals."""

    n_bootstrap: int = Field(
        1000,
        ge=0,
        le=100_000,
        description="Bootstrap draws per 95% CI (patients resampled with replacement); 0 = no CIs.",
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the bootstrap draws: same seed, same CIs.")


class ExplainConfig(Section):
    """`mil heatmap`: per-slide attention tables, galleries, overlays and QuPath GeoJSON."""

    top_k: int = Field(
        16, ge=1, le=256, description="Cells per gallery block: the top-k and the bottom-k of each slide."
    )
    display_px: int = Field(
        128,
        ge=32,
        le=512,
        description="Side of each gallery tile in px; cells are re-read from the source at their extracted "
        "physical size (crop_um), so this sets only the display resolution.",
    )


class ReportConfig(Section):
    """`mil report`: one self-contained HTML file with cohort galleries and diagnostic-cell discovery."""

    top_k: int = Field(24, ge=1, le=512, description="Cells per class gallery.")
    per_patient: int = Field(
        2,
        ge=1,
        le=100,
        description="At most this many cells per patient in a class gallery, so one patient with a peaked "
        "attention cannot fill it.",
    )
    clusters: int = Field(6, ge=1, le=50, description="k-means clusters per class (discovery).")
    cluster_members: int = Field(12, ge=1, le=100, description="Cells shown per discovered cluster.")
    display_px: int = Field(96, ge=32, le=512, description="Side of each cell tile in the report, in px.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the discovery sampling and k-means.")


class CellsConfig(Section):
    """`mil cells train|count` and `--cells` of `mil heatmap` / `mil report`: a cell-type classifier on the
    stored embeddings (the frozen encoder stays frozen) and the differential count it gives per slide."""

    classifier: Literal["linear", "mlp", "knn"] = Field(
        "linear",
        description="Classifier on the frozen encoder's embeddings (`mil list cell-classifiers`): a linear probe "
        "(multinomial logistic regression on z-scored features, as DinoBloom is evaluated), a one-hidden-layer "
        "MLP, or k nearest neighbours.",
    )
    min_cells_per_class: int = Field(
        5,
        ge=1,
        le=10_000,
        description="A cell type with fewer labelled cells is reported and left out of training.",
    )
    vocabulary: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Class vocabulary mapping analyser names to one standard set: a name in "
        "configs/celltypes/ (munich21, synth20, pbc8) or a YAML path. Empty: the cell labels' own names "
        "(every class then counts in the percentages, and blast %, M:E ratio and flags are not available).",
    )
    folds: int = Field(
        5, ge=2, le=50, description="Cross-validation folds, grouped by patient (no patient in two parts)."
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the folds and the classifier's fit.")
    match_radius_um: float = Field(
        5.0,
        gt=0,
        le=50,
        description="Labels given by position (x, y; `mil synth` slide truth): a stored cell takes the label of "
        "the nearest labelled cell within this distance; farther cells stay unlabelled.",
    )
    neighbours: int = Field(15, ge=1, le=500, description="knn: neighbours that vote.")
    hidden: int = Field(256, ge=8, le=4096, description="mlp: width of the hidden layer.")
    reference_ranges: str = Field(
        "reference_ranges",
        min_length=1,
        max_length=200,
        description="Reference ranges that raise flags on a count: a name in configs/celltypes/ or a YAML path.",
    )
