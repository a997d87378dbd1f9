"""DINOv2 ViTs (patch 14, no registers) at 224 px: DinoBloom (blood-cell fine-tuned) and Meta's originals.

The ViT comes from timm (`vit_{small,base,large,giant}_patch14_dinov2`, img_size=224), never from torch.hub,
so building needs no network. The embedding is the CLS token after the final LayerNorm, which is what DinoBloom's
own evaluation and STAMP use (`x_norm_clstoken` of the DINOv2 hub model). Three checkpoint layouts load strictly:

* DinoBloom (zenodo.org/records/10908163): `{"teacher": {"backbone.<key>": ..., "dino_head.*", "ibot_head.*"}}`;
  heads dropped, `backbone.` stripped, `mask_token` dropped (it only serves iBOT masking), 257-token pos_embed.
* Meta DINOv2 `*_pretrain.pth`: plain keys with `mask_token` and a 518 px pos_embed (1, 1370, D).
* timm layout (what `hf-hub:1aurent/*.dinobloom` and `timm/*_dinov2.lvd142m` ship): already renamed.

DINOv2 names vs timm: identical except ViT-G's fused SwiGLU (`mlp.w12` -> `mlp.fc1`, `mlp.w3` -> `mlp.fc2`;
timm's SwiGLUPacked computes silu(first half) * second half, as DINOv2's SwiGLUFFNFused does).
"""

from __future__ import annotations

import math
import re
from typing import Any

from features.core.errors import InputError
from features.encoders import ENCODERS
from features.encoders.base import TorchEncoder
from features.encoders.weights import (
    ResolvedWeights,
    WeightsSource,
    load_strict,
    read_state_dict,
    resolve_weights,
)

INPUT_PX = 224
PATCH_PX = 14
# size letter -> (timm architecture, embedding dim, DinoBloom/Meta file suffix)
SIZES = {
    "s": ("vit_small_patch14_dinov2", 384, "vits14"),
    "b": ("vit_base_patch14_dinov2", 768, "vitb14"),
    "l": ("vit_large_patch14_dinov2", 1024, "vitl14"),
    "g": ("vit_giant_patch14_dinov2", 1536, "vitg14"),
}
_HUB_ARCH = {"s": "small", "b": "base", "l": "large", "g": "giant"}


def dinobloom_source(size: str) -> WeightsSource:
    return WeightsSource(
        filename=f"DinoBloom-{size.upper()}.pth",
        url="https://zenodo.org/records/10908163",
        hub_repo=f"1aurent/vit_{_HUB_ARCH[size]}_patch14_224.dinobloom",
    )


def dinov2_source(size: str) -> WeightsSource:
    tag = SIZES[size][2]
    return WeightsSource(
        filename=f"dinov2_{tag}_pretrain.pth",
        url=f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{tag}/dinov2_{tag}_pretrain.pth",
        hub_repo=f"timm/{SIZES[size][0]}.lvd142m",
    )


def checkpoint_layout(state: dict[str, Any]) -> str:
    """'dinobloom' (DINOv2 training checkpoint), 'meta' (released DINOv2 backbone) or 'timm'."""
    if "teacher" in state:
        return "dinobloom"
    if "mask_token" in state:
        return "meta"
    return "timm"


def dinobloom_to_dinov2(state: dict[str, Any]) -> dict[str, Any]:
    """Teacher backbone of a DINOv2/DinoBloom training checkpoint, in released-DINOv2 key names."""
    teacher = state["teacher"]
    out, stray = {}, []
    for key, value in teacher.items():
        if key.startswith(("dino_head.", "ibot_head.")):
            continue  # self-distillation projection heads: not part of the backbone
        if not key.startswith("backbone."):
            stray.append(key)
            continue
        out[key.removeprefix("backbone.")] = value
    if stray:  # would otherwise be silently dropped; strict means strict
        out.update({f"teacher.{k}": teacher[k] for k in stray})
    return out


def resample_pos_embed(pos_embed: Any, grid: int) -> Any:
    """Resize a (1, 1 + M*M, D) table to (1, 1 + grid*grid, D) exactly as DINOv2 does at run time.

    DINOv2's `interpolate_pos_encoding` (hub models: bicubic, antialias off, interpolate_offset 0.1) scales by
    (grid + 0.1) / M rather than to a target size; doing the same once at load reproduces Meta's model fed 224
    px crops, which timm's size-based, antialiased resampling would not.
    """
    import torch
    import torch.nn.functional as F

    n_patch = pos_embed.shape[1] - 1
    m = int(round(math.sqrt(n_patch)))
    if m * m != n_patch:
        raise InputError(f"pos_embed with {n_patch} patch tokens is not a square grid")
    if m == grid:
        return pos_embed
    dim = pos_embed.shape[-1]
    patch = pos_embed[:, 1:].float().reshape(1, m, m, dim).permute(0, 3, 1, 2)
    scale = (grid + 0.1) / m
    patch = F.interpolate(patch, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)
    return torch.cat([pos_embed[:, :1], patch], dim=1)


def dinov2_to_timm(state: dict[str, Any], grid: int | None = None) -> dict[str, Any]:
    """Released-DINOv2 names -> timm names; `grid` resamples the position table (None: keep it as it is)."""
    out = {}
    for key, value in state.items():
        if key == "mask_token":
            continue
        key = re.sub(r"^(blocks\.\d+\.mlp\.)w12\.", r"\1fc1.", key)
        key = re.sub(r"^(blocks\.\d+\.mlp\.)w3\.", r"\1fc2.", key)
        out[key] = value
    if grid is not None and "pos_embed" in out:
        out["pos_embed"] = resample_pos_embed(out["pos_embed"], grid)
    return out


def build_vit(size: str, **overrides: Any) -> Any:
    """The timm ViT for one size at 224 px with no classifier (forward -> CLS token after the final norm)."""
    import timm

    kwargs = dict(pretrained=False, num_classes=0, img_size=INPUT_PX)
    return timm.create_model(SIZES[size][0], **{**kwargs, **overrides})


def to_timm_state(family: str, state: dict[str, Any], origin: str) -> dict[str, Any]:
    """Convert a checkpoint of any accepted layout for `family` ('dinobloom' or 'dinov2') to timm keys."""
    layout = checkpoint_layout(state)
    if family == "dinobloom" and layout == "meta":
        raise InputError(
            f"{origin} is a Meta DINOv2 checkpoint, not DinoBloom; use the dinov2-* encoder for it"
        )
    if family == "dinov2" and layout == "dinobloom":
        raise InputError(
            f"{origin} is a DINOv2 training checkpoint (DinoBloom?); use the dinobloom-* encoder"
        )
    if layout == "dinobloom":
        return dinov2_to_timm(dinobloom_to_dinov2(state))  # 224 px training crops: already 16 x 16 + 1 tokens
    # Meta's 518 px table is resampled to 224 px; DinoBloom tables are never resampled (a shape error instead)
    return dinov2_to_timm(state, grid=INPUT_PX // PATCH_PX if family == "dinov2" else None)


def create(family: str, size: str, weights: str | None, device: str, precision: str) -> TorchEncoder:
    name = f"{family}-{size}"
    source = dinobloom_source(size) if family == "dinobloom" else dinov2_source(size)
    resolved: ResolvedWeights = resolve_weights(name, weights, source)
    model = build_vit(size)
    if resolved.path is not None:
        origin = f"{name} weights {resolved.path}"
        load_strict(model, to_timm_state(family, read_state_dict(resolved.path), origin), origin)
    return TorchEncoder(
        name,
        model,
        dim=SIZES[size][1],
        input_px=INPUT_PX,
        weights_sha256=resolved.sha256,
        weights_path=None if resolved.path is None else str(resolved.path),
        device=device,
        precision=precision,
    )


def _register(family: str, size: str, summary: str) -> None:
    def factory(
        name: str = f"{family}-{size}",
        weights: str | None = None,
        device: str = "cpu",
        precision: str = "auto",
    ) -> TorchEncoder:
        return create(family, size, weights, device, precision)

    factory.__doc__ = summary
    ENCODERS.register(f"{family}-{size}", dim=SIZES[size][1], input_px=INPUT_PX)(factory)


for _size, _label in [("s", "ViT-S/14"), ("b", "ViT-B/14"), ("l", "ViT-L/14"), ("g", "ViT-G/14")]:
    _dim = SIZES[_size][1]
    _register(
        "dinobloom", _size, f"DinoBloom-{_size.upper()}: {_label} DINOv2 fine-tuned on blood cells, {_dim}-d"
    )
    _register("dinov2", _size, f"Meta DINOv2 {_label} (LVD-142M, no registers) at 224 px, {_dim}-d")
