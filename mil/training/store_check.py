"""Does a bag store hold features made the way a run's training features were? Checked by `mil predict` and
`mil heatmap` before any model sees a bag.

The encoder identity is compared by the callers (it is in every fold checkpoint). The extraction setting
(crop size, detection, QC, mpp policy: `features.pipeline.store_settings`) is compared here: `mil train`
records the store's setting in `RUN/config.yaml` (`provenance.store_extraction`); runs written before that
record are compared through the provenance of the bag they sampled (`provenance.features`). A model trained
on 24 µm crops scores 32 µm crops without complaint and wrongly, so a difference is refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from features.bagstore import BagStore
from features.core.errors import InputError, StoreError
from features.pipeline.config import ExtractConfig
from features.pipeline.store_settings import (
    IMPORTED,
    describe_differences,
    effective_settings,
    store_settings,
)


def run_settings(run: Path) -> dict[str, Any] | None:
    """The extraction setting of the store run `run` was trained on; None when the run cannot say (its store
    was written through the `BagStore` API, not by `mil extract`)."""
    config_file = Path(run) / "config.yaml"
    try:
        record = yaml.safe_load(config_file.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(
            f"{config_file}: unreadable ({type(exc).__name__}); is this a `mil train` run?"
        ) from None
    _mapping(config_file, record, "it")
    provenance = _mapping(config_file, record.get("provenance") or {}, "its provenance")
    if "store_extraction" in provenance:
        return _mapping(config_file, provenance["store_extraction"], "provenance.store_extraction")
    features = _mapping(config_file, provenance.get("features") or {}, "provenance.features")
    if features.get("source_kind") == "h5":
        return dict(IMPORTED)
    settings = _mapping(config_file, features.get("settings") or {}, "provenance.features.settings")
    recorded = settings.get("extract")
    if recorded is None:
        return None
    try:
        return store_settings(ExtractConfig.model_validate(recorded), features.get("crop_px"))
    except ValueError:
        raise InputError(
            f"{config_file}: its recorded extraction settings no longer validate; retrain"
        ) from None


def _mapping(config_file: Path, value: Any, what: str) -> Any:
    """`value` when it is a mapping (or None, where a setting may be absent); else a damaged run, one line."""
    if value is not None and not isinstance(value, dict):
        raise InputError(
            f"{config_file}: not a valid run config ({what} is a {type(value).__name__}, not a mapping); "
            "restore the run's config.yaml or retrain"
        )
    return value


def check_store_settings(run: Path, store: BagStore) -> None:
    """Refuse, in one line, a store whose extraction setting differs from the one the run was trained on
    (where both are known: stores written through the API record none)."""
    trained = run_settings(run)
    try:
        now = effective_settings(store)
    except StoreError as exc:
        raise InputError(str(exc)) from None
    if trained is not None and now is not None and now != trained:
        raise InputError(
            f"{store.path}: bags extracted with other settings than run {run} was trained on "
            f"({describe_differences(trained, now)}); extract these slides with the run's settings"
        )


__all__ = ["check_store_settings", "run_settings"]
