"""Write the comic as PNG: one file per page (one long image for strip, grid and scroll layouts)
with each panel's seed, prompt and model ids as JSON in PNG text chunks; read them back."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from ...domain.layout import LayoutOptions
from ...domain.lettering import LetteringOptions
from ...fsutil import atomic_write_bytes
from .compose import ComicPage, ComicPanel, render_comic
from .files import SOFTWARE, _targets_free, safe_filename

log = logging.getLogger(__name__)

PANEL_KEY = "storymaker:panel:{n}"  # PNG text chunk per panel (1-based), JSON


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
