"""Comic lettering: fonts with per-character fallback, text wrapping and fitting, caption boxes and
speech bubbles with tails, and drawing them anti-aliased with PIL.

Planning (:func:`plan_lettering`) is geometry: it returns :class:`Balloon` objects (shape box, tail
triangle, text lines with baselines) in page pixels, which the PNG path draws with
:func:`draw_balloons` and the PDF path (``services/export.py``) draws as vector shapes and real text.
Fonts live in ``assets/fonts`` (see its README for licences).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import StoryMakerError
from .layout import Rect

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image, ImageFont

    from .poses import Pose
    from .story import Dialogue, Panel

log = logging.getLogger(__name__)

FONT_DIR = Path(__file__).resolve().parents[2] / "assets" / "fonts"
COMIC_REGULAR = "ComicNeue-Regular.ttf"
COMIC_BOLD = "ComicNeue-Bold.ttf"
FALLBACK_FONTS = ("DejaVuSans.ttf", "DroidSansFallbackFull.ttf")

# Characters that may be broken between (no spaces in these scripts): CJK, kana, hangul, fullwidth.
_CJK = "\u2e80-\u2fff\u3000-\u30ff\u3100-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_TOKEN = re.compile(rf"\n|[ \t]+|[{_CJK}]|[^\s{_CJK}]+")


class FontError(StoryMakerError):
    """A lettering font is missing or unreadable."""


# ---------------------------------------------------------------------------------------------
# Fonts


class FontChain:
    """An ordered list of TrueType fonts; each character is drawn with the first that has it.

    Coverage comes from each font's ``cmap`` (read with reportlab's TrueType parser, which the PDF
    export uses anyway). ``names`` are the names the fonts are registered under in reportlab.
    """

    def __init__(self, paths: Sequence[str | Path], names: Sequence[str] | None = None):
        self.paths = tuple(Path(p) for p in paths)
        if not self.paths:
            raise FontError("A font chain needs at least one font file.")
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise FontError(
                f"Lettering font(s) missing: {', '.join(missing)}. Restore assets/fonts from the "
                "repository (or pass existing .ttf files)."
            )
        self.names = tuple(names) if names else tuple(f"SM-{p.stem}" for p in self.paths)
        self._cmaps: list[frozenset[int]] = []
        for path in self.paths:
            self._cmaps.append(_cmap(str(path)))

    def covers(self, index: int, char: str) -> bool:
        return ord(char) in self._cmaps[index]

    def font_index(self, char: str) -> int:
        """Index of the first font with a glyph for ``char`` (0 when none has it)."""
        if char.isspace():
            return 0
        code = ord(char)
        for i, cmap in enumerate(self._cmaps):
            if code in cmap:
                return i
        return 0

    def runs(self, text: str) -> list[tuple[int, str]]:
        """Split ``text`` into ``(font index, text)`` runs; spaces join the run before them."""
        runs: list[tuple[int, str]] = []
        for ch in text:
            idx = runs[-1][0] if (ch.isspace() and runs) else self.font_index(ch)
            if runs and runs[-1][0] == idx:
                runs[-1] = (idx, runs[-1][1] + ch)
            else:
                runs.append((idx, ch))
        return runs

    def pil_font(self, index: int, size: float) -> "ImageFont.FreeTypeFont":
        return _pil_font(str(self.paths[index]), max(1, round(size)))

    def measure(self, text: str, size: float) -> float:
        """Advance width of ``text`` in pixels at ``size`` pixels per em."""
        return sum(self.pil_font(i, size).getlength(run) for i, run in self.runs(text))

    def ascent(self, size: float) -> float:
        return self.pil_font(0, size).getmetrics()[0]


@functools.lru_cache(maxsize=16)
def _cmap(path: str) -> frozenset[int]:
    from reportlab.pdfbase.ttfonts import TTFError, TTFontFile

    try:
        return frozenset(TTFontFile(path).charToGlyph)
    except (TTFError, OSError) as err:
        raise FontError(f"Cannot read font {path}: {err}. Use a TrueType (.ttf) font.") from None


@functools.lru_cache(maxsize=128)
def _pil_font(path: str, size: int) -> "ImageFont.FreeTypeFont":
    from PIL import ImageFont

    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=4)
def default_chain(bold: bool = False) -> FontChain:
    """Comic Neue (regular or bold), then DejaVu Sans (Cyrillic, Greek), then Droid Sans Fallback (CJK)."""
    first = COMIC_BOLD if bold else COMIC_REGULAR
    return FontChain([FONT_DIR / first, *(FONT_DIR / f for f in FALLBACK_FONTS)])


# ---------------------------------------------------------------------------------------------
# Text


def wrap_text(text: str, chain: FontChain, size: float, max_width: float) -> list[str]:
    """Greedy word wrap to ``max_width`` pixels; CJK text breaks between characters, a word wider
    than a line is split, explicit newlines are kept."""
    lines: list[str] = []
    line = ""
    for token in _TOKEN.findall(text.strip()):
        if token == "\n":
            lines.append(line.rstrip())
            line = ""
            continue
        if token.isspace():
            if line:
                line += " "
            continue
        candidate = line + token
        if not line or chain.measure(candidate, size) <= max_width:
            if not line and chain.measure(token, size) > max_width:
                # A single word wider than the line: split it by characters.
                for ch in token:
                    if line and chain.measure(line + ch, size) > max_width:
                        lines.append(line)
                        line = ""
                    line += ch
            else:
                line = candidate
            continue
        lines.append(line.rstrip())
        line = ""
        for ch in token if chain.measure(token, size) > max_width else [token]:
            if line and chain.measure(line + ch, size) > max_width:
                lines.append(line)
                line = ""
            line += ch
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


@dataclass(frozen=True)
class TextLine:
    """One line of lettering: ``x`` is its left edge, ``baseline`` its baseline (page pixels)."""

    text: str
    x: float
    baseline: float
    width: float


@dataclass(frozen=True)
class TextBlock:
    """Wrapped text at a size: its lines and the size of the block they make."""

    lines: tuple[str, ...]
    size: float
    width: float
    height: float
    line_height: float


def layout_text(text: str, chain: FontChain, size: float, max_width: float,
                line_spacing: float = 1.15) -> TextBlock:
    lines = wrap_text(text, chain, size, max_width)
    width = max((chain.measure(line, size) for line in lines), default=0.0)
    lh = size * line_spacing
    return TextBlock(tuple(lines), size, width, lh * (len(lines) - 1) + size * 1.1, lh)


def fit_text(text: str, chain: FontChain, max_width: float, max_height: float,
             size: float, min_size: float) -> TextBlock:
    """The largest size (from ``size`` down to ``min_size``) at which the wrapped text fits the box;
    at ``min_size`` it is returned even if it does not fit."""
    s = size
    while True:
        block = layout_text(text, chain, s, max_width)
        if (block.width <= max_width + 0.5 and block.height <= max_height) or s <= min_size:
            return block
        s = max(min_size, s * 0.9)


def truncate_text(block: TextBlock, chain: FontChain, max_height: float) -> TextBlock:
    """Keep the lines that fit ``max_height``; the last kept line ends with an ellipsis."""
    keep = max(1, int((max_height - block.size * 1.1) // block.line_height) + 1)
    if keep >= len(block.lines):
        return block
    lines = list(block.lines[:keep])
    last = lines[-1]
    limit = max(block.width, 1.0)
    while last and chain.measure(last.rstrip() + "\u2026", block.size) > limit:
        last = last[:-1]
    lines[-1] = last.rstrip() + "\u2026"
    width = max(chain.measure(line, block.size) for line in lines)
    log.warning("Text too long for its panel even at the smallest size; cut after %d line(s).", keep)
    return TextBlock(tuple(lines), block.size, width,
                     block.line_height * (keep - 1) + block.size * 1.1, block.line_height)


def _centered_lines(block: TextBlock, box: Rect, chain: FontChain) -> tuple[TextLine, ...]:
    ascent = block.size * 0.95
    top = box.y + (box.h - block.height) / 2
    out = []
    for k, text in enumerate(block.lines):
        w = chain.measure(text, block.size)
        out.append(TextLine(text, box.x + (box.w - w) / 2, top + ascent + k * block.line_height, w))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class SpeakerAnchor:
    """Where a speaker is in a panel: ``head`` normalised 0..1 in the panel image when the pose says
    so; otherwise ``slot`` of ``num_slots`` (slot 0 of 2 = left, 1 of 2 = right). ``slot=-1`` means
    off-panel (the bubble's tail points down at the panel's centre)."""

    name: str
    head: tuple[float, float] | None = None
    slot: int = 0
    num_slots: int = 1


@dataclass(frozen=True)
class LetteringOptions:
    """Sizes in points (converted with ``dpi``), fractions of the panel width, and colours."""

    dpi: int = 150
    font_size: float = 12.0  # speech, largest tried
    caption_size: float = 11.0
    min_font_size: float = 7.0
    line_spacing: float = 1.15
    bubble_max_width: float = 0.5  # of the panel width (text block)
    caption_max_width: float = 0.9
    padding: float = 5.0  # points between text and shape
    line_width: float = 1.3  # points
    face_radius: float = 0.1  # of the panel width: kept clear around a known head
    ink: str = "#111111"
    bubble_fill: str = "#ffffff"
    caption_fill: str = "#fff3c4"
    supersample: int = 2  # PIL drawing scale before downsampling (anti-aliasing)

    def px(self, points: float) -> float:
        return points * self.dpi / 72.0


@dataclass(frozen=True)
class Balloon:
    """A caption box (``kind="caption"``) or a speech bubble (``kind="speech"``), in page pixels.

    ``box`` bounds the shape (a rectangle for captions, an ellipse for speech); ``tail`` is the
    triangle ``(base_a, tip, base_b)`` toward the speaker (speech only); ``target`` is the point the
    tail aims at (the speaker's head, or below the bubble on the speaker's side)."""

    kind: str
    text: str
    box: Rect
    lines: tuple[TextLine, ...]
    font_size: float
    bold: bool = False
    speaker: str | None = None
    tail: tuple[tuple[float, float], ...] | None = None
    target: tuple[float, float] | None = None
    overlaps: bool = False  # True when no free place was found (too many words for the panel)

    @property
    def tip(self) -> tuple[float, float] | None:
        return self.tail[1] if self.tail else None

    def bounds(self) -> Rect:
        """Box and tail together."""
        xs = [self.box.x, self.box.right] + [p[0] for p in self.tail or ()]
        ys = [self.box.y, self.box.bottom] + [p[1] for p in self.tail or ()]
        return Rect(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


# Ellipse around a text block of w x h: semi-axes scaled so the block's corners sit inside.
_ELLIPSE_X, _ELLIPSE_Y = 1.3, 1.45


def _speaker_point(anchor: SpeakerAnchor | None, heads: dict[str, tuple[float, float]],
                   area: Rect) -> tuple[float, float | None]:
    """(x, head y or None) in page pixels for a speaker."""
    if anchor is not None and anchor.name in heads:
        hx, hy = heads[anchor.name]
        return hx, hy
    if anchor is None or anchor.slot < 0 or anchor.num_slots <= 0:
        return area.x + area.w / 2, None
    return area.x + area.w * (anchor.slot + 0.5) / anchor.num_slots, None


def plan_lettering(area: Rect, caption: str | None, dialogue: Sequence["Dialogue"],
                   anchors: Sequence[SpeakerAnchor] = (),
                   heads: dict[str, tuple[float, float]] | None = None,
                   options: LetteringOptions | None = None,
                   chain: FontChain | None = None,
                   bold_chain: FontChain | None = None) -> tuple[Balloon, ...]:
    """Place a caption and speech bubbles inside ``area`` (the panel's box on the page).

    ``heads`` maps speaker names to head positions in page pixels (already mapped through the
    image's crop); speakers without one use their slot side. Bubbles follow script order from top
    left to bottom right, never overlap each other or the caption, and avoid heads when there is
    room. Text shrinks (down to ``min_font_size``) until everything fits.
    """
    o = options or LetteringOptions()
    chain = chain or default_chain(False)
    bold_chain = bold_chain or default_chain(True)
    heads = dict(heads or {})
    by_name = {a.name.casefold(): a for a in anchors}
    inset = max(2.0, min(area.w, area.h) * 0.025)
    inner = area.inset(inset)
    pad = o.px(o.padding)
    balloons: list[Balloon] = []

    top = inner.y
    if caption and caption.strip():
        block = fit_text(caption, chain, inner.w * o.caption_max_width - 2 * pad,
                         inner.h * 0.35 - 2 * pad, o.px(o.caption_size), o.px(o.min_font_size))
        block = truncate_text(block, chain, inner.h * 0.35 - 2 * pad)
        box = Rect(inner.x, inner.y, block.width + 2 * pad, block.height + 2 * pad)
        text_box = box.inset(pad)
        balloons.append(Balloon("caption", caption, box, _centered_lines(block, text_box, chain),
                                block.size))
        top = box.bottom + inset

    if not dialogue:
        return tuple(balloons)
    face_r = o.face_radius * area.w
    faces = [Rect(hx - face_r, hy - face_r, 2 * face_r, 2.3 * face_r) for hx, hy in heads.values()]
    size = o.px(o.font_size)
    min_size = o.px(o.min_font_size)
    while True:
        # Two greedy strategies (bubbles high in the panel / just above each speaker); the plan
        # that hides fewer faces, keeps bubbles above their speakers and has shorter tails wins.
        plans = [p for p in (
            _place_bubbles(inner, top, dialogue, by_name, heads, faces, size, o, bold_chain,
                           strict=size > min_size, near_head=near)
            for near in (False, True)) if p is not None]
        if plans:
            return tuple(balloons) + min(plans, key=lambda p: _plan_cost(p, faces, inner))
        size = max(min_size, size * 0.88)


def _plan_cost(plan: tuple[Balloon, ...], faces: list[Rect], inner: Rect) -> float:
    cost = 0.0
    for b in plan:
        cost += 4.0 * max((_overlap(b.box, f) / (f.w * f.h) for f in faces), default=0.0)
        cost += 3.0 * b.overlaps
        if b.tail and b.target:
            cost += 0.8 * math.dist(b.box.center, b.tail[1]) / inner.h
            if b.box.bottom > b.target[1] and b.target[1] < inner.bottom - 1:
                cost += 0.5  # below its speaker's head
    return cost


def _place_bubbles(inner: Rect, top: float, dialogue: Sequence["Dialogue"],
                   by_name: dict[str, SpeakerAnchor], heads: dict[str, tuple[float, float]],
                   faces: list[Rect], size: float, o: LetteringOptions, chain: FontChain,
                   strict: bool, near_head: bool = False) -> tuple[Balloon, ...] | None:
    pad = o.px(o.padding)
    gap = max(2.0, size * 0.4)
    tail_room = size * 1.2
    placed: list[Balloon] = []
    boxes: list[Rect] = []
    face_r = o.face_radius * inner.w
    for line in dialogue:
        anchor = by_name.get(line.speaker.casefold())
        sx, hy = _speaker_point(anchor, heads, inner)
        block = layout_text(line.text, chain, size, inner.w * o.bubble_max_width - 2 * pad,
                            o.line_spacing)
        ew = block.width * _ELLIPSE_X + 2 * pad
        eh = block.height * _ELLIPSE_Y + 2 * pad
        if ew > inner.w or eh + tail_room > inner.bottom - top:
            if strict:
                return None
            room = max(inner.bottom - top - tail_room, size * 2)
            block = truncate_text(block, chain, (room - 2 * pad) / _ELLIPSE_Y)
            ew = min(block.width * _ELLIPSE_X + 2 * pad, inner.w)
            eh = min(block.height * _ELLIPSE_Y + 2 * pad, room)
        best: tuple[float, Rect, float] | None = None
        y_min = top
        for prev in boxes:
            y_min = max(y_min, prev.y + 0.25 * prev.h)  # later lines start lower: reading order
        y_max = inner.bottom - eh - (tail_room if hy is None else 0)
        steps_y = max(1, int((y_max - y_min) / max(4.0, inner.h / 40)))
        steps_x = 16
        for iy in range(steps_y + 1):
            y = y_min + (y_max - y_min) * iy / steps_y if y_max > y_min else y_min
            for ix in range(steps_x + 1):
                x = inner.x + (inner.w - ew) * ix / steps_x
                cand = Rect(x, y, ew, eh)
                if not inner.contains(cand.inset(-0.0), tol=0.5):
                    continue
                if any(cand.inset(-gap / 2).intersects(b.inset(-gap / 2)) for b in boxes):
                    continue
                if any(cand.y < b.bottom and cand.center[0] < b.center[0] for b in boxes):
                    continue  # beside an earlier bubble, it must be to its right
                cost = abs(cand.center[0] - sx) / inner.w
                if hy is None or not near_head:
                    cost += 1.2 * (y - y_min) / inner.h  # high in the panel
                else:  # just above the speaker's head, so the tail is short
                    cost += 1.5 * abs(cand.bottom - (hy - face_r * 1.3 - tail_room * 1.5)) / inner.h
                covered = max((_overlap(cand, f) / (f.w * f.h) for f in faces), default=0.0)
                cost += 4.0 * covered
                if hy is not None and cand.bottom > hy:
                    cost += 0.5  # bubbles sit above the speaker's head when they can
                if best is None or cost < best[0]:
                    best = (cost, cand, covered)
        overlaps = False
        if best is not None and best[2] > 0.25 and strict:
            return None  # hiding a face: try smaller text first
        if best is None:
            if strict:
                return None
            overlaps = True
            log.warning("No free room for %r's bubble at the smallest size; it may overlap.",
                        line.speaker)
            best = (0.0, Rect(max(inner.x, min(sx - ew / 2, inner.right - ew)),
                              max(inner.y, min(y_min, inner.bottom - eh)), ew, eh), 0.0)
        box = best[1]
        text_box = Rect(box.center[0] - block.width / 2, box.center[1] - block.height / 2,
                        block.width, block.height)
        target = (sx, hy) if hy is not None else (sx, min(box.bottom + tail_room * 1.6,
                                                              inner.bottom))
        tail = _tail(box, target, stop=face_r * 1.1 if hy is not None else 0.0,
                     max_len=max(tail_room * 2.5, eh * 0.9), min_len=tail_room * 0.8)
        placed.append(Balloon("speech", line.text, box, _centered_lines(block, text_box, chain),
                              block.size, bold=True, speaker=line.speaker, tail=tail,
                              target=target, overlaps=overlaps))
        boxes.append(box)
    return tuple(placed)


def _overlap(a: Rect, b: Rect) -> float:
    w = min(a.right, b.right) - max(a.x, b.x)
    h = min(a.bottom, b.bottom) - max(a.y, b.y)
    return w * h if w > 0 and h > 0 else 0.0


def _tail(box: Rect, target: tuple[float, float], stop: float, max_len: float,
          min_len: float) -> tuple[tuple[float, float], ...]:
    """A triangle from the ellipse's edge toward ``target``: base on the ellipse, tip short of the
    target by ``stop`` (a head's radius), its length clamped to ``[min_len, max_len]``."""
    cx, cy = box.center
    a, b = box.w / 2, box.h / 2
    dx, dy = target[0] - cx, target[1] - cy
    if abs(dx) < 1e-6 and abs(dy) < 1e-6:
        dy = 1.0
    theta = math.atan2(dy / b, dx / a)  # ellipse parameter of the direction to the target

    def edge(t: float) -> tuple[float, float]:
        return (cx + a * math.cos(t), cy + b * math.sin(t))

    ex, ey = edge(theta)
    dist = math.hypot(target[0] - ex, target[1] - ey)
    length = min(max(dist - stop, min_len), max_len)
    ux, uy = (target[0] - ex) / (dist or 1.0), (target[1] - ey) / (dist or 1.0)
    if dist < 1e-6:
        ux, uy = math.cos(theta), math.sin(theta)
    # Base half-width ~ 11% of the ellipse's circumference angle, pulled slightly inside the shape.
    spread = 0.22
    base_a, base_b = edge(theta - spread), edge(theta + spread)
    inward = 0.85
    base_a = (cx + (base_a[0] - cx) * inward, cy + (base_a[1] - cy) * inward)
    base_b = (cx + (base_b[0] - cx) * inward, cy + (base_b[1] - cy) * inward)
    tip = (ex + ux * length, ey + uy * length)
    return (base_a, tip, base_b)


# ---------------------------------------------------------------------------------------------
# Anchors from the story


def head_from_pose(pose: "Pose", slot: int) -> tuple[float, float] | None:
    """A person's head position (0..1 in the pose frame): the nose, else the eyes/ears' mean."""
    if not 0 <= slot < len(pose.people):
        return None
    pts = pose.people[slot].points
    if pts and pts[0] is not None:
        return pts[0]
    near = [p for p in (pts[14:18] if len(pts) >= 18 else ()) if p is not None]
    if near:
        return (sum(p[0] for p in near) / len(near), sum(p[1] for p in near) / len(near))
    return None


def anchors_for_panel(panel: "Panel", pose: "Pose | None" = None) -> tuple[SpeakerAnchor, ...]:
    """One anchor per speaker of ``panel``'s dialogue: slot from the panel's characters (slot order),
    head from the pose when it has that person; off-panel voices get ``slot=-1``."""
    slots = {name.casefold(): i for i, name in enumerate(panel.characters)}
    out: dict[str, SpeakerAnchor] = {}
    for line in panel.dialogue:
        key = line.speaker.casefold()
        if key in out:
            continue
        slot = slots.get(key, -1)
        head = head_from_pose(pose, slot) if (pose is not None and slot >= 0) else None
        out[key] = SpeakerAnchor(line.speaker, head, slot, max(1, len(panel.characters)))
    return tuple(out.values())


# ---------------------------------------------------------------------------------------------
# Drawing (PIL)


def draw_text_line(draw, line: TextLine, chain: FontChain, size: float, fill: str,
                   scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> None:
    """Draw one line run by run, each with its own font (per-character fallback)."""
    x = (line.x - offset[0]) * scale
    y = (line.baseline - offset[1]) * scale
    for index, run in chain.runs(line.text):
        font = chain.pil_font(index, size * scale)
        draw.text((x, y), run, font=font, fill=fill, anchor="ls")
        x += font.getlength(run)


def draw_balloons(page: "Image.Image", balloons: Sequence[Balloon],
                  options: LetteringOptions | None = None,
                  chain: FontChain | None = None, bold_chain: FontChain | None = None) -> None:
    """Draw balloons onto ``page`` in place, each at ``supersample``x and downsampled (anti-aliased)."""
    from PIL import Image, ImageDraw, ImageFilter

    o = options or LetteringOptions()
    chain = chain or default_chain(False)
    bold_chain = bold_chain or default_chain(True)
    s = max(1, int(o.supersample))
    lw = o.px(o.line_width)
    for balloon in balloons:
        bounds = balloon.bounds().inset(-(lw + 2))
        left, top = math.floor(bounds.x), math.floor(bounds.y)
        right, bottom = math.ceil(bounds.right), math.ceil(bounds.bottom)
        w, h = right - left, bottom - top
        if w <= 0 or h <= 0:
            continue

        def sc(p: tuple[float, float]) -> tuple[float, float]:
            return ((p[0] - left) * s, (p[1] - top) * s)

        shape = Image.new("L", (w * s, h * s), 0)
        d = ImageDraw.Draw(shape)
        box = [sc((balloon.box.x, balloon.box.y)), sc((balloon.box.right, balloon.box.bottom))]
        if balloon.kind == "caption":
            d.rectangle(box, fill=255)
        else:
            d.ellipse(box, fill=255)
        if balloon.tail:
            d.polygon([sc(p) for p in balloon.tail], fill=255)
        k = max(3, int(round(lw * s)) * 2 + 1)
        outline = shape.filter(ImageFilter.MaxFilter(k))
        layer = Image.new("RGBA", shape.size, (0, 0, 0, 0))
        layer.paste(Image.new("RGBA", shape.size, o.ink), (0, 0), outline)
        fill = o.caption_fill if balloon.kind == "caption" else o.bubble_fill
        layer.paste(Image.new("RGBA", shape.size, fill), (0, 0), shape)
        text_draw = ImageDraw.Draw(layer)
        c = bold_chain if balloon.bold else chain
        for line in balloon.lines:
            draw_text_line(text_draw, line, c, balloon.font_size, o.ink, scale=s, offset=(left, top))
        small = layer.resize((w, h), Image.Resampling.LANCZOS) if s > 1 else layer
        region = page.crop((left, top, right, bottom)).convert("RGBA")
        region.alpha_composite(small)
        page.paste(region.convert(page.mode), (left, top))


def draw_title(page: "Image.Image", box: Rect, title: str, options: LetteringOptions | None = None,
               size: float | None = None, chain: FontChain | None = None) -> TextLine | None:
    """Draw a centred bold title in ``box``; returns the line drawn (for the PDF's text layer)."""
    from PIL import Image, ImageDraw

    o = options or LetteringOptions()
    chain = chain or default_chain(True)
    line = title_line(box, title, size or box.h / 1.9, chain)
    if line is None:
        return None
    s = max(1, int(o.supersample))
    left, top, right, bottom = box.rounded()
    layer = Image.new("RGBA", ((right - left) * s, (bottom - top) * s), (0, 0, 0, 0))
    draw_text_line(ImageDraw.Draw(layer), line[0], chain, line[1], o.ink, scale=s,
                   offset=(left, top))
    small = layer.resize((right - left, bottom - top), Image.Resampling.LANCZOS)
    region = page.crop((left, top, right, bottom)).convert("RGBA")
    region.alpha_composite(small)
    page.paste(region.convert(page.mode), (left, top))
    return line[0]


def title_line(box: Rect, title: str, size: float, chain: FontChain) -> tuple[TextLine, float] | None:
    """The title as one centred line in ``box`` at ``size`` or smaller so that it fits."""
    text = " ".join(title.split())
    if not text:
        return None
    while chain.measure(text, size) > box.w and size > 6:
        size *= 0.92
    w = chain.measure(text, size)
    baseline = box.y + box.h / 2 + size * 0.35
    return TextLine(text, box.x + (box.w - w) / 2, baseline, w), size
