"""`mil config show | template`: the resolved config of a YAML + overrides, and a template from the schema."""

from __future__ import annotations

from pathlib import Path

import typer

from mil.cli.options import config_option, set_option

config_app = typer.Typer(
    help="Show the resolved configuration or print a commented template.", no_args_is_help=True
)


@config_app.command("show")
def show(config: str = config_option(), set_: list[str] = set_option()) -> None:
    """Print the configuration after defaults < YAML < --set, validated (what a run would use)."""
    from mil.config import dump_config, load_config

    typer.echo(dump_config(load_config(config, set_)), nl=False)


@config_app.command("template")
def template(
    section: str = typer.Option(None, "--section", help="Only this section (e.g. evaluate)."),
    out: Path = typer.Option(None, "-o", "--out", help="Write to this file instead of printing."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Print a commented YAML template generated from the schema (every field, its default and meaning)."""
    from features.core.io import atomic_write_text
    from features.core.outputs import check_output_file
    from mil.config.template import config_template

    text = config_template(section)
    if out is None:
        typer.echo(text, nl=False)
    else:
        check_output_file(out, overwrite, "config.yaml")
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
