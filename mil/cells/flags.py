"""Flags on a differential count from reference ranges (configs/celltypes/reference_ranges.yaml or a path).

A flag is a sentence for a person to check, never a diagnosis: "blasts >= 20 %: meets the AML blast criterion
(WHO/ICC); a flag, not a diagnosis". Each flag names a measure (`n_counted`, `blast_pct`, `me_ratio`,
`dysplastic_neutrophil_pct`, `pct:<class>`) and bounds; it is raised when the value is within them. A flag
quotes the value and its 95 % interval, and says when that interval crosses the threshold, because a 200-cell
count of 18 % blasts cannot tell 15 % from 24 %. A measure the cell model cannot give is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.core.errors import ConfigError
from mil.cells.count import Differential, Measure


class RangeFlag(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    measure: str = Field(pattern=r"^(n_counted|blast_pct|me_ratio|dysplastic_neutrophil_pct|pct:.+)$")
    text: str = Field(min_length=1)
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> RangeFlag:
        if all(v is None for v in (self.at_least, self.above, self.below, self.at_most)):
            raise ValueError(f"flag on {self.measure} has no bound (at_least, above, below or at_most)")
        return self

    def raised(self, value: float) -> bool:
        return (
            (self.at_least is None or value >= self.at_least)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
            and (self.at_most is None or value <= self.at_most)
        )

    def thresholds(self) -> list[float]:
        return [v for v in (self.at_least, self.above, self.below, self.at_most) if v is not None]


class RangesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    flags: list[RangeFlag] = Field(default_factory=list)


@dataclass(frozen=True)
class ReferenceRanges:
    name: str
    description: str
    flags: tuple[RangeFlag, ...]

    def apply(self, row: Differential) -> list[str]:
        """The flags raised on one count, each with its value and interval."""
        out = []
        for flag in self.flags:
            measure = row.value(flag.measure)
            if measure is None or measure.value is None or not flag.raised(measure.value):
                continue
            out.append(f"{flag.text} [{_quote(flag.measure, measure)}{_crossing(flag, measure)}]")
        return out


def load_reference_ranges(name_or_path: str | Path) -> ReferenceRanges:
    from mil.cells.vocabulary import read_celltypes_yaml

    source, data = read_celltypes_yaml("reference ranges", name_or_path)
    try:
        parsed = RangesFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{source}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return ReferenceRanges(Path(str(name_or_path)).stem, parsed.description, tuple(parsed.flags))


def _quote(name: str, m: Measure) -> str:
    if name == "n_counted":
        return f"{m.numerator} counted cells"
    if name == "me_ratio":
        return f"M:E {m.value:.2f} ({m.numerator}:{m.denominator})"
    label = (
        name[4:].replace("_", " ") if name.startswith("pct:") else name.removesuffix("_pct").replace("_", " ")
    )
    return f"{label} {m.value:.1f} % (95 % CI {m.lo:.1f}-{m.hi:.1f}, {m.numerator}/{m.denominator})"


def _crossing(flag: RangeFlag, m: Measure) -> str:
    if m.lo is None or m.hi is None:
        return ""
    crossed = [t for t in flag.thresholds() if m.lo <= t <= m.hi]
    return f"; the interval crosses {crossed[0]:g}" if crossed else ""
