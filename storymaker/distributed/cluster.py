"""Connecting to Ray: ``local:N`` (a local cluster started here), ``auto``, ``ray://HEAD:10001``.

Ray is optional: nothing here imports it before :func:`import_ray`, which says how to install it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidInputError

INSTALL_HINT = (
    "--ray needs Ray, which is not installed here: run `pip install ray` (the same Ray and Python "
    "version on every node of the cluster), or render without --ray on this machine."
)


def import_ray():
    """The ``ray`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class ClusterAddress:
    """Where to render: ``local_workers`` for a local cluster started here, else ``address``."""

    address: str | None = None
    local_workers: int | None = None

    @property
    def local(self) -> bool:
        return self.local_workers is not None

    def __str__(self) -> str:
        return f"local:{self.local_workers}" if self.local else str(self.address)


def parse_address(text: str) -> ClusterAddress:
    """``local:N`` (a local cluster with N workers), ``auto``, ``ray://host:port`` or ``host:port``."""
    text = (text or "").strip()
    if text.lower().startswith("local"):
        _, sep, count = text.partition(":")
        try:
            workers = int(count) if sep else 0
        except ValueError:
            workers = 0
        if not 1 <= workers <= 256:
            raise InvalidInputError(
                f"--ray {text!r}: write local:N with N workers from 1 to 256, e.g. --ray local:2."
            )
        return ClusterAddress(local_workers=workers)
    if not text or any(c.isspace() for c in text):
        raise InvalidInputError(
            f"--ray {text!r}: give a cluster address (auto, ray://HOST:10001, HOST:6379) or local:N."
        )
    return ClusterAddress(address=text)


class Cluster:
    """A connection to Ray (a context manager). Reuses a connection this process already has
    (tests start one per module); shuts down only what it started."""

    def __init__(self, where: ClusterAddress, *, object_store_mb: int | None = 512, verbose: bool = False):
        self.where = where
        self.object_store_mb = object_store_mb
        self.verbose = verbose
        self.ray = import_ray()
        self._owned = False

    def __enter__(self) -> "Cluster":
        ray = self.ray
        if ray.is_initialized():
            return self
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=self.verbose)
        if self.where.local:
            package_root = str(Path(__file__).resolve().parents[2])
            kwargs.update(
                num_cpus=self.where.local_workers,
                # The workers import storymaker from this checkout, wherever the driver runs.
                runtime_env={"env_vars": {"PYTHONPATH": _join_path(package_root)}},
            )
            if self.object_store_mb:
                kwargs["object_store_memory"] = self.object_store_mb * 2**20
        else:
            kwargs["address"] = self.where.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise ConfigError(
                f"Could not reach the Ray cluster at {self.where}: {str(err).rstrip('. ')}. Check the "
                "address (auto needs `ray start` on this machine; ray://HEAD:10001 needs "
                "`pip install \"ray[client]\"` here) or use --ray local:N."
            ) from None
        self._owned = True
        return self

    def __exit__(self, *exc) -> None:
        if self._owned:
            self.ray.shutdown()
            self._owned = False

    def gpus(self) -> int:
        return int(self.ray.cluster_resources().get("GPU", 0))

    def gpus_per_worker(self, workers: int) -> float:
        """1 on a cluster with a GPU per worker; a share of one GPU when ``local:N`` asks for more
        workers than this machine has GPUs; 0 on a CPU-only cluster."""
        gpus = self.gpus()
        return 0.0 if not gpus else min(1.0, gpus / max(1, workers))

    def default_workers(self) -> int:
        """One worker per GPU; on a CPU-only cluster one per node (``local:N``: N)."""
        if self.where.local:
            return int(self.where.local_workers)
        if self.gpus():
            return self.gpus()
        nodes = [n for n in self.ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
        return max(1, len(nodes))


def _join_path(first: str) -> str:
    rest = os.environ.get("PYTHONPATH", "")
    return first + (os.pathsep + rest if rest else "")


def preflight(address: str) -> ClusterAddress:
    """Check ``--ray ADDRESS`` before anything is written: the address, Ray installed, and an
    existing cluster reachable (connected, then left: :func:`render_on_ray` connects again)."""
    where = parse_address(address)
    ray = import_ray()
    if not where.local and not ray.is_initialized():
        with Cluster(where):
            pass
    return where
