"""Ray for the optional `--engine ray`: join a cluster, or start one on this machine, and stop what we started.

Ray is an optional extra (`pip install -e '.[ray]'`); asking for the engine without it is one line that says
how to install it. Nothing here imports Ray at module level, so the local engine never needs it.

Started here (no address), Ray binds to the loopback interface only: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`,
set before Ray is first imported, makes Ray take 127.0.0.1 as this node's address (Ray's own switch for
single-machine use), so a local run opens no port to the network. A session that joins a cluster
(`address="auto"` on a node of a `ray start` cluster, or `ray://HOST:PORT`) keeps Ray's normal addressing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from features.core.errors import ConfigError, InputError

INSTALL_HINT = "pip install 'mil[ray]' (from a checkout: pip install -e '.[ray]')"


def require_ray(local: bool = False) -> Any:
    """The `ray` module, or one line saying how to install it. `local`: Ray will be started here, so it is
    first imported with loopback addressing (see the module docstring)."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.data  # noqa: F401 - the extraction engine needs Ray Data, part of the extra
    except ImportError as exc:
        raise ConfigError(
            f"--engine ray needs Ray, which is not installed here ({exc}): {INSTALL_HINT}"
        ) from None
    return ray


ENGINES = ("local", "ray")


def engine_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The Ray options given (not None) for engine `name`; an unknown engine, or Ray options (flags such as
    --address, --loaders) without `--engine ray`, are refused rather than ignored."""
    given = {k: v for k, v in options.items() if v is not None}
    if name not in ENGINES:
        raise ConfigError(f"--engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "local" and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ConfigError(f"{flags}: Ray options; add --engine ray (or drop them for the local engine)")
    return given


@dataclass(frozen=True)
class Cluster:
    """What the session sees: logical CPUs and GPUs of the whole cluster, and whether we started it."""

    cpus: float
    gpus: float
    address: str  # as given, or "local"
    started: bool
    node_ip: str  # this node's address in the cluster (127.0.0.1 for a Ray started here)

    def describe(self) -> str:
        if not self.started:
            where = f"already running in this process (node {self.node_ip})"
        elif self.address == "local":
            where = f"started on this machine ({self.node_ip})"
        else:
            where = f"at {self.address}"
        return f"Ray {where}: {self.cpus:g} CPU(s), {self.gpus:g} GPU(s)"


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Cluster]:
    """A Ray session for one run. An already initialised Ray (a notebook, the tests) is used as it is and
    left running; otherwise Ray is started locally (`address` None; `num_cpus` logical CPUs, default all)
    or joined at `address`, and shut down (or disconnected) at the end, whatever happens in between."""
    ray = require_ray(local=address is None)
    started = False
    if not ray.is_initialized():
        quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        try:
            if address is None:
                # "local" starts a new instance even when RAY_ADDRESS names a cluster: no --address, no cluster
                ray.init(address="local", num_cpus=num_cpus, **quiet)
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = address or "this machine"
            raise InputError(
                f"--address {where}: cannot start or reach Ray ({' '.join(str(exc).split())[:300]}); on a cluster "
                "run `ray start --head` on one node and `ray start --address HEAD:6379` on the others"
            ) from None
        started = True
    try:
        resources = ray.cluster_resources()
        yield Cluster(
            cpus=float(resources.get("CPU", 0)),
            gpus=float(resources.get("GPU", 0)),
            address=address or "local",
            started=started,
            node_ip=ray.util.get_node_ip_address(),
        )
    finally:
        if started:
            ray.shutdown()


__all__ = ["ENGINES", "INSTALL_HINT", "Cluster", "engine_options", "ray_session", "require_ray"]
