"""The CPU half of extraction as a torch `IterableDataset`: slides in, a stream of typed records out.

Why a DataLoader: its worker processes read, QC, detect and crop whole slides (`features.pipeline.slide_job`) while
the main process runs the encoder, so the CPU work hides behind the forward pass. Each worker takes whole
slides (slide i goes to worker i mod W) and streams a slide's crops in chunks of `batch_size`; the loader's
prefetch bounds the chunks in flight (W x 2), so a 100k-cell slide never holds all its crops in memory.
A failing slide becomes a `SlideFailed` record instead of killing the loader, so one bad slide never stops
the others. `workers=0` runs the same generators inline (tests, debugging).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from features.pipeline.records import Record
from features.pipeline.slide_job import SlideJob


class SlideStream(IterableDataset):
    """The run's slides as a torch `IterableDataset`; worker w of W takes slides w, w + W, ... whole."""

    def __init__(self, job: SlideJob):
        super().__init__()
        self.job = job

    def __iter__(self) -> Iterator[Record]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        for index in range(worker, len(self.job.refs), n_workers):
            yield from self.job.records(index)


def iterate_records(job: SlideJob, workers: int) -> Iterator[Record]:
    """All records of a run: inline (`workers=0`) or from `workers` loader processes, in arrival order."""
    if workers == 0 or not job.refs:
        for index in range(len(job.refs)):
            yield from job.records(index)
        return
    loader = DataLoader(
        SlideStream(job),
        batch_size=None,  # records are already batched: no collation
        collate_fn=_identity,
        num_workers=min(workers, len(job.refs)),
        prefetch_factor=2,  # bounds the crops in flight: workers x 2 chunks
        in_order=False,  # a fast worker's records are not held back behind a slow worker's slide
        worker_init_fn=_worker_init,
    )
    yield from loader


def _identity(record: Record) -> Record:
    return record


def _worker_init(worker_id: int) -> None:
    """Loader workers run numpy/scipy single-threaded (torch already does so in workers): W workers use W
    cores and leave the rest to the encoder. Without this each worker's OpenBLAS starts one thread per core
    for the crop resizing matmuls, and those threads spin-wait after each call, taking CPU the encoder needs."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    # Lower priority than the encoder: workers only need to stay a prefetch ahead, and when the CPU is
    # oversubscribed (a shared node, a CPU-only run) the encoder, the bottleneck, should not wait for them.
    try:
        os.nice(5)
    except OSError:
        pass
