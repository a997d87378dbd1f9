"""The task-kind contract: one `Task` subclass per kind holds everything `mil` knows about that kind.

Every layer asks the kind instead of testing kind names: labels (`resolve`, `parse`, `fold_counts`), training
(`loss`, `outputs`, `metric`, `strata`), the predictions table (`truth_columns`, `prediction_columns`, `frame`,
`check_table`), evaluation (`metric_block`, `headline`, `figures`), display (`summary`, `headline_rows`,
`report_html`) and cohort explanations (`output_names`, `group`, `cohort_groups`). A new kind is one module
that subclasses `Task` and registers in `TASKS` (see `mil.tasks.survival` for a complete one).

Targets travel as float32 arrays, one row per patient (classification: class index; multi-label: P x L 0/1;
survival: P x 2 = time, event), so the data module can batch them without knowing the task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from features.core.errors import InputError
from mil.config import EvaluateConfig
from mil.tasks.formatting import ci_cells, format_ci
from mil.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor

    from mil.baselines.linear import LinearBaselineModel
    from mil.config import TrainConfig

# The headline metric as a function of bootstrap weights (B x n counts -> B values), and the strata its draws
# are resampled within: what a paired comparison of two prediction tables needs (`mil.evaluate.compare`).
PairedMetric = tuple[Callable[[np.ndarray], np.ndarray], np.ndarray | None]


class Task:
    """Base class: a kind bound to a resolved spec. Class attributes describe the kind without a spec."""

    kind: ClassVar[str] = ""
    metric_name: ClassVar[str] = ""  # main metric (higher is better): early stopping, progress, summary line
    metric_label: ClassVar[str] = ""  # how the summary line names it ("macro AUC")
    headline: ClassVar[tuple[str, ...]] = ()  # metrics.json keys shown first and summarised over folds
    # True where a model's outputs mean the same up to an additive constant only (Cox risks): held-out
    # outputs of different member models are then centred per model before they are pooled.
    shift_invariant: ClassVar[bool] = False
    plots: ClassVar[dict[str, str]] = {}  # files drawn by `figures` -> caption ("roc.png": "ROC curves")

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.weights: Tensor | None = None  # loss weights fitted on a fold's training part

    @property
    def n_outputs(self) -> int:
        return max(1, len(self.spec.classes))

    # -- labels: config + labels table -> spec -> targets ---------------------------------------------------
    @classmethod
    def infers(cls, config: TrainConfig) -> bool:
        """Whether a config without `train.task` describes this kind (at most one kind may say yes)."""
        return False

    @classmethod
    def check_config(cls, config: TrainConfig) -> None:
        """Rules of this kind on the train config; raise ValueError (the schema reports it)."""

    @classmethod
    def resolve(cls, table: pd.DataFrame, config: TrainConfig, source: str) -> TaskSpec:
        """The spec for this labels table: columns from the config, anything left open inferred."""
        raise NotImplementedError

    @classmethod
    def check_spec(cls, spec: TaskSpec) -> None:
        """Raise `InputError` when the spec's target and classes do not fit this kind."""

    def parse(self, table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        """Label rows -> (targets float32, has_label bool). Empty cells are "no label" (the patient is left
        out and counted); any other bad value raises `InputError` naming `source` and the fix."""
        raise NotImplementedError

    def fold_counts(self, y: np.ndarray) -> tuple[dict[str, int], str, str]:
        """What must reach every test fold: ({name: count}, what is counted, how to fix too few)."""
        return {}, "", ""

    # -- training --------------------------------------------------------------------------------------------
    def fit_weights(self, y: np.ndarray, enabled: bool) -> None:
        """Derive loss weights from the training part of a fold (never from validation or test)."""
        self.weights = None

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def outputs(self, logits: Tensor) -> Tensor:
        """Logits -> what the predictions table stores (probabilities, or risk)."""
        raise NotImplementedError

    def calibration_loss(self, logits: Tensor, y: Tensor) -> Tensor | None:
        """The unweighted proper scoring loss that post-hoc calibration minimises (`mil.training.calibrate`),
        or None where outputs are not probabilities (survival risks: nothing to calibrate)."""
        return None

    def metric(self, y: np.ndarray, out: np.ndarray) -> float:
        """The main metric on targets and outputs; NaN where undefined (e.g. one class only)."""
        raise NotImplementedError

    def logit_basis(self) -> np.ndarray:
        """n_outputs x J: the directions of a model's logits that carry its prediction (logits @ basis), for a
        linear model fitted on them (`mil.training.fusion.stack`). Identity; softmax kinds drop the shift
        that changes no probability."""
        return np.eye(self.n_outputs)

    def strata(self, y: np.ndarray) -> np.ndarray:
        """One label per patient for stratified splitting."""
        raise NotImplementedError

    def sample_weights(self, y: np.ndarray) -> np.ndarray | None:
        """Per-patient draw weights for balanced sampling, or None where it does not apply."""
        return None

    def head_target(self, y: Tensor) -> Tensor | None:
        """Targets handed to the head's forward (CLAM's instance clustering needs class indices), or None."""
        return None

    def baseline_model(self, c: float) -> LinearBaselineModel | None:
        """The regularised linear model the baselines fit on patient-level features (`mil.baselines.linear`),
        C = inverse penalty; it takes this kind's targets and predicts what `outputs` gives. None: the kind
        has no baseline, and runs say so instead of fitting one."""
        return None

    # -- the predictions table (`mil.evaluate.predictions`) ----------------------------------------------------
    def truth_columns(self) -> list[str]:
        raise NotImplementedError

    def prediction_columns(self) -> list[str]:
        raise NotImplementedError

    def text_columns(self) -> list[str]:
        """Columns holding names (read as text, compared exactly); all others are numbers."""
        return []

    def columns(self) -> list[str]:
        return ["patient_id", "fold", *self.truth_columns(), *self.prediction_columns()]

    def target_map(self) -> dict[str, str]:
        """Labels-CSV column -> predictions-table truth column."""
        return dict(zip(self.spec.label_columns(), self.truth_columns(), strict=True))

    def frame(
        self, patients: list[str], fold: int | None, y: np.ndarray | None, out: np.ndarray
    ) -> pd.DataFrame:
        """Rows of the predictions table; y None = truth unknown."""
        raise NotImplementedError

    def check_table(self, table: pd.DataFrame, source: str) -> None:
        """Kind rules on a table whose columns are already text or numbers (classes known, 0/1, ...)."""

    def check_new_truth(self, table: pd.DataFrame, source: str) -> None:
        """Rules on truth just read from a labels CSV for the evaluated patients (`attach_labels`)."""

    # -- evaluation and display ------------------------------------------------------------------------------
    def metric_block(self, df: pd.DataFrame, evaluate: EvaluateConfig) -> dict[str, Any]:
        """Metrics of one block of the table (a fold, or all rows), JSON-ready (keys: `mil.evaluate`)."""
        raise NotImplementedError

    def reliability(self, df: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, 0/1 outcomes, probabilities) series whose calibration `mil.evaluate.calibration` scores;
        [] where outputs are not probabilities."""
        return []

    def figures(self, df: pd.DataFrame) -> list[tuple[str, Figure]]:
        """(file name, figure) for each of `plots`, drawn from the pooled table."""
        return []

    def paired_metric(self, df: pd.DataFrame) -> PairedMetric | None:
        """The headline metric of a table as a function of bootstrap weights, with the strata of the draws
        `metric_block` uses for its CI, so a comparison resamples exactly as the metrics did. None: this kind
        cannot be compared (`mil.evaluate.compare` then reports why)."""
        return None

    def comparison_figure(self, tables: dict[str, pd.DataFrame]) -> Figure | None:
        """One figure with every table's curves (model name -> predictions of the same patients): ROC curves
        on one plot, or each model's Kaplan-Meier split side by side. None: nothing to draw."""
        return None

    def summary(self, block: dict[str, Any]) -> str:
        """The one-line headline of a metrics block: "macro AUC 0.812 (95% CI 0.700-0.900)"."""
        return f"{self.metric_label} {format_ci(block.get(self.metric_name) or {})}"

    def headline_rows(self, block: dict[str, Any]) -> list[tuple[str, str, str]]:
        """(metric, estimate, interval) rows of the headline metrics, for the evaluate table and the report."""
        return [(key, *ci_cells(block[key])) for key in self.headline if key in block]

    def detail_rows(self, block: dict[str, Any]) -> list[tuple[str, str, str]]:
        """Further (metric, estimate, interval) rows of the pooled block for the evaluate table."""
        return []

    def report_html(self, block: dict[str, Any], level: int) -> str:
        """Kind-specific HTML after the headline table of the report (per-class table, risk groups)."""
        return ""

    # -- cohort explanations (`mil.explain.cohort`, `mil report`) ----------------------------------------------
    def output_names(self) -> list[str]:
        """A name per head output: classes, labels, or e.g. ["risk"]."""
        return list(self.spec.classes)

    def group(self, row: pd.Series | None, prediction: np.ndarray) -> tuple[set[str], str]:
        """Output names one patient belongs to, from its predictions row (truth) where known, else from the
        ensemble's prediction: (names, "truth" | "predicted")."""
        return set(), "predicted"

    def cohort_groups(
        self, outputs: dict[str, np.ndarray], rows: dict[str, pd.Series], off_task: set[str]
    ) -> dict[str, tuple[set[str], str]]:
        """patient -> (output names it belongs to, how the report shows it). Patients in `off_task` (listed
        with an empty target) belong to none: a predicted class would be a guess outside the task."""
        grouped = {}
        for patient, prediction in outputs.items():
            if patient in off_task:
                grouped[patient] = (set(), "(no label)")
                continue
            names, how = self.group(rows.get(patient), prediction)
            grouped[patient] = (
                names,
                ", ".join(sorted(names)) + (" (predicted)" if how == "predicted" else ""),
            )
        return grouped


def require_columns(table: pd.DataFrame, cols: list[str], source: str) -> list[str]:
    """`cols` if the labels table has them all, else a one-line InputError naming the first absent one."""
    absent = [c for c in cols if c not in table.columns]
    if absent:
        raise InputError(
            f"{source}: no column {absent[0]!r} (columns: {', '.join(table.columns[:12])}); "
            "fix --target / train.target or the CSV header"
        )
    return cols


def median_split(
    outputs: dict[str, np.ndarray], off_task: set[str], name: str, shown: tuple[str, str]
) -> dict[str, tuple[set[str], str]]:
    """Single-output kinds (no classes): patients above the median predicted output form group `name`,
    shown as shown[0] (above) or shown[1]; patients in `off_task` are left out."""
    values = {p: float(out[0]) for p, out in outputs.items()}
    cut = float(np.median(list(values.values())))
    return {
        p: ({name}, f"{shown[0]} (predicted)") if v > cut else (set(), f"{shown[1]} (predicted)")
        for p, v in values.items()
        if p not in off_task
    }


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """AUROC by the evaluation module's rank formula (one AUC in `mil`); NaN when only one class is present
    (a small validation fold can lack a class). Cheap enough to run every epoch, unlike sklearn's checks."""
    from mil.evaluate.classification import auc_weighted

    y = np.asarray(y).astype(bool)
    return float(auc_weighted(y, np.asarray(score, dtype=float), np.ones((1, len(y))))[0])


def mean_auc(y_onehot: np.ndarray, scores: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the columns where both classes occur (NaN if none)."""
    aucs = [binary_auc(y_onehot[:, c], scores[:, c]) for c in range(y_onehot.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")
