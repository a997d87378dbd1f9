"""Microscope field images as a source: BCCD detection, speed against the slide path, and mpp from red cells.

    python benchmarks/fields.py [--part all|bccd|speed|mpp] [--data ../shared/data] [--group 20] [--json PATH]

1. bccd: `mil extract`'s field path (features.pipeline.extract with source=fields, cytomorph) on the 364 BCCD
   JPEGs as they are, grouped into pseudo-patients of `--group` consecutive fields (symlinks in a temp folder;
   BCCD has no patient ids). The cells of the bags (field file + centre in the field's pixels) are matched to
   the VOC white-cell boxes: a detection inside a box is a true positive, one-to-one (maximum bipartite
   matching), so a second detection in one box is a false positive; boxes of fields that QC left out or of
   patients whose mpp was refused are misses. Three pixel sizes:
     given      0.0721 µm/px = 7.5 µm / the median VOC red-cell box side (boxes not touching the border)
     estimated  from the red cells of each pseudo-patient's fields (the default when no mpp is given)
     run        from the red cells of a sample of every patient's fields (`fields.mpp_scope=run`: one camera)
2. speed: fields per second of the whole extraction (encoder included) against the path the issue measured:
   the same fields converted to pyramidal TIFFs at the given mpp and extracted as slides (region QC, detection
   in the trail, crops). Both on the same `--speed-fields` fields, interleaved `--rounds` times; ours also
   with one field per patient (the per-bag overhead) and with the mpp estimated.
3. mpp: `mil synth` fields (features.synth.field_images, the `fields` layout) rendered at known mpp from 0.05
   to 0.5 µm/px, `--mpp-patients` patients x `--mpp-fields` fields each, `--field-um` wide (4:3; the same
   piece of smear at every mpp: 2560 px at 0.05, 256 px at 0.5), monolayer (red cells barely touch) and
   hemodiluted (they overlap); the estimate per patient (what extraction uses) and per field (each field
   alone, for the spread) against the truth.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.bagstore import BagStore  # noqa: E402
from features.pipeline.config import ExtractConfig  # noqa: E402
from features.pipeline.extract import extract  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
RBC_UM = 7.5
MPPS = (0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


def voc_boxes(xml: Path, name: str) -> list[tuple[float, float, float, float]]:
    boxes = []
    for obj in ET.parse(xml).getroot().iter("object"):
        if obj.findtext("name") == name:
            b = obj.find("bndbox")
            boxes.append(tuple(float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
    return boxes


def box_mpp(annotations: Path) -> float:
    """7.5 µm / the median side of the red-cell boxes that do not touch the 640 x 480 border."""
    sides = [
        ((x1 - x0) + (y1 - y0)) / 2
        for xml in sorted(annotations.glob("*.xml"))
        for x0, y0, x1, y1 in voc_boxes(xml, "RBC")
        if x0 > 2 and y0 > 2 and x1 < 637 and y1 < 477
    ]
    return RBC_UM / float(np.median(sides))


def match_in_boxes(xy: np.ndarray, boxes: list) -> tuple[int, int, int]:
    """(tp, fp, fn): detections inside a box, one-to-one by maximum bipartite matching."""
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import maximum_bipartite_matching

    xy = np.asarray(xy, float).reshape(-1, 2)
    if len(xy) == 0 or len(boxes) == 0:
        return 0, len(xy), len(boxes)
    b = np.asarray(boxes, float)
    inside = (
        (xy[:, None, 0] >= b[None, :, 0])
        & (xy[:, None, 0] <= b[None, :, 2])
        & (xy[:, None, 1] >= b[None, :, 1])
        & (xy[:, None, 1] <= b[None, :, 3])
    )
    i, j = np.nonzero(inside)
    graph = csr_array((np.ones(len(i)), (i, j)), shape=inside.shape)
    tp = int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())
    return tp, len(xy) - tp, len(boxes) - tp


def patient_folders(images: list[Path], out: Path, group: int) -> Path:
    """out/P###/<image> symlinks, `group` consecutive fields per pseudo-patient."""
    for i, image in enumerate(images):
        folder = out / f"P{i // group:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image.name).symlink_to(image)
    return out


def run_extract(
    fields: Path, store: Path, mpp: float | None, source: str = "fields", scope: str = "patient"
) -> tuple[object, float]:
    config = ExtractConfig(
        source=source, encoder="cytomorph", mpp=mpp, workers=2, fields={"mpp_scope": scope}
    )
    start = time.perf_counter()
    summary = extract(fields, store, config)
    return summary, time.perf_counter() - start


def score_store(store: Path, annotations: Path, fields: Path | None = None) -> dict:
    """Recall / precision of the store's cells against the VOC white-cell boxes of every BCCD field, or (with
    `fields`, the patient folders) of the fields of the patients that have a bag only."""
    cells: dict[str, list] = {}
    bags = BagStore(store)
    written = set()
    for meta in bags.metas():
        written.add(meta.slide_id)
        bag = bags.read(meta.slide_id, obs=False)
        for name, xy in zip(bag.paths, bag.coords, strict=True):
            cells.setdefault(Path(str(name)).stem, []).append(xy)
    scored = None
    if fields is not None:
        scored = {image.stem for patient in written for image in (fields / patient).iterdir()}
    tp = fp = fn = 0
    for xml in sorted(annotations.glob("*.xml")):
        if scored is not None and xml.stem not in scored:
            continue
        t, f, n = match_in_boxes(np.array(cells.get(xml.stem, [])), voc_boxes(xml, "WBC"))
        tp, fp, fn = tp + t, fp + f, fn + n
    return {"recall": tp / max(tp + fn, 1), "precision": tp / max(tp + fp, 1), "tp": tp, "fp": fp, "fn": fn}


def part_bccd(data: Path, group: int, work: Path) -> dict:
    bccd = data / "bccd" / "BCCD"
    images = sorted((bccd / "JPEGImages").glob("*.jpg"))
    annotations = bccd / "Annotations"
    given = box_mpp(annotations)
    fields = patient_folders(images, work / "bccd_fields", group)
    out = {"fields": len(images), "group": group, "given_mpp": given}
    print(f"BCCD: {len(images)} fields, {len(list(fields.iterdir()))} pseudo-patients of {group}")
    for label, mpp, scope in (
        ("given", given, "patient"),
        ("estimated", None, "patient"),
        ("run", None, "run"),
    ):
        summary, seconds = run_extract(fields, work / f"store_{label}", mpp, scope=scope)
        score = score_store(work / f"store_{label}", annotations)
        kept = score_store(work / f"store_{label}", annotations, fields)
        refused = [o.message for o in summary.outcomes if o.status == "failed"]
        mpps = [m.mpp for m in BagStore(work / f"store_{label}").metas()]
        estimates = [m.qc.get("mpp_estimate") for m in BagStore(work / f"store_{label}").metas()]
        out[label] = {**score, "seconds": seconds, "fields_per_s": len(images) / seconds, "refused": refused,
                      "mpp_range": [min(mpps), max(mpps)], "patients_with_a_bag": kept,
                      "mpp_estimates": estimates}  # fmt: skip
        print(
            f"  {label:9s} mpp {min(mpps):.4f}-{max(mpps):.4f}  recall {score['recall']:.3f}  precision "
            f"{score['precision']:.3f}  (tp {score['tp']}, fp {score['fp']}, fn {score['fn']})  "
            f"{len(images) / seconds:5.1f} fields/s  patients refused {len(refused)}"
        )
        if refused:
            print(
                f"            on the fields of the {len(mpps)} patients with a bag: recall {kept['recall']:.3f}  "
                f"precision {kept['precision']:.3f}  (tp {kept['tp']}, fp {kept['fp']}, fn {kept['fn']})"
            )
        for line in refused:
            print(f"      {line}")
    return out


def part_speed(data: Path, n_fields: int, rounds: int, work: Path) -> dict:
    from PIL import Image

    from features.synth.tiff import write_pyramid_tiff

    bccd = data / "bccd" / "BCCD"
    images = sorted((bccd / "JPEGImages").glob("*.jpg"))[:n_fields]
    given = box_mpp(bccd / "Annotations")
    tiffs = work / "speed_tiffs"
    tiffs.mkdir()
    for image in images:  # the conversion the issue had to do; not timed
        write_pyramid_tiff(
            tiffs / f"{image.stem}.tiff", np.asarray(Image.open(image).convert("RGB")), given, 90, ""
        )
    by20 = patient_folders(images, work / "speed_20", 20)
    by1 = patient_folders(images, work / "speed_1", 1)
    runs = {
        "slides (TIFF, 1 slide per field)": (tiffs, given, "slides"),
        "fields, 20 per patient, given mpp": (by20, given, "fields"),
        "fields, 1 per patient, given mpp": (by1, given, "fields"),
        "fields, 20 per patient, estimated mpp": (by20, None, "fields"),
    }  # (the first is the baseline the issue measured)
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    failed: dict[str, int] = {}
    for r in range(rounds):  # interleaved: A, B, C, D, A, B, ...
        for k, (label, (folder, mpp, source)) in enumerate(runs.items()):
            before = os.times()
            summary, wall = run_extract(folder, work / f"speed_store_{r}_{k}", mpp, source)
            after = os.times()
            # this process (the encoder) and the loader workers it has joined
            used = (after.user - before.user) + (after.children_user - before.children_user)
            seconds[label].append(wall)
            cpu[label].append(used)
            failed[label] = summary.count("failed")
    base = statistics.median(seconds["slides (TIFF, 1 slide per field)"])
    out = {"fields": len(images), "rounds": rounds, "load_before": os.getloadavg()[0], "runs": {}}
    print(f"speed: {len(images)} BCCD fields, {rounds} interleaved rounds, 2 loader workers, cytomorph")
    for label in runs:
        wall = statistics.median(seconds[label])
        out["runs"][label] = {
            "seconds": seconds[label], "cpu_s": cpu[label], "fields_per_s": len(images) / wall,
            "failed_bags": failed[label],
        }  # fmt: skip
        print(
            f"  {label:40s} {len(images) / wall:6.1f} fields/s  (median wall {wall:5.1f} s, "
            f"cpu {statistics.median(cpu[label]):5.1f} s; x{base / wall:5.1f} vs slides; "
            f"{failed[label]} bag(s) failed)"
        )
    return out


def part_mpp(
    patients: int, fields: int, seed: int, mpps: tuple[float, ...] = MPPS, field_um: float = 128.0
) -> dict:
    from features.smear.detect import match_points
    from features.smear.detect_params import DetectParams
    from features.smear.field_detect import detect_field
    from features.smear.field_params import FieldParams
    from features.smear.mpp_estimate import estimate_mpp, measure_red_cells
    from features.synth.cohort import build_cohort
    from features.synth.config import SynthConfig
    from features.synth.field_images import FIELD_REGIONS, render_field
    from features.synth.stain import jitter, site_stains

    cohort = build_cohort(SynthConfig(patients=max(patients, 6), sites=3, seed=seed))
    stains = site_stains(3, seed)
    out: dict = {"patients": patients, "fields": fields, "field_um": field_um, "per_region": {}}
    print(
        f"mpp from red cells: {patients} synthetic patients x {fields} fields of {field_um:g} x "
        f"{field_um * 0.75:g} µm per mpp"
    )
    worst = 0.0
    for region in FIELD_REGIONS:  # monolayer: red cells barely touch; hemodiluted: they overlap
        print(f" {region} fields")
        rows = out["per_region"][region] = {}
        counts = np.zeros(3, int)  # detection at the true mpp: tp, fp, fn within 6 µm, one-to-one
        for mpp in mpps:
            patient_err, field_err, refused = [], [], 0
            width = round(field_um / mpp)
            for p in range(patients):
                rng = np.random.default_rng([seed, p, round(mpp * 1e4)])
                stain = jitter(stains[p % len(stains)], rng)
                measured = {}
                for k in range(fields):
                    rgb, truth = render_field(cohort[p], stain, rng, width, round(width * 0.75), mpp, region)
                    measured[str(k)] = measure_red_cells(rgb)
                    xy, _ = detect_field(rgb, mpp, DetectParams(), FieldParams())
                    cells = truth["nucleated"] == 1
                    true_xy = np.stack([truth["x"][cells], truth["y"][cells]], axis=1)
                    inside = interior(rgb.shape, MARGIN_UM / mpp)
                    counts += match_points(xy[inside(xy)], true_xy[inside(true_xy)], 6.0 / mpp)
                estimate = estimate_mpp(measured)
                if estimate is None:
                    refused += 1
                    continue
                patient_err.append(estimate.mpp / mpp - 1)
                for name in measured:
                    alone = estimate_mpp({name: measured[name]}, min_red_cells=5)
                    if alone is not None:
                        field_err.append(alone.mpp / mpp - 1)
            pe, fe = np.abs(patient_err), np.abs(field_err)
            worst = max(worst, float(pe.max()) if len(pe) else np.inf)
            rows[mpp] = {
                "patient_error": [float(e) for e in patient_err],
                "patient_abs_max": float(pe.max()) if len(pe) else None,
                "field_abs_median": float(np.median(fe)) if len(fe) else None,
                "field_abs_p90": float(np.percentile(fe, 90)) if len(fe) else None,
                "refused": refused,
            }
            print(
                f"  mpp {mpp:5.3f} ({width} px): per patient mean {_pct(np.mean, patient_err, '+5.1f')} %, max "
                f"|err| {_pct(np.max, pe, '4.1f')} %  |  per field median |err| {_pct(np.median, fe, '4.1f')} %, "
                f"p90 {_pct(lambda v: np.percentile(v, 90), fe, '4.1f')} % ({len(fe)} fields)  patients "
                f"refused {refused}"
            )
        tp, fp, fn = (int(c) for c in counts)
        out["per_region"][region]["detection"] = {"tp": tp, "fp": fp, "fn": fn}
        print(
            f"  nucleated cells at the true mpp ({region}): recall {tp / max(tp + fn, 1):.3f}, precision "
            f"{tp / max(tp + fp, 1):.3f} (tp {tp}, fp {fp}, fn {fn}; within 6 µm, {MARGIN_UM:g} µm from the edges)"
        )
    out["worst_patient_error"] = worst
    print(f"  worst per-patient error {100 * worst:.1f} % (goal <= 5 %)")
    return out


MARGIN_UM = 10.0  # cells cut by a field's edge are scored neither way: the truth lists centres inside only


def interior(shape: tuple[int, ...], margin_px: float):
    """A mask function for points at least `margin_px` from the border of an image of `shape`."""
    h, w = shape[:2]

    def inside(xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, float).reshape(-1, 2)
        return (
            (xy[:, 0] >= margin_px)
            & (xy[:, 0] < w - margin_px)
            & (xy[:, 1] >= margin_px)
            & (xy[:, 1] < h - margin_px)
        )

    return inside


def _pct(stat, values, spec: str) -> str:
    return format(100 * stat(np.asarray(values)), spec) if len(values) else "  -"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("all", "bccd", "speed", "mpp"), default="all")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MIL_TEST_DATA") or DEFAULT_DATA))
    parser.add_argument("--group", type=int, default=20, help="BCCD fields per pseudo-patient")
    parser.add_argument("--speed-fields", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mpp-patients", type=int, default=4)
    parser.add_argument("--mpp-fields", type=int, default=4)
    parser.add_argument(
        "--mpps", type=float, nargs="+", default=list(MPPS), help="µm/px of the synthetic fields"
    )
    parser.add_argument("--field-um", type=float, default=128.0, help="width of the synthetic fields in µm")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work", type=Path, help="keep the stores here instead of a temporary folder")
    args = parser.parse_args(argv)
    record: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="fields-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.part in ("all", "bccd", "speed") and not (args.data / "bccd" / "BCCD").is_dir():
            raise SystemExit(f"{args.data / 'bccd'} not found; pass --data (the shared data folder)")
        if args.part in ("all", "bccd"):
            record["bccd"] = part_bccd(args.data, args.group, work)
        if args.part in ("all", "speed"):
            record["speed"] = part_speed(args.data, args.speed_fields, args.rounds, work)
        if args.part in ("all", "mpp"):
            record["mpp"] = part_mpp(
                args.mpp_patients, args.mpp_fields, args.seed, tuple(args.mpps), args.field_um
            )
    record["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return record


if __name__ == "__main__":
    main()
