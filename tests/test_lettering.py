"""Lettering: font fallback, wrapping and fitting, bubble placement and tails, drawing."""

from __future__ import annotations

import itertools
import math

import pytest
from PIL import Image, ImageChops, ImageDraw

from storymaker.domain.bubbles import plan_lettering
from storymaker.domain.heads import SpeakerAnchor, anchors_for_panel
from storymaker.domain.layout import Rect
from storymaker.domain.lettering import (
    COMIC_REGULAR,
    FONT_DIR,
    FontChain,
    FontError,
    SUPERSAMPLE,
    LetteringOptions,
    TextLine,
    default_chain,
    draw_balloons,
    draw_text_line,
    fit_text,
    hyphenation_points,
    wrap_text,
)
from storymaker.domain.poses import Person, Pose
from storymaker.domain.story import Dialogue, Panel

AREA = Rect(100, 50, 600, 800)
NOTDEF = "\ue000"  # private use: in none of the shipped fonts, so each draws its .notdef box


def _speech(balloons):
    return [b for b in balloons if b.kind == "speech"]


def _said(balloons, lines):
    """Every line has its balloon, in order: a bubble, or (no room) a caption naming the speaker."""
    said = [b for b in balloons if b.speaker]
    assert len(said) == len(lines)
    for b, (who, text) in zip(said, lines):
        assert b.speaker == who
        assert b.text == (text if b.kind == "speech" else f"{who}: {text}")
    return said


def test_fonts_ship_with_licences():
    for name in ("ComicNeue-Regular.ttf", "ComicNeue-Bold.ttf", "DejaVuSans.ttf",
                 "DroidSansFallbackFull.ttf", "LICENSE-ComicNeue-OFL.txt", "LICENSE-DejaVu.txt",
                 "LICENSE-DroidSansFallback-Apache-2.0.txt"):
        assert (FONT_DIR / name).is_file(), name
    assert "SIL OPEN FONT LICENSE" in (FONT_DIR / "LICENSE-ComicNeue-OFL.txt").read_text()


def test_missing_font_is_a_clear_error(tmp_path):
    with pytest.raises(FontError, match="assets/fonts"):
        FontChain([tmp_path / "nope.ttf"])


def test_per_character_fallback_chooses_a_covering_font():
    chain = default_chain()
    assert chain.font_index("A") == 0  # Comic Neue
    assert chain.font_index("Ж") == 1  # DejaVu Sans (Cyrillic)
    assert chain.font_index("你") == 2  # Droid Sans Fallback (CJK)
    assert chain.runs("Hi, Жора 你好!") == [(0, "Hi, "), (1, "Жора "), (2, "你好"), (0, "!")]


@pytest.mark.parametrize("text", ["灯塔的光", "Буря ночь", "Ωμέγα"])
def test_non_latin_renders_glyphs_not_boxes(text):
    """Each character is drawn by a font that has it: its bitmap is not that font's .notdef box,
    while the comic font alone would draw boxes (all alike) for the same text."""
    chain = default_chain()
    comic_only = FontChain([FONT_DIR / COMIC_REGULAR])
    size = 48
    for ch in text.replace(" ", ""):
        font = chain.pil_font(chain.font_index(ch), size)
        glyph = font.getmask(ch)
        box = font.getmask(NOTDEF)
        assert glyph.getbbox() is not None
        assert (glyph.size, bytes(glyph)) != (box.size, bytes(box)), ch
        comic = comic_only.pil_font(0, size)
        assert bytes(comic.getmask(ch)) == bytes(comic.getmask(NOTDEF))  # the box it would draw

    def render(c: FontChain) -> Image.Image:
        image = Image.new("L", (600, 100), 255)
        draw_text_line(ImageDraw.Draw(image), TextLine(text, 10, 70, 0), c, size, 0)
        return image

    with_fallback, boxes = render(chain), render(comic_only)
    diff = ImageChops.difference(with_fallback, boxes)
    assert sum(diff.histogram()[129:]) > 500


def test_wrap_keeps_words_and_width():
    chain = default_chain()
    text = "The storm can't keep me away, not tonight, not ever, said the keeper of the light."
    lines = wrap_text(text, chain, 20, 180)
    assert len(lines) > 2
    assert all(chain.measure(line, 20) <= 180 for line in lines)
    assert " ".join(lines).split() == text.split()


def test_wrap_cjk_without_spaces_and_long_words():
    chain = default_chain()
    cjk = "灯塔的光穿过了雾也穿过了我们的夜晚"
    lines = wrap_text(cjk, chain, 24, 120)
    assert len(lines) > 1 and "".join(lines) == cjk
    assert all(chain.measure(line, 24) <= 120 for line in lines)
    assert wrap_text("one\ntwo", chain, 20, 1000) == ["one", "two"]


def _unbroken(lines: list[str]) -> tuple[str, list[int]]:
    """The text with line-end hyphens removed, and the offsets of the breaks."""
    text, breaks = "", []
    for line in lines[:-1]:
        text += line[:-1] if line.endswith("-") else line
        breaks.append(len(text))
    return text + lines[-1], breaks


@pytest.mark.parametrize("word,lang", [("Supercalifragilisticexpialidocious", "en_US"),
                                       ("Pneumonoultramicroscopicsilicovolcanoconiosis,", "en_US"),
                                       ("достопримечательность", "en_US")])
def test_long_words_are_hyphenated_at_syllables(word, lang):
    """A word wider than the line breaks only at pyphen's syllable points, each break marked
    with a hyphen, and every line fits (Cyrillic words use Russian patterns)."""
    chain = default_chain()
    lines = wrap_text(word, chain, 24, 110, lang)
    assert len(lines) > 1
    text, breaks = _unbroken(lines)
    assert text == word
    assert all(line.endswith("-") for line in lines[:-1])
    points = hyphenation_points(word, lang)
    assert points and set(breaks) <= set(points)
    assert all(chain.measure(line, 24) <= 110 for line in lines)


def test_words_break_after_their_own_dash_and_only_when_too_long():
    chain = default_chain()
    width = chain.measure("lighthouse-", 24) + 2
    assert wrap_text("lighthouse-keeper", chain, 24, width) == ["lighthouse-", "keeper"]
    # Words that fit a line of their own are never hyphenated.
    assert wrap_text("a wonderful evening", chain, 24, 150) == ["a wonderful", "evening"]


def test_without_hyphenation_patterns_breaks_are_marked(monkeypatch):
    from storymaker.domain import lettering

    monkeypatch.setattr(lettering, "_hyphenator", lambda lang: None)
    chain = default_chain()
    word = "Supercalifragilisticexpialidocious"
    lines = wrap_text(word, chain, 24, 100)
    assert len(lines) > 2 and _unbroken(lines)[0] == word
    assert all(line.endswith("-") for line in lines[:-1])  # never mid-letter without a mark
    assert all(chain.measure(line, 24) <= 100 for line in lines)


def test_fit_text_shrinks_to_fit():
    chain = default_chain()
    text = "A long narration that will not fit a small box at a large size at all."
    big = fit_text(text, chain, 2000, 2000, 40, 8)
    small = fit_text(text, chain, 200, 90, 40, 8)
    assert big.size == 40 and len(big.lines) == 1
    assert small.size < 40 and small.width <= 200.5 and small.height <= 90


def _no_overlaps(balloons):
    for a, b in itertools.combinations(balloons, 2):
        assert not a.box.intersects(b.box), (a.text, b.text)


def test_tails_point_at_known_heads():
    heads = {"Mara": (250.0, 500.0), "Theo": (560.0, 480.0)}
    anchors = (SpeakerAnchor("Mara", (0.25, 0.56), 0, 2), SpeakerAnchor("Theo", (0.77, 0.54), 1, 2))
    balloons = plan_lettering(AREA, None, (Dialogue("Mara", "You came back."),
                                           Dialogue("Theo", "I always do.")), anchors, heads)
    for b in _speech(balloons):
        head = heads[b.speaker]
        cx, cy = b.box.center
        tip = b.tip
        assert b.target == head
        assert math.dist(tip, head) < math.dist((cx, cy), head)
        to_head = (head[0] - cx, head[1] - cy)
        to_tip = (tip[0] - cx, tip[1] - cy)
        cos = (to_head[0] * to_tip[0] + to_head[1] * to_tip[1]) / (
            math.hypot(*to_head) * math.hypot(*to_tip))
        assert cos > 0.9, (b.speaker, cos)
        assert not b.overlaps
    _no_overlaps(balloons)


def test_tails_point_to_slot_side_without_pose():
    anchors = (SpeakerAnchor("Mara", None, 0, 2), SpeakerAnchor("Theo", None, 1, 2))
    balloons = _speech(plan_lettering(AREA, None, (Dialogue("Mara", "Left."),
                                                   Dialogue("Theo", "Right.")), anchors))
    mara, theo = balloons
    mid = AREA.x + AREA.w / 2
    assert mara.target[0] < mid < theo.target[0]
    assert mara.tip[0] < theo.tip[0]
    for b in balloons:
        assert b.tip[1] > b.box.center[1]  # tails hang below toward the speaker
        assert abs(b.tip[0] - b.target[0]) < abs(b.box.center[0] - b.target[0]) + 1e-6


def test_many_bubbles_no_overlap_reading_order_inside_panel():
    lines = [("Mara", "You came back."), ("Theo", "I always do. The storm can't keep me away."),
             ("Mara", "Stay for tea?"), ("Theo", "Just one cup, then the lamp."),
             ("Mara", "Deal.")]
    anchors = (SpeakerAnchor("Mara", None, 0, 2), SpeakerAnchor("Theo", None, 1, 2))
    for area in (AREA, Rect(0, 0, 900, 500), Rect(10, 10, 300, 400)):
        for k in range(1, len(lines) + 1):
            balloons = plan_lettering(area, "Meanwhile, at the lighthouse.",
                                      tuple(Dialogue(*l) for l in lines[:k]), anchors)
            assert balloons[0].kind == "caption" and balloons[0].speaker is None
            _said(balloons, lines[:k])
            speech = _speech(balloons)
            if any(b.overlaps for b in balloons):
                # Only when the words cannot fit at the smallest size: 5 bubbles in 300x400.
                assert (area.w, k) == (300, 5)
                continue
            _no_overlaps(balloons)
            for b in balloons:
                assert area.contains(b.box, tol=0.5)
            tops = [b.box.y for b in speech]
            assert tops == sorted(tops)  # script order reads top to bottom
            for a, b in itertools.combinations(speech, 2):
                if b.box.y < a.box.y + 0.6 * a.box.h:  # level: the later one is to the right
                    assert b.box.center[0] > a.box.center[0]


def test_bubbles_keep_off_faces_when_there_is_room():
    heads = {"Mara": (400.0, 450.0)}
    balloons = _speech(plan_lettering(AREA, None, (Dialogue("Mara", "Hello there!"),),
                                      (SpeakerAnchor("Mara", (0.5, 0.5), 0, 1),), heads))
    r = LetteringOptions().face_radius * AREA.w
    face = Rect(400 - r, 450 - r, 2 * r, 2.3 * r)
    assert not balloons[0].box.intersects(face)
    assert balloons[0].box.bottom < 450  # above the speaker


def test_text_fits_inside_its_bubble():
    chain = default_chain(True)
    balloons = plan_lettering(Rect(0, 0, 500, 400), "A caption.",
                              (Dialogue("A", "Words words words, many words to wrap."),),
                              (SpeakerAnchor("A", None, 0, 1),))
    for b in balloons:
        for line in b.lines:
            assert b.box.x <= line.x and line.x + line.width <= b.box.right + 0.5
            assert b.box.y < line.baseline < b.box.bottom
        if b.kind == "speech":
            assert all(abs(chain.measure(l.text, b.font_size) - l.width) < 1e-6 for l in b.lines)


def test_anchors_from_script_panel_and_pose():
    nose_a, nose_b = (0.3, 0.25), (0.7, 0.3)
    pts = [None] * 18
    pose = Pose("two", (Person(tuple([nose_a] + pts[1:])), Person(tuple([nose_b] + pts[1:]))))
    panel = Panel("[Mara] and [Theo]", characters=("Mara", "Theo"),
                  dialogue=(Dialogue("theo", "Hi"), Dialogue("Mara", "Hey"), Dialogue("Nar", "...")))
    anchors = {a.name: a for a in anchors_for_panel(panel, pose)}
    assert anchors["theo"].head == pytest.approx(nose_b) and anchors["theo"].slot == 1
    assert anchors["Mara"].head == pytest.approx(nose_a) and anchors["Mara"].slot == 0
    assert anchors["Mara"].box[0] < nose_a[0] < anchors["Mara"].box[2]
    assert anchors["Nar"].slot == -1 and anchors["Nar"].head is None
    no_pose = anchors_for_panel(panel)
    assert all(a.head is None for a in no_pose)


def test_drawing_is_anti_aliased_and_lands_in_the_box():
    page = Image.new("RGB", (800, 900), (90, 140, 200))
    balloons = plan_lettering(AREA, "Narration.", (Dialogue("A", "Hello!"),),
                              (SpeakerAnchor("A", None, 0, 1),))
    draw_balloons(page, balloons)
    speech = _speech(balloons)[0]
    left, top, right, bottom = speech.box.rounded()
    cy = (top + bottom) // 2
    assert page.getpixel((left + 3, cy + 3)) != (90, 140, 200)  # inside near the edge: filled
    region = page.crop((left - 3, top - 3, right + 3, bottom + 3)).convert("L")
    levels = sum(1 for count in region.histogram() if count)
    assert levels > 20  # smooth edges, not just ink / paper / background
    outside = page.getpixel((5, 5))
    assert outside == (90, 140, 200)


def test_text_too_long_for_a_tiny_panel_is_cut_with_an_ellipsis():
    area = Rect(0, 0, 120, 90)
    balloons = plan_lettering(area, "A very long caption " * 20, (Dialogue("A", "Hello there, how are you?"),),
                              ())
    caption = balloons[0]
    assert caption.lines[-1].text.endswith("\u2026")
    assert area.contains(caption.box, tol=0.5)
    for b in balloons:
        assert b.box.bottom <= area.bottom + 0.5


def test_random_panels_keep_bubbles_apart_and_inside():
    """Seeded random panels: sizes, 1-4 lines, heads or slots; every plan that found room has
    no overlaps, stays inside, and reads in script order."""
    import random

    rng = random.Random(1234)
    words = "the storm lamp tea boat night keeper light sea home you me always never".split()
    for _ in range(25):
        area = Rect(rng.uniform(0, 50), rng.uniform(0, 50), rng.uniform(250, 900), rng.uniform(250, 900))
        n_people = rng.randint(1, 3)
        anchors, heads = [], {}
        for slot in range(n_people):
            name = f"P{slot}"
            head = (rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.7)) if rng.random() < 0.6 else None
            anchors.append(SpeakerAnchor(name, head, slot, n_people))
            if head:
                heads[name] = (area.x + head[0] * area.w, area.y + head[1] * area.h)
        lines = tuple(Dialogue(f"P{rng.randrange(n_people)}",
                               " ".join(rng.choice(words) for _ in range(rng.randint(1, 9))))
                      for _ in range(rng.randint(1, 4)))
        caption = "Narration here." if rng.random() < 0.5 else None
        balloons = plan_lettering(area, caption, lines, tuple(anchors), heads)
        _said(balloons, [(d.speaker, d.text) for d in lines])
        speech = _speech(balloons)
        if any(b.overlaps for b in balloons):
            continue
        _no_overlaps(balloons)
        assert all(area.contains(b.box, tol=0.5) for b in balloons)
        tops = [b.box.y for b in speech]
        assert tops == sorted(tops)
        for b in speech:  # every tail heads toward its target
            cx, cy = b.box.center
            assert math.dist(b.tip, b.target) < math.dist((cx, cy), b.target) + 1e-6


@pytest.mark.parametrize("bold", [False, True])
def test_text_is_as_wide_drawn_as_measured_at_preview_sizes(bold):
    """A comic preview letters at 60 dpi: 4-6 pixel fonts, where hinting makes a glyph's advance
    anything but proportional to the size. Text was measured at the size rounded to whole pixels and
    drawn at twice the size (anti-aliasing), so a caption ran up to 12% past its box. Measured as it
    is drawn, the drawn line ends where its measure says (within a pixel)."""
    chain = default_chain(bold)
    text = "Every night, Mara climbed to the lighthouse."
    for size in (4.1, 4.4, 4.6, 5.3, 6.7, 9.5, 13.2, 24.0):
        width = chain.measure(text, size)
        layer = Image.new("L", (int(width * SUPERSAMPLE) + 80, int(size * 6) + 20), 0)
        line = TextLine(text, 10.0, size * 2, width)
        draw_text_line(ImageDraw.Draw(layer), line, chain, size, "white", scale=SUPERSAMPLE)
        ink = layer.getbbox()
        assert ink is not None
        drawn_right = ink[2] / SUPERSAMPLE
        assert drawn_right <= 10.0 + width + 1.0, (size, drawn_right - 10.0, width)
        assert drawn_right >= 10.0 + width - max(2.0, 0.06 * width), (size, drawn_right - 10.0, width)
