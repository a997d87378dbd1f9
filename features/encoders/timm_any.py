"""`timm:<model>`: any timm architecture as a cell encoder (its pooled pre-classifier features).

The crop size and mean/std come from the model's timm pretrained config, because that is what its weights were
trained with (CLIP-style models use other statistics than ImageNet). Weights: `--weights` a state dict of exactly
this timm model (`.safetensors`, or `.pth`/`.bin` read with weights_only), optionally wrapped in `state_dict` or
`model` and with a `module.` prefix (DDP); or, with no `--weights`, timm's own hub file when the hub is reachable.
Classifier weights in the file are dropped (the encoder has no classifier); every other key must match, so a
checkpoint of another layout fails with the list of keys instead of loading half of itself.
"""

from __future__ import annotations

import difflib
from typing import Any

from features.core.errors import ConfigError, InputError
from features.encoders import ENCODERS
from features.encoders.base import TorchEncoder
from features.encoders.weights import (
    RANDOM,
    hub_download,
    load_strict,
    read_state_dict,
    resolve_weights,
    sha256_file,
)


def _unwrap(state: dict[str, Any]) -> dict[str, Any]:
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _drop_classifier(state: dict[str, Any], classifier: str | tuple[str, ...] | None) -> dict[str, Any]:
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    return {k: v for k, v in state.items() if not any(k.startswith(f"{c}.") for c in names)}


def _check_model_name(model_name: str) -> None:
    import timm

    if not timm.is_model(model_name.split(".", 1)[0]):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise ConfigError(f"timm has no model {model_name!r}.{hint}")


@ENCODERS.register("timm:")
def create_timm(
    name: str, weights: str | None = None, device: str = "cpu", precision: str = "auto"
) -> TorchEncoder:
    """Any timm model, `timm:<name>[.tag]`: pooled features; weights from --weights or timm's hub file"""
    import timm

    model_name = name.removeprefix("timm:")
    _check_model_name(model_name)
    model = timm.create_model(model_name, pretrained=False, num_classes=0)
    cfg = dict(model.pretrained_cfg)
    if weights is None:
        hub_id = cfg.get("hf_hub_id")
        hint = (
            f"{name} needs weights: pass --weights PATH (a state dict of timm model {model_name}, .safetensors "
            "or .pth), or --weights random for a test run"
        )
        if not hub_id:
            raise InputError(hint)
        path = hub_download(hub_id, cfg.get("hf_hub_filename") or "model.safetensors", hint)
        sha, weights_path = sha256_file(path), str(path)
    else:
        resolved = resolve_weights(name, weights, None)
        sha, weights_path = resolved.sha256, None if resolved.path is None else str(resolved.path)
    if weights != RANDOM:
        origin = f"{name} weights {weights_path}"
        state = _drop_classifier(_unwrap(read_state_dict(weights_path)), cfg.get("classifier"))
        load_strict(model, state, origin)
    return TorchEncoder(
        name,
        model,
        dim=int(getattr(model, "head_hidden_size", None) or model.num_features),
        input_px=int(cfg.get("input_size", (3, 224, 224))[-1]),
        weights_sha256=sha,
        weights_path=weights_path,
        device=device,
        precision=precision,
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
    )
