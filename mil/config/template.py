"""A commented YAML template generated from the config schema, so it can never drift from it.

Each field becomes `key: default` under its section, preceded by its description (and its choices or bounds),
which is the same text the CLI shows as a flag's help (`describe`).
"""

from __future__ import annotations

import typing
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from features.core.errors import ConfigError
from mil.config import MilConfig


def sections() -> dict[str, type[BaseModel]]:
    """Root fields whose type is a section model (`provenance` is written by runs, not a section)."""
    out = {}
    for name, info in MilConfig.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[name] = ann
    return out


def config_template(only: str | None = None) -> str:
    found = sections()
    if only is not None and only not in found:
        raise ConfigError(f"no config section {only!r}; sections: {', '.join(found)}")
    lines = [
        "# mil configuration template (generated from the schema: `mil config template`).",
        "# Precedence: defaults < this file (--config) < --set section.key=value < command flags.",
    ]
    for name, model in found.items():
        if only is not None and name != only:
            continue
        lines += ["", f"{name}:"]
        doc = (model.__doc__ or "").strip().splitlines()
        if doc:
            lines.insert(len(lines) - 1, f"# {doc[0]}")
        for field, info in model.model_fields.items():
            lines += [f"  # {line}" for line in _comment(info)]
            lines.append(f"  {field}: {_value(_default(info))}")
    return "\n".join(lines) + "\n"


def _default(info: FieldInfo) -> Any:
    value = info.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def describe(info: FieldInfo) -> str:
    """The field's description with its choices and bounds: the template's comment and the CLI's help text."""
    text = info.description or ""
    choices = _choices(info.annotation)
    if choices:
        text += f" Choices: {', '.join(map(str, choices))}."
    bounds = [
        f"{op} {getattr(m, attr)}"
        for m in info.metadata
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if getattr(m, attr, None) is not None
    ]
    if bounds:
        text += f" ({', '.join(bounds)})"
    return text


def _comment(info: FieldInfo) -> list[str]:
    words, lines, line = describe(info).split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > 104:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def _choices(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [c for arg in typing.get_args(annotation) for c in _choices(arg)]
