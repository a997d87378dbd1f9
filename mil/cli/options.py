"""Typer options built from the config schema, so no default or description is written twice.

`field_option(Section, "field", "--flag")` gives a flag the field's default and its description (with choices
and bounds) as help. The command's parameter must carry the field's name: `typed_flags` finds the flags the
user actually typed by that name, checks each against its field (so a bad value names the flag), and returns
them as the top layer of `load_config`: defaults < YAML < `--set` < typed flags. A flag left at its default
therefore never undoes the YAML.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError

from features.core.errors import ConfigError


def field_option(section: type[BaseModel], name: str, *flags: str) -> Any:
    """A typer Option for the field `name` of `section`: its default, and its description as help."""
    from mil.config.template import describe

    info = section.model_fields[name]
    return typer.Option(info.get_default(call_default_factory=True), *flags, help=describe(info))


def config_option() -> Any:
    return typer.Option(
        None, "--config", help="YAML config file, or the name of one shipped in configs/ (e.g. npm1)."
    )


def set_option() -> Any:
    return typer.Option(None, "--set", help="Override one value: section.key=value (repeatable).")


def typed_flags(ctx: typer.Context, section: str) -> dict[str, dict[str, Any]]:
    """`{section: {field: value}}` for the flags of that config section typed on the command line."""
    from mil.config import MilConfig

    fields = MilConfig.model_fields[section].annotation.model_fields
    values: dict[str, Any] = {}
    for param in ctx.command.params:
        name = param.name
        source = ctx.get_parameter_source(name)
        if name not in fields or source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue  # left at its default: the YAML and --set below it stand
        value = ctx.params[name]
        try:
            TypeAdapter(Annotated[fields[name].annotation, fields[name]]).validate_python(value)
        except ValidationError as exc:
            raise ConfigError(f"{param.opts[0]} {value}: {exc.errors()[0]['msg']}") from None
        values[name] = value
    return {section: values}


def engine_option() -> Any:
    # Help text is rich markup: a bare `[ray]` would be read as a style tag and vanish, so it is escaped.
    return typer.Option(
        "local",
        "--engine",
        help=r"local (this machine) | ray (a Ray cluster, or Ray started here; needs the \[ray] extra).",
    )


def address_option() -> Any:
    return typer.Option(
        None,
        "--address",
        help="With --engine ray: `auto` (the cluster this node joined with `ray start`) or ray://HOST:PORT; "
        "empty: start Ray on this machine.",
    )
