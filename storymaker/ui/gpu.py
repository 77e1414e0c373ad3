"""The app's GPU events: every handler that runs a model (render, character analysis and
encoding, outfits, pose extraction) is wrapped here by the services' GPU worker
(:mod:`storymaker.services.gpu`): ``spaces.GPU`` with a duration computed from the work where the
``spaces`` package is installed (it changes nothing off ZeroGPU), the function itself otherwise.
The tabs register these events with :data:`GPU_QUEUE` (one queue, one at a time).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from .context import StudioContext

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable)

#: Event options of every GPU event: one queue shared by all of them, one call at a time.
GPU_QUEUE = {"concurrency_limit": 1, "concurrency_id": "gpu"}


def gpu(duration: int = 120) -> Callable[[F], F]:
    """Decorator: ``spaces.GPU(duration=duration)`` where available, identity otherwise (for code
    without a studio context; the tabs use :func:`gpu_event`)."""
    try:
        import spaces
    except ImportError:
        logger.debug("spaces is not installed: GPU functions run as they are")
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def gpu_event(ctx: "StudioContext", fn: F, work: Callable[..., Any] | None = None) -> F:
    """``fn`` wrapped by the context's GPU worker; ``work(*args)`` (``fn``'s arguments) returns the
    panels the call renders, for the duration asked of ZeroGPU (None: perception only)."""
    return ctx.worker.gpu(fn, work)


def render_work(ctx: "StudioContext", mode: str) -> Callable[..., Any]:
    """The duration estimate of the Render tab's handlers ``(sid, panel_number, width, height,
    steps, guidance, ..., best_of, quality)``: the session's story panels ("all"), those without a
    render of their current wording ("missing", as the engine picks them), or one panel ("panel",
    "reroll"), with the very settings the handler renders with (the Quality preset and best of N
    included), resolved as the engine resolves them (:func:`story_work`)."""
    from ..services.gpu import story_work
    from ..services.render import missing_panels

    def work(sid, number, width, height, steps, guidance, ip, lora, cn, seed, best_of=1, quality=None,
             *rest, **kwargs):
        from .render_tab import settings_from_widgets, with_quality

        story = ctx.story(sid, strict=False)
        if story is None:
            return None
        options = with_quality(settings_from_widgets(width, height, steps, guidance, ip, lora, cn, seed, best_of),
                               quality)
        if mode == "all":
            indices = None
        elif mode == "missing":
            indices = missing_panels(ctx.project(sid), story)
        else:
            indices = [int(number) - 1]
        return story_work(story, ctx.settings.replace(**options.overrides()), indices)

    return work


def example_work(ctx: "StudioContext") -> Callable[..., Any]:
    """The duration estimate of "make the example comic": its story's panels at the settings'
    defaults."""
    from ..services.gpu import story_work

    def work(*args, **kwargs):
        from ..domain.script import parse_script
        from .example import load_example
        from .project_tab import EXAMPLES_DIR

        example = load_example(EXAMPLES_DIR)
        names = [person.name for person in example.characters]
        story = parse_script(example.script, names, poses=_pose_counts(ctx))
        return story_work(story, ctx.settings)

    return work


def _pose_counts(ctx: "StudioContext") -> dict[str, int]:
    return {p.name: p.num_people for p in ctx.services.pose_library().list()}
