"""A slide is one bag, and a bag stands for its source as it was: a slide renamed by a same-named file
elsewhere is refused before any work (the store would hold it twice), and a source changed since its bag was
extracted fails alone instead of being skipped (`features.pipeline.provenance`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from features.bagstore import BagStore
from tests.faults.extract.conftest import FAST, cli, copy_tree, differing, error_lines


def store_files(store: Path) -> list[Path]:
    return sorted(p.relative_to(store) for p in store.rglob("*") if "runs" not in p.parts)


def failures(run) -> list[str]:
    return [
        line.removeprefix("failed ").strip() for line in run.output.splitlines() if line.startswith("failed ")
    ]


def test_a_slide_renamed_by_a_same_named_file_is_refused(cohort, tmp_path, ledger):
    root = tmp_path / "nest"
    for folder, name, slide in (("P1", "s1", "P001_s1"), ("P2", "s2", "P002_s1")):
        (root / folder).mkdir(parents=True)
        shutil.copy(cohort / "slides" / f"{slide}.tiff", root / folder / f"{name}.tiff")
    store = tmp_path / "n.zarr"
    assert cli("extract", root, "-o", store, "--source", "slides", *FAST).code == 0
    assert BagStore(store).slide_ids() == ["s1", "s2"]
    before = store_files(store)
    (root / "P3").mkdir()
    shutil.copy(
        cohort / "slides" / "P003_s1.tiff", root / "P3" / "s1.tiff"
    )  # P1/s1 would become "P1/s1.tiff"
    for extra in ([], ["--overwrite"]):
        run = cli("extract", root, "-o", store, "--source", "slides", *FAST, *extra)
        assert run.traceback is None and run.code == 2, run.output
        (line,) = error_lines(run)
        assert "P1/s1.tiff" in line and "'s1'" in line and "manifest" in line and "new store" in line, line
        assert store_files(store) == before  # refused before any work
    manifest = tmp_path / "ids.csv"
    manifest.write_text(f"slide_id,path\ns1,{root}/P1/s1.tiff\ns2,{root}/P2/s2.tiff\ns3,{root}/P3/s1.tiff\n")
    run = cli("extract", manifest, "-o", store, *FAST)
    assert run.code == 0, run.output
    assert BagStore(store).slide_ids() == ["s1", "s2", "s3"]
    # one file under two ids, both already in the store (a manifest listing it twice): nothing is new, so a
    # sharded rerun keeps both bags and refuses nothing
    twice = tmp_path / "twice.csv"
    twice.write_text(f"slide_id,path\na,{root}/P1/s1.tiff\nb,{root}/P1/s1.tiff\n")
    assert cli("extract", twice, "-o", tmp_path / "t.zarr", *FAST).code == 0
    for shard in ("0/2", "1/2"):
        run = cli("extract", twice, "-o", tmp_path / "t.zarr", "--shard", shard, *FAST)
        assert run.code == 0, run.output
    ledger("store", "a same-named slide added in another folder, renaming an extracted slide",
           "refused in one line before any work (also with --overwrite); a manifest with ids goes on")  # fmt: skip


def test_a_changed_cell_folder_fails_alone(cohort, clean_cells, tmp_path, ledger):
    cells = copy_tree(cohort / "cells", tmp_path / "cells")
    store = tmp_path / "cells.zarr"
    assert cli("extract", cells, "-o", store, *FAST).code == 0
    shutil.copy(sorted((cells / "P003").iterdir())[0], cells / "P001" / "new.png")  # one image more
    sorted((cells / "P002").iterdir())[2].unlink()  # one image less
    for image in (cells / "P003").iterdir():  # copied again: only the mtimes change
        os.utime(image, (1e9, 1e9))
    run = cli("extract", cells, "-o", store, *FAST)
    assert run.traceback is None and run.code == 3, run.output
    lines = failures(run)
    assert len(lines) == 2, run.output
    assert (
        lines[0].startswith("P001: changed since it was extracted (12 images, ") and "13 images" in lines[0]
    )
    assert lines[0].endswith("now); pass --overwrite to re-extract it"), lines[0]
    assert lines[1].startswith("P002: changed since") and "11 images" in lines[1]
    assert differing(store, clean_cells) == []  # the old bags untouched
    renamed = sorted((cells / "P003").iterdir())[0]  # same images, same bytes, another name
    renamed.rename(renamed.with_name("renamed" + renamed.suffix))
    run = cli("extract", cells, "-o", store, *FAST)
    assert run.code == 1, run.output  # every patient failed: nothing done
    assert failures(run)[2].startswith("P003: changed since") and "other file names" in failures(run)[2]
    run = cli("extract", cells, "-o", store, *FAST, "--overwrite")
    assert run.code == 0, run.output
    bags = BagStore(store)
    assert [bags.meta(p).n_instances for p in ("P001", "P002", "P003")] == [13, 11, 12]
    assert cli("extract", cells, "-o", store, *FAST).code == 0  # re-extracted: skipped again
    ledger("input", "a patient folder with an image added, one removed, one renamed; another only re-dated",
           "each changed patient fails alone in one line, bag kept (exit 3); mtime alone skipped; --overwrite redoes")  # fmt: skip


def test_a_changed_slide_fails_alone_and_older_bags_compare_by_size(cohort, tmp_path, ledger):
    slides = copy_tree(cohort / "slides", tmp_path / "slides")
    store = tmp_path / "slides.zarr"
    assert cli("extract", slides, "-o", store, *FAST).code == 0
    before = store_files(store)
    with (slides / "P001_s1.tiff").open("ab") as fh:  # rewritten: another size
        fh.write(b"\0" * 512)
    os.utime(slides / "P002_s1.tiff", (1e9, 1e9))
    run = cli("extract", slides, "-o", store, *FAST)
    assert run.traceback is None and run.code == 3, run.output
    (line,) = failures(run)
    size = (slides / "P001_s1.tiff").stat().st_size
    assert line == (
        f"P001_s1: changed since it was extracted ({size - 512:,} bytes then, {size:,} bytes now); "
        "pass --overwrite to re-extract it"
    )
    assert store_files(store) == before
    # a store of before the size was compared at all (no source_size): kept, as it was
    meta_file = next((store / "bags").glob("P001_s1*/zarr.json"))
    meta = json.loads(meta_file.read_text())
    meta["attributes"]["source_size"] = None
    meta_file.write_text(json.dumps(meta))
    assert cli("extract", slides, "-o", store, *FAST).code == 0
    ledger("input", "a slide file rewritten (another size) since its bag was extracted; another only re-dated",
           "the changed slide fails alone in one line, bag kept (exit 3); mtime alone skipped")  # fmt: skip


def test_an_older_cell_bag_without_the_image_record_compares_total_size(cohort, tmp_path):
    cells = copy_tree(cohort / "cells", tmp_path / "cells")
    store = tmp_path / "cells.zarr"
    assert cli("extract", cells, "-o", store, *FAST).code == 0
    for meta_file in (store / "bags").glob("*/zarr.json"):  # bags of before the image record
        meta = json.loads(meta_file.read_text())
        meta["attributes"]["settings"].pop("source_images", None)
        meta_file.write_text(json.dumps(meta))
    shutil.copy(sorted((cells / "P003").iterdir())[0], cells / "P001" / "new.png")
    run = cli("extract", cells, "-o", store, *FAST)
    assert run.code == 3, run.output
    (line,) = failures(run)
    assert (
        line.startswith("P001: changed since it was extracted (") and " bytes now); pass --overwrite" in line
    )
