"""The cell types the generator draws: physical size, nuclear shape, chromatin, cytoplasm and granules.

Colours are May-Grünwald-Giemsa-like RGB values at the reference stain and unit thickness; the renderer turns
them into optical densities (OD = -ln(rgb / 255)) so that overlapping objects add their absorbance (Beer-Lambert),
which is how stacked cells and red cells darken one another on glass. Sizes are diameters in µm (textbook ranges,
e.g. red cell ~7.5, lymphocyte 8-10, neutrophil 12-14, blast 12-18, promyelocyte 15-25, monocyte 15-20); the
renderer converts them to pixels with the mpp it is given, so the same table serves crops and slides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RGB = tuple[int, int, int]


def od(rgb: RGB) -> np.ndarray:
    """Optical density (3,) of an RGB colour seen on a white background."""
    return -np.log(np.clip(np.asarray(rgb, dtype=np.float32), 1, 255) / 255.0)


# Granule kinds: blur sigma (µm) sets the apparent granule size; colour at full coverage.
GRANULE_KINDS: dict[str, tuple[float, RGB]] = {
    "neutrophilic": (0.09, (222, 188, 222)),  # fine lilac dust of neutrophil specific granules
    "azurophilic": (0.15, (140, 35, 105)),  # reddish-purple primary granules (promyelocytes)
    "eosinophilic": (0.22, (238, 115, 40)),  # bright orange, packed, round
    "basophilic": (0.32, (45, 25, 95)),  # large dark blue-black, over the nucleus
    "dark": (0.30, (55, 25, 65)),  # large purple-black: abnormal eosinophils of inv(16)
}
GRANULE_ORDER = tuple(GRANULE_KINDS)

CHROMATIN_RGB: RGB = (95, 45, 125)  # nuclear chromatin at unit density
NUCLEOLUS_RGB: RGB = (185, 185, 220)  # pale blue-grey nucleoli
AUER_RGB: RGB = (200, 40, 85)  # pink-red needles
RBC_RGB: RGB = (226, 148, 150)  # salmon-pink red cell
PLATELET_RGB: RGB = (150, 90, 175)
PLASMA_RGB: RGB = (242, 230, 238)  # faint pink-lilac protein background of a smear


@dataclass(frozen=1.0)
class CellType:
    """One nucleated cell type. Ranges are (low, high), drawn uniformly per cell."""

    name: str
    summary: str
    diameter_um: tuple[float, float]
    nucleus: str  # shape generator in features.synth.nuclei
    nc_ratio: tuple[float, float] = (0.6, 0.7)  # nucleus diameter / cell diameter (round-ish nuclei)
    eccentric: float = 0.2  # nucleus offset as a share of the room between nucleus and membrane
    aspect: tuple[float, float] = (0.86, 1.0)  # minor / major axis of the cell outline
    chromatin: float = 0.5  # 0 = fine, open (blasts) .. 1 = coarse clumps with clear parachromatin
    nucleus_density: float = 0.8  # chromatin OD scale: pale blast nuclei < dense lymphocytes, pyknotic nuclei
    nucleoli: tuple[int, int] = (0, 0)
    cytoplasm_rgb: RGB = (220, 200, 215)
    granules: tuple[
        tuple[str, float, float], ...
    ] = ()  # (kind, per µm² of cell, share seen over the nucleus)
    auer_rods: tuple[float, int, int] = (0.0, 0, 0)  # probability, min, max rods
    faggot: bool = False  # bundles of many rods
    vacuoles: float = 0.0  # mean number of cytoplasmic vacuoles
    hof: float = 0.0  # strength of a pale perinuclear zone (Golgi / hof)
    irregular: float = 0.025  # amplitude of the nuclear outline's low-frequency wobble
    extra: dict = field(default_factory=dict)


_NEUTRO = (("neutrophilic", 3.0, 0.0),)

# fmt: off
CELL_TYPES: dict[str, CellType] = {
    t.name: t
    for t in [
        CellType("myeloblast", "large, fine chromatin, nucleoli, scant blue cytoplasm", (12, 18), "round",
                 nc_ratio=(0.76, 0.86), eccentric=0.15, chromatin=0.05, nucleus_density=0.62, nucleoli=(1, 3),
                 cytoplasm_rgb=(140, 168, 222), granules=(("azurophilic", 0.05, 0.0),),
                 auer_rods=(0.08, 1, 1)),
        CellType("npm1_blast", "blast with a cup-like nuclear invagination (NPM1)", (13, 18), "cup",
                 nc_ratio=(0.74, 0.84), eccentric=0.1, chromatin=0.05, nucleus_density=0.62, nucleoli=(0, 2),
                 cytoplasm_rgb=(148, 172, 222), granules=(("azurophilic", 0.03, 0.0),)),
        CellType("promyelocyte", "large, eccentric nucleus, Golgi zone, many azurophilic granules", (15, 24),
                 "round", nc_ratio=(0.55, 0.66), eccentric=0.45, chromatin=0.25, nucleus_density=0.7,
                 nucleoli=(0, 2), cytoplasm_rgb=(160, 165, 220),
                 granules=(("azurophilic", 1.1, 0.45),), hof=0.35),
        CellType("abnormal_promyelocyte", "APL: bilobed nucleus, packed coarse granules, Auer rods", (16, 24),
                 "apl", nc_ratio=(0.6, 0.7), eccentric=0.15, chromatin=0.2, nucleus_density=0.68,
                 nucleoli=(0, 1), cytoplasm_rgb=(190, 160, 210), granules=(("azurophilic", 3.0, 0.6),),
                 auer_rods=(0.85, 1, 3)),
        CellType("faggot_cell", "APL: bundles of many Auer rods", (16, 24), "apl", nc_ratio=(0.6, 0.7),
                 eccentric=0.15, chromatin=0.2, nucleus_density=0.68, nucleoli=(0, 1),
                 cytoplasm_rgb=(185, 165, 215), granules=(("azurophilic", 1.2, 0.5),), auer_rods=(1.0, 10, 24),
                 faggot=1.0),
        CellType("myelocyte", "round eccentric nucleus, pink-lilac granular cytoplasm", (12, 18), "myelocyte",
                 nc_ratio=(0.52, 0.62), eccentric=0.4, chromatin=0.55, nucleus_density=0.85,
                 cytoplasm_rgb=(212, 182, 208),
                 granules=(("neutrophilic", 2.2, 0.0), ("azurophilic", 0.12, 0.0)), hof=0.25),
        CellType("metamyelocyte", "kidney-shaped nucleus, pink cytoplasm", (10, 15), "kidney",
                 nc_ratio=(0.52, 0.6), eccentric=0.25, chromatin=0.65, nucleus_density=0.95,
                 cytoplasm_rgb=(222, 195, 212), granules=_NEUTRO),
        CellType("band_neutrophil", "C/U-shaped band nucleus of even width", (10, 14), "band", chromatin=0.75,
                 nucleus_density=1.0, cytoplasm_rgb=(226, 200, 214), granules=_NEUTRO),
        CellType("segmented_neutrophil", "3-4 lobes joined by filaments, pale lilac cytoplasm", (12, 14),
                 "segmented", chromatin=0.85, nucleus_density=1.05, cytoplasm_rgb=(228, 203, 216),
                 granules=_NEUTRO),
        CellType("dysplastic_neutrophil", "pseudo-Pelger: bilobed/round, clumped, hypogranular (MDS)", (10, 14),
                 "pelger", chromatin=1.0, nucleus_density=1.25, cytoplasm_rgb=(218, 218, 230),
                 granules=(("neutrophilic", 0.15, 0.0),)),
        CellType("eosinophil", "bilobed nucleus, packed bright orange granules", (12, 17), "bilobed",
                 chromatin=0.75, nucleus_density=0.95, cytoplasm_rgb=(228, 205, 195),
                 granules=(("eosinophilic", 3.0, 0.0),)),
        CellType("abnormal_eosinophil", "inv(16): orange plus large purple-black granules", (13, 18),
                 "abnormal_eosinophil", nc_ratio=(0.5, 0.6), eccentric=0.35, chromatin=0.6,
                 nucleus_density=0.9, cytoplasm_rgb=(225, 205, 200),
                 granules=(("eosinophilic", 2.2, 0.0), ("dark", 0.55, 1.0))),
        CellType("basophil", "nucleus masked by dark blue-black granules", (10, 14), "basophil", chromatin=0.7,
                 nucleus_density=0.85, cytoplasm_rgb=(215, 200, 225), granules=(("basophilic", 0.75, 1.0),)),
        CellType("monocyte", "folded nucleus, lacy chromatin, grey-blue cytoplasm, vacuoles", (15, 20),
                 "monocyte", nc_ratio=(0.55, 0.65), eccentric=0.15, chromatin=0.35, nucleus_density=0.72,
                 cytoplasm_rgb=(178, 182, 212), granules=(("neutrophilic", 1.2, 0.0),), vacuoles=2.0,
                 irregular=0.06),
        CellType("lymphocyte", "small, dense round nucleus, thin sky-blue rim", (8, 10), "round",
                 nc_ratio=(0.8, 0.88), eccentric=0.2, chromatin=0.8, nucleus_density=1.2,
                 cytoplasm_rgb=(135, 178, 235)),
        CellType("plasma_cell", "eccentric clock-face nucleus, perinuclear hof, deep blue cytoplasm", (9, 15),
                 "round", nc_ratio=(0.45, 0.55), eccentric=0.85, aspect=(0.68, 0.85), chromatin=0.85,
                 nucleus_density=1.05, cytoplasm_rgb=(72, 100, 185), hof=0.65),
        CellType("proerythroblast", "large, round nucleus, nucleoli, deep blue cytoplasm", (14, 19), "round",
                 nc_ratio=(0.76, 0.84), eccentric=0.1, chromatin=0.15, nucleus_density=0.75, nucleoli=(1, 2),
                 cytoplasm_rgb=(70, 92, 180)),
        CellType("basophilic_normoblast", "round nucleus, coarser chromatin, deep blue cytoplasm", (11, 15),
                 "round", nc_ratio=(0.7, 0.78), eccentric=0.1, chromatin=0.55, nucleus_density=0.95,
                 cytoplasm_rgb=(85, 110, 190)),
        CellType("polychromatic_normoblast", "round checkerboard nucleus, grey-lilac cytoplasm", (9, 12),
                 "round", nc_ratio=(0.55, 0.65), eccentric=0.15, chromatin=0.9, nucleus_density=1.1,
                 cytoplasm_rgb=(168, 158, 196)),
        CellType("orthochromatic_normoblast", "small pyknotic nucleus, pink cytoplasm", (7, 10), "round",
                 nc_ratio=(0.4, 0.5), eccentric=0.45, chromatin=0.3, nucleus_density=1.55,
                 cytoplasm_rgb=(222, 148, 158)),
    ]
}
# fmt: on

NUCLEATED_TYPES: tuple[str, ...] = tuple(CELL_TYPES)
RBC_DIAMETER_UM = (7.0, 8.0)
PLATELET_DIAMETER_UM = (1.8, 3.2)
MAX_DIAMETER_UM = max(t.diameter_um[1] for t in CELL_TYPES.values())
