"""`features.core.device.resolve_device`: one reading of `device` for the encoder and the heads."""

from __future__ import annotations

import pytest
import torch

from features.core.device import resolve_device
from features.core.errors import ConfigError


def _no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_cpu_is_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_takes_cuda_then_mps_then_cpu(monkeypatch):
    _no_gpu(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_a_missing_cuda_or_mps_is_an_error_naming_the_setting(monkeypatch):
    _no_gpu(monkeypatch)
    with pytest.raises(ConfigError, match=r"extract\.device 'cuda': CUDA is not available"):
        resolve_device("cuda", "extract.device")
    with pytest.raises(ConfigError, match=r"train\.device 'cuda:1': CUDA is not available"):
        resolve_device("cuda:1", "train.device")
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")


def test_a_cuda_index_past_the_last_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_nonsense_is_an_error_listing_the_choices():
    for name in ("gpu", "meta", ""):
        with pytest.raises(ConfigError, match="auto, cpu, cuda, cuda:N or mps"):
            resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_machine_auto_and_cuda_give_the_gpu():
    assert resolve_device("auto").type == "cuda" and resolve_device("cuda") == torch.device("cuda")
