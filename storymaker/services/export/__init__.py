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

The modules, each readable in one sitting:

- :mod:`.compose`  ``ComicPanel``, ``ComicPage``, ``render_comic``, ``project_comic_panels``
- :mod:`.files`    what both writers share: ``safe_filename``, the overwrite check, ``SOFTWARE``
- :mod:`.png`      ``export_png``, ``read_png_metadata``, ``PANEL_KEY``
- :mod:`.pdf`      ``export_pdf`` (reportlab)
- :mod:`.sample`   the sample comic and the demo (``sample_panels``, ``main``)

Everything a caller needs is imported from here.
"""

from __future__ import annotations

from .compose import (
    ComicPage,
    ComicPanel,
    ExportError,
    changed_panel_numbers,
    project_comic_panels,
    render_comic,
    render_pages,
)
from .files import SOFTWARE, safe_filename
from .pdf import export_pdf
from .png import PANEL_KEY, export_png, read_png_metadata
from .sample import main, sample_panel_image, sample_panels

__all__ = [
    "PANEL_KEY",
    "SOFTWARE",
    "ComicPage",
    "ComicPanel",
    "ExportError",
    "changed_panel_numbers",
    "export_pdf",
    "export_png",
    "main",
    "project_comic_panels",
    "read_png_metadata",
    "render_comic",
    "render_pages",
    "safe_filename",
    "sample_panel_image",
    "sample_panels",
]
