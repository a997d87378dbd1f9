"""The bag store room: zarr v3 bags of cell embeddings with their provenance. Only this package touches zarr."""

from features.bagstore.store import SCHEMA_VERSION, Bag, BagMeta, BagStore, EncoderIdentity, bag_key

__all__ = ["SCHEMA_VERSION", "Bag", "BagMeta", "BagStore", "EncoderIdentity", "bag_key"]
