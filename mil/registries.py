"""Every registry in one place, for `mil list` and the config validators.

Imported directly: a registry package that fails to import is a broken install and must say so, not vanish
from `mil list` (tests/test_registries.py checks that each registry lists every module of its folder).
"""

from __future__ import annotations

from features.core.registry import Registry


def all_registries() -> dict[str, Registry]:
    from features.encoders import ENCODERS
    from features.sources import SOURCES
    from mil.baselines import BASELINES
    from mil.cells.classifiers import CLASSIFIERS
    from mil.heads import HEADS
    from mil.tasks import TASKS

    return {
        "sources": SOURCES,
        "encoders": ENCODERS,
        "heads": HEADS,
        "tasks": TASKS,
        "baselines": BASELINES,
        "cell-classifiers": CLASSIFIERS,
    }
