"""Packaging: pyproject lists every package, and a built wheel ships configs/ (as `mil.configs`, subfolders
included), so a named config resolves from an installed wheel run outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.paths import REPO


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        py.parent.relative_to(REPO).as_posix().replace("/", ".")
        for top in ("mil", "features")
        for py in (REPO / top).rglob("*.py")
    }
    assert listed == found | {"mil.configs"}, "update [tool.setuptools] packages in pyproject.toml"


def _setuptools_builds_wheels() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return tuple(int(x) for x in setuptools.__version__.split(".")[:2]) >= (70, 1)


def test_wheel_ships_configs_and_a_named_config_resolves_from_elsewhere(tmp_path):
    if not _setuptools_builds_wheels():
        pytest.skip("building a wheel offline needs setuptools >= 70.1: pip install -e '.[dev]'")
    src = tmp_path / "src"  # build from a copy, so the checkout gets no build/ or egg-info
    for name in ("mil", "features", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    (src / "configs" / "celltypes").mkdir(exist_ok=True)
    (src / "configs" / "celltypes" / "probe.yaml").write_text("blast: blast\n")  # a subfolder ships too
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src],
                   check=True, env=env, timeout=120, capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("mil-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"mil/configs/{p.relative_to(src / 'configs').as_posix()}" for p in (src / "configs").rglob("*.yaml")
    }
    assert "mil/configs/npm1.yaml" in shipped and "mil/configs/celltypes/probe.yaml" in shipped
    assert shipped <= names, sorted(shipped - names)

    # A fresh venv with the wheel installed, borrowing only the dependencies of this one (a .pth line).
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, env=env).stdout.strip()  # fmt: skip
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (Path(purelib) / "zz_deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel],
                   check=True, env=env, timeout=120, capture_output=True)  # fmt: skip

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = "import mil, mil.config as c; print(mil.__file__); print(c.shipped('celltypes/probe.yaml').read_text())"
    out = subprocess.run(
        [python, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(env_dir)) and "blast: blast" in out.stdout  # the wheel, not the checkout
    shown = subprocess.run([env_dir / "bin" / "mil", "config", "show", "--config", "npm1"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "head: gated_abmil" in shown.stdout and "\nevaluate:\n" in shown.stdout
