"""Compose comic pages from rendered panels: :class:`ComicPanel` (a panel's image, lettering and
metadata), :func:`render_comic` (lay out, fill each slot without distortion and never cutting a head,
letter captions and speech bubbles) and :class:`ComicPage` (the raster page plus the geometry the PDF
re-draws); :func:`project_comic_panels` gathers a project's selected renders."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Sequence

from ...domain.bubbles import plan_lettering
from ...domain.heads import (
    Box,
    Head,
    SpeakerAnchor,
    anchors_for_panel,
    keep_clear_from_record,
    panel_heads,
)
from ...domain.layout import (
    LayoutOptions,
    PageLayout,
    Placement,
    Rect,
    compute_layout,
    place_image,
    union_box,
)
from ...domain.lettering import (
    Balloon,
    LetteringOptions,
    TextLine,
    default_chain,
    draw_balloons,
    draw_title,
    title_line,
)
from ...domain.story import Dialogue
from ...errors import InvalidInputError, StoryMakerError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from ...domain.poses import Pose
    from ...domain.story import Panel

log = logging.getLogger(__name__)


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
