"""Extraction engines: what runs the CPU work (open, QC, detect, crop) and the encoder for one `extract` call.

`extract()` plans the run (inputs, shard, store, skip or redo) and hands the slides to do to an engine; every
engine commits each slide through the same path (`EncodeLoop.commit`: checks, provenance, `BagStore.write`:
staged, then renamed into place, first writer wins), so the engine changes where work runs, never what a
bag is. `LocalEngine` (the default) runs loader processes on this machine feeding the encoder in this process;
`RayEngine` (`features.pipeline.engines.ray_extract`, the optional `[ray]` extra) runs a Ray Data pipeline.
"""

from features.pipeline.engines.base import EncodeRun, ExtractEngine, LocalEngine, create_engine

__all__ = ["EncodeRun", "ExtractEngine", "LocalEngine", "create_engine"]
