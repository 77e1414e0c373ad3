"""Compose comic pages from rendered panels and export them as PNG and PDF.

``render_comic(panels, options)`` lays panels out (``domain/layout.py``), fills each slot without
distortion, letters captions and speech bubbles (``domain/lettering.py``) and returns
:class:`ComicPage` objects (the raster page plus its geometry). ``export_png`` writes one PNG per
page (one long PNG for strip, grid and scroll layouts) with each panel's seed, prompt and model ids
in PNG text chunks; ``export_pdf`` writes a PDF with reportlab: panel images as JPEG, lettering as
real (selectable, searchable) text in embedded TrueType fonts, title and author in the metadata.

File names come from the title, sanitised (``the-lighthouse-keeper.pdf``,
``the-lighthouse-keeper-page-01.png``; a title in another script keeps its letters:
``три-подруги.pdf``). Nothing is overwritten unless ``overwrite=True``: an
existing target raises :class:`ExportError` before anything is written.

Demo: ``python -m storymaker.services.export --demo OUT_DIR`` writes a sample comic in every layout.
"""

from __future__ import annotations

import io
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..domain.bubbles import plan_lettering
from ..domain.heads import (
    Box,
    Head,
    SpeakerAnchor,
    anchors_for_panel,
    keep_clear_from_record,
    panel_heads,
)
from ..domain.layout import (
    LayoutOptions,
    PageLayout,
    Placement,
    Rect,
    compute_layout,
    place_image,
    union_box,
)
from ..domain.lettering import (
    Balloon,
    FontChain,
    LetteringOptions,
    TextLine,
    default_chain,
    draw_balloons,
    draw_title,
    title_line,
)
from ..domain.story import Dialogue
from ..errors import InvalidInputError, StoryMakerError
from ..fsutil import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from ..domain.poses import Pose
    from ..domain.story import Panel

log = logging.getLogger(__name__)

SOFTWARE = "StoryMaker Studio"
PANEL_KEY = "storymaker:panel:{n}"  # PNG text chunk per panel (1-based), JSON


class ExportError(StoryMakerError):
    """An export cannot be written (target exists, nothing to export, unwritable folder)."""


@dataclass(frozen=True)
class ComicPanel:
    """One panel to put on a page: its selected image and its lettering.

    ``metadata`` (seed, prompt, model ids, ...) is written, as JSON, into the PNG text chunks.
    ``heads`` are every head in the image (lettering keeps off them; named ones receive tails),
    ``keep_clear`` boxes that lettering must leave visible; both normalised to the image.
    """

    image: "Image.Image"
    caption: str | None = None
    dialogue: tuple[Dialogue, ...] = ()
    anchors: tuple[SpeakerAnchor, ...] = ()
    metadata: dict = field(default_factory=dict, compare=False, hash=False)
    heads: tuple[Head, ...] = ()
    keep_clear: tuple[Box, ...] = ()

    @classmethod
    def from_story_panel(cls, panel: "Panel", image: "Image.Image", pose: "Pose | None" = None,
                         metadata: dict | None = None) -> "ComicPanel":
        """Build from a script panel, its image, its pose and its version's metadata: the head
        boxes recorded at render time (detected or drawn), else those the pose implies."""
        meta = {"prompt": panel.prompt, "seed": panel.seed}
        meta.update(metadata or {})
        heads = panel_heads(panel.characters, pose, meta, image.size)
        return cls(image, panel.caption, tuple(panel.dialogue),
                   anchors_for_panel(panel, pose, heads, image.size), meta, heads,
                   keep_clear_from_record(meta))


def project_comic_panels(project, story, poses=None) -> list[ComicPanel]:
    """The comic's panels for ``story`` from ``project`` (``storage.Project``): each panel's selected
    render, found by the panel's identity (``Project.panel_renders``), never by its position, with
    its lettering; ``poses`` (a PoseLibrary, optional) places the speakers' heads.

    Panels never rendered are left out. A render made before its panel's prompt was edited is used,
    and its metadata says so: ``"script_changed": true`` (``"script_panel"`` is the panel's 1-based
    number in the script, ``"panel_id"`` its identity)."""
    from PIL import Image

    panels = []
    for item, panel in zip(project.panel_renders([p.prompt for p in story.panels]), story.panels):
        version = item.selected
        if version is None:
            log.info("panel %d has no render yet: left out of the comic", item.position + 1)
            continue
        with Image.open(version.image_path) as im:
            image = im.convert("RGB")
        pose = poses.get(panel.pose) if panel.pose and poses is not None else None
        meta = {**version.meta, "panel_id": item.panel_id, "script_panel": item.position + 1,
                "script_changed": item.changed}
        panels.append(ComicPanel.from_story_panel(panel, image, pose, metadata=meta))
    return panels


def changed_panel_numbers(panels: Sequence[ComicPanel]) -> list[int]:
    """The script numbers of the panels whose render predates an edit of their prompt."""
    return [int(p.metadata.get("script_panel", 0)) for p in panels if p.metadata.get("script_changed")]


@dataclass(frozen=True)
class ComicPage:
    """A composed page: the raster image and the geometry the PDF re-draws as vectors and text."""

    image: "Image.Image"
    layout: PageLayout
    placements: tuple[tuple[int, Placement], ...]  # (panel index, how its image fills the slot)
    balloons: tuple[Balloon, ...]
    title: tuple[TextLine, float] | None = None  # (line, size in pixels)
    author: str = ""


def _lettering_for(options: LayoutOptions, lettering: LetteringOptions | None) -> LetteringOptions:
    lettering = lettering or LetteringOptions()
    return lettering if lettering.dpi == options.dpi else replace(lettering, dpi=options.dpi)


def _check_panels(panels: Sequence[ComicPanel]) -> None:
    if not panels:
        raise ExportError("There are no panels to export: render at least one panel first.")
    for i, panel in enumerate(panels):
        image = getattr(panel, "image", None)
        if image is None or not hasattr(image, "size") or min(image.size) <= 0:
            raise InvalidInputError(f"Panel {i + 1} has no image: render it (or remove it) first.")


def _crop_resize(image: "Image.Image", placement: Placement) -> "Image.Image":
    from PIL import Image

    iw, ih = image.size
    l, t, r, b = placement.crop
    box = (l * iw, t * ih, r * iw, b * ih)
    left, top, right, bottom = placement.dest.rounded()
    size = (max(1, right - left), max(1, bottom - top))
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _page_box(box: Box, placement: Placement) -> Rect | None:
    """A normalised image box on the page, cut to what the crop shows (None if nothing)."""
    d = placement.dest
    x0, y0 = placement.to_dest(box[0], box[1])
    x1, y1 = placement.to_dest(box[2], box[3])
    x0, y0, x1, y1 = max(x0, d.x), max(y0, d.y), min(x1, d.right), min(y1, d.bottom)
    return Rect(x0, y0, x1 - x0, y1 - y0) if x1 - x0 > 1 and y1 - y0 > 1 else None


def _place(panel: ComicPanel, slot: Rect, fit: str) -> Placement:
    """How the panel's image fills ``slot``: a crop never cuts a head, and keeps the panel's
    keep-clear boxes (the draft's slug line) too when it can."""
    aspect = panel.image.size[0] / panel.image.size[1]
    heads = [h.box for h in panel.heads] or [a.box for a in panel.anchors if a.box is not None]
    if panel.keep_clear and fit == "cover":
        placement = place_image(aspect, slot, fit, keep=union_box([*heads, *panel.keep_clear]))
        if placement.dest == slot:  # cropped, all of it kept
            return placement
    return place_image(aspect, slot, fit, keep=union_box(heads))


def _heads(panel: ComicPanel, placement: Placement):
    """(speaker name -> head box or point, every head box, keep-clear boxes) in page pixels."""
    d = placement.dest
    named: dict[str, Rect | tuple[float, float]] = {}
    faces = []
    for head in panel.heads:
        rect = _page_box(head.box, placement)
        if rect is None:
            continue
        faces.append(rect)
        if head.name:
            named[head.name] = rect
    known = {name.casefold() for name in named}
    for anchor in panel.anchors:
        if anchor.name.casefold() in known:
            continue
        rect = _page_box(anchor.box, placement) if anchor.box is not None else None
        if rect is not None:
            named[anchor.name] = rect
        elif anchor.head is not None:
            x, y = placement.to_dest(*anchor.head)
            named[anchor.name] = (min(max(x, d.x), d.right), min(max(y, d.y), d.bottom))
    keep = [r for r in (_page_box(b, placement) for b in panel.keep_clear) if r is not None]
    return named, faces, keep


def render_comic(panels: Sequence[ComicPanel], options: LayoutOptions | None = None,
                 lettering: LetteringOptions | None = None, *, title: str | None = None,
                 author: str = "", draw: bool = True) -> list[ComicPage]:
    """Lay out, fill and letter every page. ``title`` overrides ``options.title``.

    With ``draw=False`` only the geometry is computed (``ComicPage.image`` is a blank page): the
    PDF export draws images, shapes and text itself."""
    from PIL import Image, ImageDraw

    options = options or LayoutOptions()
    if title is not None:
        options = replace(options, title=title)
    _check_panels(panels)
    letter = _lettering_for(options, lettering)
    regular, bold = default_chain(False), default_chain(True)
    layouts = compute_layout([p.image.size[0] / p.image.size[1] for p in panels], options)
    border = options.px(options.border)
    pages = []
    for layout in layouts:
        page = Image.new("RGB", (layout.width, layout.height), options.background)
        pen = ImageDraw.Draw(page)
        placements, balloons = [], []
        for slot in layout.slots:
            panel = panels[slot.panel]
            placement = _place(panel, slot.rect, options.fit)
            left, top, right, bottom = placement.dest.rounded()
            if draw:
                page.paste(_crop_resize(panel.image, placement), (left, top))
            if border > 0 and draw:
                w = max(1, round(border))
                pen.rectangle((left - w, top - w, right + w - 1, bottom + w - 1), outline=letter.ink,
                              width=w)
            placements.append((slot.panel, placement))
            named, faces, keep = _heads(panel, placement)
            balloons.extend(plan_lettering(placement.dest, panel.caption, panel.dialogue,
                                           panel.anchors, named, letter, regular, bold,
                                           faces=faces, keep_clear=keep))
        if draw:
            draw_balloons(page, balloons, letter, regular, bold)
        title_info = None
        if layout.title_box is not None:
            title_info = title_line(layout.title_box, options.title, layout.title_box.h / 1.9, bold)
            if draw:
                draw_title(page, layout.title_box, options.title, letter, layout.title_box.h / 1.9,
                           bold)
        pages.append(ComicPage(page, layout, tuple(placements), tuple(balloons), title_info, author))
    return pages


def render_pages(panels: Sequence[ComicPanel], options: LayoutOptions | None = None,
                 lettering: LetteringOptions | None = None, *, title: str | None = None,
                 author: str = "") -> list["Image.Image"]:
    """The page images only (see :func:`render_comic`)."""
    return [p.image for p in render_comic(panels, options, lettering, title=title, author=author)]


# ---------------------------------------------------------------------------------------------
# Files


_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
             *(f"lpt{i}" for i in range(1, 10))}  # device names Windows refuses as files


def _fold(ch: str) -> str:
    """``ch`` as ASCII when it is a Latin letter with marks (é -> e), else ``ch`` itself."""
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    return base if base and base.isascii() else ch


def safe_filename(title: str, default: str = "comic", max_len: int = 80, max_bytes: int = 120) -> str:
    """A portable file stem from a title, lower case, words joined by dashes.

    Accented Latin letters lose their accents (``Été`` -> ``ete``); letters of other scripts are
    kept as they are (``Три подруги`` -> ``три-подруги``, ``灯塔`` -> ``灯塔``), so a title in any
    language names its file. Path separators, punctuation and control characters become dashes;
    the stem is cut to ``max_len`` characters and ``max_bytes`` UTF-8 bytes (file systems allow
    255 bytes; ``-page-01.png`` still fits)."""
    text = unicodedata.normalize("NFKC", title or "")
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LN":
            out.append(_fold(ch))
        elif cat[0] == "M" and out and not out[-1].isascii():
            out.append(ch)  # a vowel sign or accent of a script that keeps its letters
        else:
            out.append("-")
    stem = re.sub(r"-+", "-", "".join(out)).strip("-").lower()
    stem = unicodedata.normalize("NFC", stem)[:max_len]
    while len(stem.encode("utf-8")) > max_bytes:
        stem = stem[:-1]
    stem = stem.strip("-")
    if stem in _RESERVED:
        stem += f"-{default}"
    return stem or default


def _targets_free(paths: Sequence[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ExportError(
            f"Not overwriting {', '.join(existing)}: choose another title or folder, or ask for "
            "overwrite (overwrite=True, --overwrite)."
        )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def _png_bytes(page: ComicPage, panels: Sequence[ComicPanel], title: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if title:
        info.add_text("Title", title)
    if page.author:
        info.add_text("Author", page.author)
    info.add_text("Software", SOFTWARE)
    info.add_text("storymaker:page", json.dumps({"page": page.layout.number,
                                                 "panels": [i + 1 for i, _ in page.placements]}))
    for index, _ in page.placements:
        record = {"panel": index + 1, **_jsonable(panels[index].metadata)}
        info.add_text(PANEL_KEY.format(n=index + 1), json.dumps(record, ensure_ascii=False))
    buf = io.BytesIO()
    page.image.save(buf, format="PNG", pnginfo=info, optimize=False, compress_level=6)
    return buf.getvalue()


def export_png(panels: Sequence[ComicPanel], out_dir: str | Path,
               options: LayoutOptions | None = None, lettering: LetteringOptions | None = None, *,
               title: str | None = None, author: str = "", overwrite: bool = False,
               filename: str | None = None) -> list[Path]:
    """Write the comic as PNG: ``<stem>-page-NN.png`` per page for ``pages``, else ``<stem>.png``."""
    options = options or LayoutOptions()
    title = options.title if title is None else title
    stem = safe_filename(filename or title)
    pages = render_comic(panels, options, lettering, title=title, author=author)
    out_dir = Path(out_dir)
    if options.kind == "pages":
        paths = [out_dir / f"{stem}-page-{p.layout.number:02d}.png" for p in pages]
    else:
        paths = [out_dir / f"{stem}.png"]
    _targets_free(paths, overwrite)
    for page, path in zip(pages, paths):
        atomic_write_bytes(path, _png_bytes(page, panels, title))
    log.info("Wrote %d PNG file(s) to %s", len(paths), out_dir)
    return paths


def read_png_metadata(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG (what :func:`export_png` wrote)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return dict(getattr(image, "text", {}) or {})


def _register_fonts(chains: Sequence[FontChain]) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    registered = set(pdfmetrics.getRegisteredFontNames())
    for chain in chains:
        for name, path in zip(chain.names, chain.paths):
            if name not in registered:
                pdfmetrics.registerFont(TTFont(name, str(path)))
                registered.add(name)


def _pdf_text(canvas, line: TextLine, size_px: float, chain: FontChain, k: float, page_h: float,
              color: str) -> None:
    """Real text: one text object per line, one font per run (the same fallback as the PNG)."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    size = size_px * k
    runs = chain.runs(line.text)
    width = sum(stringWidth(run, chain.names[i], size) for i, run in runs)
    x = (line.x + line.width / 2) * k - width / 2  # centre with reportlab's own widths
    text = canvas.beginText(x, page_h - line.baseline * k)
    text.setFillColor(color)
    for index, run in runs:
        text.setFont(chain.names[index], size)
        text.textOut(run)
    canvas.drawText(text)


def _pdf_balloon(canvas, balloon: Balloon, k: float, page_h: float, o: LetteringOptions) -> None:
    def pt(p: tuple[float, float]) -> tuple[float, float]:
        return (p[0] * k, page_h - p[1] * k)

    b = balloon.box
    x0, y1 = pt((b.x, b.y))
    x1, y0 = pt((b.right, b.bottom))
    fill = o.caption_fill if balloon.kind == "caption" else o.bubble_fill

    def paths():
        body = canvas.beginPath()
        if balloon.kind == "caption":
            body.rect(x0, y0, x1 - x0, y1 - y0)
        else:
            body.ellipse(x0, y0, x1 - x0, y1 - y0)
        yield body
        if balloon.tail:
            pts = [pt(p) for p in balloon.tail]
            tail = canvas.beginPath()
            tail.moveTo(*pts[0])
            for p in pts[1:]:
                tail.lineTo(*p)
            tail.close()
            yield tail

    # Outline of the union: stroke each shape twice as thick, then fill each without a stroke
    # (separately: in one path, opposite windings would leave the overlap unfilled).
    canvas.saveState()
    canvas.setStrokeColor(o.ink)
    canvas.setLineJoin(1)
    canvas.setLineWidth(2 * o.line_width)  # points
    for path in paths():
        canvas.drawPath(path, stroke=1, fill=0)
    canvas.setFillColor(fill)
    for path in paths():
        canvas.drawPath(path, stroke=0, fill=1)
    canvas.restoreState()


def export_pdf(panels: Sequence[ComicPanel], out_dir: str | Path,
               options: LayoutOptions | None = None, lettering: LetteringOptions | None = None, *,
               title: str | None = None, author: str = "", overwrite: bool = False,
               filename: str | None = None, jpeg_quality: int | None = None) -> Path:
    """Write ``<stem>.pdf``: one PDF page per comic page (strip, grid, scroll: one long page)."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen.canvas import Canvas

    options = options or LayoutOptions()
    title = options.title if title is None else title
    quality = int(options.jpeg_quality if jpeg_quality is None else jpeg_quality)
    if not 1 <= quality <= 95:
        raise InvalidInputError(f"jpeg_quality={quality}: use 1 to 95 (85 is typical).")
    path = Path(out_dir) / f"{safe_filename(filename or title)}.pdf"
    _targets_free([path], overwrite)
    pages = render_comic(panels, options, lettering, title=title, author=author, draw=False)
    letter = _lettering_for(options, lettering)
    regular, bold = default_chain(False), default_chain(True)
    _register_fonts([regular, bold])
    k = 72.0 / options.dpi  # pixels -> points
    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=(pages[0].layout.width * k, pages[0].layout.height * k),
                    pageCompression=1)
    canvas.setTitle(title or "Comic")
    canvas.setAuthor(author or "")
    canvas.setCreator(SOFTWARE)
    canvas.setProducer(SOFTWARE)
    canvas.setSubject("A comic made with StoryMaker Studio")
    for page in pages:
        page_w, page_h = page.layout.width * k, page.layout.height * k
        canvas.setPageSize((page_w, page_h))
        for index, placement in page.placements:
            image = _crop_resize(panels[index].image, placement)
            jpeg = io.BytesIO()
            image.save(jpeg, format="JPEG", quality=quality, optimize=True)
            jpeg.seek(0)
            d = placement.dest
            canvas.drawImage(ImageReader(jpeg), d.x * k, page_h - d.bottom * k, d.w * k, d.h * k)
            if options.border > 0:
                canvas.setStrokeColor(letter.ink)
                canvas.setLineWidth(options.border)
                half = options.border / 2
                canvas.rect(d.x * k - half, page_h - d.bottom * k - half, d.w * k + 2 * half,
                            d.h * k + 2 * half, stroke=1, fill=0)
        for balloon in page.balloons:
            _pdf_balloon(canvas, balloon, k, page_h, letter)
            chain = bold if balloon.bold else regular
            for line in balloon.lines:
                _pdf_text(canvas, line, balloon.font_size, chain, k, page_h, letter.ink)
        if page.title is not None:
            line, size = page.title
            _pdf_text(canvas, line, size, bold, k, page_h, letter.ink)
        canvas.showPage()
    canvas.save()
    atomic_write_bytes(path, buf.getvalue())
    log.info("Wrote %s (%d pages, %d bytes)", path, len(pages), len(buf.getvalue()))
    return path


# ---------------------------------------------------------------------------------------------
# A sample comic (the demo below and the tests): coloured panels with drawn figures.


def sample_panel_image(size: tuple[int, int], color: tuple[int, int, int],
                       heads: Sequence[tuple[float, float]] = ()) -> "Image.Image":
    """A flat-coloured panel with a horizon and one stick figure per head (normalised 0..1)."""
    from PIL import Image, ImageDraw

    w, h = size
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    ground = tuple(max(0, c - 60) for c in color)
    draw.rectangle((0, int(h * 0.78), w, h), fill=ground)
    r = max(4, int(min(w, h) * 0.07))
    lw = max(2, r // 4)
    for hx, hy in heads:
        cx, cy = hx * w, hy * h
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 220, 190), outline=(30, 30, 30),
                     width=lw)
        neck, hip = cy + r, cy + r + 3.2 * r
        draw.line((cx, neck, cx, hip), fill=(30, 30, 30), width=lw)
        draw.line((cx - 1.6 * r, neck + r, cx + 1.6 * r, neck + r), fill=(30, 30, 30), width=lw)
        draw.line((cx, hip, cx - r, hip + 2.6 * r), fill=(30, 30, 30), width=lw)
        draw.line((cx, hip, cx + r, hip + 2.6 * r), fill=(30, 30, 30), width=lw)
    return image


def sample_panels() -> list[ComicPanel]:
    """Six panels of mixed aspects with captions (Latin, Cyrillic, Chinese) and dialogue."""
    ids = {"base_model": "stabilityai/stable-diffusion-xl-base-1.0",
           "adapter_model": "RED-AIGC/StoryMaker", "backend": "sample"}

    def panel(size, color, heads, caption, lines, slots, seed, prompt):
        anchors = tuple(
            SpeakerAnchor(name, heads[slot] if slot < len(heads) and slot >= 0 else None, slot,
                          max(1, len(heads)))
            for name, slot in slots
        )
        return ComicPanel(sample_panel_image(size, color, heads), caption,
                          tuple(Dialogue(n, t) for n, t in lines), anchors,
                          {"seed": seed, "prompt": prompt, **ids})

    return [
        panel((960, 1280), (120, 160, 210), [(0.5, 0.45)],
              "Every night, Mara climbed to the lighthouse.", [], [], 101,
              "[Mara] stands on a rocky cliff at dusk"),
        panel((960, 1280), (200, 170, 120), [(0.3, 0.5), (0.7, 0.48)], None,
              [("Mara", "You came back."), ("Theo", "I always do. The storm can't keep me away.")],
              [("Mara", 0), ("Theo", 1)], 102, "[Mara] and [Theo] drink tea beside the great lamp"),
        panel((1280, 768), (90, 110, 140), [(0.6, 0.42)], "Буря не утихала всю ночь.",
              [("Theo", "Hold on!")], [("Theo", 0)], 103, "[Theo] rows a small boat through the storm"),
        panel((1024, 1024), (230, 200, 160), [], "灯塔的光穿过了雾。", [("Mara", "Theo? Is that you?")],
              [("Mara", -1)], 104, "an empty beach at dawn, seagulls over the water"),
        panel((768, 1024), (170, 200, 170), [(0.35, 0.4), (0.72, 0.42)], None,
              [("Theo", "I brought you something."), ("Mara", "A compass?"),
               ("Theo", "So you always find your way home.")],
              [("Theo", 0), ("Mara", 1)], 105, "[Theo] gives [Mara] a compass"),
        panel((1280, 720), (250, 190, 140), [(0.25, 0.5), (0.75, 0.5)], "The end.",
              [("Mara", "Goodnight, Theo.")], [("Mara", 0)], 106,
              "[Mara] and [Theo] watch the sunrise"),
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m storymaker.services.export --demo OUT_DIR``: write the sample comic."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m storymaker.services.export")
    parser.add_argument("--demo", metavar="OUT_DIR", required=True,
                        help="write the sample comic (PNG pages, strip, grid, scroll, PDF) here")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    panels = sample_panels()
    out = Path(args.demo)
    title, author = "The Lighthouse Keeper", "StoryMaker Studio demo"
    written: list[Path] = []
    try:
        for kind, extra in (("pages", {}), ("strip", {}), ("grid", {"columns": 3}), ("scroll", {})):
            opts = LayoutOptions(kind=kind, title=title, **extra)
            stem = f"demo-{kind}"
            written += export_png(panels, out, opts, author=author, filename=stem,
                                  overwrite=args.overwrite)
        written.append(export_pdf(panels, out, LayoutOptions(kind="pages", title=title),
                                  author=author, filename="demo-pages", overwrite=args.overwrite))
    except StoryMakerError as err:
        print(f"error: {err}")
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
