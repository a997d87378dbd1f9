"""Loading a configuration: the files shipped in configs/, then YAML < `--set` < flags, validated once.

configs/ sits at the top of the repository and ships inside the package as `mil.configs` (pyproject.toml maps
the one folder onto the other), so a named config (`--config npm1`) resolves the same from a checkout, an
editable install or a wheel. Subfolders ship too (e.g. configs/celltypes/).
"""

from __future__ import annotations

import difflib
import re
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
            raise ConfigError(f"--set {item}: the value is not valid YAML {yaml_problem(exc)}") from exc
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
    once. A value that fails names where it came from: the flag, the `--set` item or the YAML file."""
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        file = resolve_config_path(path)
        source = str(file)
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML {yaml_problem(exc)}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of sections at the top level")
        raw = loaded
    raw = deep_merge(raw, parse_overrides(overrides))
    raw = deep_merge(raw, flags or {})
    try:
        return MilConfig.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, source, overrides, flags) from exc


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: "at line 2, column 11 (while parsing a flow sequence: expected ...)"; the
    position is where the broken construct starts (an unclosed bracket), else where the parser stopped."""
    mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
    words = [w for w in (getattr(exc, "context", None), getattr(exc, "problem", None)) if w]
    what = ": ".join(words) if words else str(exc).splitlines()[0]
    where = f"at line {mark.line + 1}, column {mark.column + 1} " if mark is not None else ""
    return f"{where}({what})"


def validation_error(
    exc: ValidationError, source: str, overrides: list[str] | None, flags: dict[str, Any] | None
) -> ConfigError:
    """The first validation error as one line naming its culprit: the command-line flag or `--set` item that
    set the value (the last one wins, as in the merge), else the YAML file; an unknown key gets the closest
    valid one. A check on a whole section (loc = the section) blames the flag or `--set` whose key it names."""
    first = exc.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    dotted = ".".join(loc)
    if first["type"] == "extra_forbidden":
        msg = unknown_key(loc)
    elif not isinstance(first.get("input"), dict | list) and len(loc) > 1:
        msg = f"{msg} (input {first.get('input')!r})"
    sets = [(tuple(item.split("=", 1)[0].strip().split(".")), item) for item in overrides or []]
    typed = _leaves(flags or {})
    for exact in (True, False):  # a culprit that set the failing value itself, then one the message names
        for keys in reversed(typed):
            if _blames(keys, loc, msg, exact):
                return ConfigError(f"{_flag_name(keys)} {_flag_value(keys, flags)}: {msg}")
        for keys, item in reversed(sets):
            if _blames(keys, loc, msg, exact):
                if first["type"] == "extra_forbidden":
                    return ConfigError(f"--set {item.split('=', 1)[0].strip()}: {msg}")
                return ConfigError(f"--set {item}: {msg}")
    return ConfigError(f"{source}: {dotted}: {msg}")


def unknown_key(loc: tuple[str, ...]) -> str:
    """ "no setting 'train.epoch'; did you mean train.epochs?" (the closest key of the same section)."""
    model: type[BaseModel] | None = MilConfig
    for key in loc[:-1]:
        info = model.model_fields.get(key) if model is not None else None
        annotation = info.annotation if info is not None else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    where = ".".join(loc)
    if model is None:
        return f"no setting {where!r}"
    names = [n for n in model.model_fields if n != "provenance"]
    close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
    parent = ".".join(loc[:-1])
    if close:
        return f"no setting {where!r}; did you mean {'.'.join((*loc[:-1], close[0]))}?"
    return f"no setting {where!r}; `mil config template` lists the keys of {parent or 'each section'}"


def _blames(keys: tuple[str, ...], loc: tuple[str, ...], msg: str, exact: bool) -> bool:
    if exact:  # it set the failing value (or a section around it), or made up the unknown section it names
        return loc[: len(keys)] == keys or (msg.startswith("no setting") and keys[: len(loc)] == loc)
    named = re.search(rf"\b{re.escape(keys[-1])}\b", msg) is not None
    return keys[: len(loc)] == loc and len(keys) > len(loc) and named


def _leaves(flags: dict[str, Any]) -> list[tuple[str, ...]]:
    """(section, field) of every typed flag in `{section: {field: value}}`."""
    return [(section, key) for section, fields in flags.items() for key in fields]


def _flag_value(keys: tuple[str, ...], flags: dict[str, Any] | None) -> Any:
    node: Any = flags or {}
    for key in keys:
        node = node[key]
    return ",".join(map(str, node)) if isinstance(node, list) else node


def _flag_name(keys: tuple[str, ...]) -> str:
    """The option the user typed for a config field (`--model` for train.head), from the running command."""
    ctx = None
    try:  # typer (0.29) runs on its own copy of click, not on click's context stack
        from typer._click.globals import get_current_context

        ctx = get_current_context(silent=True)
    except ImportError:
        import click

        ctx = click.get_current_context(silent=True)
    for param in ctx.command.params if ctx is not None else []:
        if param.name == keys[-1] and param.opts:
            return param.opts[0]
    return f"--{keys[-1].replace('_', '-')}"


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
