"""The labelled cells of a store: embeddings, standard class codes and patients, and an account of the rest.

Each stored slide the labels name is read once; its labels are placed (`mil.cells.join`), mapped through the
vocabulary, and the labelled rows kept. Everything that does not end in training is counted in the
`LabelAccount` (one line each on the CLI, all of it in metrics.json): stored cells without a label, label
names the vocabulary does not know, classes under `min_cells_per_class`, label rows that reached no stored
cell, slides the labels name but the store lacks. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from features.bagstore import BagMeta, BagStore
from features.core.errors import InputError
from mil.cells.join import UNLABELLED, place_labels
from mil.cells.vocabulary import Vocabulary, own_vocabulary
from mil.config import CellsConfig


@dataclass
class LabelAccount:
    """Where every label and every stored cell of the labelled slides went."""

    source: str
    kind: str  # "folders" | "csv" | "synth"
    vocabulary: str
    slides: int = 0  # stored slides with labels
    stored_cells: int = 0  # cells of those slides
    used: int = 0  # labelled cells in training
    unlabelled: int = 0  # stored cells no label reached: counted, not trained on
    unmapped: dict[str, int] = field(default_factory=dict)  # label name not in the vocabulary -> cells
    small_classes: dict[str, int] = field(default_factory=dict)  # class under min_cells_per_class -> cells
    rows_unplaced: int = 0  # label rows of stored slides that reached no stored cell
    slides_not_stored: list[str] = field(default_factory=list)
    slides_unlabelled: int = 0  # stored slides the labels never name
    per_class: dict[str, int] = field(default_factory=dict)

    def lines(self, min_cells: int) -> list[str]:
        """One line per thing left out (the CLI prints them; nothing here is silent)."""
        out = []
        if self.unlabelled:
            out.append(
                f"{self.unlabelled} stored cells of the labelled slides have no label: counted as unlabelled, not trained on"
            )
        for name, n in sorted(self.unmapped.items(), key=lambda kv: -kv[1]):
            out.append(
                f"label {name!r} ({n} cells) is not in vocabulary {self.vocabulary}: left out (add it to the vocabulary's aliases)"
            )
        for name, n in sorted(self.small_classes.items(), key=lambda kv: -kv[1]):
            out.append(
                f"class {name} has {n} labelled cells (< {min_cells}, cells.min_cells_per_class): left out"
            )
        if self.rows_unplaced:
            out.append(
                f"{self.rows_unplaced} label rows matched no stored cell (not detected, outside the counting regions, or not in the bag)"
            )
        if self.slides_not_stored:
            shown = ", ".join(self.slides_not_stored[:3]) + (
                " ..." if len(self.slides_not_stored) > 3 else ""
            )
            out.append(f"{len(self.slides_not_stored)} labelled slides are not in the store: {shown}")
        if self.slides_unlabelled:
            out.append(f"{self.slides_unlabelled} stored slides have no labels: not used")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LabelledCells:
    """Training data: N x D embeddings, class codes into `classes`, and each cell's patient and slide."""

    features: np.ndarray
    y: np.ndarray
    classes: list[str]
    patients: np.ndarray
    slides: np.ndarray
    instances: np.ndarray
    vocabulary: Vocabulary
    account: LabelAccount


def collect_labelled(
    store: BagStore,
    table: pd.DataFrame,
    kind: str,
    source: str,
    vocabulary: Vocabulary | None,
    config: CellsConfig,
    progress=None,
) -> LabelledCells:
    """The labelled cells of the slides `table` names, mapped through `vocabulary` (None: the labels' own
    names); every cell or label row left out is counted in the returned account."""
    emit = progress or (lambda event, **info: None)
    metas = {m.slide_id: m for m in store.metas()}
    named = set(table["slide_id"].astype(str))
    wanted = [s for s in sorted(metas) if s in named]
    account = LabelAccount(source, kind, vocabulary.name if vocabulary else "own names")
    account.slides_not_stored = sorted(named - set(metas))
    account.slides_unlabelled = len(metas) - len(wanted)
    if not wanted:
        example = ", ".join(sorted(named)[:3])
        raise InputError(
            f"{source}: names no slide of {store.path} (labels name e.g. {example}; the store holds e.g. "
            f"{', '.join(sorted(metas)[:3])}): the slide_id must be the store's (see `mil bags info`)"
        )
    by_slide = dict(tuple(table.groupby(table["slide_id"].astype(str), sort=False)))
    parts: list[_SlideLabels] = []
    for i, slide in enumerate(wanted):
        parts.append(_slide_labels(store, metas[slide], by_slide[slide], account, config))
        emit("labels", done=i + 1, total=len(wanted))
    account.slides = len(wanted)
    return _map_classes(parts, vocabulary, account, config)


@dataclass
class _SlideLabels:
    """One slide's labelled cells: their rows in the bag, embeddings and label names as written."""

    slide: str
    patient: str
    rows: np.ndarray
    features: np.ndarray
    names: np.ndarray


def _slide_labels(
    store: BagStore, meta: BagMeta, rows: pd.DataFrame, account: LabelAccount, config: CellsConfig
) -> _SlideLabels:
    """One slide read once, its label rows placed on its stored cells."""
    bag = store.read(meta.slide_id, obs=False)
    names, missed = place_labels(rows, bag, meta, config.match_radius_um)
    account.rows_unplaced += missed
    account.stored_cells += len(names)
    labelled = np.flatnonzero(names != UNLABELLED)
    account.unlabelled += len(names) - len(labelled)
    return _SlideLabels(meta.slide_id, meta.patient_id, labelled, bag.features[labelled], names[labelled])


def _map_classes(
    parts: list[_SlideLabels], vocabulary: Vocabulary | None, account: LabelAccount, config: CellsConfig
) -> LabelledCells:
    """Label names to standard classes; names the vocabulary lacks and classes under `min_cells_per_class`
    are left out and counted."""
    raw = np.concatenate([p.names for p in parts]) if parts else np.zeros(0, object)
    if vocabulary is None:
        vocabulary = own_vocabulary(sorted({str(n) for n in raw}))
    mapped = vocabulary.lookup(raw)
    unknown = pd.isna(mapped)
    account.unmapped = _tally(raw[unknown])
    counts = _tally(mapped[~unknown])
    account.small_classes = {c: n for c, n in counts.items() if n < config.min_cells_per_class}
    classes = [c for c in vocabulary.classes if counts.get(c, 0) >= config.min_cells_per_class]
    keep = ~unknown & np.isin(mapped.astype(str), classes)
    account.used = int(keep.sum())
    account.per_class = {c: counts[c] for c in classes}
    lengths = [len(p.names) for p in parts]
    features = np.concatenate([p.features for p in parts]).astype(np.float32, copy=False)
    return LabelledCells(
        features=features[keep],
        y=pd.Categorical(mapped[keep].astype(str), categories=classes).codes.astype(np.int64),
        classes=classes,
        patients=np.repeat([p.patient for p in parts], lengths).astype(object)[keep],
        slides=np.repeat([p.slide for p in parts], lengths).astype(object)[keep],
        instances=np.concatenate([p.rows for p in parts])[keep],
        vocabulary=vocabulary,
        account=account,
    )


def _tally(names: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(np.asarray(names, dtype=str), return_counts=True)
    return {str(v): int(n) for v, n in zip(values, counts, strict=True)}
