"""Seeded fuzz over the cell, field and slide sources (issue 13, the suite): random bytes, truncations, flipped
bytes, odd names (unicode, spaces, leading dashes, newlines, 240 characters, bytes that are not UTF-8), odd
image modes, special files. Each case damages one patient (or adds one slide) of a tiny cohort and runs
`mil extract` into a copy of the clean store without that patient's bag.

Every case must end without a traceback, with exit code 0 (written, bad inputs left out), 2 (refused in one
line) or 3 (that slide failed, one line), and change nothing in the store outside the slide concerned; a rerun
must hold to the same. The cases are drawn from a seeded generator (`SEED`): a failure names its case id, and
`pytest -k <id>` replays it.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from features.bagstore import BagStore
from features.pipeline.extract import extract
from features.synth import SynthConfig, generate_cohort
from tests.faults.extract.conftest import CFG, FAST, cli, copy_tree, differing

SEED = 13


# -- mutations: each takes (rng, variant, folder) and adds or changes files in `folder` ------------------------
def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg", ".tiff"))


def _random_bytes(rng: random.Random, variant: str, folder: Path) -> None:
    size = {"empty": 0, "one byte": 1, "small": 300, "large": 50_000}[variant]
    (folder / f"junk{rng.randrange(1000)}{rng.choice(SUFFIXES[folder.name == 'slides'])}").write_bytes(
        rng.randbytes(size)
    )


def _truncated(rng: random.Random, variant: str, folder: Path) -> None:
    src = rng.choice(_images(folder))
    data = src.read_bytes()
    keep = {"header only": 64, "half": len(data) // 2, "all but the end": len(data) - 16}[variant]
    (folder / f"cut{rng.randrange(1000)}{src.suffix}").write_bytes(data[:keep])


def _flipped(rng: random.Random, variant: str, folder: Path) -> None:
    src = rng.choice(_images(folder))
    data = bytearray(src.read_bytes())
    for _ in range(int(variant)):
        data[rng.randrange(len(data) // 8, len(data))] = rng.randrange(256)
    (folder / f"flip{rng.randrange(1000)}{src.suffix}").write_bytes(bytes(data))


def _odd_name(rng: random.Random, variant: str, folder: Path) -> None:
    src = rng.choice(_images(folder))
    name = variant + src.suffix
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, folder / name)


def _latin1_name(rng: random.Random, variant: str, folder: Path) -> None:
    """A name in Latin-1 bytes (old Windows exports): not UTF-8, so Python sees lone surrogates."""
    src = rng.choice(_images(folder))
    with open(os.fsencode(folder) + b"/Zelle-\xe9-" + os.fsencode(src.name), "wb") as fh:
        fh.write(src.read_bytes())


def _odd_image(rng: random.Random, variant: str, folder: Path) -> None:
    arr = np.random.default_rng(rng.randrange(2**32)).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    path = folder / f"odd-{variant}.{'jpg' if variant == 'cmyk' else 'png'}"
    if variant == "1x1":
        Image.fromarray(arr[:1, :1]).save(path)
    elif variant == "16-bit":
        Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(path)
    elif variant == "1-bit":
        Image.fromarray(arr[..., 0] > 127).save(path)
    elif variant == "cmyk":
        Image.fromarray(arr).convert("CMYK").save(path)
    elif variant == "palette+alpha":
        Image.fromarray(arr).convert("P").save(path, transparency=0)
    elif variant == "rgba":
        Image.fromarray(np.dstack([arr, arr[..., :1]])).save(path)
    else:  # "bomb": a PNG header claiming 100,000 x 100,000 px
        chunk = b"IHDR" + struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
        header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
        path.write_bytes(header + b"\x00" * 64)


def _special(rng: random.Random, variant: str, folder: Path) -> None:
    path = folder / f"special-{variant}{rng.choice(SUFFIXES[folder.name == 'slides'])}"
    if variant == "fifo":
        os.mkfifo(path)
    elif variant == "folder":
        path.mkdir()
        (path / "inner.txt").write_text("x")
    elif variant == "dangling link":
        path.symlink_to(folder / "does-not-exist.png")
    elif variant == "link loop":
        path.symlink_to(path)
    else:  # "device"
        path.symlink_to("/dev/zero")


def _renamed_patient(rng: random.Random, variant: str, folder: Path) -> None:
    raw = os.fsencode(folder.parent) + b"/" + (b"P\xe9002" if variant == "latin-1" else os.fsencode(variant))
    os.rename(folder, raw)


def _empty_patient(rng: random.Random, variant: str, folder: Path) -> None:
    (folder.parent / "P999").mkdir()
    if variant == "notes only":
        (folder.parent / "P999" / "notes.txt").write_text("no images here")


def _plain_tiff(rng: random.Random, variant: str, folder: Path) -> None:
    """An untiled single-page TIFF among slides (a camera field or a scan export): no pyramid, no mpp."""
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(folder / "plain.tiff")


SUFFIXES = {False: (".png", ".jpg", ".tif", ".bmp"), True: (".svs", ".tiff", ".ndpi", ".dcm")}
ODD_NAMES = ["Zelle ü é 1", "two  spaces, comma; %20", "-rf", "new\nline", "y" * 240, "ÄÖÜ/深い", ".hidden"]
FILE_MUTATIONS = {
    "random_bytes": (_random_bytes, ["empty", "one byte", "small", "large"]),
    "truncated": (_truncated, ["header only", "half", "all but the end"]),
    "flipped": (_flipped, ["1", "16", "256"]),
    "odd_name": (_odd_name, ODD_NAMES),
    "latin1_name": (_latin1_name, ["-"]),
    "odd_image": (_odd_image, ["1x1", "16-bit", "1-bit", "cmyk", "palette+alpha", "rgba", "bomb"]),
    "special": (_special, ["fifo", "folder", "dangling link", "link loop", "device"]),
}
PATIENT_MUTATIONS = {
    "renamed_patient": (_renamed_patient, ["Patient ü 2", "P 002, left", "z" * 240, "-P002", "latin-1"]),
    "empty_patient": (_empty_patient, ["empty", "notes only"]),
}
SLIDE_MUTATIONS = {
    **{k: FILE_MUTATIONS[k] for k in ("random_bytes", "truncated", "flipped", "latin1_name", "special")},
    "odd_name": (_odd_name, ODD_NAMES[:5]),
    "plain_tiff": (_plain_tiff, ["-"]),
}


@dataclass(frozen=True)
class Case:
    kind: str  # "cells" | "fields" | "slides"
    mutation: str
    variant: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.mutation}-{self.variant[:20]}".replace("\n", "_").replace("/", "_")


def _cases() -> list[Case]:
    """Every (mutation, variant) for cells and slides; fields get each mutation once, variant drawn."""
    rng = random.Random(SEED)
    cases = []
    for kind, table in (("cells", FILE_MUTATIONS | PATIENT_MUTATIONS), ("slides", SLIDE_MUTATIONS)):
        cases += [
            Case(kind, m, v, rng.randrange(2**32)) for m, (_, variants) in table.items() for v in variants
        ]
    for m, (_, variants) in (FILE_MUTATIONS | PATIENT_MUTATIONS).items():
        cases.append(Case("fields", m, rng.choice(variants), rng.randrange(2**32)))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def sources(cohort, tmp_path_factory):
    """Per kind: the pristine input, the fixed path each case restores it to (bags record their source path,
    so the clean store and every case must read from the same place), and the clean store made from it."""
    root = tmp_path_factory.mktemp("fuzz")
    fields = root / "fields_cohort"
    generate_cohort(fields, SynthConfig(patients=3, sites=1, seed=8, layout="fields", fields_per_patient=2,
                                        field_px=400))  # fmt: skip
    out = {}
    for kind, pristine in (
        ("cells", cohort / "cells"),
        ("fields", fields / "fields"),
        ("slides", cohort / "slides"),
    ):
        work = copy_tree(pristine, root / "work" / kind)
        store = root / "clean" / f"{kind}.zarr"
        assert [o.status for o in extract(work, store, CFG).outcomes] == ["written"] * 3
        out[kind] = (pristine, work, store)
    return out


def _mutate(case: Case, source: Path) -> None:
    table = SLIDE_MUTATIONS if case.kind == "slides" else FILE_MUTATIONS | PATIENT_MUTATIONS
    mutate, _ = table[case.mutation]
    mutate(random.Random(case.seed), case.variant, source if case.kind == "slides" else source / "P002")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_one_input(case, sources, tmp_path, ledger):
    pristine, source, store_clean = sources[case.kind]
    shutil.rmtree(source)
    copy_tree(pristine, source)
    _mutate(case, source)
    store = copy_tree(store_clean, tmp_path / "bags.zarr")
    if case.kind != "slides":  # P002 is the patient concerned: its bag is made again, the others stay
        BagStore(store, "a").discard("P002")
    kept = {p: (p / "zarr.json").stat().st_mtime_ns for p in (store / "bags").iterdir() if p.is_dir()}
    clean_ids = set(BagStore(store_clean).slide_ids())
    may_change = {"P002", "P999"} if case.kind != "slides" else set()

    codes = []
    for attempt in ("run", "rerun"):
        run = cli("extract", source, "-o", store, *FAST)
        assert run.traceback is None, f"{case.id} {attempt}: traceback\n{run.traceback}"
        assert "Traceback" not in run.output and run.code in (0, 2, 3), f"{case.id} {attempt}:\n{run.output}"
        bags = BagStore(store)
        new = set(bags.slide_ids()) - clean_ids  # a renamed patient, an added slide: the case's own
        changed = differing(store, store_clean, exclude=may_change | new)
        assert changed == [], f"{case.id} {attempt}: bags outside the case changed: {changed}\n{run.output}"
        for path, mtime in kept.items():  # not even rewritten with the same values
            assert (path / "zarr.json").stat().st_mtime_ns == mtime, (
                f"{case.id} {attempt}: {path.name} rewritten"
            )
        assert bags.pending() == [] and len(new) <= 1
        codes.append(run.code)
    ledger("fuzz", case.id, f"exit {codes[0]} then {codes[1]} on the rerun; nothing outside the case changed")
