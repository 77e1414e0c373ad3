"""Comic tab: layout options, a live preview of the pages, PNG / PDF / project .zip downloads."""

from __future__ import annotations

import logging
import time
from typing import Any

from .common import ok, user_errors
from .context import StudioContext

logger = logging.getLogger(__name__)

KIND_LABELS = {"Printed pages": "pages", "Grid": "grid", "Strip (one row)": "strip", "Scroll (webtoon)": "scroll"}
PREVIEW_DPI = 60


def layout_options(ctx: StudioContext, sid: str, kind_label: str, columns, page_size: str, orientation: str,
                   fit: str, gutter, border, title: str, dpi=150):
    """Widget values -> :class:`LayoutOptions` (validated by the domain)."""
    from ..domain.layout import LayoutOptions

    return LayoutOptions(
        kind=KIND_LABELS.get(kind_label, kind_label), columns=int(columns), page_size=page_size,
        orientation=orientation, fit=fit, gutter=float(gutter), border=float(border),
        title=(title or "").strip(), dpi=int(dpi),
    )


def preview_pages(ctx: StudioContext, sid: str, options) -> tuple[list, str]:
    """The comic's pages at preview resolution, and a status line."""
    from dataclasses import replace

    from ..services import export

    project = ctx.project(sid)
    story = ctx.story(sid, strict=False)
    pages = export.render_pages(project, story, replace(options, dpi=PREVIEW_DPI))
    if not pages:
        return [], "Render some panels first (Render tab): the comic uses the chosen version of each."
    return [(page, f"Page {i + 1}") for i, page in enumerate(pages)], f"{len(pages)} page(s)."


def export_comic(ctx: StudioContext, sid: str, options, fmt: str) -> tuple[str, str]:
    """Write the comic as PDF or PNG pages (a .zip when there are several); returns (path, status)."""
    from ..services import export

    project = ctx.project(sid)
    story = ctx.story(sid, strict=False)
    project.set_comic_settings(_as_dict(options))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = ctx.sessions.downloads_dir(sid)
    if fmt == "pdf":
        path = export.export_pdf(project, story, options, folder / f"comic-{stamp}.pdf")
    else:
        path = export.export_png(project, story, options, folder / f"comic-{stamp}.png")
    return str(path), ok(f"Comic written: `{path.name}`.")


def _as_dict(options) -> dict:
    from dataclasses import asdict

    return asdict(options)


def render(ctx: StudioContext, session) -> dict[str, Any]:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=3):
            kind = gr.Radio(list(KIND_LABELS), value="Printed pages", label="Layout")
            columns = gr.Slider(1, 6, value=2, step=1, label="Columns (most panels in a row)")
            with gr.Row():
                page_size = gr.Dropdown(["A4", "Letter"], value="A4", label="Paper")
                orientation = gr.Dropdown(["portrait", "landscape"], value="portrait", label="Orientation")
            fit = gr.Radio(["cover", "fit"], value="cover", label="Panel fit (cover crops, fit letterboxes)")
            with gr.Row():
                gutter = gr.Slider(0, 40, value=10, step=1, label="Gutter (pt)")
                border = gr.Slider(0, 8, value=2, step=0.5, label="Border (pt)")
            title = gr.Textbox(label="Title on the first page")
            preview_btn = gr.Button("Update preview")
            with gr.Row():
                pdf_btn = gr.Button("Make PDF", variant="primary")
                png_btn = gr.Button("Make PNG")
                zip_btn = gr.Button("Project .zip")
            download = gr.File(label="Download", interactive=False, elem_id="comic-download")
            status = gr.Markdown()
        with gr.Column(scale=5):
            pages = gr.Gallery(label="Pages", columns=2, height=560, object_fit="contain",
                               buttons=["download", "fullscreen"], elem_id="comic-pages")

    inputs = [session, kind, columns, page_size, orientation, fit, gutter, border, title]

    def on_preview(sid, *values):
        return preview_pages(ctx, sid, layout_options(ctx, sid, *values))

    def on_export(fmt):
        def handler(sid, *values):
            return export_comic(ctx, sid, layout_options(ctx, sid, *values), fmt)
        return user_errors(handler)

    for widget in (kind, columns, page_size, orientation, fit, gutter, border):
        widget.change(user_errors(on_preview), inputs, [pages, status], trigger_mode="always_last",
                      show_progress="minimal", api_visibility="private")
    preview_btn.click(user_errors(on_preview), inputs, [pages, status], api_name="preview_comic")
    pdf_btn.click(on_export("pdf"), inputs, [download, status], api_name="export_pdf")
    png_btn.click(on_export("png"), inputs, [download, status], api_name="export_png")

    from . import project_tab

    zip_btn.click(user_errors(lambda sid: project_tab.save_project(ctx, sid)), [session], [download, status],
                  api_name="export_zip")

    def refresh(sid):
        return preview_pages(ctx, sid, layout_options(ctx, sid, "Printed pages", 2, "A4", "portrait",
                                                      "cover", 10, 2, ""))

    return {"refresh": (user_errors(refresh), [pages, status])}
