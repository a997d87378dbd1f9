"""Loading a configuration: the files shipped in configs/, then YAML < `--set` < flags, validated once.

configs/ sits at the top of the repository and ships inside the package as `mil.configs` (pyproject.toml maps
the one folder onto the other), so a named config (`--config npm1`) resolves the same from a checkout, an
editable install or a wheel. Subfolders ship too (e.g. configs/celltypes/).
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from features.core.errors import ConfigError
from mil.config.schema import MilConfig

SHIPPED = "mil.configs"


def shipped(relative: str = "") -> Traversable:
    """A file or folder among the shipped configs: `shipped("npm1.yaml")`, `shipped("celltypes")`."""
    return resources.files(SHIPPED).joinpath(*Path(relative).parts)


def named_configs(folder: str = "") -> list[str]:
    """Names of the YAML files shipped in configs/ (or in one of its subfolders), sorted."""
    return sorted(
        p.name.removesuffix(".yaml")
        for p in shipped(folder).iterdir()
        if p.is_file() and p.name.endswith(".yaml")
    )


def resolve_config_path(name_or_path: str | Path) -> Path | Traversable:
    """A path to a YAML file, or the name of a shipped one (`npm1` -> configs/npm1.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = shipped(f"{name_or_path}.yaml")
    if named.is_file():
        return named
    choices = ", ".join(named_configs())
    raise ConfigError(f"config {str(name_or_path)!r} not found: give a YAML path or one of: {choices}")


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """`["train.folds=3", "train.head.name=clam_sb"]` -> nested dict; values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
        node = nested
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {key} is not a section")
        node[keys[-1]] = value
    return nested


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> MilConfig:
    """Defaults < YAML < --set overrides < command flags (a nested dict of the values the user typed); validate
    once."""
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        file = resolve_config_path(path)
        source = str(file)
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of sections at the top level")
        raw = loaded
    raw = deep_merge(raw, parse_overrides(overrides))
    raw = deep_merge(raw, flags or {})
    try:
        return MilConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {where}: {first['msg']} (input {first.get('input')!r})") from exc


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
