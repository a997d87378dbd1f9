"""`RayEngine`: extraction as a Ray Data pipeline, on this machine or across a Ray cluster.

    slides (one per task) --loader tasks: open, QC, detect, crop--> crop rows
        --encoder actors (map_batches with a class; one per GPU, or one on the CPU)--> feature rows
        --this process (`Collector`)--> one bag per slide, committed like the local engine's

Why this shape: the CPU work per slide (decode, QC, detection, cropping) is what starves a GPU encoder (one
loader process feeds an H200 at 0.08x of what it can encode), and it parallelises per slide; Ray Data runs
as many loader tasks as the cluster has CPUs, streams their crops to a pool of encoder actors in batches of
`batch_size` (what the encoder is fed locally too), and bounds the crops in flight by its object-store budget.
Ray retries a loader task whose worker dies (up to `LOADER_RETRIES` times: a slide that crashes its reader
every time fails alone) and restarts a dead encoder actor; replayed rows are dropped by position in the
collector, and the bag is written by this process through the store's staged, renamed, first-writer-wins
commit, so a retry can neither duplicate nor truncate a bag. Every node needs the inputs and the store at
the same paths (a shared filesystem), as loader tasks read slides and write QC there.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from features.core.errors import InputError
from features.core.ray_session import Cluster, ray_session, require_ray
from features.pipeline.config import ExtractConfig
from features.pipeline.engines.base import EncodeRun
from features.pipeline.provenance import SlideOutcome
from features.sources.base import SlideRef

LOADER_RETRIES = 3  # a slide whose loader dies this many times more is failed, and the others go on
# Crops leave a loader in blocks of at most this size (Ray Data's default, 128 MiB, would hold back ~850
# DinoBloom crops of 224 px before the encoder sees the first): smaller blocks stream sooner, more cost more.
BLOCK_BYTES = 32 * 1024**2


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray. Unset values follow the cluster: one encoder actor per GPU (or one on the CPU), and
    the CPUs left over, less one for this process, as loader tasks."""

    address: str | None = None  # None: start Ray here; "auto": the cluster of this node; "ray://HOST:PORT"
    loaders: int | None = None  # loader tasks at once (one CPU each)
    encoders: int | None = None  # encoder actors
    gpus_per_encoder: float | None = None  # None: 1 on a cluster with GPUs (unless device=cpu), else 0
    num_cpus: int | None = None  # logical CPUs of a Ray started here (default: enough for the plan)


@dataclass(frozen=True)
class Plan:
    loaders: int
    encoders: int
    gpus_per_encoder: float

    def describe(self, cluster: Cluster) -> str:
        where = f"{self.gpus_per_encoder:g} GPU each" if self.gpus_per_encoder else "on the CPU"
        return (
            f"{cluster.describe()}; {self.loaders} loader task(s), {self.encoders} encoder actor(s) {where}"
        )


class RayEngine:
    name = "ray"

    def __init__(self, options: RayOptions | None = None):
        self.options = options or RayOptions()
        require_ray(local=self.options.address is None)  # no Ray installed: one line now, before any work
        self.plan: Plan | None = None

    def build_encoder(self, config: ExtractConfig) -> Any:
        """The driver's copy, on the CPU: it fixes the store's identity (name, weights digest, dim) and fails
        fast on missing weights; the actors build their own on their devices and must match it."""
        from features.encoders import create_encoder

        return create_encoder(config.encoder, weights=config.weights, device="cpu", precision="fp32")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **asdict(self.options),
            **({"plan": asdict(self.plan)} if self.plan else {}),
        }

    def encode(self, run: EncodeRun, todo: list[SlideRef], outcomes: list[SlideOutcome]) -> bool:
        from features.pipeline.engines.ray_collect import Collector

        if not todo:
            return False
        collector = Collector(run, todo, outcomes)
        with ray_session(self.options.address, self._local_cpus()) as cluster:
            self.plan = plan = self._plan(cluster, run.config)
            run.emit("engine", text=plan.describe(cluster))
            reason = (
                f"no result came back: its loader task died {LOADER_RETRIES + 1} times (a crash reading this "
                "slide?) or its crops were lost; see the Ray logs (/tmp/ray/session_latest/logs on each node)"
            )
            try:
                with _pipeline_settings():
                    batches = self._dataset(run, todo, plan).iter_batches(
                        batch_size=None, batch_format="numpy"
                    )
                    for batch in batches:
                        collector.add(batch)
                        if collector.stop:
                            return True
            except _pipeline_errors() as exc:  # the pipeline as a whole stopped: the slides left fail
                first = " ".join(str(exc).split())[:300]
                reason = f"not extracted: the Ray pipeline stopped ({type(exc).__name__}: {first})"
        collector.finish(reason)
        return collector.stop

    def _local_cpus(self) -> int | None:
        """Logical CPUs for a Ray started here: the asked-for loaders and encoders get to run at once, as the
        local engine's workers and encoder do (the OS shares the cores)."""
        opt = self.options
        if opt.address is not None:
            return None
        if opt.num_cpus is not None:
            return opt.num_cpus
        wanted = (opt.loaders or 0) + (opt.encoders or 1)
        return max(os.cpu_count() or 1, wanted)

    def _plan(self, cluster: Cluster, config: ExtractConfig) -> Plan:
        opt = self.options
        gpus_per = opt.gpus_per_encoder
        if gpus_per is None:
            gpus_per = 1.0 if cluster.gpus >= 1 and config.device != "cpu" else 0.0
        if gpus_per > cluster.gpus:
            raise InputError(
                f"--gpus-per-encoder {gpus_per:g}: the Ray cluster has {cluster.gpus:g} GPU(s); "
                "use --gpus-per-encoder 0 to encode on CPUs"
            )
        if config.device.startswith("cuda") and gpus_per == 0:
            raise InputError(
                f"--device {config.device}: the encoder actors get no GPU (the Ray cluster has "
                f"{cluster.gpus:g}); use --device auto or cpu, or --gpus-per-encoder 1 on a cluster with GPUs"
            )
        encoders = opt.encoders or (max(1, int(cluster.gpus // gpus_per)) if gpus_per else 1)
        loaders = opt.loaders or max(1, int(cluster.cpus) - encoders - 1)
        return Plan(loaders, encoders, gpus_per)

    def _dataset(self, run: EncodeRun, todo: list[SlideRef], plan: Plan) -> Any:
        import ray
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        from features.pipeline.engines.ray_stages import SLIDE, EncoderActor, slide_rows
        from features.pipeline.slide_job import SlideJob

        _quiet_console()
        config, encoder = run.config, run.encoder
        job = SlideJob(todo, config, encoder.input_px, run.store)
        slides = ray.data.from_items([{SLIDE: i} for i in range(len(todo))], override_num_blocks=len(todo))
        with warnings.catch_warnings():
            # max_retries is passed as a plain Ray remote argument, which Ray 2.60 marks deprecated without
            # offering a named one yet; without it a slide that crashes its loader would be retried forever.
            warnings.simplefilter("ignore", DeprecationWarning)
            crops = slides.map_batches(
                slide_rows,
                batch_size=1,
                fn_kwargs={"job": job},
                num_cpus=1,
                compute=TaskPoolStrategy(size=plan.loaders),
                max_retries=LOADER_RETRIES,
            )
        actor_args = {
            "name": config.encoder,
            "weights": encoder.weights_path or config.weights,
            "device": config.device if plan.gpus_per_encoder else "cpu",
            "precision": config.precision,
            "identity": asdict(run.identity),
            "seed": config.seed,
        }
        return crops.map_batches(
            EncoderActor,
            batch_size=config.batch_size,
            fn_constructor_kwargs=actor_args,
            compute=ActorPoolStrategy(size=plan.encoders),
            num_cpus=1,
            num_gpus=plan.gpus_per_encoder or None,
        )


def _pipeline_errors() -> tuple[type[BaseException], ...]:
    """What Ray raises when the pipeline itself stops (an actor that cannot start, Ray Data's own errors); a bug
    in this process's code is not among them and keeps its traceback."""
    from ray.data.exceptions import SystemException
    from ray.exceptions import RayError

    return RayError, SystemException


# Ray Data settings for the run (restored afterwards: a notebook's own datasets keep theirs).
PIPELINE_SETTINGS = {
    "enable_progress_bars": False,  # progress is ours (the `emit` events), as with the local engine
    "print_on_execution_start": False,
    "max_errored_blocks": -1,  # a slide whose loader kept dying is dropped and reported, the rest go on
    "target_max_block_size": BLOCK_BYTES,
}


@contextmanager
def _pipeline_settings() -> Iterator[None]:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = {name: getattr(ctx, name) for name in PIPELINE_SETTINGS}
    for name, value in PIPELINE_SETTINGS.items():
        setattr(ctx, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


def _quiet_console() -> None:
    """Ray Data's notes (execution started and finished, progress bars off) stay in its log files under the
    session's logs/ray-data/, out of the terminal, where the run's own progress is shown."""
    import logging

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__:
            handler.setLevel(logging.ERROR)


__all__ = ["LOADER_RETRIES", "Plan", "RayEngine", "RayOptions"]
