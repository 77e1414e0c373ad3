"""The driver: plans the panels, shares them out to the workers, keeps every image it gets back.

Each panel is planned with the project's :class:`~storymaker.services.render.RenderEngine` (the
same seeds and settings as a local render); each character's conditioning goes into Ray's object
store once; a free worker gets the next panel; each image is kept with ``engine.keep`` (the same
atomic version write as a local render) as it arrives. A worker that dies has its panel retried
on another; Ctrl+C or ``cancel`` stops the workers and keeps the finished panels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..config import Settings
from ..errors import InvalidInputError, StoryMakerError
from ..services.jobs import STATUS_CANCELLED, STATUS_ERROR, STATUS_OK, PanelJob, PanelResult, RenderReport
from .cluster import Cluster, ClusterAddress, import_ray, parse_address
from .worker import PanelWorker

logger = logging.getLogger(__name__)

#: ``progress(done, total)``: panels finished (kept, failed or cancelled) across the cluster.
ClusterProgress = Callable[[int, int], None]

MAX_ATTEMPTS = 3  # a panel whose worker died is tried on at most this many workers
START_TIMEOUT_S = 900.0  # no worker ready after this long: the cluster cannot host one


@dataclass(frozen=True)
class StoryRun:
    """One story to render into one project (``engine``: that project's RenderEngine)."""

    engine: Any
    story: Any
    panels: Sequence[int] | None = None  # 0-based; all by default
    seed: int | None = None  # replaces the story seed


@dataclass
class _Item:
    run: int
    job: PanelJob
    refs: tuple
    panel_id: str | None = None  # the panel's identity in the project (RenderEngine.panel_ids)
    attempts: int = 0


@dataclass
class _Actor:
    handle: Any
    ready: bool = False
    busy: bool = False


@dataclass
class _State:
    items: deque
    results: dict = field(default_factory=dict)  # (run, index) -> PanelResult
    total: int = 0


class RayRenderPool:
    """Workers on a Ray cluster for one backend and settings (a context manager; the workers live
    until it closes, so a batch of stories loads each pipeline once per worker).

    ``workers``: how many; ``gpus``: GPUs per worker (0: CPU workers, one CPU slot each);
    ``threads``: torch threads per worker (default: Ray's, ``OMP_NUM_THREADS`` = the worker's one CPU
    slot); the cluster must be connected (:class:`Cluster`).
    """

    def __init__(
        self,
        backend: str,
        settings: Settings,
        *,
        workers: int,
        gpus: float = 0.0,
        threads: int | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        start_timeout: float = START_TIMEOUT_S,
    ):
        if backend not in ("storymaker", "tiny"):
            raise InvalidInputError(
                f"--ray renders with the storymaker or tiny backend, not {backend!r}: draft sketches "
                "are drawn at once on this machine (drop --ray)."
            )
        if workers < 1:
            raise InvalidInputError("--ray-workers must be at least 1.")
        self.ray = import_ray()
        self.backend = backend
        self.settings = settings
        self.workers = int(workers)
        self.gpus = float(gpus)
        self.threads = threads
        self.max_attempts = max(1, int(max_attempts))
        self.start_timeout = float(start_timeout)
        self.actors: list[_Actor] = []
        self.errors: list[str] = []  # workers that could not start, and why
        self._pending: dict[Any, tuple] = {}  # ObjectRef -> ("prepare", actor) | ("render", actor, item)
        self._started_at = 0.0
        self.retries = 0  # panels moved to another worker because theirs died

    # -- workers -------------------------------------------------------------------------------

    def __enter__(self) -> "RayRenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the workers (each loads its pipeline in the background); idempotent."""
        if self.actors:
            return
        ray = self.ray
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
        if self.gpus:
            options["num_gpus"] = self.gpus
        else:
            options["scheduling_strategy"] = "SPREAD"
        remote = ray.remote(PanelWorker).options(**options)
        self._started_at = time.monotonic()
        for _ in range(self.workers):
            actor = _Actor(remote.remote(self.backend, self.settings, self.threads))
            self.actors.append(actor)
            self._pending[actor.handle.prepare.remote()] = ("prepare", actor)

    def wait_ready(self) -> int:
        """Start the workers and wait until each has loaded its pipeline (or failed); the number
        ready. Optional: :meth:`render` starts them itself and uses each as soon as it is ready."""
        self.start()
        waiting = [ref for ref, p in self._pending.items() if p[0] == "prepare"]
        if waiting:
            ready, _ = self.ray.wait(waiting, num_returns=len(waiting), timeout=self.start_timeout)
            for ref in ready:
                self._settle(ref, (), _State(items=deque()))
        return sum(a.ready for a in self.actors)

    @property
    def handles(self) -> list[Any]:
        """The workers' actor handles (tests kill one to show a panel is retried elsewhere)."""
        return [a.handle for a in self.actors]

    @property
    def busy(self) -> dict[tuple[int, int], Any]:
        """(run number, panel index) -> the handle of the worker rendering that panel now."""
        return {(p[2].run, p[2].job.index): p[1].handle for p in self._in_flight()}

    def info(self) -> list[dict[str, Any]]:
        """``PanelWorker.info()`` of every live, started worker."""
        out = []
        for actor in self.actors:
            if actor.ready:
                try:
                    out.append(self.ray.get(actor.handle.info.remote(), timeout=60))
                except self.ray.exceptions.RayError:
                    continue
        return out

    def close(self) -> None:
        """Stop every worker (a panel still rendering is dropped, never written)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor.handle)
            except (self.ray.exceptions.RayError, ValueError):
                continue
        self.actors.clear()
        self._pending.clear()

    def _drop(self, actor: _Actor, why: str) -> None:
        logger.warning("Ray worker lost: %s", why)
        if actor in self.actors:
            self.actors.remove(actor)
        try:
            self.ray.kill(actor.handle)
        except (self.ray.exceptions.RayError, ValueError):
            pass

    # -- rendering -----------------------------------------------------------------------------

    def render(
        self,
        runs: Sequence[StoryRun],
        *,
        progress: ClusterProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> list[RenderReport]:
        """Render every run's panels on the workers; one report per run, results in panel order.

        Each image is kept (a new selected version of its project) as soon as it arrives."""
        state = _State(items=deque())
        order: list[list[tuple[int, int]]] = []
        for number, run in enumerate(runs):
            indices = list(range(len(run.story.panels))) if run.panels is None else list(run.panels)
            order.append([(number, i) for i in indices])
            shared: dict[tuple[str, str | None], Any] = {}  # one object per character and outfit
            panel_ids = run.engine.panel_ids(run.story)
            for index in indices:
                try:
                    job = run.engine.job(run.story, index, story_seed=run.seed)
                    refs = tuple(self._conditioning_ref(run.engine, slot, shared) for slot in job.characters)
                except StoryMakerError as err:
                    state.results[(number, index)] = PanelResult(index, STATUS_ERROR, error=str(err))
                    continue
                state.items.append(_Item(number, job, refs, panel_ids[index] if index < len(panel_ids) else None))
        state.total = sum(len(o) for o in order)
        done = len(state.results)
        if progress is not None:
            progress(done, state.total)
        cancelled = False
        if state.items:
            self.start()
            try:
                cancelled = self._loop(runs, state, progress, cancel)
            except KeyboardInterrupt:
                logger.info("interrupted: stopping the Ray workers, finished panels are kept")
                cancelled = True
            if cancelled:
                unfinished = list(state.items) + [p[2] for p in self._in_flight()]
                self.close()  # a worker mid-panel cannot be interrupted: stop it, write nothing
                for item in unfinished:
                    state.results.setdefault((item.run, item.job.index), PanelResult(
                        item.job.index, STATUS_CANCELLED, seed=item.job.seed,
                        error="Cancelled before it finished."))
                state.items.clear()
        backend_name = runs[0].engine.backend.name if runs else self.backend
        reports = []
        for number, keys in enumerate(order):
            # A panel with no result was interrupted between two steps here (Ctrl+C): cancelled.
            results = tuple(state.results.get(key) or PanelResult(
                key[1], STATUS_CANCELLED, error="Cancelled before it finished.") for key in keys)
            stopped = cancelled and any(r.status == STATUS_CANCELLED for r in results)
            reports.append(RenderReport(results, backend=backend_name, cancelled=stopped))
        return reports

    def _conditioning_ref(self, engine: Any, slot: Any, shared: dict) -> Any:
        key = (slot.name.casefold(), slot.outfit or None)
        if key not in shared:
            if engine.registry is None:
                from ..services.backends import _conditioning

                _conditioning(None, slot)  # raises the "no character registry" RenderError
            shared[key] = self.ray.put(engine.registry.conditioning(slot.name, outfit=slot.outfit))
        return shared[key]

    def _in_flight(self) -> list[tuple]:
        return [p for p in self._pending.values() if p[0] == "render"]

    def _loop(self, runs, state: _State, progress, cancel) -> bool:
        ray = self.ray
        while state.items or self._in_flight():
            if cancel is not None and cancel.is_set():
                return True
            self._assign(state)
            if not self._pending:  # no worker left, none starting
                reason = "; ".join(dict.fromkeys(self.errors)) or "every Ray worker stopped"
                self._fail_all(state, f"No Ray worker could render it: {reason}.")
                break
            if not any(a.ready for a in self.actors) and time.monotonic() - self._started_at > self.start_timeout:
                self._fail_all(state, (
                    f"No Ray worker started within {self.start_timeout:.0f} s: the cluster may not have "
                    f"{self.workers} free {'GPU' if self.gpus else 'CPU'} slot(s); pass --ray-workers N."))
                break
            ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=0.25)
            for ref in ready:
                self._settle(ref, runs, state)
                if progress is not None:
                    progress(len(state.results), state.total)
        return False

    def _assign(self, state: _State) -> None:
        """Give each free, ready worker the next panel (panels go to workers as they free up)."""
        for actor in self.actors:
            if actor.ready and not actor.busy and state.items:
                item = state.items.popleft()
                actor.busy = True
                self._pending[actor.handle.render.remote(item.job, item.refs)] = ("render", actor, item)

    def _settle(self, ref: Any, runs, state: _State) -> None:
        ray = self.ray
        kind, actor, *rest = self._pending.pop(ref)
        if kind == "prepare":
            try:
                error = ray.get(ref)
            except ray.exceptions.RayError as err:
                error = f"the worker did not start ({type(err).__name__}: {_first_line(err)})"
            if error:
                self.errors.append(error)
                self._drop(actor, error)
            else:
                actor.ready = True
            return
        (item,) = rest
        key = (item.run, item.job.index)
        try:
            out = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            self._drop(actor, f"died rendering panel {item.job.index + 1}: {_first_line(err)}")
            item.attempts += 1
            if item.attempts < self.max_attempts:
                self.retries += 1
                state.items.appendleft(item)  # retried on the next free worker
            else:
                state.results[key] = PanelResult(
                    item.job.index, STATUS_ERROR, seed=item.job.seed,
                    error=f"{item.attempts} Ray workers stopped while rendering this panel; "
                    "check the workers' logs (run with -v).")
            return
        except ray.exceptions.RayError as err:
            actor.busy = False
            state.results[key] = PanelResult(item.job.index, STATUS_ERROR, seed=item.job.seed,
                                             error=f"Ray could not run this panel: {_first_line(err)}")
            return
        actor.busy = False
        self._assign(state)  # the worker starts its next panel while this one is written
        if key in state.results:  # never written twice
            logger.warning("panel %d arrived twice: the second copy is dropped", item.job.index + 1)
            return
        if out["status"] != STATUS_OK:
            state.results[key] = PanelResult(item.job.index, STATUS_ERROR, seed=item.job.seed,
                                             error=out["error"], seconds=out["seconds"])
            return
        engine = runs[item.run].engine
        try:
            state.results[key] = engine.keep(item.job, out["image"], panel_id=item.panel_id, seconds=out["seconds"])
        except StoryMakerError as err:
            state.results[key] = PanelResult(item.job.index, STATUS_ERROR, seed=item.job.seed, error=str(err))

    def _fail_all(self, state: _State, message: str) -> None:
        while state.items:
            item = state.items.popleft()
            state.results[(item.run, item.job.index)] = PanelResult(
                item.job.index, STATUS_ERROR, seed=item.job.seed, error=message)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ----------------------------------------------------------------------------------------------
# What the CLI calls


def ray_backend_name(settings: Settings) -> str:
    """The backend the workers use: ``auto`` means the real model (the GPUs are on the workers,
    not necessarily here); ``draft`` is refused by :class:`RayRenderPool`."""
    return "storymaker" if settings.backend == "auto" else settings.backend


def driver_services(settings: Settings):
    """The services the driver needs: projects, registries, planning, metadata; its backend is
    never loaded here (the workers load theirs), so the driver needs no GPU."""
    from ..services.container import build_services, make_backend, real_perception, tiny_perception

    name = ray_backend_name(settings)
    if name not in ("storymaker", "tiny"):
        raise InvalidInputError(
            f"--ray renders with the storymaker or tiny backend, not {name!r}: draft sketches are drawn "
            "at once on this machine (drop --ray)."
        )
    settings = settings.replace(backend=name)
    perception = tiny_perception() if name == "tiny" else real_perception(settings)
    return build_services(settings, backend=make_backend(name, settings), perception=perception)


def render_on_ray(
    address: str | ClusterAddress,
    services: Any,
    runs: Sequence[StoryRun],
    *,
    workers: int | None = None,
    progress: ClusterProgress | None = None,
    cancel: threading.Event | None = None,
    verbose: bool = False,
) -> list[RenderReport]:
    """Connect (or start a local cluster), start the workers, render ``runs``, stop the workers."""
    where = address if isinstance(address, ClusterAddress) else parse_address(address)
    with Cluster(where, verbose=verbose) as cluster:
        count = workers or cluster.default_workers()
        with RayRenderPool(services.backend.name, services.settings, workers=count,
                           gpus=cluster.gpus_per_worker(count)) as pool:
            return pool.render(runs, progress=progress, cancel=cancel)
