"""Comic layout geometry common to every kind: options, invariants over kinds, panel counts and
aspect mixes, and how a picture fills its slot (``place_image``: aspect kept, heads in view).

Printed pages: tests/test_layout_pages.py; grids, strips and scrolls: tests/test_layout_grid.py."""

from __future__ import annotations

import itertools
import random

import pytest
from layout_helpers import ASPECT_SETS, COUNTS, assert_heads_shown, check_pages, random_heads

from storymaker.domain.layout import (
    KINDS,
    LayoutOptions,
    Rect,
    balanced_counts,
    compute_layout,
    place_image,
    union_box,
)
from storymaker.errors import InvalidInputError


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("set_name", sorted(ASPECT_SETS))
def test_every_kind_inside_margins_without_overlap(kind, set_name):
    for n, title in itertools.product(COUNTS, ("", "A Title")):
        aspects = ASPECT_SETS[set_name][:n]
        options = LayoutOptions(kind=kind, title=title, columns=3 if kind == "grid" else 2)
        pages = compute_layout(aspects, options)
        check_pages(pages, aspects, options)
        assert (pages[0].title_box is not None) == bool(title)
        assert all(p.title_box is None for p in pages[1:])
        if kind != "pages":
            assert len(pages) == 1


@pytest.mark.parametrize("fit", ["cover", "fit"])
def test_images_keep_their_aspect_in_every_slot(fit):
    """Whatever the slot, the part of the image shown has the aspect of the box it is drawn in."""
    for kind, set_name in itertools.product(KINDS, ASPECT_SETS):
        aspects = ASPECT_SETS[set_name][:7]
        for page in compute_layout(aspects, LayoutOptions(kind=kind, fit=fit)):
            for slot in page.slots:
                a = aspects[slot.panel]
                p = place_image(a, slot.rect, fit)
                l, t, r, b = p.crop
                shown_aspect = a * (r - l) / (b - t)  # pixels of the image actually shown
                assert shown_aspect == pytest.approx(p.dest.w / p.dest.h, rel=1e-6)
                assert slot.rect.contains(p.dest, tol=1e-6)
                assert 0 <= l < r <= 1 and 0 <= t < b <= 1
                if fit == "fit":
                    assert p.crop == (0.0, 0.0, 1.0, 1.0)
                else:
                    assert p.dest == slot.rect


def test_balanced_counts():
    assert balanced_counts(7, 3) == [3, 2, 2]
    assert balanced_counts(4, 2) == [2, 2]
    assert balanced_counts(1, 3) == [1]
    assert sum(balanced_counts(23, 5)) == 23


@pytest.mark.parametrize("bad", [
    {"kind": "carousel"}, {"fit": "stretch"}, {"columns": 0}, {"page_size": "A3"},
    {"orientation": "diagonal"}, {"dpi": 5}, {"margin": -1}, {"jpeg_quality": 100},
])
def test_bad_options_are_clear_errors(bad):
    with pytest.raises(InvalidInputError):
        LayoutOptions(**bad)


def test_no_panels_or_bad_aspects():
    with pytest.raises(InvalidInputError, match="no panels"):
        compute_layout([], LayoutOptions())
    with pytest.raises(InvalidInputError):
        compute_layout([1.0, 0.0], LayoutOptions())


def test_random_layouts_hold_the_invariants():
    rng = random.Random(99)
    for _ in range(60):
        n = rng.randint(1, 16)
        aspects = [rng.uniform(0.4, 2.6) for _ in range(n)]
        options = LayoutOptions(
            kind=rng.choice(KINDS), columns=rng.randint(1, 4), fit=rng.choice(["cover", "fit"]),
            page_size=rng.choice(["A4", "Letter"]), orientation=rng.choice(["portrait", "landscape"]),
            title=rng.choice(["", "T"]), dpi=rng.choice([72, 150]),
            rows_per_page=rng.choice([0, 0, 2]))
        pages = compute_layout(aspects, options)
        check_pages(pages, aspects, options)
        if options.kind == "pages" and options.rows_per_page:
            for p in pages:
                assert len({round(s.rect.y, 3) for s in p.slots}) <= options.rows_per_page


@pytest.mark.parametrize("fit", ["cover", "fit"])
def test_head_boxes_stay_in_view(fit):
    """Property: whatever the slot (printed pages, grids), the part of the picture shown holds
    every head box recorded for the panel, near an edge or not; a crop that would cut one
    letterboxes the picture instead."""
    rng = random.Random(5)
    for _ in range(150):
        n = rng.randint(1, 9)
        aspects = [rng.choice([0.75, 1.0, 16 / 9, 9 / 16, 0.5, 2.0]) for _ in range(n)]
        kind = rng.choice(["pages", "pages", "grid"])
        options = LayoutOptions(kind=kind, columns=rng.choice([2, 3]), fit=fit,
                                orientation=rng.choice(["portrait", "landscape"]))
        for page in compute_layout(aspects, options):
            for slot in page.slots:
                heads = random_heads(rng)
                p = place_image(aspects[slot.panel], slot.rect, fit, keep=union_box(heads))
                assert_heads_shown(heads, p.crop)
                assert slot.rect.contains(p.dest, tol=1e-6)
                l, t, r, b = p.crop
                shown = aspects[slot.panel] * (r - l) / (b - t)
                assert shown == pytest.approx(p.dest.w / p.dest.h, rel=1e-6)  # never distorted


def test_crop_moves_to_hold_the_heads_and_letterboxes_rather_than_cut_one():
    slot = Rect(0, 0, 100, 80)  # wider than the 3:4 picture: top and bottom are cropped
    top_head = (0.4, 0.0, 0.6, 0.1)
    p = place_image(0.75, slot, keep=top_head)
    assert p.crop[1] == 0.0 and p.dest == slot  # the window moved up to the head
    plain = place_image(0.75, slot)
    assert plain.crop[1] > 0.0  # without it the default focus would cut the head
    both = union_box([top_head, (0.4, 0.9, 0.6, 1.0)])  # heads at the top and the bottom
    p = place_image(0.75, slot, keep=both)
    assert p.crop == (0.0, 0.0, 1.0, 1.0) and p.dest.h == pytest.approx(80) and p.dest.w < 100


@pytest.mark.parametrize("kind", ["strip", "grid", "pages", "scroll"])
def test_a_layout_at_another_dpi_is_the_same_comic_scaled(kind):
    """The Comic tab previews at 60 dpi. A grid, strip or scroll kept its pixel size there while its
    lettering, gutters and title (in points) shrank to 40%: the preview's captions were 2.5 times
    smaller than the export's (QA). At another dpi every box scales by the same factor."""
    aspects = [0.75, 1.0, 4 / 3, 0.75, 16 / 9]
    export = LayoutOptions(kind=kind, columns=2, title="A title")
    preview = export.at_dpi(60)
    k = 60 / 150
    big, small = compute_layout(aspects, export), compute_layout(aspects, preview)
    assert len(big) == len(small)
    for a, b in zip(big, small):
        assert b.width == pytest.approx(a.width * k, abs=2) and b.height == pytest.approx(a.height * k, abs=2)
        for sa, sb in zip(a.slots, b.slots):
            box_a, box_b = (sa.rect.x, sa.rect.y, sa.rect.w, sa.rect.h), (sb.rect.x, sb.rect.y, sb.rect.w, sb.rect.h)
            assert box_b == pytest.approx(tuple(v * k for v in box_a), abs=1.5)
    assert export.at_dpi(150) == export
