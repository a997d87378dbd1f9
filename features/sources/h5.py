"""Import feature bags written by CLAM, TRIDENT or STAMP (.h5), so their embeddings train `mil` heads as-is.

What each tool writes (read from their code, Nov 2025), and how it is mapped into a bag:

| tool    | features           | coords                            | attrs that matter                              |
|---------|--------------------|-----------------------------------|------------------------------------------------|
| CLAM    | `features` N x D   | `coords` N x 2 int, level-0 px,   | none (patch size only in the separate patches  |
|         | float32            | top-left corner of each patch     | h5; sometimes copied onto `coords`)            |
| TRIDENT | `features` N x D   | `coords` N x 2 int64, level-0 px, | on `coords`: patch_size_level0, patch_size,    |
|         |                    | top-left corner                   | level0_magnification, target_magnification     |
| STAMP 2 | `feats` N x D      | `coords` N x 2 float, **µm**,     | root: extractor, unit="um", tile_size_um (or   |
|         | float16            | top-left corner                   | tile_size), tile_size_px, feat_type, code_hash |
| STAMP 1 | `feats` N x D      | `coords` in px of 224-px tiles at | none; recognised by a tile stride of ~224      |
|         |                    | 256 µm (STAMP's own reading)      |                                                |

`features` may also be 1 x N x D (some CLAM forks save a leading batch axis); it is squeezed.

Mapping decisions (recorded in each bag's `settings.h5`):
- Bag coords are instance *centres* (the store's convention), so the top-left corners are shifted by half a
  patch: TRIDENT `patch_size_level0`; CLAM `patch_size x downsample` when present, else the grid stride of
  the coords themselves (the patch size of a non-overlapping grid), recorded as `patch_level0_source`.
- µm follow from `coords x mpp`. CLAM/TRIDENT coords are already level-0 px; `mpp` is the user's `--mpp`
  (or a manifest's), else unknown (None): a magnification is not a pixel size and is never turned into one.
  STAMP coords are µm, so they are divided by an mpp: the user's (the slide's level-0 mpp, giving true
  level-0 px) or else the tile grid's own `tile_size_um / tile_size_px`, recorded as `mpp_source`
  "h5:tile_size_um/tile_size_px" (coords are then px at that resolution, not level 0; µm stay exact).
- Encoder identity: the name is the user's explicit `--encoder` (CLAM and TRIDENT files do not record it) or
  STAMP's `extractor` attr. The weights digest is `imported:<tool>` for every bag of the run, because these
  files carry no weights digest and the store needs one identity; each file's own sha256 is recorded per bag
  (`settings.h5.sha256`), so two imports of "the same" encoder from different tools never mix in one store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.core.errors import InputError, SlideError
from features.sources import SOURCES
from features.sources.base import SlideRef, check_mpp, is_hidden, regular_file

TOOLS = ("clam", "trident", "stamp")


@dataclass
class ImportedBag:
    """One h5 file read into the bag store's terms."""

    features: np.ndarray  # N x D float32
    coords: np.ndarray  # N x 2 int64 centres, px at `mpp` (level 0 unless mpp_source says otherwise)
    tool: str  # "clam" | "trident" | "stamp"
    encoder_name: str | None  # from the file's attrs (STAMP `extractor`), None when the file does not say
    mpp: float | None
    mpp_source: str | None
    tile_um: float | None
    tile_px: int | None
    info: dict[str, Any] = field(default_factory=dict)  # JSON-safe: attrs read, offsets applied, sha256


def _attrs(obj: Any) -> dict[str, Any]:
    """h5py attrs as JSON-safe Python values (bytes decoded, numpy scalars/arrays unboxed)."""
    out: dict[str, Any] = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[str(key)] = value
    return out


def grid_stride(coords: np.ndarray) -> float | None:
    """Smallest positive step between distinct x (or y) coordinates: the patch size of a non-overlapping grid."""
    steps = []
    for axis in (0, 1):
        values = np.unique(coords[:, axis])
        diffs = np.diff(values)
        diffs = diffs[diffs > 0]
        if len(diffs):
            steps.append(float(diffs.min()))
    return min(steps) if steps else None


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def read_h5_bag(path: Path, mpp: float | None = None, mpp_source: str | None = None) -> ImportedBag:
    """Read one CLAM/TRIDENT/STAMP feature file. `mpp` is the slide's level-0 µm per px if the user knows it."""
    import h5py

    path = Path(path)
    regular_file(path, "feature file")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise SlideError(str(path), f"cannot open as HDF5 ({exc}); re-export the file") from None
    with fh:
        names = set(fh.keys())
        feat_name = "features" if "features" in names else "feats" if "feats" in names else None
        if feat_name is None or "coords" not in names:
            raise SlideError(
                str(path),
                f"datasets {sorted(names)}: expected `features` + `coords` (CLAM, TRIDENT) or `feats` + "
                "`coords` (STAMP)",
            )
        feats = np.asarray(fh[feat_name][()])
        coords = np.asarray(fh["coords"][()])
        root_attrs, coord_attrs = _attrs(fh), _attrs(fh["coords"])
    if feats.ndim == 3 and feats.shape[0] == 1:
        feats = feats[0]
    if feats.ndim != 2:
        raise SlideError(str(path), f"`{feat_name}` has shape {feats.shape}; expected N x D or 1 x N x D")
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(feats):
        raise SlideError(str(path), f"`coords` has shape {coords.shape}; expected {len(feats)} x 2")
    if len(feats) == 0:
        raise SlideError(str(path), "no instances (empty features)")
    feats, coords = _finite(path, feat_name, feats, coords)
    info: dict[str, Any] = {"dataset": feat_name, "attrs": root_attrs, "coords_attrs": coord_attrs}

    if feat_name == "feats":
        bag = _stamp(feats, coords, root_attrs, mpp, mpp_source, info, path)
    else:
        bag = _clam_trident(feats, coords, coord_attrs, mpp, mpp_source, info)
    bag.info["sha256"] = sha256_file(path)
    return bag


def _finite(
    path: Path, feat_name: str, feats: np.ndarray, coords: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """float32 features and float64 coords, refusing NaN/inf in either (as the encoder path refuses its own):
    stored, a NaN feature surfaces folds later in training, a NaN coordinate becomes -9223372036854775808."""
    try:
        feats, coords = feats.astype(np.float32), coords.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise SlideError(
            str(path), f"`{feat_name}` or `coords` is not numeric ({exc}); re-export the file"
        ) from None
    for name, values in ((feat_name, feats), ("coords", coords)):
        bad = int((~np.isfinite(values)).any(axis=1).sum())
        if bad:
            raise SlideError(
                str(path),
                f"{bad} of {len(values)} instances have NaN/inf in `{name}`; re-export the file (or drop those "
                "rows)",
            )
    return feats, coords


def _stamp(feats, coords, attrs, mpp, mpp_source, info, path) -> ImportedBag:
    feat_type = attrs.get("feat_type", "tile")
    if feat_type != "tile":
        raise SlideError(str(path), f"STAMP feat_type {feat_type!r}: only tile-level features form a bag")
    tile_px = attrs.get("tile_size_px")
    if "tile_size_um" in attrs:
        tile_um, coords_um, version = float(attrs["tile_size_um"]), coords, "stamp-2"
    elif attrs.get("unit") == "um" and "tile_size" in attrs:
        tile_um, coords_um, version = float(attrs["tile_size"]), coords, "stamp-2"
    elif round(float(attrs.get("tile_size", grid_stride(coords) or 0))) == 224:
        # STAMP 1 stored coords in px of 224-px tiles covering 256 µm; STAMP itself reads them this way.
        tile_um, tile_px, coords_um, version = 256.0, 224, coords / 224.0 * 256.0, "stamp-1"
    else:
        raise SlideError(
            str(path), "STAMP-style `feats` without tile_size_um/unit attrs and no 224-px grid: units unknown"
        )
    if mpp is None:
        if not tile_px:
            raise SlideError(str(path), "STAMP coords are in µm and the file has no tile_size_px; pass --mpp")
        mpp, mpp_source = tile_um / float(tile_px), "h5:tile_size_um/tile_size_px"
    centres = (coords_um + tile_um / 2.0) / mpp
    info.update(version=version, anchor="top-left", offset_um=tile_um / 2.0)
    return ImportedBag(
        feats,
        np.rint(centres).astype(np.int64),
        "stamp",
        str(attrs["extractor"]) if attrs.get("extractor") else None,
        mpp,
        mpp_source,
        tile_um,
        int(tile_px) if tile_px else None,
        info,
    )


def _clam_trident(feats, coords, cattrs, mpp, mpp_source, info) -> ImportedBag:
    tool = "trident" if "patch_size_level0" in cattrs or "level0_magnification" in cattrs else "clam"
    patch_px = cattrs.get("patch_size")
    if "patch_size_level0" in cattrs:
        size0, size_source = float(cattrs["patch_size_level0"]), "attrs:patch_size_level0"
    elif "patch_size" in cattrs and "downsample" in cattrs:
        down = np.atleast_1d(np.asarray(cattrs["downsample"], dtype=float))
        size0, size_source = float(cattrs["patch_size"]) * float(down[0]), "attrs:patch_size*downsample"
    else:
        stride = grid_stride(coords)
        size0, size_source = (stride, "coords stride") if stride else (0.0, "unknown (single patch)")
    centres = coords + size0 / 2.0
    tile_um = size0 * mpp if (mpp is not None and size0) else None
    info.update(anchor="top-left", patch_level0_px=size0, patch_level0_source=size_source)
    return ImportedBag(
        feats,
        np.rint(centres).astype(np.int64),
        tool,
        None,
        mpp,
        mpp_source,
        tile_um,
        int(patch_px) if patch_px else None,
        info,
    )


@SOURCES.register("h5")
class H5Source:
    """Feature files from CLAM, TRIDENT or STAMP (.h5), imported as bags without re-encoding."""

    def discover(self, input: Path, mpp: float | None = None) -> list[SlideRef]:
        input = Path(input)
        mpp = check_mpp(mpp, "--mpp")
        source = "user" if mpp is not None else None
        if input.is_file():
            if input.suffix.lower() != ".h5":
                raise InputError(f"{input}: not an .h5 feature file")
            files = [input]
            root = input.parent
        elif input.is_dir():
            root = input
            # STAMP mirrors the slide folder's nesting, so search recursively.
            files = sorted(p for p in input.rglob("*.h5") if p.is_file() and not is_hidden(p, input))
        else:
            raise InputError(f"{input}: no such file or folder (expected .h5 feature files)")
        if not files:
            raise InputError(f"{input}: no .h5 feature files found")
        stems: dict[str, int] = {}
        for f in files:
            stems[f.stem] = stems.get(f.stem, 0) + 1
        refs = []
        for f in files:
            slide_id = f.stem if stems[f.stem] == 1 else f.relative_to(root).with_suffix("").as_posix()
            refs.append(SlideRef(slide_id, slide_id, f, "h5", mpp, source))
        return refs
