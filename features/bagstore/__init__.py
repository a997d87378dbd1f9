"""The bag store room: zarr v3 bags of cell embeddings with their provenance, per-slide QC and run records.
Only this package touches zarr."""

from features.bagstore.layout import SCHEMA_VERSION, bag_key
from features.bagstore.qc import SlideQC
from features.bagstore.store import Bag, BagMeta, BagStore, EncoderIdentity

__all__ = ["SCHEMA_VERSION", "Bag", "BagMeta", "BagStore", "EncoderIdentity", "SlideQC", "bag_key"]
