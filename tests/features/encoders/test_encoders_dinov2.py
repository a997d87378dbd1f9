"""dinobloom-* / dinov2-*: upstream checkpoint layouts load strictly and give the source model's embeddings."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from features.core.errors import InputError
from features.encoders import create_encoder
from features.encoders.dinov2 import SIZES, build_vit, to_timm_state
from features.encoders.weights import check_state_dict
from tests.encoder_checkpoints import (
    as_dinobloom_checkpoint,
    dino_heads,
    imagenet_normalise,
    randomise_,
    reference_forward,
    timm_to_upstream_backbone,
    upstream_backbone_shapes,
)


@pytest.fixture(scope="module")
def vit_s() -> torch.nn.Module:
    return randomise_(build_vit("s"), seed=1).eval()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def dinobloom_file(vit_s, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "DinoBloom-S.pth"
    backbone = timm_to_upstream_backbone(vit_s.state_dict(), swiglu=False)
    torch.save(as_dinobloom_checkpoint(backbone), path)
    return path


def test_dinobloom_upstream_checkpoint_gives_source_embeddings(vit_s, images, dinobloom_file):
    enc = create_encoder("dinobloom-s", weights=str(dinobloom_file), precision="fp32")
    assert (enc.name, enc.dim, enc.input_px) == ("dinobloom-s", 384, 224)
    assert enc.weights_sha256 == hashlib.sha256(dinobloom_file.read_bytes()).hexdigest()
    assert enc.weights_path == str(dinobloom_file.resolve())
    out = enc.encode(images)
    assert out.shape == (2, 384) and out.dtype == np.float32
    x = imagenet_normalise(torch.from_numpy(images))
    with torch.no_grad():
        expected = vit_s(x).numpy()
        # an independent DINOv2 forward over the upstream keys catches a mapping that is wrong both ways
        upstream = torch.load(dinobloom_file, weights_only=True)["teacher"]
        backbone = {k.removeprefix("backbone."): v for k, v in upstream.items() if k.startswith("backbone.")}
        reference = reference_forward(backbone, x, num_heads=6).numpy()
    np.testing.assert_allclose(out, expected, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(out, reference, atol=2e-4, rtol=1e-4)
    # a torch uint8 tensor (no copy through numpy) gives the same
    np.testing.assert_allclose(enc.encode(torch.from_numpy(images[:1])), out[:1], atol=1e-6)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: t.pop("backbone.blocks.3.attn.qkv.bias"), ["missing keys", "blocks.3.attn.qkv.bias"]),
        (
            lambda t: t.__setitem__("backbone.blocks.0.attn.q_norm.weight", torch.ones(64)),
            ["unexpected keys"],
        ),
        (
            lambda t: t.__setitem__("backbone.pos_embed", torch.zeros(1, 1370, 384)),
            ["shape mismatches", "pos_embed"],
        ),
        (
            lambda t: t.__setitem__("student_step", torch.zeros(1)),
            ["unexpected keys", "teacher.student_step"],
        ),
    ],
    ids=["missing", "unexpected", "pos_embed-shape", "stray-non-backbone-key"],
)
def test_damaged_dinobloom_checkpoint_fails_in_one_line(vit_s, tmp_path, edit, words):
    ckpt = as_dinobloom_checkpoint(timm_to_upstream_backbone(vit_s.state_dict(), swiglu=False))
    edit(ckpt["teacher"])
    path = tmp_path / "bad.pth"
    torch.save(ckpt, path)
    with pytest.raises(InputError) as err:
        create_encoder("dinobloom-s", weights=str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for word in words:
        assert word in msg


def test_meta_dinov2_checkpoint_is_resampled_like_dinov2_at_224(images, tmp_path):
    """A 518 px Meta checkpoint (1370 tokens) must give what Meta's hub model gives on a 224 px crop."""
    src = randomise_(build_vit("s", img_size=518), seed=2).eval()
    upstream = timm_to_upstream_backbone(src.state_dict(), swiglu=False)
    assert upstream["pos_embed"].shape == (1, 1370, 384)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(upstream, path)
    enc = create_encoder("dinov2-s", weights=str(path), precision="fp32")
    x = imagenet_normalise(torch.from_numpy(images))
    with torch.no_grad():
        reference = reference_forward(upstream, x, num_heads=6).numpy()
    np.testing.assert_allclose(enc.encode(images), reference, atol=2e-4, rtol=1e-4)


def test_layout_of_the_wrong_family_is_refused(vit_s, tmp_path, dinobloom_file):
    meta = tmp_path / "meta.pth"
    torch.save(timm_to_upstream_backbone(vit_s.state_dict(), swiglu=False), meta)
    with pytest.raises(InputError, match="Meta DINOv2 checkpoint.*dinov2-"):
        create_encoder("dinobloom-s", weights=str(meta))
    with pytest.raises(InputError, match="training checkpoint.*dinobloom-"):
        create_encoder("dinov2-s", weights=str(dinobloom_file))


def test_timm_layout_file_as_on_the_hub_mirror(vit_s, images, tmp_path):
    """hf-hub:1aurent/vit_small_patch14_224.dinobloom ships a timm-named model.safetensors."""
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in vit_s.state_dict().items()}, str(path))
    enc = create_encoder("dinobloom-s", weights=str(path), precision="fp32")
    with torch.no_grad():
        expected = vit_s(imagenet_normalise(torch.from_numpy(images))).numpy()
    np.testing.assert_allclose(enc.encode(images), expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("size", ["b", "l", "g"])
def test_key_mapping_of_large_sizes_on_the_meta_device(size):
    """Shapes only: ViT-G has 1.1 B parameters. Upstream shapes come from DINOv2's own hyperparameters."""
    with torch.device("meta"):
        model = build_vit(size)
    for n_tokens, family in [(257, "dinobloom"), (1370, "dinov2")]:
        backbone = {
            k: torch.empty(s, device="meta") for k, s in upstream_backbone_shapes(size, n_tokens).items()
        }
        if family == "dinobloom":
            ckpt = {"teacher": {f"backbone.{k}": v for k, v in backbone.items()}}
            ckpt["teacher"].update(dino_heads(SIZES[size][1]))
        else:
            ckpt = backbone
        check_state_dict(model, to_timm_state(family, ckpt, "test"), "test")


def test_swiglu_mapping_numerically_on_a_tiny_giant():
    """ViT-G's fused SwiGLU (w12 -> fc1, w3 -> fc2, silu on the first half) on a 2-block, 96-d twin."""
    src = randomise_(build_vit("g", depth=2, embed_dim=96, num_heads=4), seed=3).eval()
    upstream = timm_to_upstream_backbone(src.state_dict(), swiglu=True)
    assert "blocks.1.mlp.w12.weight" in upstream and "blocks.1.mlp.w3.bias" in upstream
    dst = build_vit("g", depth=2, embed_dim=96, num_heads=4).eval()
    converted = to_timm_state("dinobloom", as_dinobloom_checkpoint(upstream), "test")
    check_state_dict(dst, converted, "test")
    dst.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        np.testing.assert_allclose(
            dst(x).numpy(), reference_forward(upstream, x, num_heads=4).numpy(), atol=1e-4
        )
