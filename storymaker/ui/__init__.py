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
from .cancel import CancelFlags
from .context import StudioContext
from .session import SessionManager

SESSION_KEY = "storymaker-session"
SECRET_FILE = "browser-secret"


def on_spaces() -> bool:
    """Whether the app runs on Hugging Face Spaces (which sets ``SPACE_ID``)."""
    import os

    return bool(os.environ.get("SPACE_ID"))


def browser_secret(data_dir: Path) -> str:
    """The key that encrypts the session id kept in the browser: made once and kept in the data
    folder, so that a restarted app still recognises its browsers."""
    import os
    import secrets

    from ..fsutil import atomic_write_text

    path = Path(data_dir) / SECRET_FILE
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        value = ""
    if len(value) < 32:
        value = secrets.token_hex(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, value + "\n")
        os.chmod(path, 0o600)
    return value

logger = logging.getLogger(__name__)

TITLE = "StoryMaker Studio"

CSS = """
#banner { border-radius: 8px; padding: 6px 14px; margin-bottom: 4px; }
#banner.draft { background: #fff4d6; border: 1px solid #e0b84c; }
#banner.draft * { color: #4d3a00 !important; }
#banner.tiny { background: #ffe3e3; border: 1px solid #d66; }
#banner.tiny * { color: #5c0000 !important; }
#banner { gap: 0 !important; }
#banner p { margin: 2px 0; }
#banner .block, #banner .block > *, #banner .prose { background: transparent !important; border: none !important;
  box-shadow: none !important; padding-left: 0 !important; }
#banner-details { margin-top: 0; }
#script-issues { min-height: 60px; }
/* Tables: whole words, scrolled sideways on a phone, never one letter per line. */
#panel-table .cell-wrap, #panel-table .cell-wrap span { word-break: normal !important;
  overflow-wrap: normal !important; }
@media (max-width: 640px) {
  h1 { font-size: 1.4em !important; }
  /* All six tabs on a phone's width instead of most of them behind "More tabs". */
  .tab-container button { padding-left: 5px !important; padding-right: 5px !important;
    font-size: 0.84em !important; }
  #intro { display: none; }
  /* Galleries: two panels a row (three versions, one comic page) instead of three 100px
     thumbnails under their captions. */
  #panels .grid-container { --grid-cols: 2 !important; }
  #versions .grid-container { --grid-cols: 3 !important; }
  #comic-pages .grid-container { --grid-cols: 1 !important; }
}
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


def banner_text(services: Any) -> tuple[str, str, str]:
    """(one plain sentence, the details behind it, css class) of the backend banner; empty strings
    for the real model. The details (what is missing, the ``doctor`` command) sit one click away."""
    name = getattr(services, "backend_name", getattr(getattr(services, "backend", None), "name", ""))
    reason = getattr(services, "backend_reason", "")
    if name == "storymaker" and not reason:
        return "", "", ""
    if name == "tiny":
        return ("**Tiny test model:** the pictures are meaningless (random weights).", reason, "tiny")
    if name == "draft":
        head = "**Draft mode:** panels are drawn as storyboard sketches, not rendered by StoryMaker."
        if reason.startswith("Draft mode"):
            # The container's reason repeats the head; keep only what follows it.
            _, sep, rest = reason.partition(" because ")
            reason = f"This is because {rest}" if sep else reason.partition(".")[2].strip()
        if not reason:
            reason = ("It was chosen at start (--backend draft). Rendering with StoryMaker needs a CUDA GPU "
                      "and the model weights (`python -m storymaker doctor` says what is missing); then "
                      "start with --backend auto.")
        return head, reason, "draft"
    return ("**Note:** " + reason.split(". ")[0].rstrip(".") + ".", reason, "draft") if reason else ("", "", "")


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
              sessions: SessionManager | None = None, pose_estimator=None,
              keep_sessions: bool | None = None) -> StudioApp:
    """Build the Blocks over ``services`` (a :class:`storymaker.services.container.Services` or a
    compatible fake). ``pose_estimator``: a zero-argument factory of the estimator used to extract
    poses from photos (default: OpenPose from the settings, loaded on first use).
    ``keep_sessions``: keep each browser's projects for ever (default: yes, except on a Space,
    where they go after ``settings.session_max_age_hours`` without use). Nothing is launched."""
    import gradio as gr

    from . import characters_tab, comic_tab, poses_tab, project_tab, render_tab, story_tab
    from .common import user_errors
    from .gpu import GPU_QUEUE, example_work, gpu_event

    settings = settings or services.settings
    if keep_sessions is None:
        keep_sessions = not on_spaces()
    sessions = sessions or SessionManager(settings.sessions_dir,
                                          0 if keep_sessions else settings.session_max_age_hours)
    ctx = StudioContext(services=services, settings=settings, sessions=sessions,
                        cancels=CancelFlags(Path(sessions.root)),
                        pose_estimator_factory=pose_estimator)
    banner, details, banner_class = banner_text(services)
    max_age = int(settings.session_max_age_hours * 3600)

    with gr.Blocks(title=TITLE, delete_cache=(3600, max_age), analytics_enabled=False) as blocks:
        # The browser keeps its session id (a random secret naming its folder) across reloads.
        browser = gr.BrowserState(None, storage_key=SESSION_KEY, secret=browser_secret(settings.data_dir))
        # Each page (browser tab) keeps the project it shows, "<id>/<project>": every handler gets
        # this view, so two tabs of one browser work on their own projects (ui/session.py). It is
        # kept in the page, not on the server, so a restarted app still knows it.
        session = gr.Textbox(visible=False, elem_id="project-view", label="project view")
        gr.Markdown(f"# {TITLE}")
        gr.Markdown("Consistent characters across a whole story: register them from one photo, "
                    "write the script, render the panels, lay out the comic.", elem_id="intro")
        with gr.Column(elem_id="banner", elem_classes=[banner_class] if banner_class else None,
                       visible=bool(banner)):
            gr.Markdown(banner)
            with gr.Accordion("Why, and what real rendering needs", open=False, visible=bool(details),
                              elem_id="banner-details"):
                gr.Markdown(details)
        with gr.Tabs() as tabs_block:
            with gr.Tab("Project", id="project") as project_block:
                project = project_tab.render(ctx, session)
            with gr.Tab("Characters", id="characters"):
                characters = characters_tab.render(ctx, session)
            with gr.Tab("Poses", id="poses"):
                poses = poses_tab.render(ctx, session)
            with gr.Tab("Story", id="story") as story_block:
                story = story_tab.render(ctx, session)
            with gr.Tab("Render", id="render") as render_block:
                render = render_tab.render(ctx, session)
            with gr.Tab("Comic", id="comic") as comic_block:
                comic = comic_tab.render(ctx, session)

        summary_fn = project["handlers"]["summary"]

        # Opening a tab shows the latest state (renders finished elsewhere, a new project, a
        # script or project list changed in another browser tab...).
        def once_loaded(fn):
            # The first tab is selected while the page loads, before it has its view: nothing to show.
            return user_errors(lambda view: fn(view) if view else gr.skip())

        project_block.select(once_loaded(summary_fn), [session], [project["summary"], project["list"]],
                             show_progress="hidden", api_visibility="private")
        story_block.select(once_loaded(story["refresh"][0]), [session], story["refresh"][1], show_progress="hidden",
                           api_visibility="private")
        render_block.select(render["select"][0], [session], render["select"][1], show_progress="hidden",
                            api_visibility="private")
        comic_block.select(comic["preview"][0], comic["preview"][1], comic["preview"][2], show_progress="hidden",
                           api_visibility="private")

        # Registered names and poses decide what the script may say: check it again after changes.
        for event in (*characters["events"], *poses["events"]):
            event.then(*story["revalidate"], show_progress="hidden", api_visibility="private")
        # The Project summary (characters, panels, renders) follows every change.
        for event in (*characters["events"], *story.get("events", ()), *render.get("events", ())):
            event.then(user_errors(summary_fn), [session], [project["summary"], project["list"]], show_progress="hidden",
                       api_visibility="private")

        tabs = (project, characters, poses, story, render, comic)
        refreshers = [t["refresh"] for t in tabs if "refresh" in t]
        refresh_outputs = [c for _, outputs in refreshers for c in outputs]

        def refresh_all(sid):
            values: list[Any] = []
            for fn, outputs in refreshers:
                result = fn(sid)
                values.extend(result if len(outputs) > 1 else [result])
            return values

        def start(sid):
            """Page load: the browser's own workspace again after a reload (the project opened
            last), else a new one; (id, the page's view, ...)."""
            sid = sessions.resume(sid)
            view = ctx.open_view(sid)
            return [sid, view, *summary_fn(view), *refresh_all(view)]

        loaded = [browser, session, project["summary"], project["list"], *refresh_outputs]
        blocks.load(user_errors(start), [browser], loaded, api_name="start_session")

        def after(handler):
            def run(view, *args):
                message = handler(view, *args)
                if isinstance(message, tuple):  # the handler opened another project
                    message, view = message
                return [message, view, *summary_fn(view), *refresh_all(view)]
            return user_errors(run)

        changed = [project["status"], session, project["summary"], project["list"], *refresh_outputs]
        done = {}
        for name, (listen, inputs) in project["actions"].items():
            done[name] = listen(after(project["handlers"][name]), [session, *inputs], changed,
                                api_name=f"{name}_project")
        done["delete"].then(lambda: gr.update(visible=False), None, [project["confirm_box"]],
                            api_visibility="private")
        project["save_btn"].click(user_errors(project["handlers"]["save"]), [session],
                                  [project["download"], project["status"]], api_name="save_project")

        def example(sid, progress=gr.Progress()):
            message, view = project_tab.make_example(ctx, sid, progress)
            # Show the finished comic straight away.
            return [message, view, *summary_fn(view), *refresh_all(view), gr.Tabs(selected="comic")]

        project["example_btn"].click(gpu_event(ctx, user_errors(example), example_work(ctx)), [session],
                                     [*changed, tabs_block], api_name="example_project", **GPU_QUEUE)

    return StudioApp(blocks=blocks, context=ctx, launch_defaults=launch_options(settings))


__all__ = ["StudioApp", "build_app", "banner_text", "browser_secret", "launch_options", "on_spaces"]
