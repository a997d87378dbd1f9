"""`RayFoldEngine`: a run's jobs (folds) as Ray tasks, on this machine or across a Ray cluster.

The bags are put in Ray's object store once and every task reads them from there; each task fits one job on
`cpus_per_fold` CPUs (torch gets as many threads) and, where the cluster has GPUs, `gpus_per_fold` of a GPU,
and sends its model, test predictions and history back; this process writes them exactly as the local
engine does. Per-epoch progress travels back through a Ray queue. A job's seed is the same as locally, so
the same seed gives the same metrics as the local engine at the same thread count (torch sums floats in an
order that depends on the number of threads, which `cpus_per_fold` fixes).

A task whose worker dies is retried (`JOB_RETRIES`); an error raised by a job (a one-line `MilError`) stops
the run with that line, as it does locally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from features.core.errors import InputError, MilError
from features.core.ray_session import ray_session, require_ray
from mil.training.engines import JobFn

JOB_RETRIES = 2


@dataclass(frozen=True)
class RayFoldOptions:
    address: str | None = None  # None: start Ray here; "auto" or ray://HOST:PORT: join a cluster
    gpus_per_fold: float | None = None  # None: 1 on a cluster with GPUs (unless train.device is cpu), else 0
    cpus_per_fold: int = 1  # logical CPUs per task, and torch threads in it
    num_cpus: int | None = None  # logical CPUs of a Ray started here (default: this machine's)


class RayFoldEngine:
    name = "ray"

    def __init__(self, options: RayFoldOptions | None = None):
        self.options = options or RayFoldOptions()
        require_ray(local=self.options.address is None)  # no Ray installed: one line now, before any work

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self.options)}

    def run(
        self, fit: JobFn, inputs: Any, jobs: Sequence[Any], progress: Callable[..., None] | None
    ) -> Iterator[tuple[Any, Any]]:
        import ray
        from ray.util.queue import Queue

        opt = self.options
        with ray_session(opt.address, opt.num_cpus) as cluster:
            gpus = self._gpus_per_fold(cluster.gpus, getattr(inputs.config, "device", "auto"))
            task = ray.remote(num_cpus=opt.cpus_per_fold, num_gpus=gpus or None, max_retries=JOB_RETRIES)
            remote = task(_run_job)
            shared = ray.put(inputs)
            queue = Queue() if progress is not None else None
            pending = {remote.remote(fit, shared, job, queue, opt.cpus_per_fold): job for job in jobs}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
                    _relay(queue, progress)
                    for ref in done:
                        job = pending.pop(ref)
                        result = _result(ref)
                        _relay(queue, progress)
                        yield job, result
            finally:
                for ref in pending:  # a failed job or an interrupted run: the others stop too
                    ray.cancel(ref, force=True)
                if queue is not None:
                    queue.shutdown()

    def _gpus_per_fold(self, cluster_gpus: float, device: str) -> float:
        gpus = self.options.gpus_per_fold
        if gpus is None:
            gpus = 1.0 if cluster_gpus >= 1 and device != "cpu" else 0.0
        if gpus > cluster_gpus:
            raise InputError(f"--gpus-per-fold {gpus:g}: the Ray cluster has {cluster_gpus:g} GPU(s)")
        if device.startswith("cuda") and gpus == 0:
            raise InputError(
                f"--device {device}: the Ray cluster has no GPU for the folds; use --device auto or cpu"
            )
        return gpus


def _run_job(fit: JobFn, inputs: Any, job: Any, queue: Any, threads: int) -> Any:
    """One job in a Ray worker: torch on the task's CPUs, progress events sent back through `queue`."""
    import torch

    torch.set_num_threads(threads)

    def progress(event: str, **info: Any) -> None:
        queue.put_nowait((event, info))

    return fit(inputs, job, progress if queue is not None else None)


def _relay(queue: Any, progress: Callable[..., None] | None) -> None:
    if queue is None or progress is None:
        return
    while not queue.empty():
        event, info = queue.get_nowait()
        progress(event, **info)


def _result(ref: Any) -> Any:
    """The job's result; a job's own one-line error is raised as it is, without Ray's traceback wrapper."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, MilError):
            raise exc.cause from None
        raise
