"""Cell galleries: the top and bottom cells of a class as one labelled PNG montage.

Pixels come from the SOURCE, never from the encoder input: the sources layer reopens the bag's instances
(`features.sources.open_instances`: a slide's crops at the physical size extracted, `BagMeta.crop_um`, shown at
`display_px` from the finest pyramid level needed; a cell folder's images from their files). What a
pathologist sees is therefore the cell as scanned, at full resolution, not a normalised 224 px tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from features.bagstore import Bag, BagMeta
from features.sources import open_instances
from features.sources.instances import Instances

CAPTION_PX = 30  # two caption lines; a third (the cell type, with a cell model) adds LINE_PX
LINE_PX = 13
MAX_LINES = 3
HEADING_PX = 24
BACKGROUND = (255, 255, 255)


@dataclass
class Section:
    """One labelled row block of a montage: a heading and its tiles with captions of up to three lines."""

    heading: str
    images: np.ndarray  # n x S x S x 3 uint8
    captions: list[str]


def read_cells(meta: BagMeta, bag: Bag, index: np.ndarray, display_px: int) -> np.ndarray:
    """len(index) x display_px x display_px x 3 uint8: the cells `index` of this bag, re-read from the source
    (`features.sources.open_instances`, which opens it once)."""
    index = np.asarray(index, dtype=np.int64)
    if len(index) == 0:
        return np.zeros((0, display_px, display_px, 3), np.uint8)
    with open_instances(meta, bag) as source:
        return source.crops(index, display_px)


def montage(sections: list[Section], title: str, columns: int = 8) -> Image.Image:
    """One image: a title line, then each section's heading and its tiles in rows of `columns`."""
    font = _font(12)
    bold = _font(15)
    tile = max((s.images.shape[1] for s in sections if len(s.images)), default=96)
    lines = min(MAX_LINES, max((c.count("\n") + 1 for s in sections for c in s.captions), default=2))
    caption_px = CAPTION_PX + LINE_PX * max(0, lines - 2)
    width = columns * (tile + 4) + 4
    heights = [HEADING_PX + max(1, -(-len(s.images) // columns)) * (tile + caption_px + 4) for s in sections]
    canvas = Image.new("RGB", (width, HEADING_PX + 6 + sum(heights)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill=(0, 0, 0), font=bold)
    y = HEADING_PX + 6
    for section, height in zip(sections, heights, strict=True):
        draw.text((4, y + 4), section.heading, fill=(40, 40, 120), font=bold)
        if not len(section.images):
            draw.text((4, y + HEADING_PX + 4), "(no cells)", fill=(120, 120, 120), font=font)
        for j, (img, caption) in enumerate(zip(section.images, section.captions, strict=True)):
            r, c = divmod(j, columns)
            x0, y0 = 4 + c * (tile + 4), y + HEADING_PX + r * (tile + caption_px + 4)
            canvas.paste(Image.fromarray(img), (x0, y0))
            for k, line in enumerate(caption.split("\n")[:lines]):
                draw.text(
                    (x0 + 1, y0 + tile + 1 + LINE_PX * k),
                    _fit(draw, line, font, tile),
                    fill=(0, 0, 0),
                    font=font,
                )
        y += height
    return canvas


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """Cut `text` from the left (file names differ at the end) until it fits in `width` px."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def save_png(image: Image.Image, path: Path) -> Path:
    """Write atomically (temp file, then rename), so a crash never leaves half a PNG."""
    from features.core.io import atomic_write

    atomic_write(Path(path), lambda tmp: image.save(tmp, format="PNG", compress_level=3))
    return Path(path)


def top_bottom(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k highest (descending) and k lowest (ascending) values; ties keep bag order."""
    values = np.asarray(values, dtype=np.float64)
    k = min(k, len(values))
    top = np.argsort(-values, kind="stable")[:k]
    bottom = np.argsort(values, kind="stable")[:k]
    return top, bottom


def slide_galleries(
    meta: BagMeta,
    bag: Bag,
    values: dict[str, np.ndarray],
    top_k: int,
    display_px: int,
    what: str = "attention x N",
    patient_id: str | None = None,
    source: Instances | None = None,
    cell_types: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Image.Image]:
    """One montage per output name: its top-k and bottom-k cells of this slide by `values[name]`. The cells
    of every montage are read in one pass over the source: `source` when the caller holds it open (to draw
    the overview from the same open slide), else opened here. `cell_types` (N names, N probabilities, from a
    cell model) adds each cell's type to its caption."""
    picks = {name: top_bottom(v, top_k) for name, v in values.items()}
    wanted = np.unique(np.concatenate([np.concatenate(p) for p in picks.values()] or [np.zeros(0, np.int64)]))
    if source is None:
        images = read_cells(meta, bag, wanted, display_px)
    else:
        images = source.crops(wanted, display_px)
    where = {int(i): j for j, i in enumerate(wanted)}
    out = {}
    for name, (top, bottom) in picks.items():
        sections = [
            Section(
                f"{label} {len(idx)} by {what}",
                images[[where[int(i)] for i in idx]] if len(idx) else images[:0],
                [
                    f"#{r + 1}  {values[name][i]:.3g}\n{type_caption(cell_types, i)}{_where(bag, i)}"
                    for r, i in enumerate(idx)
                ],
            )
            for label, idx in (("top", top), ("bottom", bottom))
        ]
        out[name] = montage(sections, f"{meta.slide_id} (patient {patient_id or meta.patient_id}): {name}")
    return out


def type_caption(cell_types: tuple[np.ndarray, np.ndarray] | None, i: int) -> str:
    """ "<type> <p>" and a line break for cell i, or nothing without a cell model."""
    if cell_types is None:
        return ""
    names, proba = cell_types
    return f"{str(names[i]).replace('_', ' ')} {100 * proba[i]:.0f}%\n"


def _where(bag: Bag, i: int) -> str:
    if bag.paths is not None and bag.coords is not None:  # a field: the file and the cell's place in it
        return f"{bag.paths[i]} x{int(bag.coords[i, 0])} y{int(bag.coords[i, 1])}"
    if bag.paths is not None:
        return str(bag.paths[i])
    if bag.coords is not None:
        return f"x{int(bag.coords[i, 0])} y{int(bag.coords[i, 1])}"
    return f"cell {i}"
