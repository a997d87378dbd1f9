"""The engine interface of extraction, and the local engine (loader processes here, the encoder in this process)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from features.bagstore import BagStore, EncoderIdentity
from features.pipeline.config import ExtractConfig
from features.pipeline.provenance import SlideOutcome
from features.sources.base import SlideRef


@dataclass
class EncodeRun:
    """What an engine gets for one run: the encoder built by the driver (its identity and provenance: name,
    weights digest, input size, weights path), the store, the settings, and the progress callback."""

    encoder: Any
    identity: EncoderIdentity
    config: ExtractConfig
    store: BagStore
    overwrite: bool
    emit: Callable[..., None]


class ExtractEngine(Protocol):
    name: str

    def build_encoder(self, config: ExtractConfig) -> Any:
        """The driver's encoder: it fixes the store's identity and fails fast (missing weights) before any work."""
        ...

    def encode(self, run: EncodeRun, todo: list[SlideRef], outcomes: list[SlideOutcome]) -> bool:
        """Extract `todo` into `run.store`, one outcome per slide appended to `outcomes`; True when it stopped
        at a failure (`skip_errors` off)."""
        ...

    def describe(self) -> dict[str, Any]:
        """How the run was executed, for the run record."""
        ...


class LocalEngine:
    """Loader processes on this machine (`config.workers`) stream crops to the encoder in this process."""

    name = "local"

    def build_encoder(self, config: ExtractConfig) -> Any:
        from features.core.device import resolve_device
        from features.encoders import create_encoder

        device = str(resolve_device(config.device, "extract.device"))
        return create_encoder(
            config.encoder, weights=config.weights, device=device, precision=config.precision
        )

    def encode(self, run: EncodeRun, todo: list[SlideRef], outcomes: list[SlideOutcome]) -> bool:
        from features.pipeline.encode_loop import EncodeLoop

        loop = EncodeLoop(run.encoder, run.identity, run.config, run.store, run.overwrite, run.emit)
        return loop.run(todo, outcomes)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def create_engine(name: str, **ray_options: Any) -> ExtractEngine:
    """`local`, or `ray` with `RayOptions` fields (address, loaders, encoders, gpus_per_encoder, num_cpus)."""
    from features.core.ray_session import engine_options

    given = engine_options(name, ray_options)
    if name == "local":
        return LocalEngine()
    from features.pipeline.engines.ray_extract import RayEngine, RayOptions

    return RayEngine(RayOptions(**given))
