"""MIL heads: one registry, one short file per architecture, one contract (`mil.heads.base`).

`create_head("abmil", in_dim=384, n_outputs=3, dropout=0.1)` builds a head; its params are checked by the
head's own pydantic model (`head_params_model(name)`), so the config schema validates `model_params` at load.
Importing this package builds nothing and touches no device.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from features.core.errors import ConfigError
from features.core.registry import Registry
from mil.heads.base import HeadOutput, HeadParams, MILHead

HEADS = Registry(
    "head",
    modules=(
        "mil.heads.mean_pool",
        "mil.heads.max_pool",
        "mil.heads.abmil",
        "mil.heads.clam",
        "mil.heads.transmil",
        "mil.heads.dsmil",
        "mil.heads.scemila",
    ),
)


def head_params_model(name: str) -> type[HeadParams]:
    """The pydantic model that validates `model_params` for head `name` (unknown name -> ConfigError)."""
    return HEADS.get(name).factory.Params


def validate_head_params(name: str, params: dict[str, Any] | None) -> HeadParams:
    """Validate `params` for head `name`; a bad or unknown key is a one-line ConfigError listing valid keys."""
    model = head_params_model(name)
    try:
        return model(**(params or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "model_params"
        valid = ", ".join(model.model_fields)
        raise ConfigError(
            f"head {name!r}: model_params.{where}: {first['msg']} (input {first.get('input')!r}); "
            f"valid params: {valid}"
        ) from None


def create_head(name: str, in_dim: int, n_outputs: int, **params: Any) -> MILHead:
    """Build head `name` for `in_dim`-d instances and `n_outputs` logits (survival: 1)."""
    validate_head_params(name, params)
    if in_dim < 1 or n_outputs < 1:
        raise ConfigError(f"head {name!r}: in_dim and n_outputs must be >= 1 (got {in_dim}, {n_outputs})")
    return HEADS.create(name, in_dim=in_dim, n_outputs=n_outputs, **params)


__all__ = [
    "HEADS",
    "HeadOutput",
    "HeadParams",
    "MILHead",
    "create_head",
    "head_params_model",
    "validate_head_params",
]
