"""Smoke test of benchmarks/extract.py: its A/B loop and the peak-RSS child run end to end on a tiny cohort with
the weight-free encoder, so the script keeps working as the library changes (numbers come from real runs)."""

from __future__ import annotations

import sys

import pytest

from tests.paths import BENCH  # noqa: E402


@pytest.fixture
def bench(tmp_path, monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(BENCH))
    import extract as module

    monkeypatch.setattr(module, "CACHE", tmp_path)
    threads = torch.get_num_threads()  # main() sets the encoder's thread count; do not leak it
    yield module
    torch.set_num_threads(threads)


def test_ab_rounds_and_rss(bench, monkeypatch, capsys):
    args = [
        "--encoder",
        "cytomorph",
        "--patients",
        "1",
        "--slide-px",
        "1500",
        "--rounds",
        "1",
        "--workers",
        "1",
    ]
    monkeypatch.setattr(sys, "argv", ["extract.py", *args, "--no-rss"])
    bench.main()
    out = capsys.readouterr().out
    assert "round 1: extract" in out and "median ratio extract / bare encoder" in out
    bench.measure_rss(1500, "cytomorph", 0)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("peak RSS, 1500 x 1500 px slide") and "['written']" in line
