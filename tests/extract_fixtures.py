"""Tiny synthetic cohorts for the extraction tests (a few patients, 1500 px slides: seconds to make and read)."""

from __future__ import annotations

from pathlib import Path

from features.synth import SynthConfig, generate_cohort
from tests.paths import DATA as FIXTURES  # noqa: E402

APERIO = FIXTURES / "wsi-aperio-cmu-1-small-region" / "CMU-1-Small-Region.svs"
OPENSLIDE_FIXTURES = FIXTURES / "openslide-fixtures"


def synth_cohort(
    out: Path, patients: int = 3, slide_px: int = 1500, cells: int = 12, layout: str = "both"
) -> Path:
    """OUT with slides/<patient>_s1.tiff (mpp 0.25) and cells/<patient>/<n>.png, one site, seed 0."""
    config = SynthConfig(
        patients=patients, layout=layout, slide_px=slide_px, cells_per_patient=cells, sites=1
    )
    generate_cohort(out, config)
    return out


def synth_slides(out: Path, patients: int = 3, slide_px: int = 1500) -> Path:
    return synth_cohort(out, patients, slide_px, layout="slides") / "slides"


def dinobloom_s_checkpoint(path: Path, seed: int = 1) -> Path:
    """A DinoBloom-S file in the upstream training layout ({"teacher": {"backbone.*", dino/ibot heads}}) with
    random (seeded) weights: what `--encoder dinobloom-s --weights PATH` loads from a real download."""
    import torch

    from features.encoders.dinov2 import build_vit
    from tests.encoder_checkpoints import as_dinobloom_checkpoint, randomise_, timm_to_upstream_backbone

    backbone = timm_to_upstream_backbone(randomise_(build_vit("s"), seed=seed).state_dict(), swiglu=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(as_dinobloom_checkpoint(backbone), path)
    return path


if __name__ == "__main__":  # python -m tests.extract_fixtures OUT.pth: a test checkpoint for acceptance runs
    import sys

    print(dinobloom_s_checkpoint(Path(sys.argv[1])))
