"""`extract()`: slides, cell-image folders or h5 feature files -> one bag per slide in a bag store.

The one library call behind `mil extract`. Per run: discover the inputs, keep this shard's share, build the
encoder, open (or create) the store with the encoder's identity and the run's extraction setting (a store
holds one: `features.pipeline.store_settings`), sweep staging entries of dead writers, mark the records of
killed runs, and decide per slide: skip (a complete bag with matching provenance), refuse (a bag made from
another file: one error, before any work), or extract. The CPU work streams from loader workers
(`features.pipeline.loader`); this process encodes each chunk as it arrives and writes a slide's bag when its
`SlideFinished` record arrives, so a bag is only ever written whole.

Sharding: the inputs are sorted by slide id and shard i of N takes every N-th one starting at i
(round-robin, 0 <= i < N), so N processes on N machines split one cohort into disjoint sets of slides and
never write the same bag. Unsharded runs on one store may also run at once: the store lets the first writer
of a bag win, and the other run counts the slide as skipped (`features.pipeline.provenance.write_bag`).

Failures: bad input found while planning (no such path, nothing to extract in it, a malformed manifest) is
an `InputError` raised before any store or run record exists; a slide that cannot be used fails alone (a
manifest row naming a missing file included), and every failed slide ends with a QC entry that says why
(`features.bagstore.qc.write_failed_qc`; imported .h5 features have no QC).

Progress: `progress(event, **info)` is called with "start" (total, todo, skipped, encoder, random_weights),
"slide_start" (slide_id), "slide_stage" (slide_id, stage, info), "slide_instances" (slide_id, done, total)
and "slide_done" (outcome). The library never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from features.bagstore import BagStore, EncoderIdentity
from features.bagstore.qc import qc_summary, write_failed_qc
from features.core.errors import InputError
from features.pipeline.config import ExtractConfig
from features.pipeline.engines import EncodeRun, ExtractEngine, LocalEngine
from features.pipeline.provenance import SlideOutcome, failed, plan_slides
from features.pipeline.run_record import RunRecord, utc_now
from features.pipeline.store_settings import IMPORTED, open_store, store_settings
from features.sources import discover
from features.sources.base import SlideRef
from features.sources.manifest import UnusableRow

Progress = Callable[..., None]


@dataclass
class ExtractSummary:
    store: Path
    shard: tuple[int, int]
    encoder: EncoderIdentity | None
    outcomes: list[SlideOutcome] = field(default_factory=list)
    seconds: float = 0.0
    run_record: Path | None = None  # the run's record, a zarr group (`BagStore.runs()` reads it)
    swept: list[str] = field(default_factory=list)  # stale staging entries removed at start
    closed_runs: list[str] = field(default_factory=list)  # records of killed runs marked "killed" at start
    repaired: list[str] = field(
        default_factory=list
    )  # "<slide>: <damage>" of damaged bags removed and redone
    stopped_early: bool = False  # skip_errors off and a slide failed
    message: str = ""  # why nothing was done, when nothing was
    notes: list[str] = field(default_factory=list)  # what to know of the bags written (h5 without an mpp)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def instances(self) -> int:
        return sum(o.instances for o in self.outcomes if o.status == "written")

    @property
    def left_out(self) -> int:
        """Inputs left out of the bags written (unreadable cell images, unusable fields)."""
        return sum(o.left_out for o in self.outcomes)


def parse_shard(text: str) -> tuple[int, int]:
    """ "i/N" -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected i/N, e.g. 0/4 (shards count from 0)") from None
    return check_shard((i, n))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise InputError(f"--shard {i}/{n}: need 0 <= i < N (shards count from 0)")
    return i, n


@dataclass
class _Run:
    """One call of `extract`: what it was asked, and the summary it fills in."""

    input: Path
    config: ExtractConfig
    overwrite: bool
    emit: Progress
    command: str | None
    summary: ExtractSummary
    engine: ExtractEngine
    started: float = field(default_factory=time.perf_counter)

    def stop(self, message: str) -> ExtractSummary:
        """The summary of a run that did nothing, saying why."""
        self.summary.message = message
        return self.summary


# Encodes (or imports) the slides to do into the store; True when it stopped at a failure (skip_errors off).
Process = Callable[[list[SlideRef], BagStore], bool]


@dataclass
class _Processor:
    """What fills the store: the encoder identity and extraction setting it pins, and the step itself."""

    identity: EncoderIdentity | None  # None: an h5 import where no file could be read
    settings: dict
    process: Process


def extract(
    input: str | Path,
    store: str | Path,
    config: ExtractConfig,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    progress: Progress | None = None,
    command: str | None = None,
    engine: ExtractEngine | None = None,
) -> ExtractSummary:
    """Extract (or import) every slide of this shard of `input` into the bag store at `store`; `engine` runs the
    encoding (default: `LocalEngine`, this machine; `features.pipeline.engines.ray_extract.RayEngine`: Ray)."""
    summary = ExtractSummary(Path(store), check_shard(shard), None)
    emit = progress or (lambda event, **info: None)
    run = _Run(Path(input), config, overwrite, emit, command, summary, engine or LocalEngine())
    # An input that cannot be planned (no such path, nothing recognisable in it, a malformed manifest) is
    # misuse: its `InputError` reaches the caller (the CLI: one line, exit 2) before any store or record exists.
    found = discover(run.input, config.source, config.mpp)
    refs = _shard(found, summary.shard)
    if not refs:
        return run.stop(f"shard {summary.shard[0]}/{summary.shard[1]} of {input} holds no slides")
    # Manifest rows whose file is missing or unusable: each fails alone, as an unopenable slide does.
    unusable = [r for r in refs if isinstance(r, UnusableRow)]
    refs = [r for r in refs if not isinstance(r, UnusableRow)]
    kinds = _check_kinds(input, refs, config)
    if "fields" in kinds and config.fields.mpp_scope == "run":
        from features.pipeline.field_mpp import pool_run_mpp

        refs = pool_run_mpp(found, refs, config.fields)
    processor = _processor(run, kinds, refs)
    summary.encoder = processor.identity
    summary.outcomes += [failed(ref, ref.problem) for ref in unusable]
    if summary.encoder is None:
        summary.seconds = time.perf_counter() - run.started
        return run.stop("no .h5 file could be read")
    bag_store = open_store(store, summary.encoder, processor.settings)
    summary.swept = bag_store.sweep_stale()
    summary.closed_runs = bag_store.close_dead_runs()
    todo = plan_slides(refs, bag_store, config, overwrite, summary.outcomes, summary.repaired)
    if kinds != {"h5"}:  # imported features have no QC; every other failed slide has a QC entry saying why
        for ref in unusable:
            _failed_qc(bag_store, ref.slide_id, ref.problem)
    record = _run_record(run, bag_store)
    summary.run_record = record.path
    # Slides that failed while planning (unusable rows, changed sources) count as done-with-failure, not skipped.
    planned_failures = sum(o.status == "failed" for o in summary.outcomes)
    run.emit(
        "start",
        total=len(refs) + len(unusable),
        todo=len(todo) + planned_failures,
        skipped=sum(o.status == "skipped" for o in summary.outcomes),
        encoder=summary.encoder,
        random_weights=summary.encoder.weights_sha256 == "random",
    )
    for outcome in summary.outcomes:
        run.emit("slide_done", outcome=outcome)
    process = processor.process
    if unusable and not config.skip_errors:  # --no-skip-errors: a failed row stops the run before any slide
        process = _stop
    _process(run, process, todo, bag_store, record, qc=kinds != {"h5"})
    return summary


def _qc_says_failed(
    bag_store: BagStore, outcomes: list[SlideOutcome], before: dict[str, dict | None]
) -> None:
    """Mark failed the QC of slides that failed after their job wrote it (the encoder refused their crops,
    their bag could not be written): the job itself marks the failures it sees. `before`: each slide's QC
    summary before the run, so that QC this run wrote is told from an earlier run's, which a failure keeps."""
    for o in outcomes:
        if o.status != "failed" or o.slide_id not in before:
            continue
        now = qc_summary(bag_store.path, o.slide_id)
        if now is not None and now.get("status") == "failed":
            continue
        fresh = now if now is not None and now != before[o.slide_id] else None  # written by this run
        if fresh is not None and bag_store.has(o.slide_id):
            continue  # an --overwrite that failed: the earlier bag stands, its QC is not marked failed
        try:
            write_failed_qc(bag_store.path, o.slide_id, o.message, fresh)
        except OSError:
            pass


def _stop(todo: list[SlideRef], store: BagStore) -> bool:
    """The step of a run that stops before any slide (a failure already recorded, skip_errors off)."""
    return True


def _failed_qc(bag_store: BagStore, slide_id: str, error: str) -> None:
    try:
        write_failed_qc(bag_store.path, slide_id, error)
    except OSError:  # the outcome and the run record still say why; a QC entry is not worth stopping for
        pass


def _check_kinds(input: str | Path, refs: list[SlideRef], config: ExtractConfig) -> set[str]:
    """The kinds of input this run holds, refusing the mixes and settings that cannot go together."""
    kinds = {r.kind for r in refs}
    if "h5" in kinds and kinds != {"h5"}:
        raise InputError(
            f"{input}: mixes .h5 feature files with slides or cell folders; import them separately"
        )
    if config.unit == "tiles" and kinds & {"cells", "fields"}:
        raise InputError(
            f"{input}: cell-image and field folders give one instance per image or per detected cell; "
            "--unit tiles is for slides"
        )
    return kinds


def _processor(run: _Run, kinds: set[str], refs: list[SlideRef]) -> _Processor:
    """The store's encoder identity and setting, and the step that fills it: the h5 importer (identity from
    the files; None when none could be read), or the encoder, built now so a missing weight file fails before
    any work."""
    config, summary = run.config, run.summary
    if kinds == {"h5"}:
        from features.pipeline.h5_import import H5Importer

        if run.engine.name != "local":
            raise InputError(
                f"{run.input}: .h5 files are imported, not encoded; import them without --engine"
            )

        importer = H5Importer(refs, config, summary.outcomes, summary.notes)
        return _Processor(
            importer.identity(),
            dict(IMPORTED),
            lambda todo, store: importer.run(todo, store, run.overwrite, run.emit),
        )

    _check_encoder_name(config)
    encoder = run.engine.build_encoder(config)
    identity = EncoderIdentity(encoder.name, encoder.weights_sha256, encoder.dim, config.unit)

    def encode(todo: list[SlideRef], store: BagStore) -> bool:
        job = EncodeRun(encoder, identity, config, store, run.overwrite, run.emit)
        return run.engine.encode(job, todo, summary.outcomes)

    return _Processor(identity, store_settings(config, encoder.input_px), encode)


def _run_record(run: _Run, bag_store: BagStore) -> RunRecord:
    """The run's record in the store, written before any slide: config, command, encoder, what was swept."""
    summary = run.summary
    return RunRecord(
        bag_store,
        summary.shard,
        {
            "input": str(run.input.resolve()),
            "store": str(bag_store.path.resolve()),
            "overwrite": run.overwrite,
            "seed": run.config.seed,
            "config": run.config.model_dump(mode="json"),
            "encoder": asdict(summary.encoder),
            "swept": summary.swept,
            "engine": run.engine.describe(),
            "closed_runs": summary.closed_runs,
            "repaired": summary.repaired,
            **({"command": run.command} if run.command else {}),
        },
    )


def _process(
    run: _Run, process: Process, todo: list[SlideRef], bag_store: BagStore, record: RunRecord, qc: bool
) -> None:
    """Run `process` over the slides to do; the run record gets the outcome even when it is interrupted.
    With `qc` (not an h5 import) every slide that failed ends with a QC entry that says so."""
    summary = run.summary
    completed = False
    before = {ref.slide_id: qc_summary(bag_store.path, ref.slide_id) for ref in todo} if qc else {}
    try:
        summary.stopped_early = process(todo, bag_store)
        completed = True
        _qc_says_failed(bag_store, summary.outcomes, before)
    finally:
        summary.seconds = time.perf_counter() - run.started
        summary.outcomes.sort(key=lambda o: o.slide_id)
        record.update(
            status="stopped" if summary.stopped_early else "finished" if completed else "interrupted",
            finished_at=utc_now(),
            seconds=round(summary.seconds, 3),
            outcomes=[asdict(o) for o in summary.outcomes],
            totals={
                **{s: summary.count(s) for s in ("written", "skipped", "failed")},
                "inputs_left_out": summary.left_out,
            },
            notes=summary.notes,
        )


def _check_encoder_name(config: ExtractConfig) -> None:
    # With source=h5 the config accepted any name; an encoding run needs a registered one.
    from features.encoders import ENCODERS

    ENCODERS.check(config.encoder)


def _shard(refs: list[SlideRef], shard: tuple[int, int]) -> list[SlideRef]:
    by_id: dict[str, SlideRef] = {}
    for ref in refs:
        if ref.slide_id in by_id:
            raise InputError(
                f"slide id {ref.slide_id!r} names two inputs ({by_id[ref.slide_id].path} and {ref.path}); "
                "rename one or use a manifest with distinct slide_id values"
            )
        by_id[ref.slide_id] = ref
    ordered = [by_id[k] for k in sorted(by_id)]
    return ordered[shard[0] :: shard[1]]


__all__ = ["ExtractSummary", "SlideOutcome", "extract", "parse_shard"]
