"""`python kill_at.py POINT N -- mil-args...`: run `mil` and SIGKILL itself at the N-th pass through POINT.

A kill is the fault no `finally` sees (SIGKILL, the out-of-memory killer, a power cut), so it is injected for
real, in a process of its own: the point's function is wrapped to kill the process there, as if the signal
had arrived at that instant. The points are the steps between which a store changes:

- create:      the new store's root built in its temp sibling, not yet renamed into place
- record:      the run record written (status "running"), before any slide
- staging:     a bag half written in staging (features, no coords or paths, attrs)
- land:        a bag complete in staging, not yet renamed into place
- replace:     with --overwrite: the old bag moved aside, the new one not yet in place
- qc:          a slide's QC complete in staging, not yet in place
- finish:      every bag landed, the run record not yet closed
"""

from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _after(n: int, wrapped, before: bool = True, when=lambda *a, **k: True):
    """`wrapped`, dying on its n-th qualifying call: before calling it, or (before=False) after."""
    calls = [0]

    def wrapper(*args, **kwargs):
        if when(*args, **kwargs):
            calls[0] += 1
            if calls[0] == n and before:
                _die()
        result = wrapped(*args, **kwargs)
        if when(*args, **kwargs) and calls[0] == n and not before:
            _die()
        return result

    return wrapper


def install(point: str, n: int) -> None:
    import features.bagstore.arrays as arrays
    import features.bagstore.layout as layout
    import features.bagstore.qc as qc
    import features.bagstore.store as store
    from features.pipeline.run_record import RunRecord

    if point == "create":
        store.create_root = _after(n, store.create_root, before=False)
    elif point == "record":
        RunRecord._write = _after(n, RunRecord._write, before=False)
    elif point == "staging":
        real = arrays.write_bag_group

        def half(path, bag, meta):
            calls = half.calls = getattr(half, "calls", 0) + 1
            if calls == n:
                import zarr

                group = zarr.open_group(path, mode="w")
                group.create_array("features", data=bag.features)
                _die()
            real(path, bag, meta)

        arrays.write_bag_group = half
    elif point in ("land", "replace"):
        real_land = layout.land
        bags = lambda staged, final, replace: final.parent.name == layout.BAGS  # noqa: E731

        if point == "land":
            layout.land = _after(n, real_land, when=bags)
        else:

            def moved_aside(staged, final, replace):
                moved_aside.calls = getattr(moved_aside, "calls", 0) + 1
                if moved_aside.calls == n and replace and final.exists():
                    os.rename(final, layout.staging_path(final.parent.parent, layout.BAGS, final.name, "old"))
                    _die()
                return real_land(staged, final, replace)

            layout.land = lambda staged, final, replace: (
                moved_aside(staged, final, replace)
                if bags(staged, final, replace)
                else real_land(staged, final, replace)
            )
    elif point == "qc":
        qc.land = _after(n, qc.land)
    elif point == "finish":
        # RunRecord.update is called once, when the run ends: every bag has landed by then
        RunRecord.update = _after(n, RunRecord.update)
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    point, n, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: kill_at.py POINT N -- mil-args..."
    install(point, int(n))
    from mil.cli import main

    main(args)
