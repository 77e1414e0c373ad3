"""The GPU worker: the one owner of the accelerator.

Everything that runs a model that may sit on the GPU (rendering, face analysis, person
segmentation, CLIP encoding of characters and outfits, pose extraction) goes through one
:class:`GpuWorker`:

- one lock (:data:`DEVICE_LOCK`, also the lock of every loaded pipeline), so that no model call runs
  while the placement policy moves modules for a render, and two renders never share the device;
- one wrapping for the app's GPU events (:meth:`GpuWorker.gpu`): ``spaces.GPU`` with a duration
  computed from the work the call does (:func:`story_work`, :func:`gpu_duration`; at most
  ``settings.gpu_duration_max``); the app puts these events in one queue (``concurrency_id="gpu"``);
- ZeroGPU mode (:func:`zero_gpu_enabled`): the pipeline and the encoders are built at start-up
  (:meth:`GpuWorker.startup`), as ZeroGPU expects, so no call pays the load.

Perception components are wrapped with :meth:`GpuWorker.guard`: their compute methods run under
the lock, everything else (``name``, ``check()``) passes through.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger(__name__)

#: The device lock: held by every model call on the accelerator (re-entrant: a render may encode
#: a character it needs).
DEVICE_LOCK = threading.RLock()

#: The methods of perception components that run a model (the rest is metadata).
COMPUTE_METHODS = frozenset({"analyze", "segment", "encode", "detect", "load"})

#: Seconds asked of ZeroGPU for a call besides its denoising steps, per call and per panel
#: (conditioning, VAE decode, saving), and the least asked for any call.
CALL_OVERHEAD_S = 10
PANEL_OVERHEAD_S = 3
MIN_DURATION_S = 20


def zero_gpu_enabled(settings: "Settings", environ: Mapping[str, str] | None = None) -> bool:
    """ZeroGPU mode: ``settings.zero_gpu`` "on"/"off", or "auto": on when ``SPACES_ZERO_GPU`` is set."""
    if settings.zero_gpu != "auto":
        return settings.zero_gpu == "on"
    environ = os.environ if environ is None else environ
    return environ.get("SPACES_ZERO_GPU", "").strip().lower() not in ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class PanelWork:
    """One panel render, as the duration estimate sees it (a panel rendered best-of N is N of these)."""

    width: int
    height: int
    steps: int
    guidance_scale: float = 7.5

    @property
    def step_cost(self) -> float:
        """What one of its denoising steps costs, in steps of a Standard panel of the same size:
        1 with classifier-free guidance (the UNet and ControlNet run on a batch of 2), 0.5 without
        (``guidance_scale <= 1``, the pipeline's rule: the Fast preset, guidance 1). An estimate:
        a batch of 1 is taken to cost half a batch of 2, which holds where the GPU is kept busy
        (SDXL sizes); the text encoders, image projection and VAE decode are in the overheads."""
        return 1.0 if self.guidance_scale > 1 else 0.5


def gpu_duration(work: Iterable[PanelWork], settings: "Settings") -> int:
    """Seconds to ask ``spaces.GPU`` for: a call overhead plus, per panel render, a panel overhead
    and its steps x their cost (:attr:`PanelWork.step_cost`) x ``settings.gpu_step_seconds`` (per
    step of a 1-megapixel panel with guidance) scaled by its area (at least a quarter megapixel);
    at least :data:`MIN_DURATION_S`, at most ``settings.gpu_duration_max``."""
    seconds = float(CALL_OVERHEAD_S)
    for panel in work:
        megapixels = max(panel.width * panel.height, 1) / 1_000_000
        step_seconds = settings.gpu_step_seconds * panel.step_cost * max(megapixels, 0.25)
        seconds += PANEL_OVERHEAD_S + panel.steps * step_seconds
    return int(min(settings.gpu_duration_max, max(MIN_DURATION_S, math.ceil(seconds))))


class Guarded:
    """A perception component whose compute methods run under the worker's lock."""

    def __init__(self, component: Any, lock: threading.RLock):
        self._component = component
        self._lock = lock

    @property
    def wrapped(self) -> Any:
        return self._component

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._component, attr)
        if attr in COMPUTE_METHODS and callable(value):
            lock = self._lock

            def locked(*args, **kwargs):
                with lock:
                    return value(*args, **kwargs)

            return locked
        return value

    def __repr__(self) -> str:
        return f"Guarded({self._component!r})"


class GpuWorker:
    """The one owner of the accelerator (see the module docstring)."""

    def __init__(
        self,
        settings: "Settings",
        *,
        zero_gpu: bool | None = None,
        lock: threading.RLock = DEVICE_LOCK,
        environ: Mapping[str, str] | None = None,
    ):
        self.settings = settings
        self.zero_gpu = zero_gpu_enabled(settings, environ) if zero_gpu is None else bool(zero_gpu)
        self.lock = lock
        self.started = False

    # -- running work ----------------------------------------------------------------------------

    def run(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` holding the device."""
        with self.lock:
            return fn(*args, **kwargs)

    def guard(self, component: Any) -> Any:
        """``component`` with its compute methods under the lock (None stays None; idempotent)."""
        if component is None or isinstance(component, Guarded):
            return component
        return Guarded(component, self.lock)

    def guarded_factory(self, factory: Callable[[], Any]) -> Callable[[], Any]:
        """A thread-safe, call-once factory of the guarded component (shared by every registry)."""
        state: dict[str, Any] = {}
        once = threading.Lock()

        def get() -> Any:
            with once:
                if "value" not in state:
                    state["value"] = self.guard(factory())
                return state["value"]

        return get

    # -- the Spaces wrapping ---------------------------------------------------------------------

    def duration(self, work: Iterable[PanelWork] | None) -> int:
        """``spaces.GPU`` seconds for ``work`` (None: perception only, the least duration)."""
        return gpu_duration(work or (), self.settings)

    def gpu(self, fn: Callable, work: Callable[..., Sequence[PanelWork] | None] | None = None) -> Callable:
        """``fn`` as a GPU event: ``spaces.GPU(duration=...)`` where the ``spaces`` package is
        installed (it returns ``fn`` unchanged off ZeroGPU), else ``fn`` itself.

        ``work`` receives ``fn``'s arguments and returns the panels the call will render (None or
        [] for perception-only calls); its errors never fail the call (the least duration is used).
        """
        try:
            import spaces
        except ImportError:
            logger.debug("spaces is not installed: GPU functions run as they are")
            return fn

        def duration(*args, **kwargs) -> int:
            planned = None
            if work is not None:
                try:
                    planned = work(*args, **kwargs)
                except Exception as err:  # noqa: BLE001 - an estimate must never fail the call
                    logger.debug("duration estimate failed (%s): using the least duration", err)
            return self.duration(planned)

        return spaces.GPU(duration=duration)(fn)

    # -- start-up ----------------------------------------------------------------------------------

    def startup(self, backend: Any, components: Iterable[Callable[[], Any]] = ()) -> None:
        """Load the pipeline (``backend.prepare()``) and the encoders now, once.

        In ZeroGPU mode the app calls this before launching: the models are placed on ``cuda`` at
        start-up, where ZeroGPU expects them. A perception model that cannot load is logged, not
        fatal (the registry says what is missing when a character is registered); a pipeline that
        cannot load is fatal (its StoryMakerError says what to do).
        """
        from ..errors import StoryMakerError

        if self.started:
            return
        prepare = getattr(backend, "prepare", None)
        if prepare is not None:
            prepare()
        for factory in components:
            try:
                component = factory()
                load = getattr(component, "load", None)
                if load is not None:
                    load()
            except StoryMakerError as err:
                logger.warning("not loaded at start-up: %s", err)
        self.started = True
        logger.info("GPU worker ready (ZeroGPU mode: %s)", "on" if self.zero_gpu else "off")


def story_work(story: Any, settings: "Settings", indices: Sequence[int] | None = None,
               default_size: tuple[int, int] | None = None) -> list[PanelWork]:
    """The panel renders of ``story``'s panels ``indices`` (all by default) with ``settings``: each
    panel's size, steps and guidance as the render engine resolves them
    (:func:`storymaker.services.render.panel_settings`: the Fast preset's steps and guidance replace
    the script's), and each panel ``settings.best_of`` times (best of N renders it N times).
    ``default_size`` replaces the settings' size for panels without their own."""
    from .render import panel_settings

    if default_size is not None:
        settings = settings.replace(width=int(default_size[0]), height=int(default_size[1]))
    chosen = range(len(story.panels)) if indices is None else indices
    work = []
    for index in chosen:
        if not 0 <= index < len(story.panels):
            continue
        resolved = panel_settings(story, story.panels[index], settings)
        panel = PanelWork(resolved["width"], resolved["height"], resolved["steps"], resolved["guidance_scale"])
        work.extend([panel] * max(1, int(settings.best_of)))
    return work


def check_story_sizes(story: Any, settings: "Settings", indices: Sequence[int] | None = None,
                      default_size: tuple[int, int] | None = None) -> None:
    """Refuse, before any panel renders, a story whose panels are larger than
    ``settings.max_panel_side`` (:class:`InvalidInputError` naming the panels)."""
    from ..config import check_panel_size

    for index in range(len(story.panels)) if indices is None else indices:
        for panel in story_work(story, settings, [index], default_size):
            check_panel_size(panel.width, panel.height, settings, what=f"Panel {index + 1}: size")
