"""Project tab: your projects (open, rename, duplicate, delete), new, open/save .zip, and the
one-click example project. Nothing replaces the project you are working on: new, imported,
copied and example projects are made beside it, and deleting one asks first.

The handlers that open a project return ``(message, view)``: the tab's view of the project it shows
now (:mod:`.session`); opening a project in one browser tab does not change what another shows."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .common import as_path, clears_first, ok, user_errors, warn
from .context import StudioContext
from .session import DELETED_ELSEWHERE

logger = logging.getLogger(__name__)


def new_project(ctx: StudioContext, sid: str, title: str) -> tuple[str, str]:
    folder = ctx.sessions.next_project_dir(sid)
    project = ctx.services.open_project(folder, create=True, title=(title or "").strip() or "Untitled story")
    return ok(f"New project **{project.title}**: add characters, then write the story. "
              "Your other projects are in the list above."), ctx.sessions.switch_project(sid, folder)


def open_project(ctx: StudioContext, sid: str, upload) -> tuple[str, str]:
    """Add the project of a .zip made with Save beside the others and open it. Any file may be
    dropped on the box (Gradio's own type check would refuse it with a bare red "Error"): a file
    that is not a zip archive is refused here, saying what to choose."""
    import zipfile

    from ..errors import ProjectError
    from ..services.storage import import_zip

    path = as_path(upload)
    if path is None:
        raise ProjectError("Choose a project .zip (made with Save) to open.")
    if path.suffix.lower() != ".zip" or not zipfile.is_zipfile(path):
        raise ProjectError(f"{path.name} is not a project .zip: choose a .zip made with "
                           "Save project as .zip. Nothing was opened.")
    taken = _titles(ctx, sid)
    folder = ctx.sessions.next_project_dir(sid)
    project = import_zip(path, folder)
    _tell_apart(project, taken)
    return (ok(f"Opened **{project.title or 'the project'}** (added to your projects)."),
            ctx.sessions.switch_project(sid, folder))


def distinct_title(title: str, taken) -> str:
    """``title``, or ``title (2)``, ``(3)``... when a title in ``taken`` is the same (ignoring
    case): how a copied, imported or example project is told apart in the list."""
    import re

    used = {str(t).casefold() for t in taken}
    if title.casefold() not in used:
        return title
    base = re.sub(r" \(\d+\)$", "", title)
    number = 2
    while f"{base} ({number})".casefold() in used:
        number += 1
    return f"{base} ({number})"


def _titles(ctx: StudioContext, sid: str) -> list[str]:
    return [info.title for info in ctx.sessions.projects(sid)]


def _tell_apart(project, taken: list[str]) -> None:
    """Retitle a new copy/import/example whose title another project has. Untitled ones are left
    as they are: they take their script's title (Story tab)."""
    from .story_tab import UNTITLED

    if project.title and project.title != UNTITLED:
        title = distinct_title(project.title, taken)
        if title != project.title:
            project.set_title(title)


def switch_project(ctx: StudioContext, sid: str, name: str) -> tuple[str, str]:
    """Open one of the session's own projects."""
    view = ctx.sessions.switch_project(sid, ctx.sessions.project_path(sid, name))
    return ok(f"Opened **{ctx.project(view).title or name}**."), view


def rename_project(ctx: StudioContext, sid: str, name: str, title: str) -> str:
    from ..services.storage import rename_project as rename

    project = rename(ctx.sessions.project_path(sid, name), title)
    return ok(f"Renamed to **{project.title}**.")


def duplicate_project(ctx: StudioContext, sid: str, name: str) -> tuple[str, str]:
    """Copy a project (characters, script, renders) and open the copy."""
    from ..services.storage import duplicate_project as duplicate

    taken = _titles(ctx, sid)
    folder = ctx.sessions.next_project_dir(sid)
    project = duplicate(ctx.sessions.project_path(sid, name), folder)
    _tell_apart(project, taken)
    return (ok(f"Made and opened **{project.title}**; the original is unchanged."),
            ctx.sessions.switch_project(sid, folder))


def ask_delete_project(ctx: StudioContext, sid: str, name: str) -> str:
    from ..services.storage import project_info

    info = project_info(ctx.sessions.project_path(sid, name))
    return (f"Delete **{info.title or 'Untitled story'}** with its {info.characters} character(s), script and "
            f"{info.renders} render(s)? This cannot be undone (save it as a .zip first to keep a copy).")


def delete_project(ctx: StudioContext, sid: str, name: str) -> tuple[str, str]:
    from ..services.storage import project_info
    from .characters_tab import forget_deleted

    title = project_info(ctx.sessions.project_path(sid, name)).title or "Untitled story"
    view = ctx.sessions.delete_project(sid, name)
    forget_deleted(ctx, sid, name)  # its deleted character is not offered to a later project
    return ok(f"Deleted **{title}**."), ctx.open_view(view)


def project_choices(ctx: StudioContext, sid: str) -> list[tuple[str, str]]:
    """(label, folder name) of the session's projects, most recently changed first."""
    out = []
    for info in ctx.sessions.projects(sid):
        when = info.modified[:16].replace("T", " ")
        out.append((f"{info.title or 'Untitled story'} · {info.characters} character(s), "
                    f"{info.renders} render(s) · {when}", info.name))
    return out


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
    script = f"panels in the script: {panels}" if story is not None or not project.read_script().strip() \
        else "the script has problems (Story tab)"
    return (f"**{project.title or 'Untitled story'}**: characters: {names}; "
            f"{script}; rendered: {rendered}.")


def _safe_stem(title: str) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in (title or "").strip().lower())
    return "-".join(part for part in keep.split("-") if part)[:48]


def render(ctx: StudioContext, session) -> dict[str, Any]:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=5):
            summary = gr.Markdown(elem_id="project-summary")
            gr.Markdown("### First time here?\nOne click adds a new project with example characters and a "
                        "short story, renders every panel and lays out the comic. Your own projects stay.")
            example_btn = gr.Button("Make the example comic", variant="primary", elem_id="example-btn")
            gr.Markdown("### New project")
            with gr.Row():
                title = gr.Textbox(label="Title", placeholder="The Lighthouse Keeper", scale=3,
                                   elem_id="new-project-title")
                new_btn = gr.Button("New project", scale=1, elem_id="new-project")
        with gr.Column(scale=5):
            gr.Markdown("### Your projects")
            chosen = gr.Dropdown(label="Project", choices=[], interactive=True, elem_id="project-list")
            with gr.Row():
                open_btn = gr.Button("Open", size="md", elem_id="project-open")
                duplicate_btn = gr.Button("Duplicate", size="md")
                delete_btn = gr.Button("Delete...", size="md", variant="stop", elem_id="project-delete")
            with gr.Group(visible=False) as confirm_box:
                question = gr.Markdown(elem_id="project-delete-question")
                with gr.Row():
                    confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="project-delete-yes")
                    keep_btn = gr.Button("No, keep it")
            with gr.Row():
                new_title = gr.Textbox(label="New title", scale=3)
                rename_btn = gr.Button("Rename", scale=1)
            status = gr.Markdown(elem_id="project-status")
            with gr.Accordion("Open / save a project .zip", open=False):
                # No file_types: Gradio would refuse another file in the browser with a red "Error";
                # open_project says what to choose instead.
                upload = gr.File(label="Open a project .zip", type="filepath", elem_id="project-zip")
                save_btn = gr.Button("Save project as .zip")
                download = gr.File(label="Download", interactive=False)

    def listing(sid):
        return gr.update(choices=project_choices(ctx, sid), value=ctx.project(sid).path.name)

    def summary_and_list(sid):
        if ctx.sessions.shows_deleted_project(sid):  # the list is what the tab needs now
            return warn(DELETED_ELSEWHERE + " in the list."), gr.update(choices=project_choices(ctx, sid), value=None)
        return project_summary(ctx, sid), listing(sid)


    # The project the question names: "Yes, delete it" deletes that one, not one chosen in the list
    # since (an API call without a question deletes the chosen one).
    asked = gr.State(None)

    def on_ask(sid, name):
        return gr.update(visible=True), ask_delete_project(ctx, sid, name), name

    delete_btn.click(user_errors(on_ask), [session, chosen], [confirm_box, question, asked],
                     api_name="ask_delete_project")
    keep_btn.click(lambda: (gr.update(visible=False), None), None, [confirm_box, asked], api_visibility="private")

    def clearing(listener):  # each action's own line replaces the one before, even when it fails
        return clears_first(listener, [status])

    return {
        # The app wires these buttons' .click: their events, too, first empty the status line.
        "example_btn": _Clearing(example_btn, clearing), "summary": summary, "list": chosen, "status": status,
        "save_btn": _Clearing(save_btn, clearing), "download": download, "confirm_box": confirm_box,
        # (event listener, inputs after the session): each changes the current project, so the app
        # refreshes every tab after it.
        "actions": {
            "new": (clearing(new_btn.click), [title]),
            "open": (clearing(upload.upload), [upload]),
            "switch": (clearing(open_btn.click), [chosen]),
            "rename": (clearing(rename_btn.click), [chosen, new_title]),
            "duplicate": (clearing(duplicate_btn.click), [chosen]),
            "delete": (clearing(confirm_btn.click), [chosen, asked]),
        },
        "handlers": {
            "new": lambda sid, t: new_project(ctx, sid, t),
            "open": lambda sid, f: open_project(ctx, sid, f),
            "switch": lambda sid, n: switch_project(ctx, sid, n),
            "rename": lambda sid, n, t: rename_project(ctx, sid, n, t),
            "duplicate": lambda sid, n: duplicate_project(ctx, sid, n),
            "delete": lambda sid, n, asked=None: delete_project(ctx, sid, asked or n),
            "save": lambda sid: save_project(ctx, sid),
            "summary": summary_and_list,
        },
    }


class _Clearing:
    """A button as the app sees it (``.click``), whose events first empty the status line."""

    def __init__(self, button, clearing):
        self.button = button
        self.click = clearing(button.click)


# ---------------------------------------------------------------- the example project

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "lighthouse"


def make_example(ctx: StudioContext, sid: str, progress=None) -> tuple[str, str]:
    """One click: a new project with the example characters and story, every panel rendered,
    the comic ready in the Comic tab."""
    from .example import load_example
    from .render_tab import progress_reporter

    example = load_example(EXAMPLES_DIR)
    folder = ctx.sessions.next_project_dir(sid)
    project = ctx.services.open_project(folder, create=True, title=distinct_title(example.title, _titles(ctx, sid)))
    registry = ctx.services.character_registry(project)
    for person in example.characters:
        if progress is not None:
            progress(0.0, desc=f"Registering {person.name}")
        registry.add(person.name, person.photo, description=person.description)
    project.write_script(example.script)
    view = ctx.sessions.switch_project(sid, folder)
    story = ctx.story(view, strict=True)
    engine = ctx.engine(view)
    report = engine.render_story(story, progress=progress_reporter(progress) if progress else None,
                                 cancel=ctx.cancels.fresh(sid))  # the flag the tab's Cancel sets
    text = f"Example **{project.title}** ready: {report.summary()} See the Comic tab."
    return (ok(text) if report.ok else text), view

