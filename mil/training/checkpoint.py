"""Fold checkpoints: everything needed to rebuild a head and know what it predicts, in plain types.

`model.pt` holds only str / int / float / list / dict and tensors, so it loads with
`torch.load(..., weights_only=True)` (no pickled classes, no code execution from a file someone sent you).
The head is rebuilt from its registry name and params, then the state dict is loaded strictly: a checkpoint
whose keys do not fit the head is an error, never a partly random model.

A fold's ensemble is one file per member model (`model.pt`, `model.1.pt`, ...: `member` 0, 1, ... of
`members`, so a run missing one of them is told apart from a complete one: `mil.training.predict.load_run`); a
calibrated member records its temperature and bias (`calibration`) and is rebuilt behind the same
`CalibratedHead`, so its logits come out calibrated wherever it is used.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from features.bagstore import EncoderIdentity
from features.core.errors import InputError
from features.core.io import atomic_write
from mil.tasks import TaskSpec

FORMAT = "mil.fold_model/1"


@dataclass
class FoldModel:
    """One trained fold: the head (eval mode) and what it was trained on."""

    fold: int
    head: nn.Module
    head_name: str
    model_params: dict[str, Any]
    in_dim: int
    spec: TaskSpec
    encoder: EncoderIdentity
    best_epoch: int
    path: Path
    member: int = 0
    members: int | None = None  # how many members the fold wrote (None: written before checkpoints kept it)
    calibration: dict[str, Any] | None = None
    covariates: dict[str, Any] | None = (
        None  # the fold's CovariateEncoder.to_dict(), where the run fused them
    )


def save_checkpoint(
    path: Path,
    model: nn.Module,
    *,
    head_name: str,
    model_params: dict[str, Any],
    in_dim: int,
    spec: TaskSpec,
    encoder: EncoderIdentity,
    fold: int,
    best_epoch: int,
    seed: int,
    member: int = 0,
    members: int = 1,
    covariates: dict[str, Any] | None = None,
) -> None:
    from mil import __version__

    inner = model.head if covariates else model  # FusedHead is the outermost wrapper (see load_checkpoint)
    payload = {
        "format": FORMAT,
        "mil_version": __version__,
        "head": head_name,
        "model_params": dict(model_params),
        "in_dim": int(in_dim),
        "n_outputs": int(model.n_outputs),
        "task": spec.to_dict(),
        "encoder": asdict(encoder),
        "fold": int(fold),
        "best_epoch": int(best_epoch),
        "seed": int(seed),
        "standardized": bool(getattr(model, "standardized", False)),
        "member": int(member),
        "members": int(members),
        "prior": bool(_find(model, "prior_weight")),
        "calibration": inner.calibration().to_dict() if hasattr(inner, "calibration") else None,
        "covariates": covariates,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def _find(model: nn.Module, buffer: str) -> bool:
    """Whether `model` or a module it wraps holds `buffer` (PriorHead inside CalibratedHead)."""
    return any(name.split(".")[-1] == buffer for name, _ in model.named_buffers())


# What `load_checkpoint` reads unguarded: key -> the types it may hold (bool is an int, and is refused as one).
_REQUIRED: dict[str, tuple[type, ...]] = {
    "head": (str,),
    "model_params": (dict,),
    "in_dim": (int,),
    "n_outputs": (int,),
    "task": (dict,),
    "encoder": (dict,),
    "fold": (int,),
    "best_epoch": (int,),
    "state_dict": (dict,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "calibration": (dict, type(None)),
    "covariates": (dict, type(None)),
    "member": (int,),
    "members": (int,),
}


def _unreadable(exc: Exception) -> str:
    """Why torch could not load a file, in a few words of our own."""
    if isinstance(exc, pickle.UnpicklingError):
        return "it holds objects other than tensors and plain values"
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    if isinstance(exc, RuntimeError) and "zip archive" in str(exc):
        return "a damaged or cut-short torch file"
    return f"unreadable, {type(exc).__name__}"


def _check_payload(path: Path, payload: dict[str, Any]) -> None:
    """A checkpoint of the right format whose fields are missing or of the wrong type is damaged: one line."""
    for key, types in (_REQUIRED | _OPTIONAL).items():
        if key not in payload:
            if key in _REQUIRED:
                raise InputError(f"{path}: damaged mil checkpoint (no {key!r}); retrain or restore the run")
            continue
        value = payload[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise InputError(
                f"{path}: damaged mil checkpoint ({key!r} is a {type(value).__name__}); retrain or restore the run"
            )
    records = [("encoder", EncoderIdentity, payload["encoder"])]
    if payload.get("calibration") is not None:
        from mil.training.calibrate import Calibration

        records.append(("calibration", Calibration, payload["calibration"]))
    for key, kind, record in records:
        try:
            kind(**record)
        except TypeError:
            raise InputError(
                f"{path}: damaged mil checkpoint (its {key!r} record); retrain or restore the run"
            ) from None
    if payload.get("covariates") and not isinstance(payload["covariates"].get("names"), list):
        raise InputError(
            f"{path}: damaged mil checkpoint (covariates without names); retrain or restore the run"
        )


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> FoldModel:
    from mil.heads import create_head

    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it will refuse anyway
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(
            f"checkpoint {path} not found; is this a run folder written by `mil train`?"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file means the same to the user
        # torch's own message runs to many lines, with terminal colours and advice to load unsafely: not shown
        raise InputError(
            f"{path}: not a mil checkpoint ({_unreadable(exc)}); retrain or restore the run"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(
            f"{path}: checkpoint format {found!r}, this mil reads {FORMAT}; retrain with this version"
        )
    _check_payload(path, payload)
    spec = TaskSpec.from_dict(payload["task"], str(path))
    head = create_head(payload["head"], payload["in_dim"], payload["n_outputs"], **payload["model_params"])
    if payload.get("standardized", False):
        from mil.training.standardize import StandardizedHead

        dim = payload["in_dim"]
        head = StandardizedHead(head, torch.zeros(dim), torch.ones(dim))  # buffers come from the state dict
    if payload.get("prior", False):
        from mil.training.prior import PriorHead

        n_out, width = payload["n_outputs"], 5 * payload["in_dim"]
        zeros = torch.zeros
        head = PriorHead(head, zeros(width), torch.ones(width), zeros(n_out, width), zeros(n_out))
    calibration = payload.get("calibration")
    if calibration is not None:
        from mil.training.calibrate import CalibratedHead, Calibration

        head = CalibratedHead(head, Calibration(**calibration))  # buffers come from the state dict
    covariates = payload.get("covariates")
    if covariates:
        from mil.heads.fused import FusedHead

        head = FusedHead(head, len(covariates["names"]))
    try:
        head.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(
            f"{path}: weights do not fit head {payload['head']!r} ({first}); mil version mismatch?"
        ) from None
    head.to(device).eval()
    return FoldModel(
        fold=payload["fold"],
        head=head,
        head_name=payload["head"],
        model_params=payload["model_params"],
        in_dim=payload["in_dim"],
        spec=spec,
        encoder=EncoderIdentity(**payload["encoder"]),
        best_epoch=payload["best_epoch"],
        path=path,
        member=int(payload.get("member", 0)),
        members=payload.get("members"),
        calibration=calibration,
        covariates=covariates or None,
    )
