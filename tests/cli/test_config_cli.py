"""Flags built from the schema (defaults and help written once), their precedence over YAML, `mil config`, and
every `mil config ...` line of the README."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import typer
import yaml
from typer.testing import CliRunner

from features.pipeline.config import ExtractConfig
from features.synth.config import SynthConfig
from mil.cli import app, main
from mil.config import EvaluateConfig, ExplainConfig, ReportConfig, TrainConfig
from mil.config.template import describe, sections
from mil.evaluate.predictions import write_predictions
from tests.mil.evaluate.synth import classification_table
from tests.paths import REPO

runner = CliRunner()
COMMAND_SECTIONS = {
    "extract": ExtractConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "heatmap": ExplainConfig,
    "report": ReportConfig,
    "synth": SynthConfig,
}


@pytest.mark.parametrize("command, section", COMMAND_SECTIONS.items())
def test_flags_take_default_and_help_from_the_schema(command, section):
    cmd = typer.main.get_command(app).commands[command]
    matched = [p for p in cmd.params if p.name in section.model_fields]
    assert matched, [p.name for p in cmd.params]  # the command's section flags are really checked
    for param in matched:
        info = section.model_fields[param.name]
        assert param.help == describe(info), param.name
        expected = info.get_default(call_default_factory=True)
        assert param.default == expected or (param.default in ((), []) and expected is None), param.name


@pytest.fixture
def preds(tmp_path):
    df, spec = classification_table(n=45)
    path = tmp_path / "predictions.csv"
    write_predictions(df, spec, path)
    return path


def test_yaml_survives_untyped_flags_and_typed_flags_win(preds, tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text("evaluate:\n  n_bootstrap: 30\n  seed: 2\n")

    def draws(*extra: str) -> tuple[int, int]:
        out = tmp_path / "m.json"
        result = runner.invoke(app, ["evaluate", str(preds), "-o", str(out), "--overwrite", *extra])
        assert result.exit_code == 0, result.output
        metrics = json.loads(out.read_text())
        return metrics["n_bootstrap"], metrics["seed"]

    assert draws() == (1000, 0)  # the schema's defaults
    assert draws("--config", str(config)) == (30, 2)  # flags left at their default do not undo the YAML
    assert draws("--config", str(config), "--set", "evaluate.n_bootstrap=35") == (35, 2)
    assert draws("--config", str(config), "--set", "evaluate.n_bootstrap=35", "--bootstrap", "40") == (40, 2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["evaluate", "{preds}", "--bootstrap", "-1"],
            "--bootstrap -1: Input should be greater than or equal to 0",
        ),
        (["evaluate", "{preds}", "--set", "evaluate.seed=-3"], "evaluate.seed"),
        (["evaluate", "{preds}", "--config", "no_such_config"], "one of: apl_aml_healthy"),
    ],
)
def test_bad_values_are_one_line_naming_the_flag(preds, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(preds=preds) for a in argv] + ["-o", str(tmp_path / "m.json")])
    err = capsys.readouterr().err.strip()
    assert (
        exit_info.value.code == 2
        and err.startswith("error:")
        and message in err
        and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "m.json").exists()


def test_config_show_and_template_list_every_section(tmp_path):
    shown = runner.invoke(app, ["config", "show", "--config", "npm1"])
    assert shown.exit_code == 0, shown.output
    resolved = yaml.safe_load(shown.output)
    assert set(sections()) <= set(resolved) and resolved["train"]["head"] == "gated_abmil"
    assert (
        resolved["evaluate"] == EvaluateConfig().model_dump() and resolved["cells"]["classifier"] == "linear"
    )
    template = runner.invoke(app, ["config", "template"]).output
    for name in ("extract", "train", "evaluate", "explain", "report", "cells"):
        assert f"\n{name}:\n" in template
    only = runner.invoke(app, ["config", "template", "--section", "report"]).output
    assert "\nreport:\n" in only and "\ntrain:\n" not in only


def test_every_readme_config_line_runs():
    lines = re.findall(r"`(mil config [^`]+)`", (REPO / "README.md").read_text())
    assert any(" show " in line for line in lines) and any("template" in line for line in lines), lines
    for line in lines:
        result = runner.invoke(app, shlex.split(line)[1:])
        assert result.exit_code == 0, (line, result.output)
        assert yaml.safe_load(result.output), line  # prints a YAML document
