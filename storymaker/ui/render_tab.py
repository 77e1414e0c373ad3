"""Render tab: quality preset and settings, render all / one panel / re-roll, progress per step,
cancel, and the panels with their versions (choose one per panel)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from . import scores_view
from .common import ok, user_errors, warn
from .context import StudioContext
from .gpu import GPU_QUEUE, gpu_event, render_work

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualityPreset:
    name: str
    steps: int
    guidance_scale: float
    note: str
    quality: str = "standard"  # "fast": the SDXL-Lightning LoRA and its scheduler (storymaker/models/fast.py)


PRESETS = (
    QualityPreset("Quick", 12, 6.0, "a fast look at composition"),
    QualityPreset("Standard", 25, 7.5, "the authors' demo settings"),
    QualityPreset("High", 40, 7.5, "slower, finer detail"),
    QualityPreset("Fast", 4, 1.0, "4 steps with the SDXL-Lightning LoRA (identity quality not yet measured)", "fast"),
)
PRESET_NAMES = tuple(p.name for p in PRESETS)


def preset(name: str) -> QualityPreset:
    for item in PRESETS:
        if item.name == name:
            return item
    return PRESETS[1]


def default_quality(settings) -> str:
    """The Quality radio's first choice: Fast where the settings ask for it (STORYMAKER_QUALITY=fast),
    else Standard; never guessed from a step count (a Fast choice would replace every panel's steps
    and guidance, the script's included)."""
    return "Fast" if settings.quality == "fast" else "Standard"


@dataclass(frozen=True)
class RenderSettings:
    """What the Render tab's widgets say; story and panel values in the script win over size,
    steps and guidance here (these are the defaults)."""

    width: int
    height: int
    steps: int
    guidance_scale: float
    ip_adapter_scale: float
    lora_scale: float
    controlnet_conditioning_scale: float
    seed: int | None  # None: the story's own seeds
    best_of: int = 1  # seeds rendered per panel; the best-scoring one is chosen
    quality: str = "standard"  # "fast": the Fast preset (its steps and guidance replace the others)

    def overrides(self) -> dict[str, Any]:
        return {
            "best_of": max(1, int(self.best_of)),
            "width": int(self.width), "height": int(self.height), "steps": int(self.steps),
            "guidance_scale": float(self.guidance_scale),
            "ip_adapter_scale": float(self.ip_adapter_scale), "lora_scale": float(self.lora_scale),
            "controlnet_conditioning_scale": float(self.controlnet_conditioning_scale),
            "quality": self.quality,
        }


#: The smallest width and height the Render tab accepts (the handler checks it: a widget minimum
#: would be Gradio's own red error before the handler).
MIN_SIDE = 64


def settings_from_widgets(width, height, steps, guidance, ip_scale, lora_scale, cn_scale, seed,
                          best_of=1) -> RenderSettings:
    from ..domain.script import seed_option
    from ..errors import InvalidInputError

    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise InvalidInputError("Width and height must be whole numbers (multiples of 8).") from None
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InvalidInputError(f"Size {w}x{h} is too small: width and height must be at least {MIN_SIDE} "
                                "(multiples of 8).")
    if w % 8 or h % 8:
        raise InvalidInputError(f"Size {w}x{h} is not usable: width and height must be multiples of 8.")
    try:
        steps = int(steps)
    except (TypeError, ValueError):
        raise InvalidInputError("Steps must be a whole number (25 is the Standard preset's).") from None
    if steps < 1:
        raise InvalidInputError(f"Steps {steps} is not usable: use at least 1 (25 is the Standard preset's).")
    seed_value = seed_option(seed, "Seed")  # the script's and --seed's rule: 0 to 2**32-1, -1 = the story's
    return RenderSettings(w, h, steps, float(guidance), float(ip_scale), float(lora_scale),
                          float(cn_scale), seed_value, min(16, max(1, int(best_of or 1))))


def with_quality(options: RenderSettings, preset_name: str | None) -> RenderSettings:
    """``options`` with the Quality radio's choice: the Fast preset renders with its own LoRA,
    steps and guidance (any other preset only set the sliders)."""
    import dataclasses

    return dataclasses.replace(options, quality=preset(preset_name).quality if preset_name else "standard")


def progress_reporter(progress: Callable[..., Any], skipped: int = 0) -> Callable[[int, int, int, int], None]:
    """Turn the engine's ``(panel, count, step, steps)`` into a Gradio progress fraction;
    ``skipped``: panels left out as already rendered (said in every line)."""
    note = f" ({skipped} already rendered, skipped)" if skipped else ""

    def report(panel: int, count: int, step: int, steps: int) -> None:
        steps = max(1, steps)
        fraction = (panel + min(step, steps) / steps) / max(1, count)
        progress(fraction, desc=f"Panel {panel + 1} of {count}: step {step} of {steps}{note}")
    return report


DRAFT_NOTE = ("**Draft mode ignores these:** the sketches use only the size and the seed. They apply "
              "when StoryMaker renders (see the banner's details).")


def model_settings_unused(ctx: StudioContext) -> bool:
    """Whether the backend ignores steps, guidance and the three strengths (draft sketches)."""
    services = ctx.services
    name = getattr(services, "backend_name", getattr(getattr(services, "backend", None), "name", ""))
    return name == "draft"


# ---------------------------------------------------------------- handlers

CHANGED = "script changed since render"


def panel_gallery(ctx: StudioContext, sid: str) -> list[tuple[str, str]]:
    """The selected version of every panel of the current script, in order; renders follow their
    panel (not its position), and a render made for older wording says "script changed since render"."""
    project = ctx.project(sid)
    story = ctx.story(sid, strict=False)
    if story is None:
        return []
    items = []
    for item in project.panel_renders([p.prompt for p in story.panels]):
        if item.selected is not None:
            note = f" · {CHANGED}" if item.changed else ""
            items.append((str(item.selected.image_path),
                          f"Panel {item.position + 1} · version {item.number} of {len(item.versions)}{note}"
                          + scores_view.panel_flag(item.selected)))
    return items


SCRIPT_PROBLEMS = ("The script has problems (the Story tab lists them): its panels and their renders show "
                   "again once they are fixed.")


def gallery_note(ctx: StudioContext, sid: str) -> str:
    """Why the panel gallery is empty although the script is not: the script has problems (a
    deleted character, a typo); empty otherwise."""
    if ctx.story(sid, strict=False) is None and ctx.project(sid).read_script().strip():
        return warn(SCRIPT_PROBLEMS)
    return ""


def _panel_render(ctx: StudioContext, sid: str, panel_number):
    """The panel numbered ``panel_number`` in the current script, with its renders (PanelRender)."""
    from ..errors import InvalidInputError

    index = _panel_index(panel_number)
    story = ctx.story(sid, strict=False)
    if story is None or index >= len(story.panels):
        raise InvalidInputError(f"Panel {index + 1} is not in the script: check the panel number and the Story tab.")
    return ctx.project(sid).panel_renders([p.prompt for p in story.panels])[index]


def version_gallery(ctx: StudioContext, sid: str, panel_number, sort: str = "order") -> tuple[list[tuple[str, str]], str]:
    from ..domain.panel_identity import same_prompt
    from ..errors import InvalidInputError

    item = _panel_render(ctx, sid, panel_number)
    if not item.versions:
        raise InvalidInputError(f"Panel {item.position + 1} has no renders yet: render it first.")
    selected = item.selected
    items = [(str(v.image_path), f"v{n}: seed {v.seed}" + (" (chosen)" if selected and v.id == selected.id else "")
              + ("" if same_prompt(v.prompt, item.prompt) else f" ({CHANGED})") + " · " + scores_view.badge(v))
             for n, v in scores_view.sorted_versions(item.versions, sort)]
    note = f" {scores_view.DRAFT_NOTE}" if ctx.services.backend.name == "draft" else ""
    return items, (f"Panel {item.position + 1}: {len(item.versions)} version(s). "
                   f"Click one to use it in the comic.{note}")


def choose_version(ctx: StudioContext, sid: str, panel_number, position: int, sort: str = "order") -> str:
    from ..errors import InvalidInputError

    item = _panel_render(ctx, sid, panel_number)
    ordered = scores_view.sorted_versions(item.versions, sort)
    if not 0 <= position < len(ordered):
        raise InvalidInputError("That version does not exist any more: refresh the list.")
    number, version = ordered[position]
    ctx.project(sid).select(item.panel_id, version.id)
    return ok(f"Panel {item.position + 1} now uses version {number} (seed {version.seed}).")


def _panel_index(panel_number) -> int:
    from ..errors import InvalidInputError

    try:
        number = int(panel_number)
    except (TypeError, ValueError):
        raise InvalidInputError("Give a panel number (1 for the first panel).") from None
    if number != float(panel_number):  # 1.5 was rounded to panel 2 by the box
        raise InvalidInputError(f"Panel {panel_number} is not a panel number: give a whole number, 1 for the "
                                "first panel.")
    if number < 1:
        raise InvalidInputError("Panel numbers start at 1.")
    return number - 1


def run_render(ctx: StudioContext, sid: str, mode: str, panel_number, options: RenderSettings,
               progress: Callable[..., Any] | None = None, ticket: str | None = None) -> str:
    """Render the story ("all"), its panels without a render of their current wording ("missing":
    none yet, or "script changed since render"), one panel ("panel") or a new seed of one panel
    ("reroll"). ``ticket``: the click's cancel ticket (:func:`start_render`).

    Returns a status line (RenderReport.summary); panels that failed are named with the reason.
    """
    from ..errors import InvalidInputError
    from ..services.jobs import about_panels

    story = ctx.story(sid, strict=True)
    index = None if mode in ("all", "missing") else _panel_index(panel_number)
    if index is not None and index >= len(story.panels):
        count = len(story.panels)
        raise InvalidInputError(f"Panel {index + 1} does not exist: the story has {count} "
                                f"panel{'s' if count != 1 else ''}. Check the panel number.")
    engine = ctx.engine(sid, **options.overrides())
    cancel = ctx.cancels.fresh(sid, ticket)
    with ctx.cancels.busy(sid):
        if index is None:
            skipped = len(story.panels) - len(engine.missing_panels(story)) if mode == "missing" else 0
            report = progress_reporter(progress, skipped) if progress is not None else None
            result = engine.render_story(story, seed=options.seed, progress=report, cancel=cancel,
                                         only_missing=mode == "missing")
            return _status(result.summary(), result.ok, engine.backend.name)
        report = progress_reporter(progress) if progress is not None else None
        if mode == "panel":
            one = engine.render_panel(story, index, seed=options.seed, progress=report, cancel=cancel)
        else:
            one = engine.reroll(story, index, progress=report, cancel=cancel)
    if one.ok:
        return _status(f"Panel {index + 1} rendered (seed {one.seed}).", True, engine.backend.name)
    return _status(about_panels([index + 1], one.error or "unknown error"), False, engine.backend.name)


def _status(text: str, good: bool, backend: str) -> str:
    suffix = f" (backend: {backend})"
    return ok(text + suffix) if good else warn(text + suffix)


def cancel_render(ctx: StudioContext, sid: str) -> str:
    if ctx.cancels.cancel(sid):
        return warn("Cancelling: the current step finishes, finished panels are kept.")
    return "Nothing is rendering."


RUNNING = ("A render of this project is running (this page may have been reloaded since it started): its "
           "panels appear here as they finish (open this tab again to see them). Cancel stops it.")


def running_note(ctx: StudioContext, sid: str) -> str:
    """What the status says of a render of this project still running (e.g. after a page reload,
    whose page no longer shows its progress); empty when none is."""
    return warn(RUNNING) if sid is not None and ctx.cancels.is_busy(sid) else ""


def start_render(ctx: StudioContext, sid: str) -> tuple[str, str]:
    """At a render button's click, outside the queue: (the status line to show until the render
    ends, the render's cancel ticket). The old line ("Cancelling ...", the last render's summary)
    goes; a render still running (e.g. started before a page reload) is said. The ticket
    (:mod:`.cancel`) keeps a Cancel pressed while the render waits: Cancel stops every render of
    the project clicked before it, the running one and those waiting behind it."""
    if sid is None:
        return "", ""
    ticket = ctx.cancels.arm(sid)
    if ctx.cancels.is_busy(sid):
        return warn("A render of this project is still running: this one starts when it ends "
                    "(Cancel stops both)."), ticket
    return "", ticket


# ---------------------------------------------------------------- layout

def render(ctx: StudioContext, session) -> dict[str, Any]:
    import gradio as gr

    s = ctx.settings
    draft = model_settings_unused(ctx)
    # Actions and results first (on a phone they come before every setting), settings below.
    with gr.Row():
        render_all = gr.Button("Render all panels", variant="primary", scale=2, min_width=150)
        render_missing = gr.Button("Render missing panels", scale=2, min_width=150, elem_id="render-missing")
        # No minimum/maximum on typed numbers: Gradio would refuse them with its own red error
        # before the handler, which says what is wrong (settings_from_widgets, _panel_index).
        panel_number = gr.Number(label="Panel", value=1, scale=1, min_width=70)
        render_one = gr.Button("Render panel", scale=1, min_width=110)
        reroll = gr.Button("Re-roll panel", scale=1, min_width=110)
        cancel = gr.Button("Cancel", variant="stop", scale=1, min_width=80)
    status = gr.Markdown(elem_id="render-status")
    panels = gr.Gallery(fit_columns=False, label="Panels (the chosen version of each)", columns=3, height=420,
                        object_fit="contain", buttons=["download", "fullscreen"], elem_id="panels")
    with gr.Accordion("Versions of a panel (choose the one for the comic)", open=False):
        with gr.Row():
            show_versions = gr.Button("Show the versions of the panel above")
            sort = gr.Dropdown(list(scores_view.SORTS), value="Render order", label="Sort versions by")
        versions = gr.Gallery(fit_columns=False, label="Versions", columns=5, height=200, allow_preview=False,
                              elem_id="versions")
        versions_status = gr.Markdown(elem_id="versions-status")
    with gr.Accordion("Settings (draft sketches use only the size and the seed)" if draft else "Settings",
                      open=not draft, elem_id="render-settings"):
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    width = gr.Number(label="Width", value=s.width, precision=0, step=8)
                    height = gr.Number(label="Height", value=s.height, precision=0, step=8)
                seed = gr.Number(label="Seed (-1: the story's seeds)", value=-1, precision=0)
                best_of = gr.Slider(1, 8, value=s.best_of, step=1, label="Best of N (seeds per panel)",
                                    interactive=not draft,
                                    info="renders N seeds, keeps all, chooses the best-scoring one")
                gr.Markdown("Values in the script (`size:`, `steps:`, `seed:` ...) take precedence.")
            with gr.Column():
                if draft:
                    gr.Markdown(DRAFT_NOTE, elem_id="draft-settings-note")
                quality = gr.Radio(list(PRESET_NAMES), label="Quality", value=default_quality(s),
                                   interactive=not draft)
                steps = gr.Slider(1, 80, value=s.steps, step=1, label="Steps", interactive=not draft,
                                  info="num_inference_steps: more is slower and finer")
                guidance = gr.Slider(1.0, 15.0, value=s.guidance_scale, step=0.5, label="Follow the prompt",
                                     interactive=not draft,
                                     info="guidance_scale: how closely the picture follows the words")
                ip_scale = gr.Slider(0.0, 1.5, value=s.ip_adapter_scale, step=0.05, label="Likeness",
                                     interactive=not draft,
                                     info="ip_adapter_scale: how strongly each character's photo is kept")
                lora_scale = gr.Slider(0.0, 1.5, value=s.lora_scale, step=0.05, label="Style strength",
                                       interactive=not draft,
                                       info="lora_scale: the StoryMaker adapter's weight on the picture")
                cn_scale = gr.Slider(0.0, 1.5, value=s.controlnet_conditioning_scale, step=0.05,
                                     label="Pose strength", interactive=not draft,
                                     info="controlnet_conditioning_scale: how exactly a pose: is followed")

    def on_preset(name):
        p = preset(name)
        return p.steps, p.guidance_scale

    quality.change(on_preset, [quality], [steps, guidance], api_visibility="private")

    widgets = [width, height, steps, guidance, ip_scale, lora_scale, cn_scale, seed, best_of, quality]

    # The cancel ticket of this page's last render click (start_render): kept in the page, so each
    # click's render gets its own, as the click sent it.
    ticket = gr.Textbox(visible=False, elem_id="render-ticket")

    def make_handler(mode: str):
        def handler(sid, number, w, h, st, g, ip, lo, cn, sd, bo, q=None, clicked=None, progress=gr.Progress()):
            options = with_quality(settings_from_widgets(w, h, st, g, ip, lo, cn, sd, bo), q)
            message = run_render(ctx, sid, mode, number, options, progress, ticket=clicked)
            return message, panel_gallery(ctx, sid)
        handler.__name__ = f"render_{mode}"
        return gpu_event(ctx, user_errors(handler), render_work(ctx, mode))

    def arm(sid):
        return start_render(ctx, sid)

    outputs = [status, panels]
    events = []
    for button, mode in ((render_all, "all"), (render_missing, "missing"), (render_one, "panel"),
                         (reroll, "reroll")):
        events.append(button.click(user_errors(arm), [session], [status, ticket], queue=False,
                                   show_progress="hidden", api_visibility="private").then(
            make_handler(mode), [session, panel_number, *widgets, ticket], outputs, api_name=f"render_{mode}",
            **GPU_QUEUE))
    cancel.click(user_errors(lambda sid: cancel_render(ctx, sid)), [session], [status],
                 queue=False, api_name="cancel_render")

    # The panel whose versions are shown: a click on one chooses for that panel, even after the
    # Panel field was changed to another number.
    shown_panel = gr.State(None)

    def on_versions(sid, number, order="Render order"):
        items, text = version_gallery(ctx, sid, number, order)
        return items, text, number

    show_versions.click(user_errors(on_versions), [session, panel_number, sort],
                        [versions, versions_status, shown_panel], api_name="panel_versions")
    sort.change(user_errors(on_versions), [session, panel_number, sort], [versions, versions_status, shown_panel],
                api_visibility="private")

    def on_choose(sid, number, order, evt):
        message = choose_version(ctx, sid, number, evt.index, order)
        items, _ = version_gallery(ctx, sid, number, order)
        return message, items, panel_gallery(ctx, sid)

    on_choose.__annotations__ = {"evt": gr.SelectData}  # real class: this module's annotations are strings
    versions.select(user_errors(on_choose), [session, shown_panel, sort], [versions_status, versions, panels],
                    api_visibility="private")

    def refresh(sid):
        note = running_note(ctx, sid) or gallery_note(ctx, sid)
        return panel_gallery(ctx, sid), note or gr.skip()  # else the last render's status stays

    def reset(sid):
        # Another project (or a reload): no versions or status of the one before, where a click
        # on an old thumbnail would choose a version of this project's panel unseen; a render of
        # this project still running (the reloaded page lost its progress) is said.
        return panel_gallery(ctx, sid), [], "", running_note(ctx, sid) or gallery_note(ctx, sid), None

    return {"select": (user_errors(refresh), [panels, status]),
            "refresh": (user_errors(reset), [panels, versions, versions_status, status, shown_panel]),
            "events": events}
