"""The Ray actor that renders panels: one per GPU, its pipeline loaded once for its whole life."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

from ..config import Settings
from ..errors import StoryMakerError
from ..services.jobs import STATUS_ERROR, STATUS_OK, PanelJob

logger = logging.getLogger(__name__)


class _Conditionings:
    """What a backend's ``render`` reads as its ``registry`` on a worker: the conditioning fetched
    from the object store, by (name, outfit)."""

    def __init__(self, table: dict[tuple[str, str | None], Any]):
        self._table = table

    def conditioning(self, name: str, outfit: str | None = None):
        return self._table[(name.casefold(), outfit or None)]


class PanelWorker:
    """A Ray actor that renders panels with one backend whose pipeline stays loaded for its life.

    Never writes a project: ``render`` returns the image (or the reason it failed) to the driver.
    """

    def __init__(self, backend: str, settings: Settings, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        from ..services.container import make_backend
        from ..services.pipelines import PipelineCache

        self._cache = PipelineCache()
        self._backend = make_backend(backend, settings, self._cache)
        self._conditioning: dict[str, Any] = {}  # object id -> CharacterConditioning
        self._fetches = 0
        self._panels = 0

    def prepare(self) -> str | None:
        """Load the pipeline; the error message a user can act on when it cannot be loaded."""
        try:
            self._backend.prepare()
        except StoryMakerError as err:
            return f"{err} (on Ray worker {_where()})"
        return None

    def render(self, job: PanelJob, characters: Sequence[Any]) -> dict[str, Any]:
        """Render ``job``; ``characters``: one conditioning ObjectRef per slot of ``job.characters``."""
        started = time.perf_counter()
        try:
            table = {
                (slot.name.casefold(), slot.outfit or None): self._fetch(ref)
                for slot, ref in zip(job.characters, characters)
            }
            image = self._backend.render(job, registry=_Conditionings(table), on_step=_ignore, cancel=None)
        except StoryMakerError as err:
            return {"status": STATUS_ERROR, "error": str(err), "seconds": time.perf_counter() - started}
        except Exception as err:  # noqa: BLE001 - one panel's bug must not stop the worker
            logger.exception("panel %d failed unexpectedly", job.index + 1)
            return {
                "status": STATUS_ERROR,
                "error": f"Unexpected {type(err).__name__} on Ray worker {_where()}: {err}. The other "
                "panels are kept; run with -v for the worker's log and report it as a bug.",
                "seconds": time.perf_counter() - started,
            }
        self._panels += 1
        return {"status": STATUS_OK, "image": image, "seconds": time.perf_counter() - started}

    def _fetch(self, ref: Any):
        import ray

        key = ref.hex()
        if key not in self._conditioning:
            self._conditioning[key] = ray.get(ref)
            self._fetches += 1
        return self._conditioning[key]

    def info(self) -> dict[str, Any]:
        """What this worker did: pipeline loads, conditionings fetched, panels rendered, where."""
        return {
            "pid": os.getpid(),
            "where": _where(),
            "pipeline_loads": sum(self._cache.loads.values()),
            "conditioning_fetches": self._fetches,
            "panels": self._panels,
        }


def _ignore(step: int, steps: int) -> None:
    return None


def _where() -> str:
    import socket

    return f"{socket.gethostname()} pid {os.getpid()}"
