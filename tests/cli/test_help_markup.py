"""Help texts are rich markup: a bare `[word]` is read as a style tag and vanishes from `--help`
(`--engine` said "needs the  extra"). Every help must print what it says."""

from __future__ import annotations

import typer
from rich.text import Text
from typer.testing import CliRunner

from mil.cli import app


def _commands(command, path):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, [*path, name])


def test_engine_help_names_the_ray_extra():
    for command in ("extract", "train"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        assert "needs the [ray] extra" in result.output, result.output


def test_no_help_text_loses_a_bracket():
    """Rendered as markup, every command's and option's help keeps each `[` it has (write it `\\[`); helps
    carry no markup tags."""
    lost = []
    for path, command in _commands(typer.main.get_command(app), ["mil"]):
        helps = [("", command.help or "")] + [
            (p.name, getattr(p, "help", None) or "") for p in command.params
        ]
        for name, text in helps:
            shown = Text.from_markup(text).plain
            if shown.count("[") != text.count("["):
                lost.append(f"{' '.join(path)} {name}: {text!r} shows as {shown!r}")
    assert lost == []
