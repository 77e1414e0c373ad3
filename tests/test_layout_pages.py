"""Printed pages (``kind="pages"``): paper sizes, how panels flow over pages, rows kept tidy, and
how much of a picture a page may crop (benchmarks/page_crop.py prints the figures)."""

from __future__ import annotations

import itertools
import random

import pytest
from layout_helpers import CROP_MIXES, check_pages, crop_fraction, repeat

from storymaker.domain.layout import MAX_CROP, LayoutOptions, Rect, compute_layout


@pytest.mark.parametrize("size,orientation,expected", [
    ("A4", "portrait", (1240, 1754)), ("A4", "landscape", (1754, 1240)),
    ("Letter", "portrait", (1275, 1650)), ("Letter", "landscape", (1650, 1275)),
])
def test_page_sizes(size, orientation, expected):
    options = LayoutOptions(page_size=size, orientation=orientation, dpi=150)
    assert options.page_pixels == expected
    pages = compute_layout([0.75] * 9, options)
    assert all((p.width, p.height) == expected for p in pages)


def test_pages_flow_and_avoid_lone_panels():
    """Uniform panels: no page holds a single panel when several pages are needed, rows are
    justified to the full content width, and page counts grow with the panel count."""
    options = LayoutOptions(kind="pages", columns=2)
    m = options.px(options.margin)
    last_pages = 0
    for n in range(2, 21):
        pages = compute_layout([0.75] * n, options)
        assert len(pages) >= last_pages
        last_pages = len(pages)
        if len(pages) > 1:
            assert all(len(p.slots) >= 2 for p in pages), (n, [len(p.slots) for p in pages])
        for p in pages:
            by_row: dict[float, list] = {}
            for s in p.slots:
                by_row.setdefault(round(s.rect.y, 3), []).append(s.rect)
            for row in by_row.values():
                if len(row) == options.columns:
                    assert max(r.right for r in row) == pytest.approx(p.width - m, abs=1.0)
    assert last_pages >= 3  # 20 portrait panels do not fit on one or two A4 pages


def test_rows_per_page_limit():
    options = LayoutOptions(kind="pages", columns=2, rows_per_page=1)
    pages = compute_layout([1.5] * 6, options)
    assert len(pages) == 3
    assert all(len(p.slots) == 2 for p in pages)


@pytest.mark.parametrize("mix", sorted(CROP_MIXES))
def test_printed_pages_crop_little_of_any_picture(mix):
    """Found: a page squeezed or stretched its rows up to 15-20%, so ``cover`` cut about 17% of
    a picture (faces and lettering near its edges). Rows now take the panels' aspects; a slot
    differs from its image by at most 5% of the area, whatever the page and the mix."""
    worst = 0.0
    for n, size, orient, title, cols in itertools.product(
            (1, 2, 3, 4, 5, 6, 7, 9, 12), ("A4", "Letter"), ("portrait", "landscape"), ("", "T"),
            (2, 3)):
        aspects = repeat(CROP_MIXES[mix], n)
        options = LayoutOptions(kind="pages", page_size=size, orientation=orient, title=title,
                                columns=cols)
        pages = compute_layout(aspects, options)
        check_pages(pages, aspects, options)
        for page in pages:
            for slot in page.slots:
                worst = max(worst, crop_fraction(aspects[slot.panel], slot.rect))
    assert worst <= MAX_CROP + 1e-9, (mix, worst)


def test_printed_pages_stay_tidy():
    """Rows keep one gutter between panels and between rows, one height per row, and are
    centred on the page (a row narrower than the page, or a block shrunk to fit, stays on the
    page's axis); no slot leaves the margins."""
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(1, 12)
        aspects = [rng.choice([0.75, 1.0, 16 / 9, 9 / 16, 1.5]) for _ in range(n)]
        options = LayoutOptions(kind="pages", columns=rng.choice([2, 3]),
                                title=rng.choice(["", "T"]))
        g = options.px(options.gutter)
        for page in compute_layout(aspects, options):
            rows: dict[float, list[Rect]] = {}
            for s in page.slots:
                rows.setdefault(round(s.rect.y, 3), []).append(s.rect)
            ys = sorted(rows)
            for y0, y1 in zip(ys, ys[1:]):
                assert rows[y1][0].y - rows[y0][0].bottom == pytest.approx(g, abs=1e-6)
            for row in rows.values():
                row.sort(key=lambda r: r.x)
                assert len({round(r.h, 6) for r in row}) == 1
                for a, b in zip(row, row[1:]):
                    assert b.x - a.right == pytest.approx(g, abs=1e-6)
                left, right = row[0].x, row[-1].right
                assert left == pytest.approx(page.width - right, abs=1e-6)  # centred
