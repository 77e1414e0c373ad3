"""The Gradio studio: ``build_app(services)`` -> :class:`StudioApp` (``.blocks``, ``.launch()``).

One module per tab (``characters_tab``, ``poses_tab``, ``story_tab``, ``render_tab``,
``comic_tab``, ``project_tab``), each with a ``render(ctx, session)`` function and thin handlers
that can be called without a server. Importing this package imports nothing heavy; gradio is
imported when the app is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from .context import CancelFlags, StudioContext
from .session import SessionManager

logger = logging.getLogger(__name__)

TITLE = "StoryMaker Studio"

CSS = """
#banner { border-radius: 8px; padding: 6px 14px; margin-bottom: 4px; }
#banner.draft { background: #fff4d6; border: 1px solid #e0b84c; }
#banner.draft * { color: #4d3a00 !important; }
#banner.tiny { background: #ffe3e3; border: 1px solid #d66; }
#banner.tiny * { color: #5c0000 !important; }
#script-issues { min-height: 60px; }
"""


@dataclass(frozen=True)
class StudioApp:
    """The built app: the Gradio ``blocks``, its context and the launch defaults."""

    blocks: Any
    context: StudioContext
    launch_defaults: dict = field(default_factory=dict)

    def launch(self, **overrides) -> Any:
        """``blocks.launch`` with the studio's defaults (upload limit, allowed paths, theme, css);
        ``None`` overrides are ignored so that Gradio's own env variables apply."""
        options = dict(self.launch_defaults)
        options.update({k: v for k, v in overrides.items() if v is not None})
        self.context.sessions.cleanup()
        return self.blocks.launch(**options)

    def close(self) -> None:
        self.blocks.close()


def banner_text(services: Any) -> tuple[str, str]:
    """(markdown, css class) of the backend banner; empty markdown for the real model."""
    name = getattr(services, "backend_name", getattr(getattr(services, "backend", None), "name", ""))
    reason = getattr(services, "backend_reason", "")
    if name == "storymaker" and not reason:
        return "", ""
    if name == "tiny":
        return (f"**Tiny test model.** {reason or 'Images are meaningless (random weights).'}", "tiny")
    if name == "draft":
        head = "**Draft mode: panels are storyboard sketches, not StoryMaker renders.**"
        if reason.startswith("Draft mode"):
            # The container's reason repeats the head; keep only what follows it.
            _, sep, rest = reason.partition(" because ")
            reason = f"This is because {rest}" if sep else reason.partition(".")[2].strip()
        if not reason:
            reason = ("It was chosen at start (--backend draft). Rendering with StoryMaker needs a CUDA GPU "
                      "and the model weights (`python -m storymaker doctor` says what is missing); then "
                      "start with --backend auto.")
        return (f"{head} {reason}", "draft")
    return (reason, "draft") if reason else ("", "")


def launch_options(settings: Settings) -> dict[str, Any]:
    """Launch defaults: upload size limit, files served only from the data folder, theme, css."""
    import gradio as gr

    data_dir = Path(settings.data_dir).resolve()
    return {
        "max_file_size": f"{int(settings.max_upload_mb)}mb",
        "allowed_paths": [str(data_dir)],
        "theme": gr.themes.Soft(),
        "css": CSS,
        "footer_links": ["gradio"],
    }


def build_app(services: Any, *, settings: Settings | None = None,
              sessions: SessionManager | None = None, pose_estimator=None) -> StudioApp:
    """Build the Blocks over ``services`` (a :class:`storymaker.services.container.Services` or a
    compatible fake). ``pose_estimator``: a zero-argument factory of the estimator used to extract
    poses from photos (default: OpenPose from the settings, loaded on first use). Nothing is launched."""
    import gradio as gr

    from . import characters_tab, comic_tab, poses_tab, project_tab, render_tab, story_tab
    from .common import user_errors
    from .gpu import GPU_QUEUE, example_work, gpu_event

    settings = settings or services.settings
    sessions = sessions or SessionManager(settings.sessions_dir, settings.session_max_age_hours)
    ctx = StudioContext(services=services, settings=settings, sessions=sessions,
                        cancels=CancelFlags(Path(sessions.root)),
                        pose_estimator_factory=pose_estimator)
    banner, banner_class = banner_text(services)
    max_age = int(settings.session_max_age_hours * 3600)

    with gr.Blocks(title=TITLE, delete_cache=(3600, max_age), analytics_enabled=False) as blocks:
        session = gr.State(None)
        gr.Markdown(f"# {TITLE}\nConsistent characters across a whole story: register them from one photo, "
                    "write the script, render the panels, lay out the comic.")
        gr.Markdown(banner, elem_id="banner", elem_classes=[banner_class] if banner_class else None,
                    visible=bool(banner))
        with gr.Tabs() as tabs_block:
            with gr.Tab("Project", id="project"):
                project = project_tab.render(ctx, session)
            with gr.Tab("Characters", id="characters"):
                characters = characters_tab.render(ctx, session)
            with gr.Tab("Poses", id="poses"):
                poses = poses_tab.render(ctx, session)
            with gr.Tab("Story", id="story"):
                story = story_tab.render(ctx, session)
            with gr.Tab("Render", id="render") as render_block:
                render = render_tab.render(ctx, session)
            with gr.Tab("Comic", id="comic") as comic_block:
                comic = comic_tab.render(ctx, session)

        # Opening a tab shows the latest state (renders finished elsewhere, a new project...).
        render_block.select(render["refresh"][0], [session], render["refresh"][1], show_progress="hidden",
                            api_visibility="private")
        comic_block.select(comic["preview"][0], comic["preview"][1], comic["preview"][2], show_progress="hidden",
                           api_visibility="private")

        # Registered names and poses decide what the script may say: check it again after changes.
        for event in (*characters["events"], *poses["events"]):
            event.then(*story["revalidate"], show_progress="hidden", api_visibility="private")

        tabs = (characters, poses, story, render, comic)
        refreshers = [t["refresh"] for t in tabs if "refresh" in t]
        refresh_outputs = [c for _, outputs in refreshers for c in outputs]

        def refresh_all(sid):
            values: list[Any] = []
            for fn, outputs in refreshers:
                result = fn(sid)
                values.extend(result if len(outputs) > 1 else [result])
            return values

        def start(sid):
            """Page load: a new session (folder + empty project) for each browser tab."""
            if sid is None:
                sid = sessions.new_session()
                ctx.project(sid)
            return [sid, project["handlers"]["summary"](sid), *refresh_all(sid)]

        blocks.load(user_errors(start), [session], [session, project["summary"], *refresh_outputs], api_name="start_session")

        def after(handler):
            def run(sid, *args):
                message = handler(sid, *args)
                return [message, project["handlers"]["summary"](sid), *refresh_all(sid)]
            return run

        project["new_btn"].click(after(project["handlers"]["new"]), [session, project["title"]],
                                 [project["status"], project["summary"], *refresh_outputs], api_name="new_project")
        project["upload"].upload(after(project["handlers"]["open"]), [session, project["upload"]],
                                 [project["status"], project["summary"], *refresh_outputs], api_name="open_project")
        project["save_btn"].click(project["handlers"]["save"], [session], [project["download"], project["status"]],
                                  api_name="save_project")

        def example(sid, progress=gr.Progress()):
            message = project_tab.make_example(ctx, sid, progress)
            # Show the finished comic straight away.
            return [message, project["handlers"]["summary"](sid), *refresh_all(sid), gr.Tabs(selected="comic")]

        project["example_btn"].click(gpu_event(ctx, user_errors(example), example_work(ctx)), [session],
                                     [project["status"], project["summary"], *refresh_outputs, tabs_block],
                                     api_name="example_project", **GPU_QUEUE)

    return StudioApp(blocks=blocks, context=ctx, launch_defaults=launch_options(settings))


__all__ = ["StudioApp", "build_app", "banner_text", "launch_options"]
