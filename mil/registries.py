"""Every registry in one place, for `mil list` and the config validators."""

from __future__ import annotations

from features.core.registry import Registry


def all_registries() -> dict[str, Registry]:
    regs: dict[str, Registry] = {}
    for axis, module, attr in [
        ("sources", "features.sources", "SOURCES"),
        ("encoders", "features.encoders", "ENCODERS"),
        ("heads", "mil.heads", "HEADS"),
        ("tasks", "mil.tasks", "TASKS"),
    ]:
        try:
            mod = __import__(module, fromlist=[attr])
        except ModuleNotFoundError:
            continue
        if hasattr(mod, attr):
            regs[axis] = getattr(mod, attr)
    return regs
