"""Cell encoders: a crop of fixed physical size (resized to `input_px`) -> one embedding vector.

One registry (`ENCODERS`), one file per family: `dinov2.py` (dinobloom-s|b|l|g, dinov2-s|b|l|g), `timm_any.py`
(`timm:<name>`), `cytomorph.py` (handcrafted morphometry, no weights). Importing this package imports neither
torch nor timm and touches no file, network or GPU; builders import them when an encoder is created.
"""

from __future__ import annotations

from features.core.registry import Registry
from features.encoders.base import Encoder
from features.encoders.weights import RandomWeightsWarning

ENCODERS = Registry(
    "encoder",
    modules=("features.encoders.dinov2", "features.encoders.timm_any", "features.encoders.cytomorph"),
)


def create_encoder(
    name: str, weights: str | None = None, device: str = "cpu", precision: str = "auto"
) -> Encoder:
    """Build a registered encoder: `weights` is a file path, "random" (warned, recorded), or None (look in
    $MIL_WEIGHTS_DIR, ~/.cache/mil/weights, then the hub if reachable). precision: auto | fp32 | bf16 | fp16.

    An unknown name raises ConfigError listing the registered names; missing weights raise InputError saying
    which file to download and where to put it.
    """
    return ENCODERS.get(name).factory(name=name, weights=weights, device=device, precision=precision)


__all__ = ["ENCODERS", "Encoder", "RandomWeightsWarning", "create_encoder"]
