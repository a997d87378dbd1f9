"""`mil`: attention-MIL over the cells of bone-marrow and blood smears, with patient-level labels only."""

from features import __version__

__all__ = ["__version__"]
