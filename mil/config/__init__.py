"""The one configuration schema (`schema.py`) and the commented template generated from it (`template.py`)."""

from mil.config.schema import (
    CONFIG_DIR,
    MilConfig,
    TrainConfig,
    deep_merge,
    dump_config,
    load_config,
    parse_overrides,
    resolve_config_path,
)

__all__ = [
    "CONFIG_DIR",
    "MilConfig",
    "TrainConfig",
    "deep_merge",
    "dump_config",
    "load_config",
    "parse_overrides",
    "resolve_config_path",
]
