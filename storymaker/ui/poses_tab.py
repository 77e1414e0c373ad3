"""Poses tab: the preset library as a gallery, a skeleton preview over a panel frame, extraction of
a pose from a photo into the project."""

from __future__ import annotations

import logging
from typing import Any

from .common import check_image_file, clears_first, image_input, ok, user_errors
from .context import StudioContext
from .gpu import GPU_QUEUE, gpu_event

logger = logging.getLogger(__name__)

THUMB = 192


def pose_items(ctx: StudioContext, sid: str) -> list[tuple[Any, str]]:
    """(preview image, caption) for every pose: presets, then the project's own."""
    library = ctx.poses(sid)
    items = []
    for info in library.list():
        people = f"{info.num_people} {'person' if info.num_people == 1 else 'people'}"
        tag = " (project)" if info.source == "project" else ""
        image = str(info.preview) if info.preview is not None else library.preview(info.name, THUMB, THUMB)
        items.append((image, f"{info.name}: {people}{tag}"))
    return items


def pose_names(ctx: StudioContext, sid: str) -> list[str]:
    return [pose.name for pose in ctx.poses(sid).list()]


def preview_pose(ctx: StudioContext, sid: str, name: str, width, height):
    """The pose drawn as the ControlNet sees it, at the panel's size, inside a visible frame. The
    size is checked first: positive multiples of 8, at most the configured largest side (the Render
    tab's limit and message), so a huge size never allocates anything."""
    from PIL import ImageOps

    from ..config import check_panel_size
    from ..errors import PoseError
    if not name:
        raise PoseError("Choose a pose in the gallery or the list first.")
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError, OverflowError):
        raise PoseError("Type the panel width and height as whole numbers, positive multiples of 8 "
                        "(e.g. 768 and 1024).") from None
    if w % 8 or h % 8 or w <= 0 or h <= 0:
        raise PoseError(f"Panel size {w}x{h} is not usable: use positive multiples of 8.")
    check_panel_size(w, h, ctx.settings)
    library = ctx.poses(sid)
    pose = library.get(name)
    image = library.preview(name, w, h)
    framed = ImageOps.expand(image, border=max(2, min(w, h) // 100), fill=(200, 200, 200))
    info = (f"**{pose.name}**: {pose.num_people} {'person' if pose.num_people == 1 else 'people'}, "
            f"frame {pose.width}x{pose.height} fitted into a {w}x{h} panel. "
            f"Use it with `pose: {pose.name}` under a panel with {pose.num_people} character(s).")
    return framed, info


EXTRACT_NEEDS = ("Reading a pose from a photo needs the OpenPose annotator weights (lllyasviel/Annotators, "
                 "about 0.5 GB), which are not on this machine: `python -m storymaker download` fetches them.")


def extraction_available(ctx: StudioContext) -> bool:
    """Whether "extract a pose from a photo" can work now (an injected estimator, or the annotator
    weights on disk); checked without loading anything or touching the network."""
    from ..errors import StoryMakerError
    from ..perception.pose import resolve_annotators

    if ctx.pose_estimator_factory is not None:
        return True
    try:
        resolve_annotators(ctx.settings.pose_annotators, allow_download=False)
    except StoryMakerError:
        return False
    return True


def extract_from_photo(ctx: StudioContext, sid: str, photo, name: str):
    """Find the people in a photo and save their pose in the project."""
    from ..errors import ImageError, PoseError, WeightsNotFoundError

    if photo is None:
        raise ImageError("Upload a photo showing the pose (whole bodies visible).")
    check_image_file(photo, "photo")
    try:
        pose = ctx.poses(sid).extract(photo, (name or "").strip(), ctx.pose_estimator())
    except WeightsNotFoundError:
        raise PoseError(EXTRACT_NEEDS) from None
    return pose.name, ok(f"Saved pose **{pose.name}** with {pose.num_people} "
                         f"{'person' if pose.num_people == 1 else 'people'}.")


def render(ctx: StudioContext, session) -> dict[str, Any]:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=6):
            gallery = gr.Gallery(fit_columns=False, label="Pose library", columns=4, height=440, allow_preview=False,
                                 object_fit="contain", elem_id="pose-gallery")
            with gr.Accordion("Extract a pose from a photo", open=False):
                if not extraction_available(ctx):
                    gr.Markdown(EXTRACT_NEEDS, elem_id="extract-needs")
                photo = image_input(label="Photo", height=200)
                new_name = gr.Textbox(label="Pose name (lowercase-with-dashes)", placeholder="two-people-waving")
                extract_btn = gr.Button("Extract and save")
                extract_status = gr.Markdown(elem_id="pose-extract-status")
        with gr.Column(scale=5):
            chosen = gr.Dropdown(label="Pose", choices=[], interactive=True, elem_id="pose-chosen")
            with gr.Row():
                width = gr.Number(label="Panel width", value=ctx.settings.width, precision=0, step=8)
                height = gr.Number(label="Panel height", value=ctx.settings.height, precision=0, step=8)
            preview_btn = gr.Button("Preview on the panel")
            preview = gr.Image(label="Skeleton over the panel frame", interactive=False, height=360,
                               elem_id="pose-preview")
            info = gr.Markdown(elem_id="pose-info")

    def refresh(sid):
        names = pose_names(ctx, sid)
        return pose_items(ctx, sid), gr.update(choices=names)

    def on_select(sid, w, h, evt):
        names = pose_names(ctx, sid)
        name = names[evt.index]
        image, text = preview_pose(ctx, sid, name, w, h)
        return gr.update(value=name), image, text

    on_select.__annotations__ = {"evt": gr.SelectData}
    gallery.select(user_errors(on_select), [session, width, height], [chosen, preview, info],
                   api_visibility="private")
    preview_btn.click(user_errors(lambda sid, n, w, h: preview_pose(ctx, sid, n, w, h)),
                      [session, chosen, width, height], [preview, info], api_name="preview_pose")

    def on_extract(sid, p, n):
        name, message = extract_from_photo(ctx, sid, p, n)
        items, names = refresh(sid)
        return message, items, gr.update(choices=pose_names(ctx, sid), value=name)

    extracted = clears_first(extract_btn.click, [extract_status])(
        gpu_event(ctx, user_errors(on_extract)), [session, photo, new_name], [extract_status, gallery, chosen],
        api_name="extract_pose", **GPU_QUEUE)

    def refresh_all(sid):
        """Another project (or a reload): its poses, nothing chosen (a pose of the project before
        is not in this list: Gradio would refuse it with a red "Error"), no preview or line of before."""
        items, _ = refresh(sid)
        return items, gr.update(choices=pose_names(ctx, sid), value=None), None, "", ""

    return {"refresh": (user_errors(refresh_all), [gallery, chosen, preview, info, extract_status]),
            "events": [extracted]}
