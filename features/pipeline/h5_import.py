"""Import CLAM / TRIDENT / STAMP .h5 feature files into a bag store (`mil extract FEATURES_DIR --source h5`).

No pixels are read and nothing is encoded: each file becomes one bag as it is (format details and the
mapping decisions are in `features.sources.h5`). The store's encoder identity is
`(name, "imported:<tool>", dim, unit)`:
- name: the user's explicit `--encoder` (`extract.encoder` set anywhere) else STAMP's `extractor` attr; a
  CLAM/TRIDENT file with no explicit name is refused rather than labelled with the default encoder;
- unit: the explicit `extract.unit`, else "tiles" (all three tools write tile features).
The identity comes from the first readable file; a later file from another tool or of another width fails
alone (the store refuses it) while the rest import.
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
    def __init__(self, refs: list[SlideRef], config: ExtractConfig, outcomes: list[SlideOutcome]):
        self.refs, self.config, self.outcomes = refs, config, outcomes
        self._read: dict[str, ImportedBag] = {}  # the file that fixed the identity, read once
        self._bad: set[str] = set()

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
        """Import `todo`; True when stopped early (skip_errors off and a file failed)."""
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
        return len(bag.features), landed
