"""Registries that cannot drift: each lists exactly the modules of its folder that register into it.

A registry imports its `modules` on first lookup; a module that registers an entry but is missing from that
tuple would silently never appear in `mil list` or the config validators. The folder is read with `ast`
(nothing is imported to find the registering modules), so the check also covers files added later.
"""

from __future__ import annotations

import ast
import importlib

import pytest

from mil.registries import all_registries
from tests.paths import REPO

AXES = {
    # axis: (package, registry attribute)
    "sources": ("features.sources", "SOURCES"),
    "encoders": ("features.encoders", "ENCODERS"),
    "heads": ("mil.heads", "HEADS"),
    "tasks": ("mil.tasks", "TASKS"),
    "baselines": ("mil.baselines", "BASELINES"),
    "cell-classifiers": ("mil.cells.classifiers", "CLASSIFIERS"),
}


def registering_modules(package: str, attr: str) -> set[str]:
    """Modules of `package`'s folder with a call `<attr>.register(...)` (decorator or plain call)."""
    found = set()
    for path in sorted((REPO / package.replace(".", "/")).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "register"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == attr
            ):
                found.add(f"{package}.{path.stem}")
    return found


@pytest.mark.parametrize("axis", sorted(AXES))
def test_registry_lists_every_registering_module_of_its_folder(axis):
    package, attr = AXES[axis]
    registry = getattr(importlib.import_module(package), attr)
    in_folder = registering_modules(package, attr)
    assert in_folder, f"{package}: found no module calling {attr}.register (is the check still looking?)"
    missing = in_folder - set(registry.modules)
    assert not missing, f"{package}: {sorted(missing)} register into {attr} but are not in its modules"
    stale = set(registry.modules) - in_folder
    assert not stale, f"{attr} lists {sorted(stale)}, which register nothing into it"


@pytest.mark.parametrize("axis", sorted(AXES))
def test_every_entry_comes_from_a_listed_module(axis):
    package, attr = AXES[axis]
    registry = getattr(importlib.import_module(package), attr)
    for entry in registry.entries():
        assert entry.factory.__module__ in registry.modules, (axis, entry.name, entry.factory.__module__)


def test_all_registries_holds_every_axis():
    # No axis may drop out of `mil list` (an import error there is an error, not a shorter list).
    regs = all_registries()
    assert list(regs) == ["sources", "encoders", "heads", "tasks", "baselines", "cell-classifiers"]
    for axis, (package, attr) in AXES.items():
        assert regs[axis] is getattr(importlib.import_module(package), attr)
    assert "h5" in regs["sources"].names()  # listed unconditionally, not after a file-exists check


def test_registry_packages_touch_no_file_at_import():
    # Importing a registry package reads no file beyond its own modules: no `exists()`/`is_file()` probe,
    # no `open()` at module level (the registry decides what is listed, not the disk).
    for package, _ in AXES.values():
        path = REPO / package.replace(".", "/") / "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue  # bodies run on call, not at import
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call):
                    name = (
                        node.func.attr
                        if isinstance(node.func, ast.Attribute)
                        else getattr(node.func, "id", "")
                    )
                    assert name not in {
                        "exists",
                        "is_file",
                        "is_dir",
                        "open",
                        "glob",
                        "iterdir",
                        "resolve",
                    }, f"{path.relative_to(REPO)}:{node.lineno}: {name}() runs at import"
