"""Project tab: new, open (.zip), save (.zip download), and the one-click example project."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .common import as_path, ok, user_errors
from .context import StudioContext

logger = logging.getLogger(__name__)


def new_project(ctx: StudioContext, sid: str, title: str) -> str:
    folder = ctx.sessions.next_project_dir(sid)
    project = ctx.services.open_project(folder, create=True, title=(title or "").strip() or "Untitled story")
    ctx.sessions.switch_project(sid, folder)
    return ok(f"New project **{project.title}**: add characters, then write the story.")


def open_project(ctx: StudioContext, sid: str, upload) -> str:
    from ..errors import ProjectError
    from ..services.storage import import_zip

    path = as_path(upload)
    if path is None:
        raise ProjectError("Choose a project .zip (made with Save) to open.")
    folder = ctx.sessions.next_project_dir(sid)
    project = import_zip(path, folder)
    ctx.sessions.switch_project(sid, folder)
    return ok(f"Opened **{project.title or 'the project'}**.")


def save_project(ctx: StudioContext, sid: str) -> tuple[str, str]:
    """Write the project as a .zip for download; returns (zip path, status)."""
    from ..services.storage import export_zip

    project = ctx.project(sid)
    stem = _safe_stem(project.title) or "story"
    dest = ctx.sessions.downloads_dir(sid) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.zip"
    path = export_zip(project, dest)
    return str(path), ok(f"Project saved as `{Path(path).name}`: download it below.")


def project_summary(ctx: StudioContext, sid: str) -> str:
    project = ctx.project(sid)
    characters = ctx.registry(sid).list()
    story = ctx.story(sid, strict=False)
    panels = len(story.panels) if story is not None else 0
    rendered = sum(1 for i in range(panels) if project.selected(i) is not None)
    names = ", ".join(c.name for c in characters) or "none yet"
    return (f"**{project.title or 'Untitled story'}**: characters: {names}; "
            f"panels in the script: {panels}; rendered: {rendered}.")


def _safe_stem(title: str) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in (title or "").strip().lower())
    return "-".join(part for part in keep.split("-") if part)[:48]


def render(ctx: StudioContext, session) -> dict[str, Any]:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=5):
            gr.Markdown("### First time here?\nOne click loads example characters and a short story, "
                        "renders every panel and lays out the comic.")
            example_btn = gr.Button("Make the example comic", variant="primary", elem_id="example-btn")
            summary = gr.Markdown(elem_id="project-summary")
            gr.Markdown("### New project")
            with gr.Row():
                title = gr.Textbox(label="Title", placeholder="The Lighthouse Keeper", scale=3)
                new_btn = gr.Button("New project", scale=1)
        with gr.Column(scale=5):
            gr.Markdown("### Open / save")
            upload = gr.File(label="Open a project .zip", file_types=[".zip"], type="filepath")
            save_btn = gr.Button("Save project as .zip")
            download = gr.File(label="Download", interactive=False)
            status = gr.Markdown()
    return {
        "example_btn": example_btn, "summary": summary, "title": title, "new_btn": new_btn,
        "upload": upload, "save_btn": save_btn, "download": download, "status": status,
        "handlers": {
            "new": user_errors(lambda sid, t: new_project(ctx, sid, t)),
            "open": user_errors(lambda sid, f: open_project(ctx, sid, f)),
            "save": user_errors(lambda sid: save_project(ctx, sid)),
            "summary": user_errors(lambda sid: project_summary(ctx, sid)),
        },
    }


# ---------------------------------------------------------------- the example project

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"


def gpu_wrapped(fn):
    """The example renders panels: queue it like the other GPU work and show errors readably."""
    from .gpu import gpu

    return user_errors(gpu(duration=240)(fn))


def make_example(ctx: StudioContext, sid: str, progress=None) -> str:
    """One click: a new project with the example characters and story, every panel rendered,
    the comic ready in the Comic tab."""
    from .example import load_example
    from .render_tab import progress_reporter

    example = load_example(EXAMPLES_DIR)
    folder = ctx.sessions.next_project_dir(sid)
    project = ctx.services.open_project(folder, create=True, title=example.title)
    registry = ctx.services.character_registry(project)
    for person in example.characters:
        if progress is not None:
            progress(0.0, desc=f"Registering {person.name}")
        registry.add(person.name, person.photo, description=person.description)
    project.write_script(example.script)
    ctx.sessions.switch_project(sid, folder)
    story = ctx.story(sid, strict=True)
    engine = ctx.engine(sid)
    report = engine.render_story(story, progress=progress_reporter(progress) if progress else None,
                                 cancel=ctx.cancels.fresh(sid))
    text = f"Example **{example.title}** ready: {report.summary()} See the Comic tab."
    return ok(text) if report.ok else text

