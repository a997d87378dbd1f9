"""The CPU work for one patient's microscope fields, inside a loader worker: one bag from many small images.

Why per patient and not per field: a field is a few hundred kilopixels holding one to a dozen cells, so anything
paid per input (a QC map, a thumbnail, a bag write, an encoder call for two crops) would cost more than the
pixels (1.4 s per 640 x 480 field through the slide path). Here a field costs its decode, a red-cell measurement
when the mpp is estimated, QC and detection on a 0.5 µm/px copy, and its crops; the crops of all the patient's
fields stream out together in chunks of `batch_size`, so the encoder sees full batches.

Per patient:
1. mpp: a field's own (a manifest row), else `--mpp`, else estimated from the red cells of all the patient's
   fields that have none (`features.smear.mpp_estimate`; or the run's, `features.pipeline.field_mpp`, with
   `fields.mpp_scope` "run"); too few red cells, or an estimate whose 95 % interval is wider than
   `fields.max_mpp_uncertainty`, refuses the patient in one line;
2. each field: QC (`features.smear.field_qc`: too small, empty, overexposed are skipped; blur is a flag), then
   nucleated cells (`features.smear.field_detect`);
3. an optional seeded subsample over the patient's cells (`max_instances`), then crops of `crop_um` around each
   cell, cut from the field at its own mpp (`FieldImage` has the slide reader's surface).
A field that cannot be used (unreadable, grayscale, too small, empty, overexposed) is one `Notice` line and the
rest go on; the QC JSON lists every field with its figures and verdict. Decoded fields are kept between the
passes up to `CACHE_BYTES` (a patient's 640 x 480 fields fit many times over), else read again.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from features.bagstore import SlideQC
from features.core.errors import SlideError
from features.pipeline.records import CropChunk, Notice, Record, SlideFinished, Stage
from features.sources.base import SlideRef, implausible_mpp, printable

if TYPE_CHECKING:
    from features.pipeline.slide_job import SlideJob
    from features.smear.mpp_estimate import MppEstimate

CACHE_BYTES = 768 * 2**20
ESTIMATED = "red cells"  # mpp_source of an estimated mpp


class _Decoded:
    """Decoded fields of one patient, kept while they fit in `budget` bytes."""

    def __init__(self, folder: Path, budget: int = CACHE_BYTES):
        self.folder, self.budget, self.kept, self.used = folder, budget, {}, 0

    def get(self, name: str) -> np.ndarray:
        from features.sources.fields import read_field_image

        if name in self.kept:
            return self.kept[name]
        rgb = read_field_image(self.folder / name)
        if self.used + rgb.nbytes <= self.budget:
            self.kept[name] = rgb
            self.used += rgb.nbytes
        return rgb


def _given_mpp(ref: SlideRef, i: int) -> tuple[float | None, str | None]:
    mpp_of = getattr(ref, "mpp_of", None)
    return mpp_of(i) if mpp_of is not None else (ref.mpp, ref.mpp_source)


class _Used(NamedTuple):
    """A field that went through QC: its mpp, and the cells detected on it."""

    name: str
    mpp: float
    source: str | None
    xy: np.ndarray
    area: np.ndarray
    in_focus: bool


def field_records(job: SlideJob, index: int, ref: SlideRef, qc: dict[str, Any]) -> Iterator[Record]:
    """One patient's records: mpp, QC and cells per field, then the crops of all its fields (steps above)."""
    if not ref.images:
        raise SlideError(ref.slide_id, f"folder {ref.path} holds no field images")
    patient = _PatientFields(job, index, ref, qc)
    yield Stage(index, ref.slide_id, "read", {"total": len(patient.names)})
    if getattr(ref, "mpp_estimate", None):  # the run's estimate (fields.mpp_scope "run")
        qc["mpp_estimate"] = ref.mpp_estimate
    estimate = None
    if any(mpp is None for mpp, _ in patient.given):
        estimate = yield from patient.estimate_mpp()
    yield Stage(index, ref.slide_id, "detect", {"total": len(patient.names)})
    used = yield from patient.detect(estimate)
    patient.record_fields(used)
    n_found, keep = patient.record_cells(used)
    chosen = np.zeros(n_found, bool)
    chosen[keep if keep is not None else slice(None)] = True
    yield Stage(index, ref.slide_id, "crops", {"total": int(chosen.sum())})
    yield from patient.crops(used, chosen)
    job.store.write_qc(ref.slide_id, SlideQC({**qc, "status": "cropped"}))
    cfg = job.config
    mpps = np.array([f.mpp for f in used])
    subsample = None if keep is None else {"seed": cfg.seed, "from": n_found, "kept": len(keep)}
    yield SlideFinished(
        index, ref.slide_id, int(chosen.sum()), qc, float(np.median(mpps)), qc["mpp_source"], cfg.crop_um,
        subsample,
    )  # fmt: skip


class _PatientFields:
    """One patient's fields while its bag is made: the decoded images, one QC row per field, the notices."""

    def __init__(self, job: SlideJob, index: int, ref: SlideRef, qc: dict[str, Any]):
        self.job, self.index, self.ref, self.qc = job, index, ref, qc
        self.params = job.config.fields
        self.names = list(ref.images)
        self.decoded = _Decoded(ref.path)
        self.rows: dict[str, dict[str, Any]] = {name: {"file": name} for name in self.names}
        self.given = [_given_mpp(ref, i) for i in range(len(self.names))]

    def leave_out(self, name: str, reason: str, unreadable: bool = False) -> Notice:
        """The notice for a field left out; an unreadable one fails the patient under `extract.strict`."""
        from features.pipeline.provenance import leave_out

        notice = leave_out(self.index, self.ref, name, reason, unreadable and self.job.config.strict)
        self.rows[name].update(status="skipped", problem=reason)
        return notice

    def estimate_mpp(self) -> Generator[Notice, None, MppEstimate]:
        """The pixel size from the red cells of the fields without one; refuses the patient when too few
        red cells were found or the estimate is too uncertain."""
        from features.smear.mpp_estimate import estimate_mpp, measure_red_cells, red_cell_sizes

        ref, params = self.ref, self.params
        measured = {}
        for name, (mpp, _) in zip(self.names, self.given, strict=True):
            if mpp is not None:
                continue
            try:
                measured[name] = measure_red_cells(self.decoded.get(name))
            except SlideError as exc:
                yield self.leave_out(name, _reason(exc, ref.path / name), unreadable=True)
        estimate = estimate_mpp(measured, params.rbc_diameter_um, params.min_red_cells)
        self.qc.update(fields_total=len(self.names), fields=list(self.rows.values()))
        if estimate is None:
            singles = np.concatenate([m.diameters_px for m in measured.values()] or [np.zeros(0)])
            red = len(red_cell_sizes(singles))  # what min_red_cells is compared with
            pool = (
                ", or --set extract.fields.mpp_scope=run to pool every patient's red cells (one camera)"
                if params.mpp_scope == "patient"
                else ""
            )
            raise SlideError(
                ref.slide_id,
                f"too few red cells to estimate the pixel size ({red} single red cell(s) in {len(measured)} "
                f"field(s), under fields.min_red_cells {params.min_red_cells}; {len(singles) - red} other "
                "single object(s) left out as not of red-cell size: platelets, debris); pass --mpp, an mpp "
                f"column in a manifest{pool}",
            )
        self.qc["mpp_estimate"] = estimate.to_dict()
        implausible = implausible_mpp(estimate.mpp)
        if implausible:  # the same bound as --mpp and slide metadata: red cells measured at a nonsense scale
            raise SlideError(
                ref.slide_id, f"red cells give {implausible}; pass --mpp, or an mpp column in a manifest"
            )
        lo, hi = estimate.ci95
        if max(estimate.mpp - lo, hi - estimate.mpp) > params.max_mpp_uncertainty * estimate.mpp:
            raise SlideError(
                ref.slide_id,
                f"pixel size too uncertain: red cells give {estimate.mpp:.4f} µm/px (95 % {lo:.4f}-{hi:.4f}) "
                f"from {estimate.n_cells} single cell(s); pass --mpp, or an mpp column in a manifest",
            )
        return estimate

    def detect(self, estimate: MppEstimate | None) -> Generator[Notice, None, list[_Used]]:
        """QC, then nucleated cells, on each field not already left out; the fields that passed QC."""
        from features.smear.field_detect import detect_field
        from features.smear.field_qc import assess_field

        cfg, rows = self.job.config, self.rows
        used: list[_Used] = []
        for name, (mpp, source) in zip(self.names, self.given, strict=True):
            if rows[name].get("status") == "skipped":
                continue
            if mpp is None:
                mpp, source = estimate.mpp, ESTIMATED
            try:
                rgb = self.decoded.get(name)
            except SlideError as exc:
                yield self.leave_out(name, _reason(exc, self.ref.path / name), unreadable=True)
                continue
            field_qc = assess_field(rgb, mpp, self.params)
            rows[name].update(mpp=round(mpp, 6), mpp_source=source, **field_qc.to_dict())
            if field_qc.problem:
                yield self.leave_out(name, field_qc.problem)
                continue
            xy, area = detect_field(rgb, mpp, cfg.detect, self.params)
            if cfg.detect.require_in_focus and not field_qc.in_focus:
                xy, area = xy[:0], area[:0]
            rows[name].update(status="used", cells=len(xy))
            used.append(_Used(name, mpp, source, xy, area, field_qc.in_focus))
        return used

    def record_fields(self, used: list[_Used]) -> None:
        """The per-field part of the QC; refuses the patient when no field could be used."""
        rows = self.rows
        self.qc.update(
            unit="cells",
            source="fields",
            fields_total=len(self.names),
            fields_used=len(used),
            fields_skipped=sum(1 for r in rows.values() if r.get("status") == "skipped"),
            mpp_source=_summary_source(used),
            fields=list(rows.values()),
        )
        if not used:
            raise SlideError(
                self.ref.slide_id,
                f"none of its {len(self.names)} field(s) could be used (see the lines above)",
            )

    def record_cells(self, used: list[_Used]) -> tuple[int, np.ndarray | None]:
        """The cell counts and focus in the QC (written now, so a later failure leaves it behind); the cells
        found and the seeded subsample (`max_instances`). Refuses the patient when no cell was found."""
        from features.pipeline.slide_job import subsample_index

        cfg, ref, qc = self.job.config, self.ref, self.qc
        n_found = int(sum(len(f.xy) for f in used))
        keep = subsample_index(n_found, cfg.max_instances, cfg.seed, ref.slide_id)
        focus = np.array([self.rows[f.name]["focus"] for f in used], np.float64)
        qc.update(
            instances_found=n_found,
            instances_kept=n_found if keep is None else len(keep),
            focus_median=float(np.nanmedian(focus)) if np.isfinite(focus).any() else None,
            share_in_focus=float(np.mean([f.in_focus for f in used])),
        )
        self.job.store.write_qc(ref.slide_id, SlideQC({**qc, "status": "detected"}))
        if n_found == 0:
            raise SlideError(
                ref.slide_id,
                f"no nucleated cells found in {len(used)} usable field(s) (see its QC: `mil bags qc`)",
            )
        return n_found, keep

    def crops(self, used: list[_Used], chosen: np.ndarray) -> Iterator[CropChunk]:
        """Crops of the chosen cells, field after field, in chunks of `batch_size` across fields."""
        from features.smear.crops import read_crops
        from features.sources.fields import FieldImage

        cfg, px = self.job.config, self.job.input_px
        offsets = np.concatenate([[0], np.cumsum([len(f.xy) for f in used])])
        parts: list[tuple[np.ndarray, np.ndarray, list[str], dict[str, np.ndarray]]] = []
        pending = 0
        for k, (name, mpp, source, xy, area, in_focus) in enumerate(used):
            pick = chosen[offsets[k] : offsets[k + 1]]
            if not pick.any():
                continue
            xy, area = xy[pick], area[pick]
            reader = FieldImage(self.decoded.get(name), mpp, source, name)
            crops = read_crops(reader, xy, cfg.crop_um, px)
            obs = {
                "in_focus": np.full(len(xy), in_focus, bool),
                "area_um2": area.astype(np.float32),
                "mpp": np.full(len(xy), mpp, np.float32),
            }
            parts.append((crops, np.floor(xy).astype(np.int64), [name] * len(xy), obs))
            pending += len(xy)
            while pending >= cfg.batch_size:
                chunk, parts, pending = _take(parts, cfg.batch_size)
                yield _chunk(self.index, self.ref, chunk)
        if pending:
            chunk, parts, pending = _take(parts, pending)
            yield _chunk(self.index, self.ref, chunk)


def _take(parts: list, n: int) -> tuple[list, list, int]:
    """The first `n` cells of the buffered parts, and what remains."""
    out, rest, need = [], [], n
    for crops, xy, names, obs in parts:
        if need <= 0:
            rest.append((crops, xy, names, obs))
            continue
        m = min(need, len(xy))
        out.append((crops[:m], xy[:m], names[:m], {k: v[:m] for k, v in obs.items()}))
        if m < len(xy):
            rest.append((crops[m:], xy[m:], names[m:], {k: v[m:] for k, v in obs.items()}))
        need -= m
    return out, rest, sum(len(p[1]) for p in rest)


def _chunk(index: int, ref: SlideRef, parts: list) -> CropChunk:
    import torch

    images = np.concatenate([p[0] for p in parts])
    coords = np.concatenate([p[1] for p in parts])
    names = [name for p in parts for name in p[2]]
    obs = {key: np.concatenate([p[3][key] for p in parts]) for key in parts[0][3]}
    return CropChunk(index, ref.slide_id, torch.from_numpy(np.ascontiguousarray(images)), coords, names, obs)


def _reason(exc: SlideError, path: Path) -> str:
    """The error's message without the path it starts with (the notice names the file itself)."""
    text = " ".join(str(exc).split())
    return text.removeprefix(f"{printable(str(path))}: ")


def _summary_source(used: list[_Used]) -> str | None:
    sources = sorted({f.source for f in used if f.source})
    return sources[0] if len(sources) == 1 else ("mixed" if sources else None)


__all__ = ["field_records"]
