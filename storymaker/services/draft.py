"""The draft renderer: a storyboard sketch of a panel, drawn at once on the CPU.

What it draws: the pose skeleton(s) (``perception.pose.render_pose``, controlnet-aux colours), each
character's thumbnail and name at its position (its head on the pose, or spread across the panel),
the prompt as a slug line with seed and size, and a "DRAFT" mark. Captions and speech bubbles are
lettered by the comic export, as for rendered panels: the draft records where it drew each head
(thumbnail and name) and the slug band in the image's render record (``domain/heads.py``), so
lettering keeps off them. No model and no torch of its own.
"""

from __future__ import annotations

import functools
import logging
import textwrap
from typing import TYPE_CHECKING, Mapping

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..domain.heads import Head, record_on_image
from ..domain.lettering import FONT_DIR

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import PanelJob

logger = logging.getLogger(__name__)

PAPER = (246, 243, 235)
INK = (40, 40, 40)
FAINT = (150, 150, 150)
MARK = (200, 30, 30)


@functools.lru_cache(maxsize=32)
def load_font(size: int) -> ImageFont.ImageFont:
    """A TrueType font at ``size`` px: DejaVu Sans from ``assets/fonts`` (wide coverage), another
    TTF there, else Pillow's default."""
    size = max(6, int(size))
    if FONT_DIR.is_dir():
        candidates = [FONT_DIR / "DejaVuSans.ttf", *sorted(FONT_DIR.glob("*.ttf"))]
        for path in candidates:
            if not path.is_file():
                continue
            try:
                return ImageFont.truetype(str(path), size)
            except OSError:
                logger.debug("font %s not usable", path)
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        words = paragraph.split()
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            if not line or draw.textlength(trial, font=font) <= width:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    out = []
    for line in lines:  # hard-wrap words wider than the panel
        if draw.textlength(line, font=font) <= width or len(line) < 2:
            out.append(line)
            continue
        per = max(1, int(len(line) * width / max(1.0, draw.textlength(line, font=font))))
        out.extend(textwrap.wrap(line, per) or [line])
    return out


def _skeleton(job: "PanelJob") -> Image.Image | None:
    if job.pose is None:
        return None
    from ..perception.pose import render_pose

    return render_pose(job.pose, job.width, job.height).convert("RGB")


def _positions(job: "PanelJob") -> list[tuple[float, float]]:
    """Where each character's thumbnail goes: its head on the pose, else spread across the panel."""
    n = len(job.characters)
    spread = [((i + 1) * job.width / (n + 1), job.height * 0.42) for i in range(n)]
    if job.pose is None:
        return spread
    from ..domain.poses import head_position

    out = []
    for i in range(n):
        where = head_position(job.pose, i, job.width, job.height) if i < job.pose.num_people else None
        out.append(tuple(where) if where is not None else spread[i])
    return out


def draw_draft(job: "PanelJob", thumbnails: Mapping[str, Image.Image | None] | None = None) -> Image.Image:
    """The storyboard sketch of ``job`` at its size (RGB)."""
    thumbnails = thumbnails or {}
    w, h = job.width, job.height
    unit = max(4, min(w, h) // 24)
    image = Image.new("RGB", (w, h), PAPER)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w - 1, h - 1), outline=INK, width=max(1, unit // 4))

    skeleton = _skeleton(job)
    if skeleton is not None:
        # render_pose draws coloured limbs on black: keep the limbs, drop the black.
        mask = skeleton.convert("L").point(lambda v: 255 if v > 16 else 0)
        image.paste(skeleton, (0, 0), mask)

    name_font = load_font(unit)
    thumb = max(8, min(w, h) // 5)
    heads = []
    for slot, (x, y) in zip(job.characters, _positions(job)):
        box = (int(x - thumb / 2), int(y - thumb / 2), int(x + thumb / 2), int(y + thumb / 2))
        picture = thumbnails.get(slot.name)
        if picture is not None:
            tile = ImageOps.fit(picture.convert("RGB"), (thumb, thumb))
            image.paste(tile, box[:2])
        else:
            draw.ellipse(box, outline=INK, width=max(1, unit // 6))
        draw.rectangle(box, outline=INK, width=max(1, unit // 8))
        label = slot.name + (f" ({slot.outfit})" if slot.outfit else "")
        tw = draw.textlength(label, font=name_font)
        tx, ty = x - tw / 2, box[3] + unit // 4
        draw.rectangle((tx - 2, ty - 1, tx + tw + 2, ty + unit + 3), fill=(255, 255, 255))
        draw.text((tx, ty), label, fill=INK, font=name_font)
        drawn = (min(box[0], tx - 2), box[1], max(box[2], tx + tw + 2), ty + unit + 3)
        heads.append(Head((max(0.0, drawn[0] / w), max(0.0, drawn[1] / h), min(1.0, drawn[2] / w),
                           min(1.0, drawn[3] / h)), slot.name, "draft"))

    # Bottom: the prompt as a slug line, with seed and size; the DRAFT mark sits on the band's top
    # edge at the right (the comic letters captions and bubbles over the top of the panel, and a
    # "cover" fit may crop the band's last line).
    small = load_font(max(6, int(unit * 0.8)))
    mark_font = load_font(unit)
    mark = f"DRAFT #{job.index + 1}"
    mark_w = draw.textlength(mark, font=mark_font)
    slug = _wrap(draw, job.source_prompt or job.prompt, small, w - unit)[:4]
    meta = f"seed {job.seed} | {w}x{h}" + (f" | pose {job.pose.name}" if job.pose is not None else "")
    lines = slug + [meta]
    y = h - unit // 3 - int(unit * 1.0) * len(lines)
    band_top = y - unit // 4
    draw.rectangle((1, band_top, w - 2, h - 2), fill=(255, 255, 255))
    mark_box = (w - mark_w - unit, band_top - int(unit * 1.4), w - 2, band_top)
    draw.rectangle(mark_box, fill=(255, 255, 255))
    draw.text((mark_box[0] + unit // 2, mark_box[1] + unit // 6), mark, fill=MARK, font=mark_font)
    for i, line in enumerate(lines):
        draw.text((unit // 2, y), line, fill=FAINT if i == len(lines) - 1 else INK, font=small)
        y += int(unit * 1.0)
    band = (0.0, band_top / h, 1.0, 1.0)
    mark_area = (mark_box[0] / w, mark_box[1] / h, 1.0, band_top / h)
    return record_on_image(image, heads=heads, keep_clear=(band, mark_area))
