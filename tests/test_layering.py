"""Layer rules, checked two ways: statically (every `import` of every module, read with `ast`, including
imports inside functions and under `TYPE_CHECKING`) and by importing in a fresh interpreter (what a module
really pulls in, transitively). Each rule is one test; a failure names the module, the import and its line.

Rules (README, Layout): `features/` never imports `mil/`; only `features/bagstore/` imports zarr; only
`features/sources/openslide_reader.py` imports openslide; heads import nothing of training, cohorts, the CLI,
evaluation, explanation, the bag store or file IO; nothing imports the CLI (`mil/cli/`) but the CLI itself
(the console script enters it through pyproject.toml, not an import); only the Ray engines import Ray (an
optional extra), and only inside their functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.paths import REPO

SCANNED = ("features", "mil", "benchmarks")  # benchmarks are scripts, held to the backend rules too


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted ("mil.heads.abmil")
    name: str  # what it imports, dotted and absolute ("torch.nn", "mil.cli")
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.name} (line {self.line})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the importing package
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # `from mil import cli` imports the module mil.cli: each name is kept as base.name (a class name
        # then reads as a harmless sub-path of its module).
        return [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    if (  # importlib.import_module("x") / __import__("x") with a literal name
        isinstance(node, ast.Call)
        and (
            getattr(node.func, "attr", None) == "import_module"
            or getattr(node.func, "id", None) == "__import__"
        )
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


@cache
def all_imports() -> tuple[Import, ...]:
    found = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            module = module_name(path)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                for name in _imported(node, module, path.name == "__init__.py"):
                    found.append(Import(module, name, node.lineno))
    return tuple(found)


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offenders(
    importer: tuple[str, ...], imported: tuple[str, ...], exempt: tuple[str, ...] = ()
) -> list[str]:
    """Imports by modules under `importer` of anything under `imported`, outside the `exempt` modules."""
    return [
        str(i)
        for i in all_imports()
        if under(i.module, *importer) and not under(i.module, *exempt) and under(i.name, *imported)
    ]


def test_the_scan_sees_imports():
    # The rules below pass vacuously if the scanner finds nothing: it must see known imports of each kind.
    names = {(i.module, i.name) for i in all_imports()}
    assert ("features.bagstore.store", "zarr") in names
    assert ("features.sources.openslide_reader", "openslide") in names
    assert ("mil.cli.list_cmd", "mil.registries") in names  # an import inside a function
    assert ("features.smear.crops", "features.sources.openslide_reader") in names  # under TYPE_CHECKING
    assert ("features.core.registry", "features.core.errors.ConfigError") in names


def test_features_never_imports_mil():
    bad = offenders(("features",), ("mil",))
    assert not bad, "features/ must not import mil/: " + "; ".join(bad)


def test_only_the_bag_store_imports_zarr():
    bad = offenders(SCANNED, ("zarr",), exempt=("features.bagstore",))
    assert not bad, "only features/bagstore/ may import zarr: " + "; ".join(bad)


def test_only_the_slide_reader_imports_openslide():
    bad = offenders(SCANNED, ("openslide",), exempt=("features.sources.openslide_reader",))
    assert not bad, "only features/sources/openslide_reader.py may import openslide: " + "; ".join(bad)


# Heads are maths on tensors: of mil/ they know only mil.heads, of features/ only the kernel (errors, the
# registry), and nothing that reads or writes files. The stdlib file modules are checked statically only
# (torch itself loads os and pathlib).
HEAD_FORBIDDEN = (
    *(f"mil.{p}" for p in ("training", "cohort", "cli", "evaluate", "explain", "report", "config", "demo")),
    "mil.tasks",
    "mil.registries",
    *(f"features.{p}" for p in ("bagstore", "pipeline", "sources", "encoders", "smear", "synth")),
    "features.core.io",
    *("zarr", "h5py", "openslide", "pandas", "PIL"),
)
FILE_IO = ("pathlib", "os", "io", "shutil", "tempfile", "glob", "pickle", "yaml", "json")


def test_heads_import_nothing_of_training_or_files():
    bad = offenders(("mil.heads",), HEAD_FORBIDDEN + FILE_IO)
    assert not bad, "heads must know nothing of training or files: " + "; ".join(bad)


# Ray is an optional extra: only the Ray engines import it, inside their functions, so every other module (and
# `mil` without the extra) works without it. benchmarks/scale.py compares the engines and starts Ray itself.
RAY_ENGINES = (
    "features.core.ray_session",
    "features.pipeline.engines.ray_extract",
    "mil.training.engines.ray_folds",
    "benchmarks.scale",
)


def test_only_the_ray_engines_import_ray():
    bad = offenders(SCANNED, ("ray",), exempt=RAY_ENGINES)
    assert not bad, "only the Ray engines may import ray: " + "; ".join(bad)


def test_nothing_imports_the_cli():
    bad = offenders(SCANNED, ("mil.cli",), exempt=("mil.cli",))
    assert not bad, "nothing may import mil/cli/ (the console script enters it): " + "; ".join(bad)


def _modules(*packages: str, skip: tuple[str, ...] = ()) -> list[str]:
    names = []
    for package in packages:
        for path in sorted((REPO / package.replace(".", "/")).rglob("*.py")):
            name = module_name(path)
            if not under(name, *skip):
                names.append(name)
    return names


def _loaded_after_import(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Import `modules` in a fresh interpreter; the entries of sys.modules under any of `watched`."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n    importlib.import_module(m)\n"
        f"watched = {watched!r}\n"
        "print('\\n'.join(sorted(n for n in sys.modules if any(n == w or n.startswith(w + '.') for w in watched))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.mark.parametrize(
    ("rule", "modules", "watched"),
    [
        ("features loads no mil", lambda: _modules("features"), ("mil",)),
        ("heads load no training or files", lambda: _modules("mil.heads"), HEAD_FORBIDDEN),
        (
            "no library module loads the CLI",
            lambda: _modules("features", "mil", skip=("mil.cli",)),
            ("mil.cli",),
        ),
        ("no module loads Ray on import (an optional extra)", lambda: _modules("features", "mil"), ("ray",)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_imports_in_a_fresh_interpreter(rule, modules, watched):
    loaded = _loaded_after_import(modules(), watched)
    assert not loaded, f"{rule}: importing them loaded {', '.join(loaded)}"


def test_config_qc_and_detection_do_not_import_openslide():
    # Only features/sources/openslide_reader.py imports openslide, and only code that opens slides imports
    # it: reading a config (or running QC / detection on arrays) must not need the OpenSlide library.
    code = (
        "import sys\n"
        "import mil.config, features.pipeline.config\n"
        "import features.smear.qc, features.smear.qc_thumbnail, features.smear.detect, features.smear.nuclei, features.smear.crops\n"
        "assert 'openslide' not in sys.modules, 'openslide imported'\n"
        "import features.sources.openslide_reader\n"
        "assert 'openslide' in sys.modules\n"  # the check above can fail
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
