"""Comic page geometry: where each panel goes, for strips, grids, printed pages and webtoon scrolls.

Pure geometry (no images, no PIL): every length is in output pixels; ``LayoutOptions.dpi`` converts
typographic points (margins, gutters, title size) to pixels and gives printed pages their size.
``compute_layout(aspects, options)`` returns one :class:`PageLayout` per output image/PDF page;
``place_image`` says how an image of a given aspect fills its slot (``cover`` crops, ``fit``
letterboxes; neither distorts; a ``keep`` box, the panel's heads, is never cropped).

Printed pages take the panels' aspects: rows are as tall as their panels make them at the full
width, a page holds the rows that fit, and a slot differs from its image's aspect by at most
``MAX_CROP`` of the picture's area (so ``cover`` crops at most that). What is left over becomes
narrower centred rows (a page too full) or a block centred on the page (a page not full).
Grids keep equal cells of the shape most of their pictures share; a picture fills its cell when
that crops at most ``MAX_CROP`` of it, else it is shown whole, centred in its cell. Strips and
scrolls give every slot its picture's shape.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from ..errors import InvalidInputError

KINDS = ("strip", "grid", "pages", "scroll")
#: Pixel sizes of the kinds that are not paper, when the options leave them 0 (at any dpi).
DEFAULT_WIDTH = {"grid": 1600, "scroll": 800}
DEFAULT_PANEL_HEIGHT = 480  # strip
FITS = ("cover", "fit")
ORIENTATIONS = ("portrait", "landscape")
# Paper sizes in inches (width, height), portrait.
PAGE_SIZES_IN = {"A4": (210 / 25.4, 297 / 25.4), "Letter": (8.5, 11.0)}

# The largest fraction of a picture's area a printed page may crop (``fit="cover"``): rows may be
# squeezed (slots a little wider than their images) or stretched (a little taller) by this much
# before space is left instead (narrower rows, or a margin above and below the block).
MAX_CROP = 0.05
MAX_SQUEEZE = 1.0 - MAX_CROP
MAX_STRETCH = 1.0 / (1.0 - MAX_CROP)
# Printed pages try every split of a page's panels into rows when a page holds at most this many
# panels (balanced splits only beyond: the number of splits doubles with each panel).
ALL_SPLITS_UP_TO = 10


@dataclass(frozen=True)
class Rect:
    """An axis-aligned box: ``x``, ``y`` top-left; ``w``, ``h`` size (pixels, floats)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    @property
    def aspect(self) -> float:
        return self.w / self.h if self.h else 0.0

    def intersects(self, other: "Rect", tol: float = 1e-6) -> bool:
        """True when the interiors overlap (touching edges do not count)."""
        return (
            self.x < other.right - tol
            and other.x < self.right - tol
            and self.y < other.bottom - tol
            and other.y < self.bottom - tol
        )

    def contains(self, other: "Rect", tol: float = 1e-6) -> bool:
        return (
            other.x >= self.x - tol
            and other.y >= self.y - tol
            and other.right <= self.right + tol
            and other.bottom <= self.bottom + tol
        )

    def inset(self, d: float) -> "Rect":
        return Rect(self.x + d, self.y + d, max(0.0, self.w - 2 * d), max(0.0, self.h - 2 * d))

    def translate(self, dx: float, dy: float) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.w, self.h)

    def rounded(self) -> tuple[int, int, int, int]:
        """Integer ``(left, top, right, bottom)`` pixel box."""
        return (round(self.x), round(self.y), round(self.right), round(self.bottom))


@dataclass(frozen=True)
class LayoutOptions:
    """How panels are arranged. Lengths in points (1/72 inch) become pixels through ``dpi``."""

    kind: str = "pages"  # "strip" (one row), "grid" (N columns), "pages" (paper), "scroll" (webtoon)
    columns: int = 2  # grid: columns; pages: most panels in one row
    rows_per_page: int = 0  # pages: most rows on one page; 0 = as many as fit the panels' aspects
    page_size: str = "A4"  # pages: "A4" or "Letter"
    orientation: str = "portrait"  # pages: "portrait" or "landscape"
    dpi: int = 150  # output pixels per inch (also sets the PDF page size for every kind)
    width: int = 0  # grid and scroll: image width in pixels (0: DEFAULT_WIDTH)
    panel_height: int = 0  # strip: row height in pixels (0: DEFAULT_PANEL_HEIGHT)
    margin: float = 24.0  # points around the content
    gutter: float = 10.0  # points between panels
    border: float = 2.0  # panel border line width in points (0 = none)
    title: str = ""  # drawn above the first page's panels when not empty
    title_size: float = 26.0  # points
    fit: str = "cover"  # "cover" (fill the slot, crop the overflow) or "fit" (whole image, letterbox)
    background: str = "white"
    jpeg_quality: int = 85  # PDF image compression (1..95)

    def __post_init__(self) -> None:
        _choice("kind", self.kind, KINDS)
        _choice("fit", self.fit, FITS)
        _choice("orientation", self.orientation, ORIENTATIONS)
        _choice("page_size", self.page_size, tuple(PAGE_SIZES_IN))
        if not 1 <= int(self.columns) <= 12:
            raise InvalidInputError(f"columns={self.columns} is not usable: use 1 to 12 columns.")
        if not 36 <= int(self.dpi) <= 1200:
            raise InvalidInputError(f"dpi={self.dpi} is not usable: use 36 to 1200 (150 is typical).")
        if self.rows_per_page < 0 or self.width < 0 or self.panel_height < 0:
            raise InvalidInputError("rows_per_page, width and panel_height must be 0 (auto) or positive.")
        if min(self.margin, self.gutter, self.border, self.title_size) < 0:
            raise InvalidInputError("margin, gutter, border and title_size must not be negative.")
        if not 1 <= int(self.jpeg_quality) <= 95:
            raise InvalidInputError(f"jpeg_quality={self.jpeg_quality}: use 1 to 95 (85 is typical).")

    def px(self, points: float) -> float:
        """Points to output pixels."""
        return points * self.dpi / 72.0

    def at_dpi(self, dpi: int) -> "LayoutOptions":
        """The same comic at ``dpi``: the sizes in pixels (grid and scroll width, strip height)
        scale with it as the lengths in points do, so that a preview is the export, smaller (a
        grid previewed at 60 dpi kept its 1600 pixels and got lettering 2.5 times too small)."""
        if dpi == self.dpi:
            return self
        k = dpi / self.dpi
        width = round((self.width or DEFAULT_WIDTH[self.kind]) * k) if self.kind in DEFAULT_WIDTH else self.width
        height = round((self.panel_height or DEFAULT_PANEL_HEIGHT) * k) if self.kind == "strip" else self.panel_height
        return replace(self, dpi=dpi, width=width, panel_height=height)

    @property
    def page_pixels(self) -> tuple[int, int]:
        """Paper size in pixels for ``kind="pages"`` (orientation applied)."""
        w_in, h_in = PAGE_SIZES_IN[self.page_size]
        if self.orientation == "landscape":
            w_in, h_in = h_in, w_in
        return (round(w_in * self.dpi), round(h_in * self.dpi))


@dataclass(frozen=True)
class PanelSlot:
    """Where panel number ``panel`` (index into the input list) goes on its page."""

    panel: int
    rect: Rect


@dataclass(frozen=True)
class PageLayout:
    """One output image (or PDF page): its pixel size, the panel slots, the title box if any."""

    number: int  # 1-based
    width: int
    height: int
    slots: tuple[PanelSlot, ...]
    title_box: Rect | None = None

    @property
    def content(self) -> Rect:
        return Rect(0, 0, self.width, self.height)


@dataclass(frozen=True)
class Placement:
    """How an image fills a slot: ``crop`` is (left, top, right, bottom) in 0..1 image coordinates,
    ``dest`` the box it is drawn into (equal to the slot for ``cover``, centred inside for ``fit``)."""

    crop: tuple[float, float, float, float]
    dest: Rect

    def to_dest(self, u: float, v: float) -> tuple[float, float]:
        """Map a normalised image point (0..1) to output pixels (may fall outside ``dest`` if cropped)."""
        l, t, r, b = self.crop
        return (
            self.dest.x + (u - l) / (r - l) * self.dest.w,
            self.dest.y + (v - t) / (b - t) * self.dest.h,
        )


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidInputError(f"{name}={value!r} is not known: use one of {', '.join(allowed)}.")


def balanced_counts(n: int, groups: int) -> list[int]:
    """Split ``n`` items into ``groups`` runs whose sizes differ by at most one (larger first)."""
    groups = max(1, min(groups, n)) if n else 1
    base, extra = divmod(n, groups)
    return [base + (1 if i < extra else 0) for i in range(groups)] if n else []


def union_box(boxes) -> tuple[float, float, float, float] | None:
    """The smallest ``(x0, y0, x1, y1)`` box holding all ``boxes`` (None when there are none)."""
    boxes = list(boxes)
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _window(frac: float, focus: float, lo: float | None, hi: float | None) -> float | None:
    """Start of a window of length ``frac`` in 0..1 centred on ``focus``, moved to hold
    ``lo..hi`` when given; None when ``lo..hi`` is longer than the window."""
    start = focus - frac / 2
    if lo is not None and hi is not None:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
        if hi - lo > frac + 1e-9:
            return None
        start = min(max(start, hi - frac), lo)
    return min(max(start, 0.0), 1.0 - frac)


def place_image(aspect: float, slot: Rect, fit: str = "cover",
                focus: tuple[float, float] = (0.5, 0.4),
                keep: tuple[float, float, float, float] | None = None) -> Placement:
    """Fit an image of aspect ``aspect`` (w/h) into ``slot`` without distortion.

    ``cover`` fills the slot and crops the overflow around ``focus`` (a point of the image kept in
    view: slightly above centre by default, where faces usually are); ``fit`` shows the whole image
    centred in the slot. ``keep`` (``x0, y0, x1, y1`` in 0..1 image coordinates: the panel's heads)
    stays whole in view: the crop moves to hold it, and when the slot cannot show all of it
    cropped, the image is letterboxed (``fit``) instead of cutting a face.
    """
    _choice("fit", fit, FITS)
    if aspect <= 0 or slot.w <= 0 or slot.h <= 0:
        raise InvalidInputError("An image and its slot must have a positive size.")
    slot_aspect = slot.w / slot.h
    if fit == "cover":
        lo_x, lo_y, hi_x, hi_y = keep if keep is not None else (None, None, None, None)
        if aspect >= slot_aspect:  # image wider: crop left/right
            frac = slot_aspect / aspect
            left = _window(frac, focus[0], lo_x, hi_x)
            if left is not None:
                return Placement((left, 0.0, left + frac, 1.0), slot)
        else:  # image taller: crop top/bottom
            frac = aspect / slot_aspect
            top = _window(frac, focus[1], lo_y, hi_y)
            if top is not None:
                return Placement((0.0, top, 1.0, top + frac), slot)
    # "fit", or a ``keep`` box that cropping would cut: the whole image, centred.
    if aspect >= slot_aspect:
        w, h = slot.w, slot.w / aspect
    else:
        w, h = slot.h * aspect, slot.h
    return Placement((0.0, 0.0, 1.0, 1.0),
                     Rect(slot.x + (slot.w - w) / 2, slot.y + (slot.h - h) / 2, w, h))


def compute_layout(panel_aspects: list[float] | tuple[float, ...],
                   options: LayoutOptions | None = None) -> list[PageLayout]:
    """Arrange panels of the given aspects (width / height) into pages. Pure geometry."""
    options = options or LayoutOptions()
    aspects = [float(a) for a in panel_aspects]
    if not aspects:
        raise InvalidInputError("There are no panels to lay out: render at least one panel first.")
    if any(not math.isfinite(a) or a <= 0 for a in aspects):
        raise InvalidInputError("Every panel needs a positive width and height.")
    builder = {"strip": _strip, "grid": _grid, "pages": _pages, "scroll": _scroll}[options.kind]
    return builder(aspects, options)


def _title_height(options: LayoutOptions) -> float:
    return options.px(options.title_size) * 1.9 if options.title.strip() else 0.0


def _title_box(options: LayoutOptions, width: float, margin: float) -> Rect | None:
    th = _title_height(options)
    return Rect(margin, margin, width - 2 * margin, th) if th else None


def _justified_row(aspects: list[float], x: float, y: float, width: float, gutter: float,
                   height: float | None = None) -> list[Rect]:
    """Rects for one row filling ``width``; heights from the aspects unless ``height`` is given."""
    free = width - gutter * (len(aspects) - 1)
    natural_h = free / sum(aspects)
    h = natural_h if height is None else height
    rects, cx = [], x
    for a in aspects:
        w = free * a / sum(aspects)
        rects.append(Rect(cx, y, w, h))
        cx += w + gutter
    return rects


def _strip(aspects: list[float], o: LayoutOptions) -> list[PageLayout]:
    m, g = o.px(o.margin), o.px(o.gutter)
    h = float(o.panel_height or DEFAULT_PANEL_HEIGHT)
    content_w = sum(a * h for a in aspects) + g * (len(aspects) - 1)
    width = math.ceil(content_w + 2 * m)
    title = _title_box(o, width, m)
    top = m + (title.h + g if title else 0.0)
    x, slots = m, []
    for i, a in enumerate(aspects):
        slots.append(PanelSlot(i, Rect(x, top, a * h, h)))
        x += a * h + g
    return [PageLayout(1, width, math.ceil(top + h + m), tuple(slots), title)]


def _scroll(aspects: list[float], o: LayoutOptions) -> list[PageLayout]:
    m = o.px(o.margin)
    g = o.px(o.gutter) * 3  # webtoons breathe between panels
    width = int(o.width or DEFAULT_WIDTH["scroll"])
    cw = width - 2 * m
    if cw <= 0:
        raise InvalidInputError(f"width={width} leaves no room inside the margins: make it wider.")
    title = _title_box(o, width, m)
    y = m + (title.h + g if title else 0.0)
    slots = []
    for i, a in enumerate(aspects):
        slots.append(PanelSlot(i, Rect(m, y, cw, cw / a)))
        y += cw / a + g
    return [PageLayout(1, width, math.ceil(y - g + m), tuple(slots), title)]


def _shape_bounds(fit: str) -> tuple[float, float]:
    """How far a slot's aspect may differ from its picture's (``slot = picture * factor``):
    within ``MAX_CROP`` of the area for ``cover``; exactly for ``fit`` (which would letterbox)."""
    return (MAX_SQUEEZE, MAX_STRETCH) if fit == "cover" else (1.0, 1.0)


def slot_in_cell(aspect: float, cell: Rect, squeeze: float, stretch: float) -> Rect:
    """Where a picture of ``aspect`` goes in a grid ``cell``: the whole cell when the picture
    covers it cropping little (the cell's aspect between ``aspect * squeeze`` and
    ``aspect * stretch``), else a box of the picture's own shape, as large as fits, centred (blank
    beside it or above and below): a picture is cropped a little to fill its cell, or not at all."""
    if aspect * squeeze <= cell.aspect <= aspect * stretch:
        return cell
    w, h = (cell.w, cell.w / aspect) if aspect >= cell.aspect else (cell.h * aspect, cell.h)
    return Rect(cell.x + (cell.w - w) / 2, cell.y + (cell.h - h) / 2, w, h)


def _grid_cell_height(aspects: list[float], cw: float, squeeze: float, stretch: float) -> float:
    """The height of a grid's cells: the one that leaves the least blank in the cells plus picture
    cropped (a blank pixel and a lost one count the same), the least cropped among equals. The
    best is a height at which some picture fills its cell exactly or at the crop limit, so only
    those are tried."""
    def score(h: float) -> tuple[float, float]:
        cell = Rect(0.0, 0.0, cw, h)
        covered = crop = 0.0
        for a in aspects:
            box = slot_in_cell(a, cell, squeeze, stretch)
            covered += box.w * box.h / (cw * h)
            crop += 1.0 - min(box.aspect / a, a / box.aspect)
        return (round(covered - crop, 9), -crop)

    return max((cw / (a * f) for a in aspects for f in (1.0, squeeze, stretch)), key=score)


def _grid(aspects: list[float], o: LayoutOptions) -> list[PageLayout]:
    """Equal cells in ``columns`` columns, rows of balanced sizes (short ones centred). The cell's
    shape suits most pictures (``_grid_cell_height``); a picture fills its cell when that crops at
    most ``MAX_CROP`` of its area (none with ``fit``), else it is shown whole, centred in the cell
    (the limit of printed pages, ``_shape_bounds``)."""
    m, g = o.px(o.margin), o.px(o.gutter)
    width = int(o.width or DEFAULT_WIDTH["grid"])
    cols = min(o.columns, len(aspects))
    cw = (width - 2 * m - g * (cols - 1)) / cols
    if cw <= 0:
        raise InvalidInputError(f"width={width} is too narrow for {cols} columns: make it wider.")
    squeeze, stretch = _shape_bounds(o.fit)
    ch = _grid_cell_height(aspects, cw, squeeze, stretch)
    title = _title_box(o, width, m)
    y = m + (title.h + g if title else 0.0)
    slots, start = [], 0
    for count in balanced_counts(len(aspects), math.ceil(len(aspects) / cols)):
        row_w = count * cw + (count - 1) * g
        x = (width - row_w) / 2  # short rows are centred, so the grid stays symmetric
        for i in range(start, start + count):
            cell = Rect(x, y, cw, ch)
            slots.append(PanelSlot(i, slot_in_cell(aspects[i], cell, squeeze, stretch)))
            x += cw + g
        start += count
        y += ch + g
    return [PageLayout(1, width, math.ceil(y - g + m), tuple(slots), title)]


@functools.lru_cache(maxsize=256)
def _page_rows(k: int, columns: int, max_rows: int) -> tuple[tuple[int, ...], ...]:
    """Candidate row splits of ``k`` panels (at most ``columns`` a row, ``max_rows`` rows): every
    split for a few panels, so that a wide panel may take a row of its own; beyond
    ``ALL_SPLITS_UP_TO``, balanced sizes (larger rows first, and larger rows last)."""
    if k <= ALL_SPLITS_UP_TO:
        out: list[tuple[int, ...]] = []

        def split(left: int, done: tuple[int, ...]) -> None:
            if left == 0:
                out.append(done)
                return
            if len(done) == max_rows:
                return
            for c in range(min(columns, left), 0, -1):  # fuller rows first on equal costs
                split(left - c, done + (c,))

        split(k, ())
        return tuple(out)
    options: list[tuple[int, ...]] = []
    for r in range(math.ceil(k / columns), min(k, max_rows) + 1):
        counts = tuple(balanced_counts(k, r))
        options.append(counts)
        if counts[::-1] != counts:
            options.append(counts[::-1])
    return tuple(options)


def _page_cost(natural: float, avail: float, last: bool, squeeze: float, stretch: float) -> float:
    """How far a page is from looking deliberate: cropped (rows squeezed or stretched within the
    limits), shrunk (too full: narrower rows, white bands at the sides) or left part empty."""
    s = avail / natural
    if s < squeeze:
        return (1 / s - 1) * 6
    if s <= stretch:
        return abs(math.log(s)) * 3
    return (1 - 1 / s) * (1.5 if last else 4)


def _pages(aspects: list[float], o: LayoutOptions) -> list[PageLayout]:
    """Printed pages. Panels keep their order; a dynamic programme chooses how many panels go on
    each page and how each page splits into rows, minimising cropping, shrinking, empty space and
    lone panels, plus a small cost per page. Every slot keeps its image's aspect but for a row
    squeezed or stretched within ``MAX_CROP``; a page too full gets narrower rows (centred, their
    edges aligned), a page not full a margin above and below its block (the last of several pages
    keeps its rows at the top, where reading continues)."""
    width, height = o.page_pixels
    m, g = o.px(o.margin), o.px(o.gutter)
    cw = width - 2 * m
    title_h = _title_height(o)
    if cw <= 0 or height - 2 * m - title_h - g <= 0:
        raise InvalidInputError("The margins leave no room on the page: make them smaller.")
    n = len(aspects)
    max_rows = o.rows_per_page or 6
    # "fit" letterboxes any slot whose aspect differs from its image's, so rows are never squeezed
    # or stretched there.
    squeeze, stretch = _shape_bounds(o.fit)
    max_k = o.columns * max_rows

    # A row of fewer panels than the others would be taller than them (it is justified to the full
    # width); it is capped at the height of a full row of typical panels and centred instead.
    typical = sorted(aspects)[n // 2]
    cols = min(o.columns, n)

    def row_height(ids: range, w: float = cw) -> float:
        cap = 1.1 * (w - g * (cols - 1)) / (cols * typical)
        return min(cap, (w - g * (len(ids) - 1)) / sum(aspects[i] for i in ids))

    def avail(first: bool) -> float:
        return height - 2 * m - (title_h + g if first and title_h else 0.0)

    def best_page(i: int, j: int) -> tuple[float, tuple[int, ...]]:
        best: tuple[float, tuple[int, ...]] = (math.inf, ())
        for counts in _page_rows(j - i, o.columns, max_rows):
            start, total = i, 0.0
            lone, short = 0, 0.0
            for c in counts:
                ids = range(start, start + c)
                h = row_height(ids)
                total += h
                # A row narrower than the page (capped) breaks the block's aligned edges.
                short += 1 - (h * sum(aspects[k] for k in ids) + g * (c - 1)) / cw
                if c == 1 and o.columns > 1 and aspects[start] < 1.3:
                    lone += 1  # a narrow panel alone in a row can look like a leftover
                start += c
            space = avail(i == 0) - g * (len(counts) - 1)
            if space <= 0:
                continue
            fill = (j - i) / (len(counts) * cols)  # half-empty rows look unplanned
            # (and a page of one panel in a comic of several, a leftover page)
            cost = (_page_cost(total, space, j == n, squeeze, stretch) + 0.3 * lone
                    + 0.4 * (1 - fill) + 0.6 * short + (0.5 if j - i == 1 < n else 0.0))
            if cost < best[0]:
                best = (cost, counts)
        return best

    PAGE_COST = 0.35
    best: list[tuple[float, int, tuple[int, ...]]] = [(0.0, 0, ())] + [(math.inf, 0, ())] * n
    for j in range(1, n + 1):
        for i in range(max(0, j - max_k), j):
            if best[i][0] == math.inf:
                continue
            cost, counts = best_page(i, j)
            total = best[i][0] + cost + PAGE_COST
            if total < best[j][0]:
                best[j] = (total, i, counts)
    plan: list[tuple[int, tuple[int, ...]]] = []
    j = n
    while j > 0:
        _, i, counts = best[j]
        plan.append((i, counts))
        j = i
    plan.reverse()

    layouts = []
    for pi, (i, counts) in enumerate(plan):
        title = _title_box(o, width, m) if pi == 0 else None
        top = m + (title.h + g if title else 0.0)
        rows, start = [], i
        for c in counts:
            rows.append(range(start, start + c))
            start += c
        space = avail(pi == 0) - g * (len(rows) - 1)
        block_w, h_scale = cw, 1.0
        natural = sum(row_height(r) for r in rows)
        if squeeze <= space / natural <= stretch:
            h_scale = space / natural  # fills the page: slots crop at most MAX_CROP
        elif space < natural:  # too full: the content width whose rows fill the height exactly
            lo, hi = 0.0, cw
            for _ in range(60):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if sum(row_height(r, mid) for r in rows) < space else (lo, mid)
            block_w = lo
        heights = [row_height(r, block_w) * h_scale for r in rows]
        y = top
        if pi < len(plan) - 1 or len(plan) == 1:
            y += max(0.0, space - sum(heights)) / 2  # a page not full: its block centred
        slots = []
        for ids, h in zip(rows, heights):
            nat = h / h_scale
            row_w = nat * sum(aspects[k] for k in ids) + g * (len(ids) - 1)
            x0 = m + (cw - row_w) / 2
            rects = _justified_row([aspects[k] for k in ids], x0, y, row_w, g, height=h)
            slots.extend(PanelSlot(k, rect) for k, rect in zip(ids, rects))
            y += h + g
        layouts.append(PageLayout(pi + 1, width, height, tuple(slots), title))
    return layouts
