"""The one configuration schema (`schema.py`, `sections.py`), loading it (`load.py`) and the commented
template generated from it (`template.py`)."""

from mil.config.load import (
    deep_merge,
    dump_config,
    load_config,
    named_configs,
    parse_overrides,
    resolve_config_path,
    shipped,
)
from mil.config.schema import MilConfig, TrainConfig
from mil.config.sections import CellsConfig, EvaluateConfig, ExplainConfig, ReportConfig, Section

__all__ = [
    "CellsConfig",
    "EvaluateConfig",
    "ExplainConfig",
    "MilConfig",
    "ReportConfig",
    "Section",
    "TrainConfig",
    "deep_merge",
    "dump_config",
    "load_config",
    "named_configs",
    "parse_overrides",
    "resolve_config_path",
    "shipped",
]
