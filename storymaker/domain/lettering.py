"""Comic lettering: fonts with per-character fallback, text wrapping (with hyphenation) and fitting,
and drawing captions and speech bubbles anti-aliased with PIL.

Where balloons go is ``domain/bubbles.py`` (``plan_lettering``): it returns :class:`Balloon` objects
(shape box, tail triangle, text lines with baselines) in page pixels, which the PNG path draws with
:func:`draw_balloons` and the PDF path (``services/export/pdf.py``) draws as vector shapes and real text.
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

log = logging.getLogger(__name__)

FONT_DIR = Path(__file__).resolve().parents[2] / "assets" / "fonts"
COMIC_REGULAR = "ComicNeue-Regular.ttf"
COMIC_BOLD = "ComicNeue-Bold.ttf"
FALLBACK_FONTS = ("DejaVuSans.ttf", "DroidSansFallbackFull.ttf")
# Text and balloons are drawn at this scale, then downsampled (anti-aliasing); text is measured at
# it too (FontChain.measure), so a line drawn is as wide as the layout measured it.
SUPERSAMPLE = 2

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
        self._widths: dict[tuple[str, float], float] = {}
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
        """Advance width of ``text`` in pixels at ``size`` pixels per em, as it is drawn: at
        :data:`SUPERSAMPLE` times the size, divided back (at a comic preview's 4-6 pixel sizes,
        hinting makes advances anything but proportional to the size). Memoised: wrapping and
        placing bubbles measure the same words many times."""
        key = (text, size)
        width = self._widths.get(key)
        if width is None:
            if len(self._widths) > 50_000:
                self._widths.clear()
            drawn = size * SUPERSAMPLE
            width = sum(self.pil_font(i, drawn).getlength(run) for i, run in self.runs(text))
            width /= SUPERSAMPLE
            self._widths[key] = width
        return width

    def ascent(self, size: float) -> float:
        return self.pil_font(0, size * SUPERSAMPLE).getmetrics()[0] / SUPERSAMPLE


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


HYPHEN = "-"
_DASHES = "-\u2010\u2011\u2012\u2013\u2014/"  # a word may break after these with no mark added
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_GREEK = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")


@functools.lru_cache(maxsize=8)
def _hyphenator(lang: str):
    """pyphen's dictionary for ``lang``, or None when pyphen or the language is missing."""
    try:
        import pyphen
    except ImportError:  # pragma: no cover - pyphen is in requirements.txt
        log.info("pyphen is not installed: long words break with a plain hyphen mark.")
        return None
    found = pyphen.language_fallback(lang)
    return pyphen.Pyphen(lang=found) if found else None


def hyphenation_points(word: str, lang: str = "en_US") -> list[int]:
    """Offsets where ``word`` may break: after a dash or slash (no mark needed) and at pyphen's
    syllable points (a hyphen is added). Cyrillic and Greek words use Russian and Greek patterns."""
    points = {i + 1 for i, ch in enumerate(word[:-1]) if ch in _DASHES}
    lang = "ru_RU" if _CYRILLIC.search(word) else "el_GR" if _GREEK.search(word) else lang
    for m in re.finditer(r"\w+", word):
        core = m.group()
        if len(core) < 4 or core.isdigit():
            continue
        dic = _hyphenator(lang)
        if dic is not None:
            points.update(m.start() + p for p in dic.positions(core))
    return sorted(p for p in points if 0 < p < len(word))


def _split_word(word: str, room: float, chain: FontChain, size: float, lang: str,
                allow_mark: bool) -> tuple[str, str] | None:
    """The longest head of ``word`` (ending with a hyphen where one is needed) no wider than
    ``room``, and the rest. Syllable points first; with ``allow_mark`` a marked break between
    letters when no syllable point fits. None when nothing fits."""
    for p in reversed(hyphenation_points(word, lang)):
        head = word[:p] if word[p - 1] in _DASHES else word[:p] + HYPHEN
        if chain.measure(head, size) <= room:
            return head, word[p:]
    if not allow_mark:
        return None
    for p in range(len(word) - 1, 0, -1):
        head = word[:p] if word[p - 1] in _DASHES else word[:p] + HYPHEN
        if chain.measure(head, size) <= room:
            return head, word[p:]
    return word[:1], word[1:]  # not even one letter and a hyphen fit: a letter per line


def wrap_text(text: str, chain: FontChain, size: float, max_width: float,
              lang: str = "en_US") -> list[str]:
    """Greedy word wrap to ``max_width`` pixels; explicit newlines are kept. CJK text breaks
    between characters. A word wider than a line is hyphenated (pyphen's patterns for ``lang``;
    Russian and Greek patterns for those scripts), else broken between letters with a hyphen."""
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
        if chain.measure(line + token, size) <= max_width:
            line += token
            continue
        if chain.measure(token, size) <= max_width:  # fits a line of its own
            if line.strip():
                lines.append(line.rstrip())
            line = token
            continue
        word = token
        while chain.measure(line + word, size) > max_width:
            room = max_width - chain.measure(line, size)
            split = _split_word(word, room, chain, size, lang, allow_mark=not line.strip())
            if split is None:  # nothing fits after the words already on this line
                lines.append(line.rstrip())
                line = ""
                continue
            lines.append(line + split[0])
            line, word = "", split[1]
        line += word
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
                line_spacing: float = 1.15, lang: str = "en_US") -> TextBlock:
    lines = wrap_text(text, chain, size, max_width, lang)
    width = max((chain.measure(line, size) for line in lines), default=0.0)
    lh = size * line_spacing
    return TextBlock(tuple(lines), size, width, lh * (len(lines) - 1) + size * 1.1, lh)


def fit_text(text: str, chain: FontChain, max_width: float, max_height: float,
             size: float, min_size: float, lang: str = "en_US") -> TextBlock:
    """The largest size (from ``size`` down to ``min_size``) at which the wrapped text fits the box;
    at ``min_size`` it is returned even if it does not fit."""
    s = size
    while True:
        block = layout_text(text, chain, s, max_width, lang=lang)
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


def centered_lines(block: TextBlock, box: Rect, chain: FontChain) -> tuple[TextLine, ...]:
    ascent = block.size * 0.95
    top = box.y + (box.h - block.height) / 2
    out = []
    for k, text in enumerate(block.lines):
        w = chain.measure(text, block.size)
        out.append(TextLine(text, box.x + (box.w - w) / 2, top + ascent + k * block.line_height, w))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Balloons (placed by domain/bubbles.py)


@dataclass(frozen=True)
class LetteringOptions:
    """Sizes in points (converted with ``dpi``), fractions of the panel width, and colours."""

    dpi: int = 150
    font_size: float = 12.0  # speech, largest tried
    caption_size: float = 11.0
    min_font_size: float = 7.0
    line_spacing: float = 1.15
    bubble_max_width: float = 0.72  # of the panel width: the widest text block a bubble tries
    caption_max_width: float = 0.9
    padding: float = 5.0  # points between text and shape
    line_width: float = 1.3  # points
    face_radius: float = 0.1  # of the panel width: a head's size when only its centre is known
    ink: str = "#111111"
    bubble_fill: str = "#ffffff"
    caption_fill: str = "#fff3c4"
    language: str = "en_US"  # hyphenation patterns for Latin-script words (pyphen's names)

    def px(self, points: float) -> float:
        return points * self.dpi / 72.0


@dataclass(frozen=True)
class Balloon:
    """A caption box (``kind="caption"``) or a speech bubble (``kind="speech"``), in page pixels.

    ``box`` bounds the shape (a rectangle for captions, an ellipse for speech); ``tail`` is the
    triangle ``(base_a, tip, base_b)`` toward the speaker (speech only); ``target`` is the point the
    tail aims at (the speaker's head, or below the bubble on the speaker's side). A line of
    dialogue with no free room for a bubble becomes a caption with its ``speaker`` set."""

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
    """Draw balloons onto ``page`` in place, each at :data:`SUPERSAMPLE` x and downsampled (anti-aliased)."""
    from PIL import Image, ImageDraw, ImageFilter

    o = options or LetteringOptions()
    chain = chain or default_chain(False)
    bold_chain = bold_chain or default_chain(True)
    s = SUPERSAMPLE
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
    s = SUPERSAMPLE
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
