"""The one reading of a `device` setting, for the encoder (`extract.device`) and the heads (`train.device`).

`auto` takes the fastest device present: CUDA, else Apple's MPS, else the CPU. An explicit device that is not
here (`cuda` on a machine without a GPU, `cuda:3` on a 2-GPU machine, `mps` off a Mac) is a `ConfigError`
naming the setting, never a silent fall back to the CPU: a run asked to use a GPU that quietly takes ten times
longer is a worse surprise than a one-line error. torch is imported on call, so reading a config stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str, key: str = "device") -> torch.device:
    """`name` ("auto", "cpu", "cuda", "cuda:N", "mps") as a torch.device that exists here; `key` is the
    setting named in the error (e.g. "train.device")."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"{key} {name!r}: {exc}; use {CHOICES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key} {name!r}: CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{key} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                f"use cuda:0..cuda:{torch.cuda.device_count() - 1} or auto"
            )
    elif device.type == "mps" and not _mps_available():
        raise ConfigError(f"{key} {name!r}: MPS is not available here; use --device cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key} {name!r}: not a device mil runs on; use {CHOICES}")
    return device


def _mps_available() -> bool:
    import torch

    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


__all__ = ["CHOICES", "resolve_device"]
