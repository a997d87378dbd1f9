"""The torch wrapper: precision choices, input checks, numpy/torch input, and (where a GPU exists) CUDA."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from features.core.errors import ConfigError, InputError
from features.encoders import Encoder, RandomWeightsWarning, create_encoder
from features.encoders.base import resolve_precision


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    path = tmp_path_factory.mktemp("tiny") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def test_precision_choices_on_cpu():
    assert resolve_precision("auto", "cpu").label == "fp32"
    assert resolve_precision("bf16", "cpu").weights_dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="not one of"):
        resolve_precision("int8", "cpu")


def test_bf16_on_cpu_stays_close_to_fp32(tiny_weights):
    x = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)  # bf16 is slow on AVX2
    fp32 = create_encoder("timm:vit_tiny_patch16_224", weights=tiny_weights, precision="fp32")
    bf16 = create_encoder("timm:vit_tiny_patch16_224", weights=tiny_weights, precision="bf16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    a, b = fp32.encode(x), bf16.encode(x)
    assert b.dtype == np.float32
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99 and not np.array_equal(a, b)


def test_encoder_protocol_and_input_checks(tiny_weights):
    enc = create_encoder("timm:vit_tiny_patch16_224", weights=tiny_weights)
    assert isinstance(enc, Encoder) and isinstance(create_encoder("cytomorph"), Encoder)
    with pytest.raises(InputError, match="224 x 224 x 3"):
        enc.encode(np.zeros((1, 96, 96, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        enc.encode(torch.zeros((1, 224, 224, 3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16"])
def test_cuda_precisions_agree_with_fp32(precision):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        ref = create_encoder("dinobloom-s", weights="random", device="cuda", precision="fp32")
        enc = create_encoder("dinobloom-s", weights="random", device="cuda", precision=precision)
    with torch.no_grad():  # gammas of 1e-5 would make the random ViT nearly the identity and hide rounding
        for name, param in ref.model.named_parameters():
            if name.endswith(".gamma"):
                param.fill_(1.0)
    enc.model.load_state_dict(ref.model.state_dict())
    assert (
        enc.precision.label == {"auto": "autocast-bf16", "bf16": "bf16", "fp16": "autocast-fp16"}[precision]
    )
    x = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    out_np = enc.encode(x)
    out_dev = enc.encode(torch.from_numpy(x).cuda())  # a CUDA uint8 batch: no host round trip
    np.testing.assert_array_equal(out_np, out_dev)
    a = ref.encode(x)
    cos = (a * out_np).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(out_np, axis=1)
    assert out_np.dtype == np.float32 and cos.min() > 0.99
