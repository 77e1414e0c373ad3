"""Shared by the layout tests: panel-aspect sets, the invariants every page keeps, crop measures."""

from __future__ import annotations

import itertools
import random

from storymaker.domain.layout import Rect, place_image

ASPECT_SETS = {
    "portrait": [0.75] * 12,
    "landscape": [16 / 9] * 12,
    "mixed": [0.75, 1.5, 1.0, 0.75, 0.5, 2.0, 0.75, 1.0, 1.33, 0.6, 1.78, 1.0],
}
COUNTS = (1, 2, 3, 4, 5, 7, 12)

# Panel-aspect mixes for the crop bounds (benchmarks/page_crop.py prints the figures); each is
# repeated to fill the panels.
CROP_MIXES = {
    "square": [1.0],
    "portrait 3:4": [0.75],
    "landscape 16:9": [16 / 9],
    "portrait+landscape": [0.75, 16 / 9],
    "mixed rows": ASPECT_SETS["mixed"],
    "9:16+16:9+square": [9 / 16, 16 / 9, 1.0],
    "near shapes": [1.0, 1.06, 4 / 3, 1.4],
}


def repeat(base: list[float], n: int) -> list[float]:
    return [base[i % len(base)] for i in range(n)]


def check_pages(pages, aspects, options) -> None:
    """Every slot inside the margins, no two overlapping, the title clear of them, every panel
    placed once in script order."""
    m = options.px(options.margin)
    seen = []
    for page in pages:
        inner = Rect(m, m, page.width - 2 * m, page.height - 2 * m)
        rects = [s.rect for s in page.slots]
        for slot in page.slots:
            assert slot.rect.w > 0 and slot.rect.h > 0
            assert inner.contains(slot.rect, tol=1.0), (slot, inner)
            seen.append(slot.panel)
        for a, b in itertools.combinations(rects, 2):
            assert not a.intersects(b, tol=0.5), (a, b)
        if page.title_box is not None:
            assert inner.contains(page.title_box, tol=1.0)
            assert not any(page.title_box.intersects(r) for r in rects)
    assert seen == list(range(len(aspects)))  # every panel once, in script order


def crop_fraction(aspect: float, slot: Rect, fit: str = "cover", keep=None) -> float:
    """The fraction of a picture's area that ``place_image`` leaves out of ``slot``."""
    l, t, r, b = place_image(aspect, slot, fit, keep=keep).crop
    return 1.0 - (r - l) * (b - t)


def random_heads(rng: random.Random) -> list[tuple[float, float, float, float]]:
    """1 to 3 head boxes (normalised), each at an edge of the picture or anywhere."""
    heads = []
    for _ in range(rng.randint(1, 3)):
        w, h = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)
        x0 = rng.choice([0.0, 1.0 - w, rng.uniform(0.0, 1.0 - w)])
        y0 = rng.choice([0.0, 1.0 - h, rng.uniform(0.0, 1.0 - h)])
        heads.append((x0, y0, x0 + w, y0 + h))
    return heads


def assert_heads_shown(heads, crop) -> None:
    l, t, r, b = crop
    for x0, y0, x1, y1 in heads:
        assert l - 1e-9 <= x0 and x1 <= r + 1e-9, (heads, crop)
        assert t - 1e-9 <= y0 and y1 <= b + 1e-9, (heads, crop)
