"""Smoke test of benchmarks/scale.py's GPU script on its CPU path (`gpu --device cpu`): Ray loaders and one
encoder actor against the bare encoder on the same crops, end to end on a tiny cohort, so the script is ready
for a machine with a GPU (its figures come from running it there)."""

from __future__ import annotations

import pytest

from tests.paths import BENCH
from tests.ray_helpers import local_ray  # noqa: F401 - skips the module without Ray


@pytest.fixture
def scale(tmp_path, monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(BENCH))
    import extract
    import scale as module

    monkeypatch.setattr(extract, "CACHE", tmp_path)
    monkeypatch.setattr(module, "CACHE", tmp_path)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)


def test_gpu_script_cpu_path(scale, local_ray, capsys):  # noqa: F811
    args = "gpu --device cpu --encoder cytomorph --slides 2 --slide-px 1500 --loaders 1 --rounds 1 --batch-size 32"
    scale.main(args.split())
    out = capsys.readouterr().out
    assert "gpu: 2 slides of 1500 px" in out and "round 1: bare" in out and "median ratio" in out
