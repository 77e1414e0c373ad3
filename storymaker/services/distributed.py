"""Render stories on a Ray cluster: one actor per GPU, the driver keeps the project.

- :func:`parse_address` / :func:`connect`: ``local:N`` starts a local Ray cluster with N CPU slots
  (one worker each); ``auto``, ``ray://host:10001`` or ``host:6379`` joins an existing cluster.
- :class:`PanelWorker` (a Ray actor, ``num_gpus=1`` when the cluster has GPUs): builds the backend
  once and keeps its pipeline loaded for its whole life; renders one :class:`PanelJob` at a time and
  returns the image (it never writes a project).
- :class:`RayRenderPool`: the driver side. Plans each panel with the project's
  :class:`~storymaker.services.render.RenderEngine` (the same seeds and settings as a local render),
  puts each character's conditioning in Ray's object store once, hands panels to workers as they
  free up, and keeps each image with ``engine.keep`` (the same atomic version write as a local
  render) as it arrives. A worker that dies has its panel retried on another; Ctrl+C or ``cancel``
  stops the run and keeps the finished panels.

Ray is optional: nothing here imports it before :func:`import_ray`, which says how to install it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import Settings
from ..errors import ConfigError, InvalidInputError, StoryMakerError
from .jobs import STATUS_CANCELLED, STATUS_ERROR, STATUS_OK, PanelJob, PanelResult, RenderReport

logger = logging.getLogger(__name__)

#: ``progress(done, total)``: panels finished (kept, failed or cancelled) across the cluster.
ClusterProgress = Callable[[int, int], None]

INSTALL_HINT = (
    "--ray needs Ray, which is not installed here: run `pip install ray` (the same Ray and Python "
    "version on every node of the cluster), or render without --ray on this machine."
)
MAX_ATTEMPTS = 3  # a panel whose worker died is tried on at most this many workers
START_TIMEOUT_S = 900.0  # no worker ready after this long: the cluster cannot host one


def import_ray():
    """The ``ray`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


# ----------------------------------------------------------------------------------------------
# Cluster


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


# ----------------------------------------------------------------------------------------------
# The worker (a Ray actor)


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
        from .container import make_backend
        from .pipelines import PipelineCache

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


# ----------------------------------------------------------------------------------------------
# The driver


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
            for index in indices:
                try:
                    job = run.engine.job(run.story, index, story_seed=run.seed)
                    refs = tuple(self._conditioning_ref(run.engine, slot, shared) for slot in job.characters)
                except StoryMakerError as err:
                    state.results[(number, index)] = PanelResult(index, STATUS_ERROR, error=str(err))
                    continue
                state.items.append(_Item(number, job, refs))
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
                from .backends import _conditioning

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
            state.results[key] = engine.keep(item.job, out["image"], seconds=out["seconds"])
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


def preflight(address: str) -> ClusterAddress:
    """Check ``--ray ADDRESS`` before anything is written: the address, Ray installed, and an
    existing cluster reachable (connected, then left: :func:`render_on_ray` connects again)."""
    where = parse_address(address)
    ray = import_ray()
    if not where.local and not ray.is_initialized():
        with Cluster(where):
            pass
    return where


def ray_backend_name(settings: Settings) -> str:
    """The backend the workers use: ``auto`` means the real model (the GPUs are on the workers,
    not necessarily here); ``draft`` is refused by :class:`RayRenderPool`."""
    return "storymaker" if settings.backend == "auto" else settings.backend


def driver_services(settings: Settings):
    """The services the driver needs: projects, registries, planning, metadata; its backend is
    never loaded here (the workers load theirs), so the driver needs no GPU."""
    from .container import build_services, make_backend, real_perception, tiny_perception

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
