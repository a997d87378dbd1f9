"""The one configuration schema: a frozen pydantic root with one section per command.

Precedence: schema defaults < YAML file (`--config`) < `--set section.key=value` (dotted path, value parsed as
a YAML scalar) < the command's own flags; then validate once (`mil.config.load`). Unknown keys are errors
(`extra="forbid"`), so a typo fails at load instead of being ignored. The extract section lives in
`features.pipeline.config` (`features/` knows nothing of `mil/`), the sections of the commands that read a
trained run in `mil.config.sections`; this root is the only place they meet.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from features.pipeline.config import ExtractConfig
from mil.config.sections import (
    MAX_SEED,
    CellsConfig,
    EvaluateConfig,
    ExplainConfig,
    ReportConfig,
    Section,
)

AUTO = "auto"  # `train.head` value for nested cross-validation over a fixed grid of heads (mil.training.auto)


class TrainConfig(Section):
    """`mil train`: what to predict, which head, how to fit and cross-validate it.

    Defaults suit ~100-1,000 patients with bags of a few thousand cells; every value is recorded in the run's
    config.yaml. The target can be named here (a config per task in configs/) or by `--target`.
    """

    target: str | list[str] | None = Field(
        None,
        description="Label column in the labels CSV; a list of 0/1 columns means one multi-label head. "
        "Survival takes time_col/event_col instead (target is then only the task's name).",
    )
    task: str | None = Field(
        None,
        description="classification | multilabel | survival (`mil list tasks`). Empty: inferred: a list of "
        "targets -> multilabel; strings or a few integer codes (0/1 = binary) -> classification; no target "
        "but time_col + event_col -> survival. Non-integer numbers are refused, never guessed.",
    )
    classes: list[str] | None = Field(
        None,
        description="Class names in output order (classification). A label outside this list stops the run. "
        "Empty: the column's distinct values, sorted (integer codes numerically).",
    )
    time_col: str | None = Field(None, description="Survival: follow-up time column (e.g. os_months).")
    event_col: str | None = Field(
        None, description="Survival: event column, 1 = event (death), 0 = censored."
    )
    head: str = Field(
        "abmil",
        description="MIL head (`mil list heads`), or `auto`: nested cross-validation over a small fixed grid "
        "(`mil.training.auto.AUTO_GRID`) where each outer fold picks the candidate whose members score best "
        "on the fold's inner held-out patients; the outer test patients never take part in the choice, and "
        "the run records the choice per fold and every candidate's out-of-fold result.",
    )
    model_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Hyperparameters of the head, validated by the head's own schema. With head auto they "
        "apply to every candidate (e.g. dropout), each candidate's own grid params on top; a key some "
        "candidate head lacks, or one the grid varies (pool_stats), is refused.",
    )
    # Defaults: crossfit + the pooled-statistics prior, uncalibrated. Measured 2026-12-03 (benchmarks/RESULTS.md,
    # 'Training recipe', 3 seeds, same folds): within 0.01 of the pooled baseline or above on every cohort
    # measured (MUSK2 +0.001, ELEPHANT +0.017), where the single model (selection validation, prior none) missed
    # it on MUSK2 (-0.022) and ELEPHANT (-0.020); it costs 5-16x the single model's training time. Covariates
    # are stacked on the members' held-out logits, no member is trained again (mil.training.fusion). Temperature
    # calibration is not better everywhere (MUSK1 validation 0.071 -> 0.090 ECE, pbc crossfit 0.081 -> 0.109).
    selection: Literal["crossfit", "validation"] = Field(
        "crossfit",
        description="How each fold picks its epoch. crossfit: the fold's training patients are split into "
        "inner_folds parts, one member model is trained per part on the others, all members are early-stopped "
        "together on the loss of ALL their held-out patients (every training patient once), and the members' "
        "ensemble predicts the test patients (on 60-300 patients a 12-16-patient validation loss is noise: "
        "see benchmarks/RESULTS.md, 'Training recipe'). validation: one model early-stopped on val_fraction of "
        "the training patients (the recipe before #11; cheaper by a factor inner_folds x seeds).",
    )
    prior: Literal["pooled_stats", "none"] = Field(
        "pooled_stats",
        description="pooled_stats: every member model starts as the pooled-statistics baseline (per-patient "
        "mean, SD, 10/50/90th percentile of each feature -> regularised logistic regression, C by inner CV on "
        "the member's own training patients) and the head learns a gated correction on top, kept only where "
        "it lowers the held-out loss (mil.training.prior); the head's attention explains that correction. "
        "none: the head alone. Survival has no prior (the head alone).",
    )
    inner_folds: int = Field(
        5,
        ge=2,
        description="crossfit: inner parts (and member models) per fold; each member trains on (k-1)/k of the "
        "fold's training patients.",
    )
    seeds: int = Field(
        1,
        ge=1,
        description="Members per inner part, each with its own initialisation and batch order (seed "
        "ensemble); training time grows linearly with it.",
    )
    calibration: Literal["temperature", "none"] = Field(
        "none",
        description="Post-hoc calibration fitted per fold on inner data only (crossfit: the members' held-out "
        "patients; validation: the validation patients), never on the fold's test patients: one temperature "
        "plus a bias per output (classification, multi-label), stored in each fold checkpoint and applied by "
        "`mil predict`, heatmaps and reports. none: raw outputs. Survival risks are not calibrated.",
    )
    folds: int = Field(
        5, ge=2, description="Cross-validation folds (patient-level, stratified by the label)."
    )
    val_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="selection validation: share of each fold's training patients held out for early stopping.",
    )
    group_by: str | None = Field(
        None,
        description="Labels column naming a group (e.g. site): one fold per group, tested on that group only "
        "(leave-one-site-out external validation); `folds` is then ignored.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seeds the splits, initialisation, sampling and instance subsampling.",
    )
    epochs: int = Field(100, ge=1, description="Maximum epochs per fold.")
    patience: int = Field(
        15, ge=1, description="Stop after this many epochs without improvement of the held-out loss."
    )
    monitor: Literal["loss", "metric"] = Field(
        "loss",
        description="Early-stopping signal on the held-out patients (crossfit: all inner held-out patients; "
        "validation: the validation part): the task loss (stable on small sets) or the task's main metric "
        "(AUROC / c-index).",
    )
    batch_size: int = Field(16, ge=1, description="Bags (patients) per optimiser step, padded with a mask.")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="Optimiser.")
    lr: float = Field(1e-3, gt=0, description="Learning rate (Adam-family; features are z-scored per fold).")
    weight_decay: float = Field(1e-2, ge=0, description="Weight decay (decoupled for adamw).")
    grad_clip_norm: float | None = Field(
        None, gt=0, description="Clip the gradient norm to this; empty = off."
    )
    class_weights: bool = Field(
        True,
        description="Weight the loss by inverse class frequency in each fold's training part (classification: "
        "cross-entropy weights; multi-label: BCE pos_weight). Off when balanced_sampling is on.",
    )
    balanced_sampling: bool = Field(
        False,
        description="Classification: draw training bags with equal class probability (with replacement).",
    )
    max_instances: int | None = Field(
        4096,
        ge=1,
        description="Training only: a bag with more instances is randomly subsampled to this many each step "
        "(bounds memory and time for 200k-cell bags; evaluation always sees every instance). Empty = all. "
        "Small values cost signal when diagnostic cells are rare: with 1% witness cells, 512 of 2,000 per step "
        "cut the pooled AUC from 0.969 to 0.811 in benchmarks/train_speed.py (5 epochs).",
    )
    instance_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Training only: share of each bag's instances dropped at random per step.",
    )
    standardize: bool = Field(
        True,
        description="Z-score every feature with the mean/std of each fold's training cells (stored in the "
        "fold checkpoint and applied at prediction); off only for features already on a unit scale.",
    )
    feature_dtype: Literal["float32", "float16"] = Field(
        "float32",
        description="In-memory storage of the features (compute is always float32); float16 halves memory.",
    )
    eval_batch_instances: int | None = Field(
        None,
        ge=1,
        description="Inference groups bags until batch size x largest bag reaches this; a bigger bag runs alone. "
        "Empty = 16,384 on the CPU (activations stay in cache: ~1.6x faster than 262,144 there) and 262,144 on "
        "a GPU.",
    )
    allow_missing: bool = Field(
        False,
        description="Proceed when labelled patients have no bag or stored slides have no label (they are left "
        "out and reported) instead of stopping.",
    )
    device: str = Field(
        "auto",
        description="auto (cuda, else mps, else cpu) | cpu | cuda | cuda:1 | mps; a device that is not here "
        "is an error.",
    )
    baselines: list[str] = Field(
        default_factory=lambda: ["pooled_stats"],
        description="Baselines fitted on the same folds beside the head (`mil list baselines`): patient-level "
        "features -> regularised logistic / Cox model, C chosen by an inner CV on each fold's training "
        "patients. Their predictions go to RUN/baselines/<name>/, metrics.json compares head and baseline "
        "with a paired bootstrap CI. Empty ([], or --baselines none) = off. Default: pooled_stats, plus "
        "cell_composition when train.cell_model is given.",
    )
    cell_model: str | None = Field(
        None,
        description="A cell model (`mil cells train` -> CELLMODEL folder) of the store's encoder: the "
        "cell_composition baseline types every cell with it (artefact, smudge, unknown left out, as `mil cells "
        "count`) and fits each patient's cell-type shares on the run's folds. It is trained outside the run: "
        "a warning names run patients it learnt from. Train-time only: `mil predict` applies the head.",
    )

    covariates: list[str] = Field(
        default_factory=list,
        description="Patient-level clinical columns (blood counts, age, sex) used beside the bag: from the "
        "labels CSV or --clinical CSV; numeric or categorical (one-hot), standardised and imputed (median / "
        "mode + a missingness column) with each fold's training patients only. The run then fits three models "
        "on the same folds: covariates only, image only (the head) and fused. Comma-separated on the CLI.",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "n_bootstrap" in data:
            raise ValueError("n_bootstrap moved to the evaluate section: write evaluate.n_bootstrap")
        return data

    @model_validator(mode="before")
    @classmethod
    def _composition_with_a_cell_model(cls, data: Any) -> Any:
        """A cell model given and the baselines left at their default: cell_composition joins pooled_stats."""
        if isinstance(data, dict) and data.get("cell_model") and "baselines" not in data:
            return {**data, "baselines": ["pooled_stats", "cell_composition"]}
        return data

    @model_validator(mode="after")
    def _cell_model_for_composition(self) -> TrainConfig:
        if "cell_composition" in self.baselines and not self.cell_model:
            raise ValueError(
                "baselines lists cell_composition but no cell model is given: pass --cell-model CELLMODEL "
                "(from `mil cells train`) or drop cell_composition from --baselines"
            )
        return self

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None:
            from mil.tasks import TASKS

            TASKS.check(value)
        return value

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, value: list[str]) -> list[str]:
        from mil.baselines import BASELINES

        if value == ["none"]:  # what the CLI can type for "no baselines"
            return []
        if len(set(value)) != len(value):
            raise ValueError("a baseline is listed twice")
        for name in value:
            BASELINES.check(name)
        return value

    @field_validator("covariates", mode="before")
    @classmethod
    def _covariate_list(cls, value: Any) -> Any:
        from mil.cohort.covariates import parse_columns

        if value is None or value == ["none"]:
            return []
        columns = parse_columns(value)
        if len(set(columns)) != len(columns):
            raise ValueError("a covariate is listed twice")
        return columns

    @field_validator("target")
    @classmethod
    def _targets(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("a list of targets must be non-empty and without repeats")
        return value

    @model_validator(mode="after")
    def _head_and_params(self) -> TrainConfig:
        from mil.heads import HEADS, head_params_model

        if self.head == AUTO:
            from features.core.errors import ConfigError
            from mil.training.auto import grid

            try:
                grid(self.model_params)  # shared by every candidate: each candidate head must take them
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if self.task is not None:
                from mil.tasks import task_kind

                task_kind(self.task).check_config(self)
            return self
        from features.core.errors import ConfigError

        try:  # as a ValueError, so the message names the flag or --set item that chose the head
            HEADS.check(self.head)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        try:
            head_params_model(self.head).model_validate(self.model_params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"model_params for head {self.head!r}: {where}: {first['msg']}") from None
        if self.task is not None:
            from mil.tasks import task_kind

            task_kind(self.task).check_config(self)  # the kind's own rules (survival: time and event columns)
        return self


class MilConfig(Section):
    """Root of the configuration. Sections are added by the commands that use them."""

    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    cells: CellsConfig = Field(default_factory=CellsConfig)
    provenance: dict[str, Any] | None = Field(
        None,
        description="Written by runs beside the resolved config (versions, seed, encoder, git commit, command "
        "line); ignored as input, so a run's config.yaml can be passed back to --config.",
    )
