"""Class vocabularies: analyser and folder names mapped onto one standard set of cell types.

Every analyser names cells its own way ("Band neutrophils", "NGB", "band_neutrophil", "Stabkernige"), and a
count is only comparable across sites when the names meet in one set. A vocabulary is a YAML file in
configs/celltypes/ (shipped in the package) or a path: either a standard (`standard: true`, its `classes` with
roles and colours, e.g. munich21) or a mapping onto one (`standard: munich21`, `aliases: {name: class}`), which
inherits the standard's classes and aliases. Roles drive the count: `counted: false` classes (artefact,
smudge, unknown, platelet) are counted as cells but left out of every percentage; `blast`, `lineage`,
`neutrophil` and `dysplastic` give blast %, the M:E ratio and % dysplastic neutrophils.

Matching a name ignores case, Unicode composition, `_`/`-` against spaces, repeated spaces and a plural "s"
(`normalise`), so "Lymphocytes, variant" meets the alias "lymphocyte, variant". Two classes claiming one name is
an error at load, never a silent pick. Without a vocabulary (`own_vocabulary`) the labels' own names are the
classes, all counted, with no roles.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.core.errors import ConfigError

Lineage = Literal["myeloid", "erythroid", "lymphoid", "monocytic", "plasma", "other"]
_PLURAL = re.compile(r"(\w{3,}[^s\W])s\b")


def normalise(name: str) -> str:
    """The matching key of a class name: NFC, case-folded, `_`/`-` as spaces, spaces collapsed, plural s off."""
    text = unicodedata.normalize("NFC", str(name)).casefold().replace("_", " ").replace("-", " ")
    return _PLURAL.sub(r"\1", " ".join(text.split()))


class CellClass(BaseModel):
    """One class of the standard set and its roles in the count."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="The class id (snake_case in shipped standards).")
    code: str | None = None
    lineage: Lineage | None = None
    counted: bool = Field(True, description="False: counted as a cell but left out of every percentage.")
    blast: bool = False
    neutrophil: bool = False
    dysplastic: bool = False
    colour: str = Field("#888888", pattern=r"^#[0-9a-fA-F]{6}$")
    aliases: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


class VocabularyFile(BaseModel):
    """The YAML layout of configs/celltypes/<name>.yaml (see the module doc)."""

    model_config = ConfigDict(extra="forbid")

    standard: bool | str
    description: str = ""
    classes: list[CellClass] = Field(default_factory=list)
    aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> VocabularyFile:
        if self.standard is True and not self.classes:
            raise ValueError("a standard vocabulary lists its classes")
        if self.standard is False:
            raise ValueError("`standard` is true (this file defines the classes) or the standard's name")
        if isinstance(self.standard, str) and self.classes:
            raise ValueError("a mapping onto a standard lists aliases, not classes")
        return self


@dataclass(frozen=True)
class Vocabulary:
    """The classes of a standard (in display order) and every name that maps onto them."""

    name: str
    classes: dict[str, CellClass]
    aliases: dict[str, str]  # normalise(name) -> class name
    own_names: bool = False  # built from the labels' own names: no roles

    def lookup(self, names: np.ndarray) -> np.ndarray:
        """Class names for `names` (object array); None where a name is not in the vocabulary."""
        names = np.asarray(names, dtype=object)
        unique, inverse = np.unique(names.astype(str), return_inverse=True)
        mapped = np.array([self.aliases.get(normalise(u)) for u in unique] + [None], dtype=object)[:-1]
        return mapped[inverse.reshape(names.shape)]

    def counted(self, name: str) -> bool:
        return self.classes[name].counted

    def colours(self, names: list[str]) -> dict[str, tuple[int, int, int]]:
        return {n: self.classes[n].rgb for n in names}

    def to_dict(self) -> dict[str, Any]:
        """What a cell model stores, so it reads the same later whatever the shipped files become."""
        return {
            "name": self.name,
            "own_names": self.own_names,
            "classes": [c.model_dump() for c in self.classes.values()],
            "aliases": dict(self.aliases),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        classes = {c["name"]: CellClass.model_validate(c) for c in data["classes"]}
        return cls(data["name"], classes, dict(data["aliases"]), bool(data.get("own_names", False)))


def own_vocabulary(names: list[str]) -> Vocabulary:
    """The labels' own names as classes (no vocabulary given): each counted, colours from a fixed palette."""
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors
    classes = {}
    for i, name in enumerate(sorted(names)):
        r, g, b = (int(round(255 * v)) for v in palette[i % len(palette)][:3])
        classes[name] = CellClass(name=name, colour=f"#{r:02x}{g:02x}{b:02x}")
    return Vocabulary("own names", classes, {normalise(n): n for n in classes}, own_names=True)


def load_vocabulary(name_or_path: str | Path) -> Vocabulary:
    """A shipped vocabulary by name (`munich21`, `synth20`, `pbc8`) or a YAML path."""
    source, data = read_celltypes_yaml("vocabulary", name_or_path)
    try:
        parsed = VocabularyFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first(exc)}") from None
    if parsed.standard is True:
        classes = {c.name: c for c in parsed.classes}
        if len(classes) != len(parsed.classes):
            raise ConfigError(f"{source}: a class is listed twice")
        aliases: dict[str, str] = {}
        for c in parsed.classes:
            for alias in (c.name, c.code, *c.aliases):
                if alias:
                    _claim(aliases, alias, c.name, source)
        name = Path(str(name_or_path)).stem
    else:
        base = load_vocabulary(parsed.standard)
        if base.own_names or not base.classes:
            raise ConfigError(f"{source}: standard {parsed.standard!r} is not a standard vocabulary")
        classes, aliases = base.classes, dict(base.aliases)
        own: dict[str, str] = {}
        for alias, target in parsed.aliases.items():
            if target not in classes:
                raise ConfigError(
                    f"{source}: alias {alias!r} maps to {target!r}, not a class of {parsed.standard} "
                    f"({', '.join(classes)})"
                )
            _claim(own, alias, target, source)
        aliases.update(own)  # a mapping's own names win over the standard's
        name = Path(str(name_or_path)).stem
    for c in classes.values():
        if c.dysplastic and not c.neutrophil:
            raise ConfigError(f"{source}: class {c.name} is dysplastic but not in the neutrophil series")
    return Vocabulary(name, classes, aliases)


def _claim(aliases: dict[str, str], alias: str, target: str, source: str) -> None:
    key = normalise(alias)
    if aliases.get(key, target) != target:
        raise ConfigError(f"{source}: name {alias!r} maps to both {aliases[key]} and {target}")
    aliases[key] = target


def _kind(data: Any) -> str:
    """What a celltypes YAML holds: reference ranges carry `flags`, vocabularies do not."""
    return "reference ranges" if isinstance(data, dict) and "flags" in data else "vocabulary"


def _parse(file: Any) -> Any:
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({' '.join(str(exc).split())})") from None


def shipped_celltypes(what: str) -> list[str]:
    """Names of the shipped configs/celltypes/ files of one kind ("vocabulary" or "reference ranges")."""
    from mil.config import named_configs, shipped

    return [n for n in named_configs("celltypes") if _kind(_parse(shipped(f"celltypes/{n}.yaml"))) == what]


def read_celltypes_yaml(what: str, name_or_path: str | Path) -> tuple[str, Any]:
    """(where it came from, parsed YAML) of a shipped configs/celltypes/<name>.yaml or a path, which must hold
    `what` ("vocabulary" or "reference ranges"): a file of the other kind is named as such, not half-parsed."""
    from mil.config import shipped

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{what} file {path} not found")
        file: Any = path
    else:
        file = shipped(f"celltypes/{name_or_path}.yaml")
        if not file.is_file():
            names = ", ".join(shipped_celltypes(what))
            raise ConfigError(f"{what} {str(name_or_path)!r} not found: give a YAML path or one of: {names}")
    data = _parse(file)
    if _kind(data) != what:
        names = ", ".join(shipped_celltypes(what))
        raise ConfigError(
            f"{file}: a {_kind(data)} file, not a {what}; give a {what} YAML path or one of: {names}"
        )
    return str(file), data


def _first(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
