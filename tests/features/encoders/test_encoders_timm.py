"""`timm:<name>`: saved weights of a tiny timm model load strictly; bad names and files fail in one line."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from features.core.errors import ConfigError, InputError
from features.encoders import ENCODERS, create_encoder

NAME = "timm:vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()  # with its 1000-class head


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)


def _expected(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - 0.5) / 0.5  # this model's pretrained config uses mean = std = 0.5, not ImageNet statistics
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True).numpy()


@pytest.mark.parametrize("fmt", ["safetensors", "pth-wrapped"])
def test_saved_timm_weights_reproduce_pooled_features(source, images, tmp_path, fmt):
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if fmt == "safetensors":
        path = tmp_path / "model.safetensors"
        save_file(state, str(path))
    else:  # timm's train script wraps the state dict and DDP adds `module.`
        path = tmp_path / "checkpoint.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    enc = create_encoder(NAME, weights=str(path), precision="fp32")
    assert (enc.dim, enc.input_px, enc.weights_path) == (192, 224, str(path.resolve()))
    np.testing.assert_allclose(enc.encode(images), _expected(source, images), atol=1e-4, rtol=1e-4)


def test_timm_checkpoint_with_a_missing_key_fails(source, tmp_path):
    state = {k: v for k, v in source.state_dict().items() if k != "blocks.2.mlp.fc1.weight"}
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    with pytest.raises(InputError, match=r"missing keys: blocks\.2\.mlp\.fc1\.weight"):
        create_encoder(NAME, weights=str(path))


def test_unknown_timm_model_suggests_close_names():
    with pytest.raises(ConfigError, match="timm:vit_tiny_patch16_224"):
        create_encoder("timm:vit_tiny_patch16_244", weights="random")
    assert "timm:anything" in ENCODERS  # the family entry catches every timm: name


def test_timm_without_weights_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(InputError, match="--weights PATH"):
        create_encoder(NAME)


def test_other_architecture_dims_come_from_the_model():
    with pytest.warns(UserWarning, match="RANDOM"):
        enc = create_encoder("timm:resnet18", weights="random")
    out = enc.encode(np.zeros((1, enc.input_px, enc.input_px, 3), np.uint8))
    assert out.shape == (1, enc.dim) == (1, 512)
