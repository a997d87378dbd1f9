"""The encoder registry as users meet it: `mil list encoders`, name checks, and the weights-free default."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from features.core.errors import ConfigError
from features.encoders import ENCODERS, create_encoder
from mil.cli import app

NAMES = [f"{family}-{size}" for family in ("dinobloom", "dinov2") for size in "sblg"] + ["timm:", "cytomorph"]


def test_mil_list_encoders_shows_every_name_with_its_summary():
    result = CliRunner().invoke(app, ["list", "encoders"])
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.output
    assert "DinoBloom-G" in result.output and "1536-d" in result.output and "no weights" in result.output


def test_registry_names_and_entry_info():
    assert set(NAMES) <= set(ENCODERS.names())
    assert ENCODERS.get("dinobloom-g").info == {"dim": 1536, "input_px": 224}
    assert ENCODERS.check("timm:resnet50") == "timm:resnet50"


def test_unknown_encoder_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="Did you mean 'dinobloom-s'"):
        create_encoder("dinoblom-s")
