"""Import CLAM / TRIDENT / STAMP .h5 feature files into a bag store (`mil extract FEATURES_DIR --source h5`).

No pixels are read and nothing is encoded: each file becomes one bag as it is (format details and the
mapping decisions are in `features.sources.h5`). The store's encoder identity is
`(name, "imported:<tool>", dim, unit)`:
- name: the user's explicit `--encoder` (`extract.encoder` set anywhere) else STAMP's `extractor` attr; a
  CLAM/TRIDENT file with no explicit name is refused rather than labelled with the default encoder;
- unit: the explicit `extract.unit`, else "tiles" (all three tools write tile features).
The identity comes from the first readable file; a later file from another tool or of another width fails
alone (the store refuses it) while the rest import.

mpp: the user's (`--mpp`, a manifest row), else STAMP's tile grid, else none: CLAM and TRIDENT files record
no pixel size, and a magnification is not one. Such bags are imported (training and prediction need no mpp,
and imported features have no pixels to show), and the run says so in one note (`ExtractSummary.notes`),
since their positions then have no µm scale: `mil cells` labels placed by x, y are refused for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from features.bagstore import Bag, BagStore, EncoderIdentity
from features.core.errors import MilError, SlideError
from features.pipeline.config import ExtractConfig
from features.pipeline.provenance import LANDED, SlideOutcome, failed, skipped, write_bag
from features.sources.base import SlideRef
from features.sources.h5 import ImportedBag, read_h5_bag


class H5Importer:
    def __init__(
        self,
        refs: list[SlideRef],
        config: ExtractConfig,
        outcomes: list[SlideOutcome],
        notes: list[str],
    ):
        self.refs, self.config, self.outcomes, self.notes = refs, config, outcomes, notes
        self._read: dict[str, ImportedBag] = {}  # the file that fixed the identity, read once
        self._bad: set[str] = set()
        self._no_mpp: list[str] = []  # slides whose bag this run wrote without an mpp

    def _name(self, bag: ImportedBag, ref: SlideRef) -> str:
        if "encoder" in self.config.model_fields_set:
            return self.config.encoder
        if bag.encoder_name:
            return bag.encoder_name
        raise SlideError(
            str(ref.path),
            f"this {bag.tool.upper()} file does not record its encoder; pass --encoder NAME (e.g. uni_v1)",
        )

    def _unit(self) -> str:
        return self.config.unit if "unit" in self.config.model_fields_set else "tiles"

    def _load(self, ref: SlideRef) -> ImportedBag:
        mpp = ref.mpp if ref.mpp is not None else self.config.mpp
        source = ref.mpp_source if ref.mpp is not None else ("user" if self.config.mpp is not None else None)
        return read_h5_bag(ref.path, mpp, source)

    def identity(self) -> EncoderIdentity | None:
        """From the first file that reads; unreadable files before it are recorded as failed."""
        for ref in self.refs:
            try:
                bag = self._load(ref)
                name = self._name(bag, ref)
            except MilError as exc:
                self.outcomes.append(failed(ref, " ".join(str(exc).split())))
                self._bad.add(ref.slide_id)
                continue
            self._read[ref.slide_id] = bag
            return EncoderIdentity(name, f"imported:{bag.tool}", int(bag.features.shape[1]), self._unit())
        return None

    def run(
        self, todo: list[SlideRef], bag_store: BagStore, overwrite: bool, emit: Callable[..., None]
    ) -> bool:
        """Import `todo`; True when stopped early (skip_errors off and a file failed). Bags written without an
        mpp are named in one note."""
        try:
            return self._run(todo, bag_store, overwrite, emit)
        finally:
            if self._no_mpp:
                self.notes.append(no_mpp_note(self._no_mpp))

    def _run(
        self, todo: list[SlideRef], bag_store: BagStore, overwrite: bool, emit: Callable[..., None]
    ) -> bool:
        if self._bad and not self.config.skip_errors:
            return True
        for ref in todo:
            if ref.slide_id in self._bad:
                continue
            started = time.perf_counter()
            emit("slide_start", slide_id=ref.slide_id)
            try:
                n, landed = self._import(ref, bag_store, overwrite)
                seconds = round(time.perf_counter() - started, 3)
                outcome = (
                    SlideOutcome(ref.slide_id, ref.patient_id, str(ref.path), "written", "", n, seconds)
                    if landed
                    else skipped(ref, LANDED, n)
                )
            except (MilError, OSError) as exc:  # OSError: the store's file system refused this bag
                outcome = failed(ref, " ".join(str(exc).split()), time.perf_counter() - started)
            self.outcomes.append(outcome)
            emit("slide_done", outcome=outcome)
            if outcome.status == "failed" and not self.config.skip_errors:
                return True
        return False

    def _import(self, ref: SlideRef, bag_store: BagStore, overwrite: bool) -> tuple[int, bool]:
        """Write one file's features as a bag: its instance count, and False when another run landed the bag
        first. A file made with another encoder than the store's is refused."""
        bag = self._read.pop(ref.slide_id, None) or self._load(ref)
        name = self._name(bag, ref)
        identity = EncoderIdentity(name, f"imported:{bag.tool}", int(bag.features.shape[1]), self._unit())
        if identity != bag_store.encoder:
            raise SlideError(
                str(ref.path),
                f"{identity.describe()} does not fit the store's {bag_store.encoder.describe()}; "
                "import it into another store",
            )
        info: dict[str, Any] = {"h5": {"tool": bag.tool, "encoder_attr": bag.encoder_name, **bag.info}}
        landed = write_bag(
            bag_store,
            ref,
            Bag(features=bag.features, coords=bag.coords),
            self.config,
            overwrite,
            mpp=bag.mpp,
            mpp_source=bag.mpp_source,
            crop_um=bag.tile_um,
            crop_px=bag.tile_px,
            settings=info,
        )
        if landed and bag.mpp is None:
            self._no_mpp.append(ref.slide_id)
        return len(bag.features), landed


def no_mpp_note(slides: list[str]) -> str:
    """One line naming the bags imported without an mpp, what that costs, and the fix."""
    named = ", ".join(slides[:3]) + (f" and {len(slides) - 3} more" if len(slides) > 3 else "")
    return (
        f"{len(slides)} bag(s) imported without an mpp ({named}): their .h5 files record no pixel size, so "
        "positions have no µm scale (`mil cells` labels by x, y cannot be placed on them; training and "
        "prediction do not need it); if the scanner's mpp is known, rerun with --mpp (or a manifest's mpp "
        "column) and --overwrite"
    )
