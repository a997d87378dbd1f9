"""Weights files: where to find them, their sha256, reading them, and a strict load that names every bad key.

Resolution order for a named encoder (`resolve_weights`): an explicit path; the literal "random" (loud, recorded);
the expected file name in `$MIL_WEIGHTS_DIR`, then `~/.cache/mil/weights`; then the Hugging Face hub, but only
when it answers within a few seconds. Offline, the hub step fails at once with a message that says which file to
download and where to put it, instead of hanging in huggingface_hub's retry loop (about 25 s per file here).

The sha256 names the file, not the model: DinoBloom-S.pth from Zenodo and the hub mirror's model.safetensors
hold the same weights under different digests, so a bag store extracted with one refuses bags from the other.

torch, safetensors and huggingface_hub are imported inside the functions that need them, so importing the
encoder registry stays cheap and never touches the network.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from features.core.errors import InputError

if TYPE_CHECKING:
    import torch

RANDOM = "random"
WEIGHTS_DIR_ENV = "MIL_WEIGHTS_DIR"
HUB_PROBE_TIMEOUT_S = 3.0


class RandomWeightsWarning(UserWarning):
    """Raised (as a warning) every time an encoder is built with random weights; the CLI shows it in red."""


@dataclass(frozen=True)
class WeightsSource:
    """Where an encoder's default weights come from, for the lookup and for the error that says what to fetch."""

    filename: str  # expected file name in $MIL_WEIGHTS_DIR or ~/.cache/mil/weights
    url: str  # where a user downloads it by hand
    hub_repo: str | None = None  # Hugging Face repo with the same weights (possibly in timm layout)
    hub_filename: str = "model.safetensors"


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path | None  # None for random weights
    sha256: str  # "random" for random weights
    origin: str  # "path", "weights-dir", "hub" or "random"


def search_dirs() -> list[Path]:
    """Folders searched for a named weights file, in order."""
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    dirs.append(Path.home() / ".cache" / "mil" / "weights")
    return dirs


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    """sha256 of a file read in 4 MiB chunks (a ViT-G file is 4.5 GB); cached per (path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            while block := fh.read(chunk_bytes):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """A checkpoint as a (possibly nested) dict: `.safetensors` via safetensors, anything else via torch.load.

    torch.load runs with `weights_only=True`: a checkpoint is data, and a pickle that needs code to load is
    refused rather than executed.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"weights file {p} does not exist; pass an existing file with --weights")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(p), device="cpu"))
        import torch

        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated download or a foreign format: say which file
        raise InputError(
            f"weights file {p} cannot be read ({type(err).__name__}: {err}); re-download it"
        ) from err
    if not isinstance(obj, dict):
        raise InputError(f"weights file {p} holds a {type(obj).__name__}, not a state dict")
    return obj


def _hub_reachable(timeout_s: float) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "MIL_OFFLINE")
    )


def hub_download(repo_id: str, filename: str, missing_hint: str) -> Path:
    """A file from the Hugging Face hub (or its local cache). Never hangs offline: see the module docstring."""
    from huggingface_hub import hf_hub_download

    try:  # an earlier download in the hub cache works offline
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except Exception:
        pass
    if _offline():
        raise InputError(f"{missing_hint} (HF_HUB_OFFLINE is set, so the hub {repo_id} was not tried)")
    if not _hub_reachable(HUB_PROBE_TIMEOUT_S):
        raise InputError(f"{missing_hint} (the Hugging Face hub is unreachable from this machine)")
    try:
        return Path(hf_hub_download(repo_id, filename, etag_timeout=10))
    except Exception as err:
        raise InputError(
            f"{missing_hint} (download of {repo_id}/{filename} failed: {type(err).__name__})"
        ) from err


def warn_random(name: str) -> None:
    warnings.warn(
        f"{name} uses RANDOM weights: embeddings carry no learned features; use only for tests and timing",
        RandomWeightsWarning,
        stacklevel=3,
    )


def resolve_weights(name: str, weights: str | None, source: WeightsSource | None) -> ResolvedWeights:
    """Turn the user's `weights` argument into a file (or explicit random weights) and its sha256."""
    if weights == RANDOM:
        warn_random(name)
        return ResolvedWeights(None, RANDOM, "random")
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(f"{name}: weights file {path} does not exist; check the --weights path")
        return ResolvedWeights(path.resolve(), sha256_file(path), "path")
    if source is None:
        raise InputError(f"{name} needs weights: pass --weights PATH (or --weights random for a test run)")
    for folder in search_dirs():
        if (folder / source.filename).is_file():
            path = (folder / source.filename).resolve()
            return ResolvedWeights(path, sha256_file(path), "weights-dir")
    hint = (
        f"{name} needs weights: download {source.filename} from {source.url} and pass --weights PATH, "
        f"or put it in ${WEIGHTS_DIR_ENV} or ~/.cache/mil/weights"
    )
    if source.hub_repo is None:
        raise InputError(hint)
    path = hub_download(source.hub_repo, source.hub_filename, hint)
    return ResolvedWeights(path, sha256_file(path), "hub")


def _listing(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def check_state_dict(model: torch.nn.Module, state: dict[str, Any], origin: str) -> None:
    """Raise one InputError listing missing keys, unexpected keys and shape mismatches (works on meta tensors).

    Done before `load_state_dict(strict=True)` because torch's own message spans many lines and stops at the
    first kind of problem; ours names all three kinds in one line with the file.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listing(shapes, 3)}")
    if problems:
        raise InputError(f"{origin} does not match the model; " + "; ".join(problems))


def load_strict(model: torch.nn.Module, state: dict[str, Any], origin: str) -> None:
    check_state_dict(model, state, origin)
    model.load_state_dict(state, strict=True)
