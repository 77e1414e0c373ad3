"""Bubbles respect the picture: drafts of every pose preset with 1, 2 and 3 characters keep every
balloon off every head and end every tail at its own speaker's head; heads recorded at render
time (draft boxes, detected faces) reach the layout through the version's metadata."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from storymaker.domain.bubbles import plan_lettering
from storymaker.domain.heads import (
    Head,
    SpeakerAnchor,
    heads_from_record,
    heads_to_record,
    name_detected,
    panel_heads,
    pose_heads,
    recorded,
)
from storymaker.domain.layout import LayoutOptions, Rect
from storymaker.domain.lettering import LetteringOptions
from storymaker.domain.story import Dialogue, Panel
from storymaker.perception.base import DetectedFace
from storymaker.perception.heads import detect_and_record, detect_heads
from storymaker.services.draft import draw_draft
from storymaker.services.export import ComicPanel, render_comic
from storymaker.services.export.compose import _heads
from storymaker.services.jobs import CharacterSlot, PanelJob
from storymaker.services.poses import PoseLibrary

NAMES = ("Eileen", "Tessa", "Ana")
SHORT = {"Eileen": "See you in a week!", "Tessa": "I saw your light from the sea.",
         "Ana": "Then let's go."}
LONG = ("Honestly, I have been thinking about this trip for weeks, and I still cannot believe we "
        "are finally doing it together after everything that happened last winter.")

LIBRARY = PoseLibrary()
PRESETS = sorted((p.name, p.num_people) for p in LIBRARY.list())


def _draft(pose_name: str | None, names: tuple[str, ...], size=(768, 1024)):
    pose = LIBRARY.get(pose_name) if pose_name else None
    job = PanelJob(index=0, prompt="p", negative_prompt="", width=size[0], height=size[1], steps=1,
                   guidance_scale=7.5, seed=1, source_prompt="[x] somewhere",
                   characters=tuple(CharacterSlot(n) for n in names), pose=pose)
    return draw_draft(job, {}), pose


def _page_heads(page, panel: ComicPanel):
    named, faces, _ = _heads(panel, page.placements[0][1])
    return named, faces


def _check_panel(page, panel: ComicPanel, names):
    named, faces = _page_heads(page, panel)
    assert {n for n in named} == set(names)  # every character's head is known
    for b in page.balloons:
        assert not b.overlaps, b.text
        for face in faces:
            assert not b.box.intersects(face), (b.kind, b.speaker, b.box, face)
    for b in page.balloons:
        if b.kind != "speech":
            continue
        own = named[b.speaker]
        reach = max(own.w, own.h)
        tip = b.tip

        def gap(r: Rect) -> float:
            dx = max(r.x - tip[0], 0.0, tip[0] - r.right)
            dy = max(r.y - tip[1], 0.0, tip[1] - r.bottom)
            return math.hypot(dx, dy)

        assert gap(own) <= reach * 0.5, (b.speaker, tip, own)  # ends near its own head
        for other, box in named.items():
            if other != b.speaker:
                assert gap(own) < gap(box), (b.speaker, "points at", other)


@pytest.mark.parametrize("pose_name,people", PRESETS)
@pytest.mark.parametrize("long_line", [False, True], ids=["short", "long"])
def test_draft_bubbles_keep_off_heads_and_tails_reach_speakers(pose_name, people, long_line):
    names = NAMES[:people]
    image, pose = _draft(pose_name, names)
    lines = [Dialogue(n, SHORT[n]) for n in names]
    if long_line:
        lines[len(lines) // 2] = Dialogue(names[len(lines) // 2], LONG)
    story_panel = Panel("[x]", characters=names, pose=pose_name, caption="Later that night.",
                        dialogue=tuple(lines))
    panel = ComicPanel.from_story_panel(story_panel, image, pose, recorded(image))
    assert all(h.source == "draft" for h in panel.heads)
    (page,) = render_comic([panel], LayoutOptions(kind="strip", panel_height=750), draw=False)
    _check_panel(page, panel, names)
    said = [b for b in page.balloons if b.speaker]
    assert [b.speaker for b in said] == list(names)


@pytest.mark.parametrize("people", [1, 2, 3])
def test_drafts_without_pose_record_their_heads_too(people):
    names = NAMES[:people]
    image, _ = _draft(None, names, size=(1024, 768))
    story_panel = Panel("[x]", characters=names, dialogue=tuple(Dialogue(n, SHORT[n]) for n in names))
    panel = ComicPanel.from_story_panel(story_panel, image, None, recorded(image))
    (page,) = render_comic([panel], LayoutOptions(kind="strip", panel_height=600), draw=False)
    _check_panel(page, panel, names)


def test_draft_records_heads_and_slug_band():
    image, pose = _draft("two-talking", NAMES[:2])
    record = recorded(image)
    heads = heads_from_record(record)
    assert [h.name for h in heads] == ["Eileen", "Tessa"]
    assert all(h.source == "draft" for h in heads)
    band, mark = record["keep_clear"]
    assert band[1] > 0.8 and band[3] == 1.0  # the slug line at the bottom
    # The recorded box is where the thumbnail was drawn: around the pose's head.
    expected = pose_heads(pose, NAMES[:2], 768, 1024)
    for drawn, estimated in zip(heads, expected):
        cx, cy = estimated.center
        assert drawn.box[0] < cx < drawn.box[2] and drawn.box[1] < cy < drawn.box[3]


def test_record_round_trip_and_bad_entries_are_skipped():
    heads = [Head((0.1, 0.2, 0.3, 0.4), "Ana", "detector"), Head((0.5, 0.1, 0.6, 0.3))]
    assert heads_from_record({"heads": heads_to_record(heads)}) == heads
    assert heads_from_record({}) is None
    assert heads_from_record({"heads": [{"box": [1, 1, 0, 0]}, {"box": "x"}, 3]}) == []


def test_pose_heads_are_head_sized_and_in_the_panel_frame():
    pose = LIBRARY.get("three-standing-group")  # a 1024x768 frame
    heads = pose_heads(pose, NAMES, 768, 1024)  # fitted into a portrait panel: letterboxed
    assert [h.name for h in heads] == list(NAMES)
    for h in heads:
        w, hh = h.box[2] - h.box[0], (h.box[3] - h.box[1]) * 1024 / 768
        assert 0.04 < w < 0.15 and hh > w  # a head, taller than wide
        assert 0.25 < h.center[1] < 0.75  # inside the letterboxed frame, not at the pose's y
    xs = [h.center[0] for h in heads]
    assert xs == sorted(xs)


def test_detected_faces_are_named_through_the_pose_and_missing_ones_kept():
    pose = LIBRARY.get("three-standing-group")
    expected = pose_heads(pose, NAMES, 768, 1024)
    # The detector finds Ana and Eileen (in that order) and a stray face; it misses Tessa.
    def near(h: Head, dx=0.01) -> Head:
        x0, y0, x1, y1 = h.box
        return Head((x0 + dx, y0, x1 + dx, y1), None, "detector")

    stray = Head((0.45, 0.85, 0.5, 0.9), None, "detector")
    found = [near(expected[2]), near(expected[0]), stray]
    named = name_detected(found, expected, NAMES)
    by_name = {h.name: h for h in named}
    assert by_name["Ana"].source == by_name["Eileen"].source == "detector"
    assert by_name["Tessa"].source == "pose"
    assert stray.box in [h.box for h in named if h.name is None]
    meta = {"heads": heads_to_record(found)}
    assert {h.name for h in panel_heads(NAMES, pose, meta, (768, 1024))} == {*NAMES, None}
    # No pose: faces named left to right when there is one per character.
    lr = name_detected([found[0], found[1]], [], ("Eileen", "Ana"))
    assert [h.name for h in lr] == ["Ana", "Eileen"]


class _FakeAnalyzer:
    """Returns fixed face boxes (pixels), like insightface's analyser would."""

    name = "fake"

    def __init__(self, boxes):
        self.boxes = boxes
        self.seen = None

    def analyze(self, rgb):
        self.seen = rgb.shape
        return [DetectedFace(bbox=b, kps=np.zeros((5, 2), np.float32),
                             embedding=np.zeros(512, np.float32), det_score=0.9)
                for b in self.boxes]


def test_detect_heads_grows_face_boxes_and_records_them():
    from PIL import Image

    image = Image.new("RGB", (400, 200), "gray")
    analyzer = _FakeAnalyzer([(300, 50, 340, 100), (100, 60, 140, 110)])
    boxes = detect_heads(image, analyzer)
    assert analyzer.seen == (200, 400, 3)
    assert boxes[0][0] < boxes[1][0]  # left to right
    x0, y0, x1, y1 = boxes[0]
    assert x0 < 100 / 400 and x1 > 140 / 400 and y0 < 60 / 200 and y1 > 110 / 200  # hair included
    detect_and_record(image, analyzer)
    heads = heads_from_record(recorded(image))
    assert [h.source for h in heads] == ["detector", "detector"]
    # A face the layout knows from detection keeps bubbles off it.
    panel = ComicPanel.from_story_panel(
        Panel("[Ava] and [Ben]", characters=("Ava", "Ben"),
              dialogue=(Dialogue("Ava", "Hello there, how are you?"), Dialogue("Ben", "Fine."))),
        image, None, recorded(image))
    (page,) = render_comic([panel], LayoutOptions(kind="strip", panel_height=400), draw=False)
    _check_panel(page, panel, ("Ava", "Ben"))


def test_detection_failure_records_nothing():
    from PIL import Image

    from storymaker.errors import WeightsNotFoundError

    class Missing:
        name = "buffalo_l"

        def analyze(self, rgb):
            raise WeightsNotFoundError("not installed")

    image = Image.new("RGB", (64, 64))
    assert recorded(detect_and_record(image, Missing())) == {}
    assert recorded(detect_and_record(image, None)) == {}


def test_a_line_with_no_room_becomes_a_caption_before_covering_a_face():
    """A close-up: the face fills the panel but for a band at the top, too low for a bubble of
    this line: the line becomes a caption in the band, naming its speaker."""
    area = Rect(0, 0, 600, 400)
    face = Rect(20, 100, 560, 290)
    lines = (Dialogue("Ava", LONG),)
    balloons = plan_lettering(area, None, lines, (SpeakerAnchor("Ava", None, 0, 1),), {"Ava": face})
    (b,) = balloons
    assert b.kind == "caption" and b.speaker == "Ava" and b.text == f"Ava: {LONG}"
    assert not b.box.intersects(face) and not b.overlaps
    assert b.lines[-1].text.endswith("winter.")  # all of it


def test_bubble_moves_to_the_free_corner_and_wraps_to_a_sane_width():
    """One speaker in the middle of a wide panel: a long line sits beside or above the head in
    a balloon no wider than the panel allows, and the text wraps to several lines."""
    area = Rect(0, 0, 900, 600)
    head = Rect(380, 120, 140, 180)
    (b,) = plan_lettering(area, None, (Dialogue("Ava", LONG),), (SpeakerAnchor("Ava", None, 0, 1),),
                          {"Ava": head})
    assert b.kind == "speech" and not b.box.intersects(head) and not b.overlaps
    assert len(b.lines) >= 3  # wrapped, not one long band across the panel
    assert all(line.width <= LetteringOptions().bubble_max_width * area.w for line in b.lines)
    assert 0.5 < b.box.w / b.box.h < 4.5
    assert b.box.x >= head.right or b.box.bottom <= head.y or b.box.right <= head.x


def test_engine_keeps_recorded_heads_in_the_version_metadata(tmp_path):
    """A draft render through the engine: the version's metadata holds the drawn head boxes and
    the comic built from that version letters around them."""
    from render_helpers import tiny_settings

    from storymaker.services.backends import DraftBackend
    from storymaker.services.render import RenderEngine
    from storymaker.services.storage import Project
    from storymaker.domain.story import Story

    project = Project.create(tmp_path / "p", title="t")
    names = NAMES[:3]
    story_panel = Panel("[Eileen], [Tessa] and [Ana] on the pier", characters=names,
                        pose="three-standing-group", size=(768, 1024),
                        dialogue=tuple(Dialogue(n, SHORT[n]) for n in names))
    engine = RenderEngine(DraftBackend(), tiny_settings(tmp_path / "data", backend="draft"),
                          project=project, poses=LIBRARY)
    report = engine.render_story(Story(panels=(story_panel,)))
    assert report.ok
    version = project.selected(0)
    heads = heads_from_record(version.meta)
    assert [h.name for h in heads] == list(names) and {h.source for h in heads} == {"draft"}
    from PIL import Image

    with Image.open(version.image_path) as im:
        image = im.convert("RGB")
    panel = ComicPanel.from_story_panel(story_panel, image, LIBRARY.get("three-standing-group"),
                                        dict(version.meta))
    (page,) = render_comic([panel], LayoutOptions(kind="strip", panel_height=700), draw=False)
    _check_panel(page, panel, names)


def test_stand_in_detector_finds_the_face_on_a_photo_and_bubbles_avoid_it():
    """With a real (if crude) detector, OpenCV's Haar cascade of the tiny backend: the example
    photo's face is found, recorded, and the bubble keeps off it."""
    from PIL import Image

    from storymaker.perception.standins import StandInFaceAnalyzer

    photo = Image.open(Path(__file__).resolve().parents[1] / "examples/photos/astronaut.png")
    photo = photo.convert("RGB")
    (box,) = detect_heads(photo, StandInFaceAnalyzer())
    w, h = photo.size
    assert box[0] * w < 190 and box[2] * w > 260 and box[1] * h < 70 and box[3] * h > 155
    detect_and_record(photo, StandInFaceAnalyzer())
    panel = ComicPanel.from_story_panel(
        Panel("[Eileen] smiles", characters=("Eileen",),
              dialogue=(Dialogue("Eileen", "See you in a week!"),)), photo, None, recorded(photo))
    assert [h.name for h in panel.heads] == ["Eileen"]  # one face, one character: named
    (page,) = render_comic([panel], LayoutOptions(kind="strip", panel_height=512), draw=False)
    _check_panel(page, panel, ("Eileen",))


def test_lines_that_become_captions_still_read_top_to_bottom():
    """Found on a three-speaker panel: the first line that had no room for a bubble took the
    lowest free row and the next went above it, so the captions read in reverse order."""
    area = Rect(0, 0, 600, 400)
    faces = {"Ava": Rect(20, 90, 270, 220), "Ben": Rect(310, 90, 270, 220)}  # bands above and below
    lines = (Dialogue("Ava", LONG), Dialogue("Ben", "No. " + LONG))
    anchors = (SpeakerAnchor("Ava", None, 0, 2), SpeakerAnchor("Ben", None, 1, 2))
    first, second = plan_lettering(area, None, lines, anchors, faces)
    assert (first.speaker, second.speaker) == ("Ava", "Ben")
    assert first.kind == second.kind == "caption"
    assert first.box.y < second.box.y  # script order, top to bottom
    for b in (first, second):
        assert not b.overlaps and not any(b.box.intersects(f) for f in faces.values())


def _segments_cross(p1, p2, q1, q2) -> bool:
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def _tails_cross(a, b) -> bool:
    """Any edge of one tail triangle crosses any edge of the other, or its axis (base middle to
    tip) does."""
    def segments(t):
        mid = ((t[0][0] + t[2][0]) / 2, (t[0][1] + t[2][1]) / 2)
        return [(t[0], t[1]), (t[1], t[2]), (t[2], t[0]), (mid, t[1])]

    return any(_segments_cross(*s, *u) for s in segments(a) for u in segments(b))


MULTI = [(name, people) for name, people in PRESETS if people >= 2]


@pytest.mark.parametrize("pose_name,people", MULTI)
def test_tails_never_cross_and_bubbles_keep_to_their_speakers_side(pose_name, people):
    """Found on the lighthouse's two-speaker panels: when the speaker on the right talks first,
    the first bubble went left and the second right, and the tails crossed. Every preset with 2
    or 3 speakers, either speaking order, a large and a small panel: no two tails cross, every
    balloon keeps off every head and its tail reaches its own speaker; with two speakers, each
    bubble sits on its own speaker's side (nearer, across the panel, its own head)."""
    names = NAMES[:people]
    image, pose = _draft(pose_name, names)
    for order in (names, names[::-1]):
        lines = tuple(Dialogue(n, SHORT[n]) for n in order)
        story_panel = Panel("[x]", characters=names, pose=pose_name, caption="Later that night.",
                            dialogue=lines)
        panel = ComicPanel.from_story_panel(story_panel, image, pose, recorded(image))
        for height in (750, 400):
            (page,) = render_comic([panel], LayoutOptions(kind="strip", panel_height=height),
                                   draw=False)
            said = [b for b in page.balloons if b.kind == "speech"]
            assert [b.speaker for b in page.balloons if b.speaker] == list(order)
            for a, b in itertools.combinations(said, 2):
                assert not _tails_cross(a.tail, b.tail), (order, height, a.speaker, b.speaker)
            if height == 750:
                _check_panel(page, panel, names)
            if people == 2:
                named, _ = _page_heads(page, panel)
                for b in said:
                    cx = b.box.center[0]
                    mine = abs(cx - named[b.speaker].center[0])
                    other = min(abs(cx - r.center[0]) for n, r in named.items() if n != b.speaker)
                    assert mine <= other + 1.0, (order, height, b.speaker, "on the other side")
