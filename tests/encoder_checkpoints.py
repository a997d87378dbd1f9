"""Checkpoints in the exact upstream layouts, and an independent DINOv2 forward over upstream key names.

The layouts are written out here from the upstream sources rather than derived from the loader's own mapping:
* DinoBloom / DINOv2 training checkpoint (`marrlab/DinoBloom`, STAMP's `dinobloom.py`): `{"teacher": {...}}` with
  `backbone.`-prefixed backbone keys incl. `mask_token`, plus `dino_head.` / `ibot_head.` DINOHead keys
  (`mlp.0/2/4` Linear layers, weight-normed `last_layer.weight_g` / `last_layer.weight_v`).
* Meta DINOv2 `dinov2_vit*14_pretrain.pth`: plain backbone keys incl. `mask_token`, 518 px pos_embed.
ViT-G uses DINOv2's fused SwiGLU (`mlp.w12`, `mlp.w3`) with hidden width (int(4 D * 2 / 3) + 7) // 8 * 8.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DINOV2_ARCH = {"s": (384, 12), "b": (768, 12), "l": (1024, 24), "g": (1536, 40)}  # dim, depth


def upstream_backbone_shapes(size: str, n_tokens: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a released DINOv2 backbone (block_chunks=0, no registers), from DINOv2's hyperparameters."""
    dim, depth = DINOV2_ARCH[size]
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, n_tokens, dim),
        "mask_token": (1, dim),
        "patch_embed.proj.weight": (dim, 3, 14, 14),
        "patch_embed.proj.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        shapes.update({p + n: (dim,) for n in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")})
        shapes.update({p + "ls1.gamma": (dim,), p + "ls2.gamma": (dim,)})
        shapes.update({p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,)})
        shapes.update({p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,)})
        if size == "g":
            hidden = (int(4 * dim * 2 / 3) + 7) // 8 * 8
            shapes.update({p + "mlp.w12.weight": (2 * hidden, dim), p + "mlp.w12.bias": (2 * hidden,)})
            shapes.update({p + "mlp.w3.weight": (dim, hidden), p + "mlp.w3.bias": (dim,)})
        else:
            shapes.update({p + "mlp.fc1.weight": (4 * dim, dim), p + "mlp.fc1.bias": (4 * dim,)})
            shapes.update({p + "mlp.fc2.weight": (dim, 4 * dim), p + "mlp.fc2.bias": (dim,)})
    return shapes


def dino_heads(
    dim: int, hidden: int = 32, bottleneck: int = 16, prototypes: int = 64
) -> dict[str, torch.Tensor]:
    """DINOHead keys for both heads (sizes shrunk: real ones are 2048 / 384 / 65536 and are dropped anyway)."""
    out = {}
    for head in ("dino_head", "ibot_head"):
        for j, (o, i) in enumerate([(hidden, dim), (hidden, hidden), (bottleneck, hidden)]):
            out[f"{head}.mlp.{2 * j}.weight"] = torch.randn(o, i)
            out[f"{head}.mlp.{2 * j}.bias"] = torch.randn(o)
        out[f"{head}.last_layer.weight_g"] = torch.ones(prototypes, 1)
        out[f"{head}.last_layer.weight_v"] = torch.randn(prototypes, bottleneck)
    return out


def timm_to_upstream_backbone(timm_state: dict[str, torch.Tensor], swiglu: bool) -> dict[str, torch.Tensor]:
    """A timm DINOv2 ViT state dict written back in released-DINOv2 names (the test's source model)."""
    out = {}
    for k, v in timm_state.items():
        if swiglu:
            k = k.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")
        out[k] = v.clone()
    out["mask_token"] = torch.zeros(1, timm_state["cls_token"].shape[-1])
    return out


def as_dinobloom_checkpoint(backbone: dict[str, torch.Tensor]) -> dict:
    dim = backbone["cls_token"].shape[-1]
    teacher = {f"backbone.{k}": v for k, v in backbone.items()}
    teacher.update(dino_heads(dim))
    return {"teacher": teacher}


def randomise_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter far from its init: layer-scale gammas start at 1e-5, which would hide any block error."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma") or ("norm" in name and name.endswith("weight")):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def dinov2_runtime_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """DINOv2's `interpolate_pos_encoding` for a square input (hub defaults: offset 0.1, no antialias)."""
    m = int(math.sqrt(pos_embed.shape[1] - 1))
    if m == grid:
        return pos_embed
    patch = pos_embed[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    sx = (grid + 0.1) / m
    patch = F.interpolate(patch, scale_factor=(sx, sx), mode="bicubic", antialias=False)
    return torch.cat([pos_embed[:, :1], patch.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """DINOv2's forward (NestedTensorBlock, `x_norm_clstoken`) written from its source over upstream keys."""
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14)
    t = t.flatten(2).transpose(1, 2)
    pos = dinov2_runtime_pos_embed(sd["pos_embed"], x.shape[-1] // 14)
    t = torch.cat([sd["cls_token"].expand(len(t), -1, -1), t], dim=1) + pos
    b, n, d = t.shape
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, n, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4)
        att = ((q * (d // num_heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        h = (att @ v).transpose(1, 2).reshape(b, n, d)
        t = t + sd[p + "ls1.gamma"] * F.linear(h, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(t, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        if p + "mlp.w12.weight" in sd:
            x1, x2 = F.linear(h, sd[p + "mlp.w12.weight"], sd[p + "mlp.w12.bias"]).chunk(2, dim=-1)
            h = F.linear(F.silu(x1) * x2, sd[p + "mlp.w3.weight"], sd[p + "mlp.w3.bias"])
        else:
            h = F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
            h = F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        t = t + sd[p + "ls2.gamma"] * h
    t = F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    return t[:, 0]


def imagenet_normalise(images_u8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (images_u8.permute(0, 3, 1, 2).float() / 255 - mean) / std
