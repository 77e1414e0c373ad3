"""Placing a panel's caption and speech bubbles in free space, off every face.

:func:`plan_lettering` is geometry in page pixels. It takes the panel's box, the head boxes of the
speakers (for tails) and of everyone in the picture (to keep clear, see ``domain/heads.py``), and
returns :class:`~storymaker.domain.lettering.Balloon` objects. Rules, in order of importance:

1. a bubble's box never covers a head box, a ``keep_clear`` box, another bubble or the caption;
2. a tail ends just short of its own speaker's head and crosses no other head, no other balloon
   and no other tail;
3. bubbles read in script order (top to bottom; side by side, left to right);
4. each bubble sits close to (preferably above) its speaker and on its speaker's side (nearer its
   own speaker's head than any other speaker's, across the panel), its text wrapped to a balloon
   of a comfortable shape: several widths are tried, the best free place wins.

When a line has no such place, all text gets smaller (down to ``min_font_size``); at the smallest
size a line that still has no place becomes a caption box ("Name: text") in free space, and only
when even that has no room does it overlap (``Balloon.overlaps``).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Mapping, Sequence

from .heads import SpeakerAnchor
from .layout import Rect
from .lettering import (
    Balloon,
    FontChain,
    LetteringOptions,
    TextBlock,
    centered_lines,
    default_chain,
    fit_text,
    layout_text,
    truncate_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from .story import Dialogue

log = logging.getLogger(__name__)

# Ellipse around a text block of w x h: semi-axes scaled so the block's corners sit inside.
ELLIPSE_X, ELLIPSE_Y = 1.3, 1.45
# Text widths tried for a bubble, as fractions of the panel's inner width (up to
# ``LetteringOptions.bubble_max_width``).
WIDTHS = (0.3, 0.42, 0.56, 0.72)
_X_STEPS = 14  # places tried across the panel per row
# Plan costs: a plan this cheap is taken (no bubble below its speaker); each smaller text size
# tried costs this much more.
GOOD_ENOUGH = 0.6
SIZE_STEP_COST = 0.25
# Cost of a bubble whose centre is nearer (across the panel) another speaker's head than its own:
# its tail would reach past that speaker, or cross that speaker's tail.
WRONG_SIDE_COST = 0.6


def _overlap(a: Rect, b: Rect) -> float:
    w = min(a.right, b.right) - max(a.x, b.x)
    h = min(a.bottom, b.bottom) - max(a.y, b.y)
    return w * h if w > 0 and h > 0 else 0.0


def _point_box(point: tuple[float, float], r: float) -> Rect:
    """A head box of radius ``r`` centred on a head point (when only the point is known)."""
    return Rect(point[0] - r, point[1] - 1.15 * r, 2 * r, 2.3 * r)


def _as_box(value: Rect | tuple[float, float], r: float) -> Rect:
    return value if isinstance(value, Rect) else _point_box(value, r)


def _gap(p: tuple[float, float], r: Rect) -> float:
    """Distance from ``p`` to the box ``r`` (0 inside)."""
    return math.hypot(max(r.x - p[0], 0.0, p[0] - r.right), max(r.y - p[1], 0.0, p[1] - r.bottom))


def _ray_entry(p: tuple[float, float], d: tuple[float, float], r: Rect) -> float | None:
    """Distance along unit ray ``p + t d`` (t >= 0) where it enters ``r`` (0 if inside)."""
    t0, t1 = 0.0, math.inf
    for pos, dir_, lo, hi in ((p[0], d[0], r.x, r.right), (p[1], d[1], r.y, r.bottom)):
        if abs(dir_) < 1e-12:
            if not lo <= pos <= hi:
                return None
            continue
        a, b = (lo - pos) / dir_, (hi - pos) / dir_
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
    return t0 if t0 <= t1 else None


def tail_triangle(box: Rect, target: tuple[float, float], length: float) -> tuple[tuple[float, float], ...]:
    """A triangle from the ellipse in ``box`` toward ``target``: its base on the ellipse's edge
    (pulled slightly inside), its tip ``length`` beyond the edge on the way to ``target``."""
    ex, ey, ux, uy, theta = _edge_toward(box, target)
    cx, cy = box.center
    a, b = box.w / 2, box.h / 2
    spread, inward = 0.22, 0.85
    base = [(cx + a * math.cos(t) * inward, cy + b * math.sin(t) * inward)
            for t in (theta - spread, theta + spread)]
    return (base[0], (ex + ux * length, ey + uy * length), base[1])


def _edge_toward(box: Rect, target: tuple[float, float]):
    """The ellipse's edge point toward ``target``, the unit direction from it to the target and
    the ellipse parameter there."""
    cx, cy = box.center
    a, b = box.w / 2, box.h / 2
    dx, dy = target[0] - cx, target[1] - cy
    if abs(dx) < 1e-6 and abs(dy) < 1e-6:
        dy = 1.0
    theta = math.atan2(dy / b, dx / a)
    ex, ey = cx + a * math.cos(theta), cy + b * math.sin(theta)
    dist = math.hypot(target[0] - ex, target[1] - ey)
    if dist < 1e-6:
        return ex, ey, math.cos(theta), math.sin(theta), theta
    return ex, ey, (target[0] - ex) / dist, (target[1] - ey) / dist, theta


def _edges(r: Rect, grow: float = 0.0) -> tuple[float, float, float, float]:
    return (r.x - grow, r.y - grow, r.right + grow, r.bottom + grow)


def _cross(p, q, r) -> float:
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def segments_intersect(a0, a1, b0, b1) -> bool:
    """True when segments ``a0-a1`` and ``b0-b1`` share a point (touching counts)."""
    d1, d2 = _cross(b0, b1, a0), _cross(b0, b1, a1)
    d3, d4 = _cross(a0, a1, b0), _cross(a0, a1, b1)
    if d1 * d2 < 0 and d3 * d4 < 0:  # proper crossing
        return True

    def on(p, q, r, d):  # r on segment p-q, given it is collinear (d == 0)
        return d == 0 and min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) \
            and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])

    return on(b0, b1, a0, d1) or on(b0, b1, a1, d2) or on(a0, a1, b0, d3) or on(a0, a1, b1, d4)


def _inside_triangle(p, tri) -> bool:
    d = [_cross(tri[i], tri[(i + 1) % 3], p) for i in range(3)]
    return all(v >= 0 for v in d) or all(v <= 0 for v in d)


def tails_cross(a, b) -> bool:
    """True when two tail triangles ``(base_a, tip, base_b)`` overlap: an edge of one crosses
    an edge of the other, or one lies inside the other."""
    edges_a = [(a[i], a[(i + 1) % 3]) for i in range(3)]
    edges_b = [(b[i], b[(i + 1) % 3]) for i in range(3)]
    if any(segments_intersect(*e, *f) for e in edges_a for f in edges_b):
        return True
    return _inside_triangle(a[1], b) or _inside_triangle(b[1], a)


def _tail_points(tail, gap: float) -> list[tuple[float, float, float, float]]:
    """Small boxes along a tail's axis outside its balloon (later balloons keep off them)."""
    (ax, ay), (tx, ty), (bx, by) = tail
    mx, my = (ax + bx) / 2, (ay + by) / 2
    pts = [(mx + (tx - mx) * k / 8, my + (ty - my) * k / 8) for k in range(2, 9)]
    return [(x - gap, y - gap, x + gap, y + gap) for x, y in pts]


def _hits(x0: float, y0: float, x1: float, y1: float, boxes) -> bool:
    for a0, b0, a1, b1 in boxes:
        if x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1:
            return True
    return False


class _Planner:
    """One panel's plan at one text size (see the module's rules). Boxes it must not cover are
    kept as plain (x0, y0, x1, y1) tuples: the search tries thousands of places per line."""

    def __init__(self, inner: Rect, size: float, o: LetteringOptions, chain: FontChain,
                 heads: Mapping[str, Rect], faces: Sequence[Rect], keep_clear: Sequence[Rect],
                 high: float, narrow: float = 0.0, blocks: dict | None = None,
                 side: float = WRONG_SIDE_COST):
        self.inner, self.size, self.o, self.chain, self.lang = inner, size, o, chain, o.language
        self.high = high  # how strongly bubbles climb to the top (room for the later ones)
        self.narrow = narrow  # how strongly they keep narrow (room beside them)
        self.side = side  # cost of a bubble on another speaker's side
        self.cost = 0.0  # of the plan so far: tails, bubbles below heads, fallbacks
        self.heads = heads
        self.faces = list(faces)
        self.pad = o.px(o.padding)
        self.gap = max(2.0, size * 0.4)
        self.margin = max(2.0, size * 0.25)  # between a bubble and a face
        self.tail_room = size * 1.2
        self.taken: list[Rect] = []
        self.speech: list[Rect] = []
        self.tails: list[tuple[tuple[float, float], ...]] = []
        self.ordered = True  # rule 3 (reading order); given up only to avoid an overlap (rule 1)
        self.uncrossed = True  # tails never cross; given up only to avoid an overlap (rule 1)
        self._blocked = ([_edges(f, self.margin) for f in self.faces]
                         + [_edges(k) for k in keep_clear])
        self._tail_blocked: list[tuple[float, float, float, float]] = []  # along earlier tails
        self._blocks = {} if blocks is None else blocks  # wrapped text, shared between plans

    def _take(self, box: Rect, speech: bool, tail=None) -> None:
        self.taken.append(box)
        self._blocked.append(_edges(box, self.gap))
        if speech:
            self.speech.append(box)
        if tail is not None:
            self.tails.append(tail)
            self._tail_blocked.extend(_tail_points(tail, self.gap / 2))

    # -- hard rules ----------------------------------------------------------------------------

    def _free(self, cand: Rect) -> bool:
        return (self.inner.contains(cand, tol=0.5)
                and not _hits(cand.x, cand.y, cand.right, cand.bottom, self._blocked))

    def _tail_clear(self, tail, own: Rect | None) -> bool:
        """The tail crosses no other head, no balloon and no earlier tail, and its tip is clearly
        nearer its own head than any other (so it cannot be read as pointing at a neighbour)."""
        (ax, ay), (tx, ty), (bx, by) = tail
        mx, my = (ax + bx) / 2, (ay + by) / 2
        others = [r for r in self.faces if r is not own]
        blocked = [_edges(r) for r in others] + [_edges(r) for r in self.taken]
        for k in range(2, 9):
            px, py = mx + (tx - mx) * k / 8, my + (ty - my) * k / 8
            if _hits(px, py, px, py, blocked):
                return False
        if self.uncrossed and any(tails_cross(tail, t) for t in self.tails):
            return False
        if own is not None and others:
            mine = _gap((tx, ty), own)
            return all(mine * 1.5 + 1.0 < _gap((tx, ty), r) for r in others)
        return True

    # -- text ----------------------------------------------------------------------------------

    def blocks(self, text: str) -> list[tuple[TextBlock, float, float]]:
        """Wrapped versions of ``text`` at several widths: (block, bubble width, bubble height)."""
        key = (text, self.size)
        if key in self._blocks:
            return self._blocks[key]
        out, seen = [], set()
        top = self.o.bubble_max_width
        for f in sorted({min(f, top) for f in WIDTHS}):
            block = layout_text(text, self.chain, self.size, self.inner.w * f - 2 * self.pad,
                                self.o.line_spacing, self.lang)
            if block.lines in seen:
                continue
            seen.add(block.lines)
            ew = block.width * ELLIPSE_X + 2 * self.pad
            eh = block.height * ELLIPSE_Y + 2 * self.pad
            if ew <= self.inner.w and eh + self.tail_room <= self.inner.h:
                out.append((block, ew, eh))
        self._blocks[key] = out
        return out

    # -- places --------------------------------------------------------------------------------

    def y_min(self) -> float:
        y = self.inner.y
        for prev in (self.speech if self.ordered else ()):
            y = max(y, prev.y + 0.25 * prev.h)  # later lines start lower: reading order
        return y

    def place_speech(self, text: str, speaker: str, anchor: SpeakerAnchor | None,
                     bold_chain: FontChain) -> Balloon | None:
        head = self.heads.get(speaker.casefold())
        inner = self.inner
        if head is None:  # no head known: the tail hangs down on the speaker's side
            if anchor is None or anchor.slot < 0 or anchor.num_slots <= 0:
                sx = inner.x + inner.w / 2
            else:
                sx = inner.x + inner.w * (anchor.slot + 0.5) / anchor.num_slots
        else:
            target = head.center
            stop = max(2.0, 0.08 * max(head.w, head.h))
            reach = head.inset(-stop)
            # The other speakers' heads: a bubble nearer one of them (across) is on the wrong side.
            rivals = [r.center[0] for k, r in self.heads.items()
                      if k != speaker.casefold() and abs(r.center[0] - target[0]) > 1.0]
        best = None
        y_min = self.y_min()
        earlier = [(b.y + 0.6 * b.h, b.center[0]) for b in self.speech] if self.ordered else []
        for block, ew, eh in self.blocks(text):
            # A comfortable balloon: about twice as wide as tall, not a tower of short lines.
            shape = 0.2 * abs(math.log(ew / eh / 2.2)) + 0.15 * max(0, len(block.lines) - 5)
            y_max = inner.bottom - eh - (self.tail_room if head is None else 0.0)
            if y_max < y_min:
                continue  # too tall for the room left below the earlier lines
            steps_y = max(1, int((y_max - y_min) / max(4.0, inner.h / 32)))
            for iy in range(steps_y + 1):
                y = y_min + (y_max - y_min) * iy / steps_y
                climb = self.high * (y - y_min) / inner.h + self.narrow * ew / inner.w
                if head is None:
                    climb = 1.2 * (y - y_min) / inner.h
                if best is not None and climb + shape >= best[0]:
                    break  # lower rows only cost more
                for ix in range(_X_STEPS + 1):
                    x = inner.x + (inner.w - ew) * ix / _X_STEPS
                    if _hits(x, y, x + ew, y + eh, self._blocked) or (
                            self.uncrossed and _hits(x, y, x + ew, y + eh, self._tail_blocked)):
                        continue
                    cx = x + ew / 2
                    if any(y < level and cx < ecx for level, ecx in earlier):
                        continue  # level with an earlier bubble, it must be to its right
                    cand = Rect(x, y, ew, eh)
                    if head is not None:
                        ex, ey, ux, uy, _ = _edge_toward(cand, target)
                        entry = _ray_entry((ex, ey), (ux, uy), reach)
                        if entry is None:  # aims beside the box (a corner): the centre is inside
                            entry = math.hypot(target[0] - ex, target[1] - ey) - max(head.w, head.h) / 2
                        length = max(1.0, entry, min(self.tail_room * 0.6, entry + stop - 1.0))
                        cost = 1.2 * length / inner.h
                        wrong = any(abs(cx - rx) < abs(cx - target[0]) for rx in rivals)
                        if y + eh > head.y:
                            cost += 0.35  # not above the head
                        if y > head.bottom:
                            cost += 0.5  # below it
                        cost += self.side * wrong
                        aim = target
                    else:
                        aim = (sx, min(y + eh + self.tail_room * 1.6, inner.bottom))
                        length = min(self.tail_room * 1.4, max(self.tail_room * 0.8, eh * 0.5))
                        cost = abs(cx - sx) / inner.w
                        wrong = False
                    cost += shape
                    if best is not None and cost + climb >= best[0]:
                        continue
                    tail = tail_triangle(cand, aim, length)
                    if not self._tail_clear(tail, head):
                        continue
                    # The plan's cost counts a wrong side fully, whatever the search's weight.
                    best = (cost + climb, cand, block, tail, aim,
                            cost + (WRONG_SIDE_COST - self.side) * wrong)
        if best is None:
            return None
        _, box, block, tail, target, cost = best
        self.cost += cost
        text_box = Rect(box.center[0] - block.width / 2, box.center[1] - block.height / 2,
                        block.width, block.height)
        self._take(box, speech=True, tail=tail)
        return Balloon("speech", text, box, centered_lines(block, text_box, bold_chain),
                       block.size, bold=True, speaker=speaker, tail=tail, target=target)

    def place_box(self, text: str, max_height: float, speaker: str | None = None,
                  prefer_top: bool = True, force: bool = False, y_from: float | None = None) -> Balloon | None:
        """A rectangular caption in the first free place: top rows first (bottom rows with
        ``prefer_top=False``), the widest wrapping that fits there, left, right or centred; not
        above ``y_from`` when given (a line's reading order). ``force``: the least covering place
        when none is free."""
        o, pad, inner = self.o, self.pad, self.inner
        size = o.px(o.caption_size) if speaker is None else self.size
        blocks = []
        for f in (o.caption_max_width, 0.66, 0.5, 0.36):
            block = fit_text(text, self.chain, inner.w * min(f, o.caption_max_width) - 2 * pad,
                             max_height - 2 * pad, size, o.px(o.min_font_size), self.lang)
            blocks.append(truncate_text(block, self.chain, max_height - 2 * pad))
        rows = 12
        order = range(rows + 1) if prefer_top else range(rows, -1, -1)
        cands = []
        for k in order:
            for block in blocks:
                w, h = block.width + 2 * pad, block.height + 2 * pad
                y = inner.y + max(0.0, inner.h - h) * k / rows
                if y_from is not None and y < y_from - 0.5:
                    continue
                cands += [(Rect(x, y, w, h), block) for x in (inner.x, inner.right - w,
                                                               inner.x + (inner.w - w) / 2)]
        found = next(((c, b) for c, b in cands if self._free(c)), None)
        overlaps = False
        if found is None:
            if not force:
                return None
            overlaps = True
            found = min(cands, key=lambda cb: sum(_overlap(cb[0], f) for f in self.faces + self.taken))
            log.warning("No free room for a caption; it covers part of the picture.")
        box, block = found
        self._take(box, speech=speaker is not None)  # a speaker's line keeps the reading order
        return Balloon("caption", text, box, centered_lines(block, box.inset(pad), self.chain),
                       block.size, speaker=speaker, overlaps=overlaps)

    def force_speech(self, text: str, speaker: str, bold_chain: FontChain) -> Balloon:
        """The last resort: a bubble where the reading order puts it, cut to the room left."""
        inner, pad = self.inner, self.pad
        y_min = min(self.y_min(), inner.bottom - self.size * 3)
        block = layout_text(text, self.chain, self.size, inner.w * self.o.bubble_max_width - 2 * pad,
                            self.o.line_spacing, self.lang)
        room = max(inner.bottom - y_min, self.size * 2)
        block = truncate_text(block, self.chain, (room - 2 * pad) / ELLIPSE_Y)
        ew = min(block.width * ELLIPSE_X + 2 * pad, inner.w)
        eh = min(block.height * ELLIPSE_Y + 2 * pad, room)
        box = Rect(inner.x + (inner.w - ew) / 2, max(inner.y, min(y_min, inner.bottom - eh)), ew, eh)
        log.warning("No free room for %r's line at the smallest size; it overlaps.", speaker)
        self._take(box, speech=True)
        text_box = Rect(box.center[0] - block.width / 2, box.center[1] - block.height / 2,
                        block.width, block.height)
        head = self.heads.get(speaker.casefold())
        tail = tail_triangle(box, head.center, self.tail_room) if head is not None else None
        return Balloon("speech", text, box, centered_lines(block, text_box, bold_chain), block.size,
                       bold=True, speaker=speaker, tail=tail,
                       target=head.center if head is not None else None, overlaps=True)


def plan_lettering(area: Rect, caption: str | None, dialogue: Sequence["Dialogue"],
                   anchors: Sequence[SpeakerAnchor] = (),
                   heads: Mapping[str, Rect | tuple[float, float]] | None = None,
                   options: LetteringOptions | None = None,
                   chain: FontChain | None = None,
                   bold_chain: FontChain | None = None, *,
                   faces: Sequence[Rect] = (),
                   keep_clear: Sequence[Rect] = ()) -> tuple[Balloon, ...]:
    """Place a caption and speech bubbles inside ``area`` (the panel's box on the page).

    ``heads`` maps speaker names to their head boxes in page pixels (a bare point gets a box of
    ``face_radius``); ``faces`` are every other head box in the picture; ``keep_clear`` boxes must
    stay visible. Returns the caption first, then one balloon per line of ``dialogue`` in order.
    """
    o = options or LetteringOptions()
    chain = chain or default_chain(False)
    bold_chain = bold_chain or default_chain(True)
    face_r = o.face_radius * area.w
    named = {k.casefold(): _as_box(v, face_r) for k, v in (heads or {}).items()}
    all_faces = list(named.values()) + [f for f in faces if f not in named.values()]
    by_name = {a.name.casefold(): a for a in anchors}
    inset = max(2.0, min(area.w, area.h) * 0.025)
    inner = area.inset(inset)
    size = o.px(o.font_size)
    min_size = o.px(o.min_font_size)
    best: tuple[float, tuple[Balloon, ...]] | None = None
    step = 0
    blocks: dict = {}
    while True:
        last = size <= min_size
        # Greedy placement in script order, four ways: bubbles close to their speakers, bubbles
        # climbing to the top (room below for later lines), and narrow ones that climb (room
        # beside them). A plan with a bubble below its speaker's head may lose to a plan a size
        # smaller that fits every bubble above.
        # In a crowded panel a bubble on its neighbour's side may leave the room the next line
        # needs: the fourth way lets bubbles take either side (its tails still never cross).
        for high, narrow, side in ((0.25, 0.0, WRONG_SIDE_COST), (1.5, 0.0, WRONG_SIDE_COST),
                                   (1.5, 1.0, WRONG_SIDE_COST), (0.25, 0.0, 0.0)):
            plan = _Planner(inner, size, o, chain, named, all_faces, keep_clear, high, narrow,
                            blocks, side)
            balloons = _plan(plan, caption, dialogue, by_name, bold_chain, inner, last)
            if balloons is not None:
                cost = plan.cost + SIZE_STEP_COST * step
                if best is None or cost < best[0]:
                    best = (cost, balloons)
        if last or (best is not None and best[0] < GOOD_ENOUGH + SIZE_STEP_COST * step):
            return best[1]
        size = max(min_size, size * 0.88)
        step += 1


def _plan(plan: _Planner, caption: str | None, dialogue: Sequence["Dialogue"],
          by_name: Mapping[str, SpeakerAnchor], bold_chain: FontChain, inner: Rect,
          last: bool) -> tuple[Balloon, ...] | None:
    """The caption and every line at the planner's size; None when a line found no place
    (unless ``last``: then it becomes a caption, or overlaps)."""
    balloons: list[Balloon] = []
    if caption and caption.strip():
        balloons.append(plan.place_box(caption, inner.h * 0.35, force=True))
    for line in dialogue:
        placed = plan.place_speech(line.text, line.speaker, by_name.get(line.speaker.casefold()),
                                   bold_chain)
        if placed is None and not last:
            return None
        if placed is None:  # the smallest size: a caption in free space, else overlap
            # Below the earlier lines, as high as it goes: the lines still read top to bottom.
            placed = plan.place_box(f"{line.speaker}: {line.text}", inner.h * 0.4,
                                    speaker=line.speaker, y_from=plan.y_min())
            plan.cost += 2.0
            anchor = by_name.get(line.speaker.casefold())
            if placed is None:  # out of reading order rather than over other text (rule 1 first)
                plan.ordered = False
                placed = plan.place_speech(line.text, line.speaker, anchor, bold_chain)
                plan.ordered = True
                plan.cost += 4.0
            if placed is None:  # a tail across another rather than text over text
                plan.uncrossed = False
                for ordered in (True, False):
                    plan.ordered = ordered
                    placed = placed or plan.place_speech(line.text, line.speaker, anchor,
                                                         bold_chain)
                plan.ordered = plan.uncrossed = True
                plan.cost += 6.0
            if placed is None:
                placed = plan.force_speech(line.text, line.speaker, bold_chain)
                plan.cost += 10.0
        balloons.append(placed)
    return tuple(balloons)
