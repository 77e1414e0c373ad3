"""Comic tab: layout options, a live preview of the pages, PNG / PDF / project .zip downloads."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .common import ok, user_errors
from .context import StudioContext

logger = logging.getLogger(__name__)

KIND_LABELS = {"Printed pages": "pages", "Grid": "grid", "Strip (one row)": "strip", "Scroll (webtoon)": "scroll"}
PREVIEW_DPI = 60


def layout_options(ctx: StudioContext, sid: str, kind_label: str, columns, page_size: str, orientation: str,
                   fit: str, gutter, border, title: str, dpi=150):
    """Widget values -> :class:`LayoutOptions` (validated by the domain); an empty title means the
    story's own title."""
    from ..domain.layout import LayoutOptions

    if not (title or "").strip():
        story = ctx.story(sid, strict=False)
        title = story.title if story is not None else ""

    return LayoutOptions(
        kind=KIND_LABELS.get(kind_label, kind_label), columns=int(columns), page_size=page_size,
        orientation=orientation, fit=fit, gutter=float(gutter), border=float(border),
        title=(title or "").strip(), dpi=int(dpi),
    )


def comic_panels(ctx: StudioContext, sid: str) -> list:
    """The chosen version of every rendered panel of the current script, with its lettering
    (panels not rendered yet are left out; renders follow their panel, not its position)."""
    from ..services.export import project_comic_panels

    story = ctx.story(sid, strict=False)
    if story is None:
        return []
    return project_comic_panels(ctx.project(sid), story, ctx.poses(sid))


def _changed_note(panels) -> str:
    from ..services.export import changed_panel_numbers

    numbers = changed_panel_numbers(panels)
    if not numbers:
        return ""
    label = "Panel" if len(numbers) == 1 else "Panels"
    return (f" {label} {', '.join(map(str, numbers))}: script changed since render "
            "(re-render to match the new wording).")


NOTHING_YET = "Render some panels first (Render tab): the comic uses the chosen version of each."
SCRIPT_PROBLEMS = ("The script has problems (the Story tab lists them): fix them and the comic shows "
                   "the rendered panels again.")


def _nothing(ctx: StudioContext, sid: str) -> str:
    """Why there is no comic: no renders yet, or a script that does not parse any more (a deleted
    character, a typo), which used to say "render some panels first" over panels already rendered."""
    if ctx.story(sid, strict=False) is None and ctx.project(sid).read_script().strip():
        return SCRIPT_PROBLEMS
    return NOTHING_YET


def preview_pages(ctx: StudioContext, sid: str, options) -> tuple[list, str]:
    """The comic's pages at preview resolution, and a status line."""
    from ..services.export import render_pages

    panels = comic_panels(ctx, sid)
    if not panels:
        return [], _nothing(ctx, sid)
    pages = render_pages(panels, options.at_dpi(PREVIEW_DPI))
    return ([(page, f"Page {i + 1}") for i, page in enumerate(pages)],
            f"{len(panels)} panel(s) on {len(pages)} page(s)." + _changed_note(panels))


def export_comic(ctx: StudioContext, sid: str, options, fmt: str, author: str = "") -> tuple[str, str]:
    """Write the comic as a PDF, or PNG pages (zipped when there are several), ``author`` in their
    metadata; returns (path, status)."""
    import zipfile

    from ..services.export import ExportError, export_pdf, export_png

    panels = comic_panels(ctx, sid)
    if not panels:
        raise ExportError(_nothing(ctx, sid))
    author = " ".join(str(author or "").split())
    ctx.project(sid).set_comic_settings({**_as_dict(options), "author": author})
    folder = ctx.sessions.downloads_dir(sid) / f"comic-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
    stem = options.title or ctx.project(sid).title or "comic"
    if fmt == "pdf":
        path = Path(export_pdf(panels, folder, options, filename=stem, author=author))
    else:
        paths = [Path(p) for p in export_png(panels, folder, options, filename=stem, author=author)]
        if len(paths) == 1:
            path = paths[0]
        else:
            path = folder / f"{paths[0].stem.rsplit('-page-', 1)[0]}-pages.zip"
            with zipfile.ZipFile(path, "w") as archive:
                for item in paths:
                    archive.write(item, item.name)
    return str(path), ok(f"Comic written: `{path.name}` ({len(panels)} panel(s)). Download it below."
                         + _changed_note(panels))


LAYOUT_DEFAULTS = ("Printed pages", 2, "A4", "portrait", "cover", 10, 2, "")


def saved_layout(ctx: StudioContext, sid: str) -> tuple:
    """The layout widgets' values as the project's last comic was made (kept in project.json), so
    that a reload or reopening the project shows the same layout; the defaults before any comic.
    The title is kept only when it is not simply the story's own title (which may change)."""
    saved = ctx.project(sid).comic_settings()
    if not saved:
        return LAYOUT_DEFAULTS
    label = next((name for name, kind in KIND_LABELS.items() if kind == saved.get("kind")), LAYOUT_DEFAULTS[0])
    story = ctx.story(sid, strict=False)
    title = str(saved.get("title") or "")
    if story is not None and title == story.title:
        title = ""
    values = (label, saved.get("columns"), saved.get("page_size"), saved.get("orientation"), saved.get("fit"),
              saved.get("gutter"), saved.get("border"), title)
    return tuple(default if value is None else value for value, default in zip(values, LAYOUT_DEFAULTS))


def saved_author(ctx: StudioContext, sid: str) -> str:
    """The author given for the project's last comic ('' before any)."""
    return str(ctx.project(sid).comic_settings().get("author") or "")


def _as_dict(options) -> dict:
    from dataclasses import asdict

    return asdict(options)


def render(ctx: StudioContext, session) -> dict[str, Any]:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=4):
            # The actions first: on a phone they come before the layout options.
            with gr.Row():
                preview_btn = gr.Button("Update preview", size="md", min_width=120)
                pdf_btn = gr.Button("Make PDF", variant="primary", size="md", min_width=100)
                png_btn = gr.Button("Make PNG", size="md", min_width=100)
                zip_btn = gr.Button("Project .zip", size="md", min_width=100)
            status = gr.Markdown(elem_id="comic-status")
            download = gr.File(label="Download", interactive=False, elem_id="comic-download", height=90,
                               visible=False)
            with gr.Accordion("Layout", open=False, elem_id="comic-layout"):
                with gr.Row():
                    kind = gr.Dropdown(list(KIND_LABELS), value="Printed pages", label="Layout")
                    columns = gr.Slider(1, 6, value=2, step=1, label="Columns")
                with gr.Row():
                    page_size = gr.Dropdown(["A4", "Letter"], value="A4", label="Paper")
                    orientation = gr.Dropdown(["portrait", "landscape"], value="portrait", label="Orientation")
                    fit = gr.Dropdown(["cover", "fit"], value="cover", label="Panel fit",
                                      info="cover: pictures fill their frames, at most 5% cropped; "
                                           "fit: every picture whole")
                with gr.Row():
                    gutter = gr.Slider(0, 40, value=10, step=1, label="Gutter (pt)")
                    border = gr.Slider(0, 8, value=2, step=0.5, label="Border (pt)")
                title = gr.Textbox(label="Title on the first page", placeholder="empty: the story's title")
                author = gr.Textbox(label="Author", placeholder="your name: in the PDF's and PNG's metadata",
                                    elem_id="comic-author")
            from . import scores_view

            consistency = scores_view.render(ctx, session)
        with gr.Column(scale=5):
            pages = gr.Gallery(label="Pages", columns=2, height=600, object_fit="contain",
                               buttons=["download", "fullscreen"], elem_id="comic-pages")

    inputs = [session, kind, columns, page_size, orientation, fit, gutter, border, title]

    def on_preview(sid, *values):
        return preview_pages(ctx, sid, layout_options(ctx, sid, *values))

    def on_export(fmt):
        def handler(sid, *values):
            *values, by = values
            path, message = export_comic(ctx, sid, layout_options(ctx, sid, *values), fmt, by)
            return gr.update(value=path, visible=True), message
        return user_errors(handler)

    for widget in (kind, columns, page_size, orientation, fit, gutter, border):
        widget.change(user_errors(on_preview), inputs, [pages, status], trigger_mode="always_last",
                      show_progress="minimal", api_visibility="private")
    preview_btn.click(user_errors(on_preview), inputs, [pages, status], api_name="preview_comic")
    pdf_btn.click(on_export("pdf"), [*inputs, author], [download, status], api_name="export_pdf")
    png_btn.click(on_export("png"), [*inputs, author], [download, status], api_name="export_png")

    from . import project_tab

    def on_zip(sid):
        path, message = project_tab.save_project(ctx, sid)
        return gr.update(value=path, visible=True), message

    zip_btn.click(user_errors(on_zip), [session], [download, status], api_name="export_zip")

    layout_widgets = [kind, columns, page_size, orientation, fit, gutter, border, title]

    def refresh(sid):
        # Another project (or a reload): its layout and pages, and no download or scores of the one before.
        values = saved_layout(ctx, sid)
        shown, note = preview_pages(ctx, sid, layout_options(ctx, sid, *values))
        return (shown, note, gr.update(value=None, visible=False), [], "", *values, saved_author(ctx, sid))

    return {"refresh": (user_errors(refresh), [pages, status, download, consistency["sheets"],
                                               consistency["report"], *layout_widgets, author]),
            "preview": (user_errors(on_preview), inputs, [pages, status])}
