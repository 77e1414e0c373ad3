"""Write the comic as PDF with reportlab: panel images as JPEG, borders and balloons as vector
shapes, lettering as real (selectable, searchable) text in embedded TrueType fonts, title and author
in the metadata."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Sequence

from ...domain.layout import LayoutOptions
from ...domain.lettering import Balloon, FontChain, LetteringOptions, TextLine, default_chain
from ...errors import InvalidInputError
from ...fsutil import atomic_write_bytes
from .compose import ComicPanel, _crop_resize, _lettering_for, render_comic
from .files import SOFTWARE, _targets_free, safe_filename

log = logging.getLogger(__name__)


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
