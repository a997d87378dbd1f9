"""Training engines: what fits a run's list of jobs (one per fold today; seeds and `--model auto`'s grid are
more jobs of the same kind).

An engine gets a picklable job function, the inputs every job shares and the jobs, and yields each
`(job, result)` as it finishes; the driver (`mil.training.train`) writes every result itself, in the same
files whichever engine fitted it. `LocalFoldEngine` fits the jobs one after another in this process;
`RayFoldEngine` (`mil.training.engines.ray_folds`, the optional `[ray]` extra) runs them as Ray tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from features.core.ray_session import engine_options

# fit(inputs, job, progress) -> result; progress(event, **info) or None. A module-level function, so another
# process can import it by name.
JobFn = Callable[[Any, Any, Callable[..., None] | None], Any]


class FoldEngine(Protocol):
    name: str

    def run(
        self, fit: JobFn, inputs: Any, jobs: Sequence[Any], progress: Callable[..., None] | None
    ) -> Iterator[tuple[Any, Any]]:
        """Fit every job; yield (job, result) as each one finishes, in any order."""
        ...

    def describe(self) -> dict[str, Any]:
        """How the run was executed, for config.yaml."""
        ...


class LocalFoldEngine:
    """The jobs one after another, in this process, on the run's device."""

    name = "local"

    def run(
        self, fit: JobFn, inputs: Any, jobs: Sequence[Any], progress: Callable[..., None] | None
    ) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            yield job, fit(inputs, job, progress)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def create_fold_engine(name: str, **ray_options: Any) -> FoldEngine:
    """`local`, or `ray` with `RayFoldOptions` fields (address, gpus_per_fold, cpus_per_fold, num_cpus)."""
    given = engine_options(name, ray_options)
    if name == "local":
        return LocalFoldEngine()
    from mil.training.engines.ray_folds import RayFoldEngine, RayFoldOptions

    return RayFoldEngine(RayFoldOptions(**given))


__all__ = ["FoldEngine", "LocalFoldEngine", "create_fold_engine"]
