"""The software a run used, recorded beside its results (extraction run records, training runs, heatmaps)."""

from __future__ import annotations

import platform
from importlib import metadata

# Distribution names (importlib.metadata), so no package is imported just to read its version: openslide and
# zarr may only be imported by their one module each. One list for every record, so two runs can be compared.
PACKAGES = (
    "mil",
    "torch",
    "timm",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "lifelines",
    "zarr",
    "h5py",
    "pillow",
    "openslide-python",
    "openslide-bin",
)


def versions() -> dict[str, str | None]:
    """Python's version and each of `PACKAGES` (None when it is not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


__all__ = ["PACKAGES", "versions"]
