"""What every encoder offers, and the one wrapper that runs any torch backbone on uint8 crops.

The pipeline hands an encoder a batch of crops already resized to `input_px` (a fixed physical size in µm) and
gets `B x dim` float32 back. Normalisation happens on the device, after the uint8 batch is moved there, so the
host-to-device copy is 4x smaller than for float input and no per-image transform runs in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from features.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@runtime_checkable
class Encoder(Protocol):
    name: str  # registry name, e.g. "dinobloom-s"
    dim: int  # embedding size
    input_px: int  # crops arrive as input_px x input_px RGB
    weights_sha256: str  # sha256 of the weights file; "random" if explicitly random; "none" if weight-free
    weights_path: str | None

    def encode(self, images: Any) -> np.ndarray:
        """B x input_px x input_px x 3 uint8 RGB (numpy or torch) -> B x dim float32 numpy."""
        ...


def check_batch(images: Any, input_px: int, name: str) -> None:
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[1:] != (input_px, input_px, 3):
        raise InputError(f"{name} expects B x {input_px} x {input_px} x 3 uint8 crops, got shape {shape}")
    if str(images.dtype) not in ("uint8", "torch.uint8"):
        raise InputError(f"{name} expects uint8 crops, got dtype {images.dtype}")


@dataclass(frozen=True)
class Precision:
    """How a torch encoder runs: `weights_dtype` is what the model and input are cast to, `autocast_dtype` (if
    any) is handed to torch.autocast. `label` is recorded with the features, because bf16 and fp32 embeddings
    of the same cells differ in the third decimal."""

    label: str
    weights_dtype: torch.dtype | None  # None: not a torch encoder (cytomorph computes in numpy float32)
    autocast_dtype: torch.dtype | None


def resolve_precision(precision: str, device: str) -> Precision:
    """auto: bf16 autocast on CUDA (fp16 where the card has no bf16), fp32 on CPU; fp32; bf16: model and input
    cast to bf16; fp16: CUDA autocast only (CPU fp16 matmuls are slow and lose range).

    bf16 on a CPU pays off only with AVX512-BF16 or AMX; on an AVX2-only CPU it is emulated and a ViT runs
    ~6x slower than fp32 (measured on the development machine), which is why auto stays fp32 on CPU.
    """
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    cuda = torch.device(device).type == "cuda"
    if precision == "fp32" or (precision == "auto" and not cuda):
        return Precision("fp32", torch.float32, None)
    if precision == "bf16":
        return Precision("bf16", torch.bfloat16, None)
    if precision == "fp16":
        if not cuda:
            raise ConfigError(f"precision fp16 needs a CUDA device (got {device!r}); use bf16 or fp32 on CPU")
        return Precision("autocast-fp16", torch.float32, torch.float16)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Precision(f"autocast-{'bf16' if dtype == torch.bfloat16 else 'fp16'}", torch.float32, dtype)


class TorchEncoder:
    """A torch module mapping a normalised B x 3 x H x W batch to B x dim features, behind the Encoder API."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        *,
        dim: int,
        input_px: int,
        weights_sha256: str,
        weights_path: str | None,
        device: str = "cpu",
        precision: str = "auto",
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ):
        import torch

        self.name, self.dim, self.input_px = name, dim, input_px
        self.weights_sha256, self.weights_path = weights_sha256, weights_path
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, device)
        self.model = model.eval().requires_grad_(False).to(self.device, self.precision.weights_dtype)
        # x / 255 then (x - mean) / std folded into one multiply-add: x * scale + shift
        std_t = torch.tensor(std, dtype=torch.float32)
        self._scale = (1.0 / (255.0 * std_t)).view(1, 3, 1, 1).to(self.device)
        self._shift = (-torch.tensor(mean, dtype=torch.float32) / std_t).view(1, 3, 1, 1).to(self.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, dim={self.dim}, {self.precision.label}, {self.device})"

    def encode(self, images: Any) -> np.ndarray:
        import torch

        check_batch(images, self.input_px, self.name)
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
            x = (x * self._scale + self._shift).to(self.precision.weights_dtype)
            autocast = self.precision.autocast_dtype
            with torch.autocast(self.device.type, dtype=autocast, enabled=autocast is not None):
                out = self.model(x)
            return out.float().cpu().numpy()
