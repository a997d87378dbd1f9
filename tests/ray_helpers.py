"""A local Ray for the tests of `--engine ray`: 2 logical CPUs, loopback only, no dashboard, stopped by itself.

Import it at the top of a test module: without the `[ray]` extra the module is skipped (the only tests that
need it; CI installs it). The variable below is set before Ray is first imported, so Ray takes 127.0.0.1 as
this node's address (see features.core.ray_session). The fixture is module-scoped: Ray runs only while the
module's tests run, and a watchdog ends the test process (with every thread's stack) if it hangs.
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

HANG_S = 900  # a module of Ray tests that runs this long is stuck: dump the stacks and stop


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            object_store_memory=512 * 1024**2,
        )
    try:
        yield
    finally:
        if started:
            ray.shutdown()
        faulthandler.cancel_dump_traceback_later()


def ray_worker_pids(title: str) -> list[int]:
    """Pids of this test process's Ray workers whose title (Ray sets it to `ray::<task or actor>`) starts with
    `title`: only descendants of this process (the local Ray it started), never another Ray on the machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith(title) and _descends_from(int(entry.name), os.getpid()):
            pids.append(int(entry.name))
    return pids


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid
        if pid == ancestor:
            return True
    return False
