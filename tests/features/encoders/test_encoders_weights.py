"""Weights resolution: explicit path, random (warned + recorded), $MIL_WEIGHTS_DIR, ~/.cache, hub (mocked)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import features.encoders.weights as W
from features.core.errors import InputError
from features.encoders import RandomWeightsWarning, create_encoder
from features.encoders.dinov2 import build_vit
from tests.paths import REPO  # noqa: E402


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """No $MIL_WEIGHTS_DIR, an empty home (so no ~/.cache/mil/weights) and an empty hub cache."""
    monkeypatch.delenv("MIL_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path


@pytest.fixture(scope="module")
def vit_s_safetensors(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hub") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in build_vit("s").state_dict().items()}, str(path))
    return path


def test_sha256_is_chunked_cached_and_follows_the_file(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(os.urandom(3 * 1024 + 17))
    assert W.sha256_file(path, chunk_bytes=1000) == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(b"other content")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert W.sha256_file(path) == hashlib.sha256(b"other content").hexdigest()


def test_random_weights_only_when_asked_warned_every_time_and_recorded():
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            # "default" shows a warning once per location and message: it must still appear every time
            warnings.simplefilter("default")
            enc = create_encoder("dinobloom-s", weights="random")
        assert [w.category for w in caught] == [RandomWeightsWarning]
        assert enc.weights_sha256 == "random" and enc.weights_path is None


def test_no_weights_offline_fails_fast_and_says_where_to_put_them(no_weights_anywhere, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        create_encoder("dinobloom-b")
    assert time.monotonic() - start < 5
    msg = str(err.value)
    for word in [
        "DinoBloom-B.pth",
        "zenodo.org/records/10908163",
        "--weights",
        "MIL_WEIGHTS_DIR",
        "HF_HUB_OFFLINE",
    ]:
        assert word in msg
    assert "\n" not in msg


def test_unreachable_hub_fails_without_retry_loop(no_weights_anywhere, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(W, "_hub_reachable", lambda timeout_s: False)
    with pytest.raises(InputError, match="DinoBloom-S.pth.*unreachable"):
        create_encoder("dinobloom-s")


def test_weights_found_in_mil_weights_dir_then_home_cache(no_weights_anywhere, monkeypatch, tmp_path):
    state = {"teacher": {f"backbone.{k}": v for k, v in build_vit("s").state_dict().items()}}
    state["teacher"]["backbone.mask_token"] = torch.zeros(1, 384)
    home_cache = Path(os.environ["HOME"]) / ".cache" / "mil" / "weights"
    home_cache.mkdir(parents=True)
    torch.save(state, home_cache / "DinoBloom-S.pth")
    enc = create_encoder("dinobloom-s")
    assert enc.weights_path == str((home_cache / "DinoBloom-S.pth").resolve())
    env_dir = tmp_path / "env-weights"
    env_dir.mkdir()
    torch.save(state, env_dir / "DinoBloom-S.pth")
    monkeypatch.setenv("MIL_WEIGHTS_DIR", str(env_dir))
    enc = create_encoder("dinobloom-s")
    assert enc.weights_path == str((env_dir / "DinoBloom-S.pth").resolve())  # env dir comes first


def test_hub_download_is_real_code_behind_a_mocked_transfer(
    no_weights_anywhere, monkeypatch, vit_s_safetensors
):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, local_files_only=False, **kw):
        calls.append((repo_id, filename, local_files_only))
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        return str(vit_s_safetensors)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(W, "_hub_reachable", lambda timeout_s: True)
    enc = create_encoder("dinobloom-s", precision="fp32")
    repo = "1aurent/vit_small_patch14_224.dinobloom"
    assert calls == [(repo, "model.safetensors", True), (repo, "model.safetensors", False)]
    assert enc.weights_sha256 == hashlib.sha256(vit_s_safetensors.read_bytes()).hexdigest()
    assert enc.encode(np.zeros((1, 224, 224, 3), np.uint8)).shape == (1, 384)


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "DinoBloom-S.pth"
    path.write_bytes(b"truncated download")
    with pytest.raises(InputError, match="DinoBloom-S.pth cannot be read"):
        create_encoder("dinobloom-s", weights=str(path))
    with pytest.raises(InputError, match="does not exist"):
        create_encoder("dinobloom-s", weights=str(tmp_path / "nope.pth"))


def test_importing_the_registry_loads_no_torch_timm_or_network():
    code = (
        "import socket, sys\n"
        "def boom(*a, **k): raise AssertionError('network touched')\n"
        "socket.create_connection = boom; socket.socket.connect = boom\n"
        "import features.encoders as E\n"
        "names = E.ENCODERS.names()\n"
        "assert {'cytomorph', 'dinobloom-s', 'dinobloom-g', 'dinov2-l', 'timm:'} <= set(names), names\n"
        "bad = [m for m in ('torch', 'timm', 'safetensors', 'huggingface_hub') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
