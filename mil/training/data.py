"""Bags in memory, and padded batches with masks, built by tensor indexing only.

Why in memory: a cohort of 1,000 bags x 2,000 cells x 384-d is 3 GB as float32 (1.5 GB as float16), read
once from the store and shared by every fold and epoch. Memory is sum(instances) x dim x 4 bytes (2 with
`feature_dtype: float16`, which on an H200 trained as fast as float32: 0.117 vs 0.118 s per epoch there). All bags live in ONE flat `sum(N) x D` tensor with
offsets, so a batch is a single gather (`features[index]`), with no per-bag copies, no DataLoader workers and
no re-reading. On a GPU the flat tensor is moved to the device when it fits, and batches never cross the bus.

A patient's slides are concatenated into one bag (see `mil.cohort.labels` for why); `slides` keeps the boundaries so
attention can be mapped back to each slide's cells.

Batches: B bags padded to the largest N in the batch, `mask` True on real instances (the heads' convention).
Training bags are bucketed by size so a batch pads little, and a bag above `max_instances` is subsampled to a
random `max_instances` of its instances at each step (fresh draw every time, in original order), which bounds
memory and time for 200k-cell smears. Evaluation always sees every instance and groups bags under an
instance budget, so a huge bag runs alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from features.bagstore import BagStore
from features.core.errors import StoreError

BUCKET_BATCHES = 8  # training bags are sorted by size within windows of this many batches


@dataclass
class BagSet:
    """P patients' bags: bag i is `features[offsets[i]:offsets[i + 1]]` (rows in slide order)."""

    patients: list[str]
    features: Tensor  # sum(N) x D, float32 or float16, CPU or device
    offsets: Tensor  # P + 1, int64, CPU
    y: Tensor  # P x ... float32 targets (CPU); NaN-free
    slides: list[list[tuple[str, int]]]  # per patient: (slide_id, n_instances) in concatenation order
    covariates: Tensor | None = None  # P x K encoded covariates (CPU float32; one fold's encoding), or None
    # P x 5D pooled statistics of every whole bag (`mil.training.prior.add_statistics`), or None: computed
    # once instead of at every forward pass of every member, where sorting each batch cost more than the head
    statistics: Tensor | None = None

    @property
    def sizes(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()

    def arrays(self) -> Iterator[np.ndarray]:
        """Each patient's bag as an N x D numpy array (a view on the CPU; one bag copied from a device)."""
        for i in range(len(self.patients)):
            yield self.features[int(self.offsets[i]) : int(self.offsets[i + 1])].cpu().numpy()


@dataclass
class Batch:
    index: Tensor  # B positions in the BagSet (CPU)
    x: Tensor  # B x N x D float32, zero on padding
    mask: Tensor  # B x N bool, True = real instance
    y: Tensor  # B x ... float32
    covariates: Tensor | None = None  # B x K float32 on the device, where the bags carry covariates
    statistics: Tensor | None = None  # B x 5D of the whole bags, where the BagSet has them and none is cut


@dataclass
class PatientBag:
    """One patient's bag as training builds it: the slides' instances concatenated in slide-id order."""

    patient_id: str
    features: np.ndarray  # N x D float32
    slides: list[
        tuple[str, int, int]
    ]  # (slide_id, start, stop): rows of `features` that came from each slide


def read_patient_bag(store: BagStore, patient_id: str, slide_ids: list[str]) -> PatientBag:
    """For explanations: the exact bag a model saw for this patient, with each slide's row range."""
    parts, spans, start = [], [], 0
    for slide in sorted(slide_ids):
        arr = store.read_features(slide).astype(np.float32, copy=False)
        parts.append(arr)
        spans.append((slide, start, start + len(arr)))
        start += len(arr)
    features = np.concatenate(parts) if parts else np.zeros((0, store.encoder.dim), np.float32)
    return PatientBag(patient_id, features, spans)


def load_bags(
    store: BagStore,
    patients: list[str],
    slides: dict[str, list[str]],
    y: np.ndarray | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Callable[..., None] | None = None,
    threads: int | None = None,
) -> BagSet:
    """Read every patient's slides once into one preallocated flat tensor (parallel zarr reads)."""
    order = [(p, s) for p in patients for s in slides[p]]
    counts = [store.meta(s).n_instances for _, s in order]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    per_patient = [len(slides[p]) for p in patients]
    slide_starts = np.concatenate([[0], np.cumsum(per_patient)]).astype(np.int64)
    empty = [p for i, p in enumerate(patients) if starts[slide_starts[i + 1]] == starts[slide_starts[i]]]
    if empty:
        raise StoreError(
            f"{store.path}: patient {empty[0]!r} has no instances (empty bags); re-extract or drop it"
        )
    dim = store.encoder.dim
    flat = torch.empty((int(starts[-1]), dim), dtype=dtype)

    def read(i: int) -> int:
        slide = order[i][1]
        arr = store.read_features(slide)
        if arr.shape != (counts[i], dim):
            raise StoreError(
                f"{store.path}: bag {slide!r} is {arr.shape}, its metadata says ({counts[i]}, {dim})"
            )
        flat[starts[i] : starts[i + 1]] = torch.from_numpy(np.ascontiguousarray(arr))
        return counts[i]

    workers = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, n in enumerate(pool.map(read, range(len(order))), 1):
            if progress is not None:
                progress("load", done=done, total=len(order), instances=n)
    offsets = torch.from_numpy(starts[slide_starts].copy())
    targets = torch.zeros(len(patients)) if y is None else torch.as_tensor(np.asarray(y, dtype=np.float32))
    bag_slides = [
        [(order[j][1], counts[j]) for j in range(slide_starts[i], slide_starts[i + 1])]
        for i in range(len(patients))
    ]
    return BagSet(list(patients), flat, offsets, targets, bag_slides)


def gather(
    bags: BagSet,
    index: Tensor,
    device: torch.device,
    keep: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Batch:
    """Pad bags `index` into one batch; with `keep` (B), bag b is reduced to a random keep[b] of its
    instances (kept in their original order). One gather from the flat tensor, whatever B is."""
    starts = bags.offsets[index]
    sizes = bags.offsets[index + 1] - starts
    whole = not (keep is not None and bool((keep < sizes).any()))
    if not whole:
        keep = torch.minimum(keep, sizes)
        longest = int(sizes.max())
        # Random keys, padding keyed past every real instance: the keep[b] smallest keys of row b are a
        # uniform sample without replacement; sorting the chosen positions restores instance order.
        keys = torch.rand((len(index), longest), generator=generator)
        keys.masked_fill_(torch.arange(longest)[None, :] >= sizes[:, None], 2.0)
        width = int(keep.max())
        pos = keys.topk(width, dim=1, largest=False).indices
        mask = torch.arange(width)[None, :] < keep[:, None]
        pos = pos.masked_fill(~mask, longest).sort(dim=1).values
    else:
        width = int(sizes.max())
        pos = torch.arange(width)[None, :].expand(len(index), width)
        mask = pos < sizes[:, None]
    flat_index = (starts[:, None] + pos).masked_fill(~mask, 0)
    feats = bags.features
    mask_dev = mask.to(device, non_blocking=True)
    # index_select on the flat index: ~3.5x faster than advanced indexing with a 2-D index on the CPU.
    rows = feats.index_select(0, flat_index.view(-1).to(feats.device, non_blocking=True))
    x = rows.view(*flat_index.shape, feats.shape[1]).to(device, non_blocking=True).float()
    if not bool(mask.all()):  # padded slots hold row 0's features: zero them, in place
        x.masked_fill_(~mask_dev[..., None], 0.0)
    covariates = None if bags.covariates is None else bags.covariates[index].to(device, non_blocking=True)
    statistics = None
    if whole and bags.statistics is not None:  # a subsampled bag's statistics are its sample's: computed
        statistics = bags.statistics[index].to(device, non_blocking=True)
    return Batch(index, x, mask_dev, bags.y[index].to(device, non_blocking=True), covariates, statistics)


def train_batches(
    bags: BagSet,
    index: np.ndarray,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    max_instances: int | None = None,
    instance_dropout: float = 0.0,
    sample_weights: np.ndarray | None = None,
) -> Iterator[Batch]:
    """One epoch of shuffled, size-bucketed training batches. `sample_weights` (per entry of `index`) draws
    len(index) bags with replacement instead of a permutation (balanced sampling)."""
    index = torch.as_tensor(np.asarray(index), dtype=torch.long)
    n = len(index)
    if sample_weights is not None:
        w = torch.as_tensor(np.asarray(sample_weights, dtype=np.float64))
        order = index[torch.multinomial(w, n, replacement=True, generator=generator)]
    else:
        order = index[torch.randperm(n, generator=generator)]
    sizes = bags.sizes[order]
    keep = sizes.clone()
    if instance_dropout > 0:
        keep = torch.ceil(sizes * (1 - instance_dropout)).long().clamp(min=1)
    if max_instances is not None:
        keep = keep.clamp(max=max_instances)
    window = batch_size * BUCKET_BATCHES
    chunks = []
    for w0 in range(0, n, window):
        part = torch.argsort(keep[w0 : w0 + window], stable=True) + w0
        chunks.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    for c in torch.randperm(len(chunks), generator=generator).tolist():
        sel = chunks[c]
        yield gather(bags, order[sel], device, keep[sel], generator)


def eval_batches(
    bags: BagSet, index: np.ndarray, device: torch.device, max_batch_instances: int
) -> Iterator[Batch]:
    """Every instance of every bag, largest bags first, grouped while batch size x largest N stays within
    `max_batch_instances` (a bag above it runs alone)."""
    index = torch.as_tensor(np.asarray(index), dtype=torch.long)
    sizes = bags.sizes[index]
    order = index[torch.argsort(sizes, descending=True, stable=True)].tolist()
    sizes_sorted = bags.sizes[order].tolist()
    i = 0
    while i < len(order):
        width = max(1, sizes_sorted[i])
        count = max(1, min(len(order) - i, max_batch_instances // width))
        yield gather(bags, torch.tensor(order[i : i + count]), device)
        i += count
