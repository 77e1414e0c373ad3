"""Render stories on a Ray cluster: one worker per GPU, the driver keeps the project (docs/ray.md).

- :mod:`.cluster`: ``--ray ADDRESS`` (``local:N``, ``auto``, ``ray://HEAD:10001``), connecting,
  and the message that says how to install Ray when it is missing;
- :mod:`.worker`: :class:`PanelWorker`, the Ray actor (``num_gpus=1`` when the cluster has GPUs)
  that keeps its pipeline loaded for its whole life and returns images, never writing a project;
- :mod:`.pool`: :class:`RayRenderPool`, the driver, and :func:`render_on_ray` for the CLI.

Importing this package does not import Ray.
"""

from .cluster import Cluster, ClusterAddress, import_ray, parse_address, preflight
from .pool import RayRenderPool, StoryRun, driver_services, ray_backend_name, render_on_ray
from .worker import PanelWorker

__all__ = [
    "Cluster", "ClusterAddress", "PanelWorker", "RayRenderPool", "StoryRun", "driver_services",
    "import_ray", "parse_address", "preflight", "ray_backend_name", "render_on_ray",
]
