"""The built-in pose presets: every one loads, validates, renders, and reads as a human body."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from PIL import Image

from storymaker.domain.poses import KEYPOINT_INDEX as I
from storymaker.domain.poses import dumps_pose, fit_points, validate_name, validate_pose
from storymaker.perception.pose import render_pose
from storymaker.services.poses import DEFAULT_PRESETS_DIR, PoseLibrary

PRESETS = PoseLibrary().presets()
REQUIRED = {
    # one person
    "standing", "walking", "running", "sitting", "waving", "pointing", "standing-arms-crossed",
    "jumping", "kneeling", "back-view",
    # two people
    "two-side-by-side", "two-talking", "two-handshake", "two-hug", "two-walking-together",
    "two-sitting-facing",
    # three people
    "three-standing-group", "three-walking-group",
}


def test_library_has_the_presets_the_issue_and_the_script_spec_need():
    assert len(PRESETS) >= 16
    assert REQUIRED <= set(PRESETS), REQUIRED - set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_loads_validates_and_renders(name):
    pose = PRESETS[name]
    assert validate_name(pose.name) == name
    assert (DEFAULT_PRESETS_DIR / f"{name}.json").is_file()
    assert validate_pose(pose).people == pose.people
    expected_people = 3 if name.startswith("three-") else 2 if name.startswith("two-") else 1
    assert pose.num_people == expected_people
    assert pose.description
    for person in pose.people:
        assert len(person.points) == 18
        for p in person.points:
            assert p is None or (0.0 <= p[0] <= 1.0 and 0.0 <= p[1] <= 1.0)
    image = render_pose(pose, 480, 640)
    arr = np.asarray(image)
    assert image.size == (480, 640) and image.mode == "RGB"
    assert (arr.sum(axis=2) > 0).sum() > 500 * pose.num_people  # skeletons were drawn


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preview_is_the_rendered_preset(name):
    pose = PRESETS[name]
    preview = Image.open(DEFAULT_PRESETS_DIR / f"{name}.png").convert("RGB")
    assert preview.size == (pose.width, pose.height)
    drawn = np.asarray(render_pose(pose, pose.width, pose.height), dtype=np.int16)
    assert np.abs(np.asarray(preview, dtype=np.int16) - drawn).mean() < 0.5


def _metrics(pose, person_index):
    """Body measurements in pixels of the pose's own frame (x and y on the same scale)."""
    pts = fit_points(pose, pose.width, pose.height)[person_index]

    def d(a, b):
        return math.dist(pts[I[a]], pts[I[b]])

    hip_mid = ((pts[I["right_hip"]][0] + pts[I["left_hip"]][0]) / 2, (pts[I["right_hip"]][1] + pts[I["left_hip"]][1]) / 2)
    trunk = math.dist(pts[I["neck"]], hip_mid)
    return pts, d, trunk


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_limbs_have_human_lengths(name):
    """Relative to the trunk (neck to mid-hip), no limb is longer than an adult's; none vanishes."""
    pose = PRESETS[name]
    for k in range(pose.num_people):
        pts, d, trunk = _metrics(pose, k)
        for side in ("right", "left"):
            assert 0.25 * trunk < d(f"{side}_shoulder", f"{side}_elbow") <= 0.70 * trunk
            assert 0.25 * trunk < d(f"{side}_elbow", f"{side}_wrist") <= 0.55 * trunk
            assert 0.30 * trunk < d(f"{side}_hip", f"{side}_knee") <= 0.90 * trunk
            assert 0.30 * trunk < d(f"{side}_knee", f"{side}_ankle") <= 0.90 * trunk
        assert d("right_shoulder", "left_shoulder") <= 0.90 * trunk
        assert d("right_hip", "left_hip") <= 0.60 * trunk
        if pts[I["nose"]] is not None:
            assert 0.20 * trunk < d("neck", "nose") < 0.45 * trunk


def test_standing_proportions():
    """Head ~1/7.5 of the height, shoulders ~1/4 of it, wrists between hips and knees."""
    pose = PRESETS["standing"]
    pts, d, trunk = _metrics(pose, 0)
    soles = max(pts[I["right_ankle"]][1], pts[I["left_ankle"]][1])
    eyes = (pts[I["right_eye"]][1] + pts[I["left_eye"]][1]) / 2
    height = (soles - eyes) / (1 - 0.5 / 7.5) * 1.03  # eyes sit half a head below the top; ankles above the soles
    assert 0.22 < d("right_shoulder", "left_shoulder") / height < 0.28
    assert 0.09 < (pts[I["neck"]][1] - pts[I["nose"]][1]) / height < 0.13
    for side in ("right", "left"):
        assert pts[I[f"{side}_hip"]][1] < pts[I[f"{side}_wrist"]][1] < pts[I[f"{side}_knee"]][1]
    # Facing the viewer: the person's right side is on the image's left.
    assert pts[I["right_shoulder"]][0] < pts[I["neck"]][0] < pts[I["left_shoulder"]][0]


def test_back_view_has_no_face_and_swapped_sides():
    pose = PRESETS["back-view"]
    person = pose.people[0]
    assert person.point("nose") is None and person.point("right_eye") is None and person.point("left_eye") is None
    assert person.point("right_shoulder")[0] > person.point("left_shoulder")[0]
    assert person.point("right_hip")[0] > person.point("left_hip")[0]


def test_multi_person_presets_are_ordered_left_to_right():
    for pose in PRESETS.values():
        xs = [p.center_x for p in pose.people]
        assert xs == sorted(xs), pose.name


def test_generator_reproduces_the_shipped_json():
    spec = importlib.util.spec_from_file_location("make_presets", DEFAULT_PRESETS_DIR / "make_presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.PRESETS) == set(PRESETS)
    for name in PRESETS:
        built = module.build(name)
        assert dumps_pose(built) == (DEFAULT_PRESETS_DIR / f"{name}.json").read_text(encoding="utf-8"), name


def test_licence_note_ships_with_the_presets():
    text = (DEFAULT_PRESETS_DIR / "LICENSE.md").read_text()
    assert "CC0" in text and "make_presets.py" in text
