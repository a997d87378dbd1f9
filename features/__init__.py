"""From a smear (whole-slide file) or a folder of single-cell images to a zarr bag of embeddings.

This package knows nothing of `mil` (training, heads, reports): it ends where the bag store begins.
"""

__version__ = "0.1.0"
