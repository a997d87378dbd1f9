"""Shared by the MIL benchmarks: fitting our heads through the trainer's own fit function, torchmil's ABMIL
through its own Trainer, the same folds for both, and the JSON record every script writes with `--json`.

Our side is `mil.training.fit.fit_fold` + `mil.training.fit.infer` under `mil.training.fit.seeded`, exactly what `mil train` runs per fold
(`mil.training.jobs.fit_job`) minus the checkpoint and CSV writing, on a `mil.training.data.BagSet` built in memory. Folds
come from `mil.cohort.splits.make_splits` (stratified, seeded, with an inner validation part) and are handed to every
competitor unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from features.core.device import resolve_device
from features.core.io import json_default
from features.core.versions import versions as core_versions
from mil.cohort.splits import Splits
from mil.config import TrainConfig
from mil.heads import create_head
from mil.tasks import Task, TaskSpec, create_task
from mil.training.data import BagSet
from mil.training.fit import FitSetup, eval_batch_instances, fit_fold, infer, seeded
from mil.training.rundir import git_commit

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"  # git-ignored cache (downloaded wheels)
BINARY = TaskSpec(kind="classification", target="label", classes=["0", "1"])


def require(module: str, pip_spec: str):
    """Import an optional benchmark dependency or stop with the install command (the `bench` extra)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(
            f"this benchmark needs {module!r}: pip install '{pip_spec}' (or pip install -e '.[bench]')"
        ) from None


def has_module(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def versions() -> dict[str, Any]:
    """The run's packages (`features.core.versions`, as every mil run records them), the competitors' and
    the machine's threads: wall times depend on them."""
    out: dict[str, Any] = {
        **core_versions(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    for name in ("torchmil", "mlxtend"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            out[name] = None
    out["git_commit"] = git_commit(ROOT)
    return out


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    """The script's numbers plus the command line, versions and load average (wall time depends on load)."""
    if path is None:
        return
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "versions": versions(),
        "load_average": os.getloadavg(),
        **payload,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1, default=json_default) + "\n")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def bagset_from_list(bags: Sequence[np.ndarray], y: np.ndarray, ids: Sequence[str] | None = None) -> BagSet:
    """One flat float32 tensor with offsets (the layout `mil.training.data.load_bags` builds from a store)."""
    sizes = np.array([len(b) for b in bags], dtype=np.int64)
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)]))
    flat = torch.from_numpy(np.concatenate(bags).astype(np.float32, copy=False))
    ids = list(ids) if ids is not None else [f"B{i:05d}" for i in range(len(bags))]
    slides = [[(pid, int(n))] for pid, n in zip(ids, sizes, strict=True)]
    return BagSet(ids, flat, offsets, torch.as_tensor(np.asarray(y, dtype=np.float32)), slides)


def fold_positions(
    splits: Splits, patients: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(train, val, test) row positions per fold, in the order of `patients`."""
    pos = {p: i for i, p in enumerate(patients)}
    return [
        tuple(np.array([pos[p] for p in part], dtype=np.int64) for part in (f.train, f.val, f.test))
        for f in splits.folds
    ]


def splits_digest(folds: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> str:
    """A short hash of the fold assignment, printed by every competitor to show they saw the same folds."""
    h = hashlib.sha256()
    for part in (p for fold in folds for p in fold):
        h.update(np.sort(part).tobytes() + b"|")
    return h.hexdigest()[:12]


@dataclass
class FitResult:
    probs: np.ndarray  # test bags x 2, in the order of the test index
    best_epoch: int
    epochs_run: int


def fit_ours(
    head: str,
    params: dict[str, Any],
    bags: BagSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    test_idx: np.ndarray,
    config: TrainConfig,
    seed: int,
    task: Task | None = None,
) -> FitResult:
    """One fold with the library: create_head + fit_fold (early stopping on `val_idx`) + infer on test."""
    task = task or create_task(BINARY)
    device = resolve_device(config.device)
    with seeded(seed, device):
        model = create_head(head, bags.dim, task.n_outputs, **params)
        fit = fit_fold(model, task, bags, train_idx, val_idx, config, FitSetup(device, seed))
    probs = task.outputs(infer(model, bags, test_idx, device, eval_batch_instances(config, device))).numpy()
    return FitResult(probs, fit.best_epoch, len(fit.history))


class TorchmilBags(torch.utils.data.Dataset):
    """torchmil's bag format (a TensorDict with X and Y per bag), as views into one flat tensor (no copies)."""

    def __init__(self, bags: BagSet, index: np.ndarray):
        self.bags, self.index = bags, np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        from tensordict import TensorDict

        b = int(self.index[i])
        s, e = int(self.bags.offsets[b]), int(self.bags.offsets[b + 1])
        return TensorDict({"X": self.bags.features[s:e], "Y": self.bags.y[b].long()})


def torchmil_abmil(in_dim: int, hidden_dim: int, attention_dim: int, dropout: float, gated: bool = False):
    """torchmil's ABMIL with the same embedding as ours (Linear -> ReLU -> Dropout), so both heads have the
    same layers and widths: embedding in_dim -> hidden_dim, tanh attention hidden_dim -> attention_dim -> 1,
    linear classifier (torchmil: one logit + BCE; ours: two logits + softmax CE, the same model)."""
    from torch import nn
    from torchmil.models import ABMIL

    feat_ext = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
    return ABMIL(in_shape=(in_dim,), att_dim=attention_dim, gated=gated, feat_ext=feat_ext)


def fit_torchmil(
    model_factory,
    bags: BagSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    test_idx: np.ndarray,
    config: TrainConfig,
    seed: int,
) -> FitResult:
    """One fold with torchmil as its docs show: DataLoader + `collate_fn`, `Trainer` with early stopping on
    the validation loss and best-weight keeping, then the best model predicts the test bags (no_grad, eval)."""
    import torchmetrics
    from torch.utils.data import DataLoader
    from torchmil.data import collate_fn
    from torchmil.utils import Trainer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_factory()
        make = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        optimizer = make(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(seed)
        train = DataLoader(
            TorchmilBags(bags, train_idx),
            batch_size=config.batch_size,
            shuffle=True,
            collate_fn=collate_fn,
            generator=generator,
        )
        val = DataLoader(TorchmilBags(bags, val_idx), batch_size=config.batch_size, collate_fn=collate_fn)
        trainer = Trainer(
            model,
            optimizer,
            metrics_dict={"auroc": torchmetrics.AUROC(task="binary")},
            obj_metric="loss",
            obj_metric_mode="min",
            device=str(resolve_device(config.device)),
            early_stop_patience=config.patience,
            disable_pbar=True,
            verbose=False,
        )
        epochs = _count_epochs(trainer)
        trainer.train(config.epochs, train, val)
        best = trainer.get_best_model().eval()
        test = DataLoader(TorchmilBags(bags, test_idx), batch_size=config.batch_size, collate_fn=collate_fn)
        logits = []
        with torch.no_grad():
            for batch in test:
                batch = batch.to(trainer.device)
                logits.append(best(batch["X"], batch["mask"]).reshape(-1).cpu())
    p1 = torch.sigmoid(torch.cat(logits)).numpy()
    return FitResult(np.stack([1 - p1, p1], axis=1), -1, epochs["n"])


def _count_epochs(trainer) -> dict[str, int]:
    """Count the epochs torchmil's Trainer runs (it keeps no history) by wrapping its validation loop."""
    counter = {"n": 0}
    loop = trainer._shared_loop

    def counted(dataloader, epoch=0, mode="train"):
        if mode == "val":
            counter["n"] += 1
        return loop(dataloader, epoch=epoch, mode=mode)

    trainer._shared_loop = counted
    return counter


class Timer:
    """Wall seconds and CPU seconds (all threads of this process); on a shared machine the CPU time is the
    steadier number, the wall time the one a user waits for."""

    def __enter__(self) -> Timer:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
