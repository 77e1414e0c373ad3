"""Pose data (pure Python): JSON, validation, mirroring, ordering, fitting, panel checks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from storymaker.domain.poses import (
    FLIP_INDEX,
    KEYPOINT_INDEX,
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    Person,
    Pose,
    check_pose_for_panel,
    dumps_pose,
    fit_points,
    fit_transform,
    head_position,
    load_pose,
    loads_pose,
    make_pose,
    mirror_pose,
    order_left_to_right,
    pose_bbox,
    pose_from_dict,
    reorder_people,
    save_pose,
    suggest_name,
    validate_name,
    validate_pose,
)
from storymaker.errors import PoseError

from poses_helpers import skeleton

I = KEYPOINT_INDEX


def assert_same_pose(a: Pose, b: Pose, tol: float = 1e-5) -> None:
    assert (a.name, a.width, a.height, a.description, a.num_people) == (b.name, b.width, b.height, b.description, b.num_people)
    for pa, pb in zip(a.people, b.people):
        for x, y in zip(pa.points, pb.points):
            assert (x is None) == (y is None)
            if x is not None:
                assert x == pytest.approx(y, abs=tol)


def test_domain_module_imports_neither_torch_nor_controlnet_aux():
    code = (
        "import sys; import storymaker.domain.poses, storymaker.services.poses, storymaker.cli.poses, "
        "storymaker.perception.pose; "
        "bad = [m for m in ('torch', 'controlnet_aux', 'cv2', 'torchvision') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_flip_index_is_an_involution_that_swaps_sides():
    assert sorted(FLIP_INDEX) == list(range(NUM_KEYPOINTS))
    for i, j in enumerate(FLIP_INDEX):
        assert FLIP_INDEX[j] == i
        a, b = KEYPOINT_NAMES[i], KEYPOINT_NAMES[j]
        if a in ("nose", "neck"):
            assert i == j
        else:
            assert a.replace("right", "X").replace("left", "right").replace("X", "left") == b


@pytest.mark.parametrize("name", ["standing", "two-talking", "a", "pose-2", "three-walking-group"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Standing", "two_talking", "-x", "x-", "a--b", "a b", "../etc", "x" * 65])
def test_invalid_names(name):
    with pytest.raises(PoseError, match="kebab-case"):
        validate_name(name)


def test_suggest_name_makes_a_valid_name():
    assert suggest_name("My Photo (2).JPG") == "my-photo-2-jpg"
    assert suggest_name("###") == "pose"
    assert validate_name(suggest_name("Ünïcode pose!"))


def test_json_round_trip(tmp_path):
    pose = make_pose("two-people", [skeleton(0.3), skeleton(0.7)], 768, 512, "test pose")
    path = save_pose(pose, tmp_path / "two-people.json")
    loaded = load_pose(path, source="project")
    assert_same_pose(loaded, pose)
    assert loaded.source == "project"
    data = json.loads(path.read_text())
    assert data["format"] == "storymaker-pose" and data["version"] == 1
    assert data["keypoints"] == list(KEYPOINT_NAMES)
    assert len(data["people"]) == 2 and len(data["people"][0]["points"]) == 18
    assert_same_pose(loads_pose(dumps_pose(pose)), pose)
    # Saving what was loaded is stable (coordinates are stored with 5 decimals).
    assert dumps_pose(loads_pose(dumps_pose(pose))) == dumps_pose(pose)


def test_missing_points_survive_json(tmp_path):
    pose = make_pose("back", [skeleton(facing="back")])
    loaded = loads_pose(dumps_pose(pose), source="project")
    assert loaded.people[0].point("nose") is None
    assert loaded.people[0].point("right_ear") is not None


def test_validation_rejects_bad_poses():
    good = skeleton()
    with pytest.raises(PoseError, match="expected 18 keypoints"):
        validate_pose(Pose("x", (Person(tuple(good[:17])),)))
    far = list(good)
    far[0] = (1.5, 0.2)
    with pytest.raises(PoseError, match="outside the frame"):
        validate_pose(Pose("x", (Person(tuple(far)),)))
    nan = list(good)
    nan[0] = (float("nan"), 0.2)
    with pytest.raises(PoseError, match="finite"):
        validate_pose(Pose("x", (Person(tuple(nan)),)))
    with pytest.raises(PoseError, match="no people"):
        validate_pose(Pose("x", ()))
    lonely = [None] * 18
    lonely[1] = (0.5, 0.5)
    with pytest.raises(PoseError, match="at least 2"):
        validate_pose(Pose("x", (Person(tuple(lonely)),)))
    with pytest.raises(PoseError, match="width"):
        validate_pose(Pose("x", (Person(tuple(good)),), width=0))


def test_validation_clamps_tiny_overshoot():
    pts = skeleton()
    pts[0] = (1.01, -0.005)
    pose = validate_pose(Pose("x", (Person(tuple(pts)),)))
    assert pose.people[0].points[0] == (1.0, 0.0)


def test_bad_json_files_give_clear_errors(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(PoseError, match="not valid JSON"):
        load_pose(tmp_path / "broken.json")
    (tmp_path / "newer.json").write_text(json.dumps({"name": "x", "version": 99, "people": []}))
    with pytest.raises(PoseError, match="newer"):
        load_pose(tmp_path / "newer.json")
    with pytest.raises(PoseError, match="does not exist"):
        load_pose(tmp_path / "absent.json")


def test_openpose_json_is_read():
    flat = []
    for p in skeleton():
        flat += [0, 0, 0] if p is None else [p[0] * 640, p[1] * 480, 0.9]
    flat[0:3] = [0, 0, 0]  # nose not detected
    pose = pose_from_dict({"canvas_width": 640, "canvas_height": 480, "people": [{"pose_keypoints_2d": flat}]}, name="op")
    assert (pose.width, pose.height) == (640, 480)
    assert pose.people[0].point("nose") is None
    assert pose.people[0].point("neck") == pytest.approx(skeleton()[1])


def test_mirror_swaps_left_and_right_limbs_and_flips_x():
    pose = make_pose("p", [skeleton(0.3)])
    mirrored = mirror_pose(pose)
    a, b = pose.people[0], mirrored.people[0]
    for name in KEYPOINT_NAMES:
        other = name.replace("right", "X").replace("left", "right").replace("X", "left")
        src = a.point(other)
        assert b.point(name) == pytest.approx((1 - src[0], src[1]))
    # The person's right shoulder was drawn on image-left (facing the viewer); after mirroring the
    # right shoulder is still on image-left of the neck: the skeleton still faces the viewer.
    assert b.point("right_shoulder")[0] < b.point("neck")[0] < b.point("left_shoulder")[0]
    assert b.center_x == pytest.approx(0.7)
    assert_same_pose(mirror_pose(mirrored), pose, tol=1e-12)


def test_mirror_keeps_slot_order():
    pose = make_pose("p", [skeleton(0.25, scale=0.5), skeleton(0.75, scale=0.6)])
    mirrored = mirror_pose(pose)
    # Slot 0 keeps its skeleton (now on the right); ordering by position is a separate step.
    assert mirrored.people[0].center_x > mirrored.people[1].center_x
    ordered = order_left_to_right(mirrored)
    assert ordered.people[0] == mirrored.people[1]


def test_order_left_to_right():
    right, middle, left = skeleton(0.8, scale=0.4), skeleton(0.5, scale=0.4), skeleton(0.2, scale=0.4)
    pose = make_pose("three", [right, middle, left])
    ordered = order_left_to_right(pose)
    xs = [p.center_x for p in ordered.people]
    assert xs == sorted(xs)
    assert ordered.people[0].point("neck")[0] == pytest.approx(0.2)


def test_reorder_people():
    pose = make_pose("two", [skeleton(0.3, scale=0.5), skeleton(0.7, scale=0.5)])
    swapped = reorder_people(pose, [1, 0])
    assert swapped.people == (pose.people[1], pose.people[0])
    with pytest.raises(PoseError, match="arrangement"):
        reorder_people(pose, [0, 0])
    with pytest.raises(PoseError, match="arrangement"):
        reorder_people(pose, [0])


def test_bounding_boxes():
    pose = make_pose("two", [skeleton(0.3, top=0.1, scale=0.5), skeleton(0.7, top=0.2, scale=0.5)])
    x1, y1, x2, y2 = pose_bbox(pose)
    assert x1 == pytest.approx(0.3 - 0.15 * 0.5)
    assert x2 == pytest.approx(0.7 + 0.15 * 0.5)
    assert y1 == pytest.approx(0.1 + 0.067 * 0.5)
    assert y2 == pytest.approx(0.2 + 0.96 * 0.5)


def test_fit_keeps_proportions_and_centres():
    pose = make_pose("tall", [skeleton()], width=512, height=768)
    # Landscape panel: the 2:3 frame fits the height and is centred horizontally.
    t = fit_transform(pose, 1200, 600)
    assert (t.frame_width, t.frame_height) == pytest.approx((400, 600))
    assert (t.offset_x, t.offset_y) == pytest.approx((400, 0))
    # Portrait panel narrower than the pose: fits the width, centred vertically.
    t = fit_transform(pose, 256, 768)
    assert (t.frame_width, t.frame_height) == pytest.approx((256, 384))
    assert t.offset_y == pytest.approx(192)
    pts = fit_points(pose, 1200, 600)[0]
    neck, nose = pts[I["neck"]], pts[I["nose"]]
    rs, ls = pts[I["right_shoulder"]], pts[I["left_shoulder"]]
    # Shoulder width over neck-to-nose distance is the same in the pose's own frame and the panel.
    own = fit_points(pose, 512, 768)[0]
    ratio_own = (own[I["left_shoulder"]][0] - own[I["right_shoulder"]][0]) / (own[I["neck"]][1] - own[I["nose"]][1])
    ratio_fit = (ls[0] - rs[0]) / (neck[1] - nose[1])
    assert ratio_fit == pytest.approx(ratio_own)
    assert neck[0] == pytest.approx(600)


def test_head_position():
    pose = make_pose("p", [skeleton(0.3, scale=0.5), skeleton(0.7, scale=0.5, facing="back")], 1000, 1000)
    x, y = head_position(pose, 0, 1000, 1000)
    assert x == pytest.approx(300, abs=1)
    assert 0.1 * 1000 < y < (0.1 + 0.18 * 0.5) * 1000  # between the top of the frame and the neck
    # Back view: no eyes or nose, the ears give the head.
    bx, by = head_position(pose, 1, 1000, 1000)
    assert bx == pytest.approx(700, abs=1)
    assert by == pytest.approx((0.1 + 0.075 * 0.5) * 1000, abs=1)
    # Only a body: extrapolated above the neck.
    body = skeleton()
    for name in ("nose", "right_eye", "left_eye", "right_ear", "left_ear"):
        body[I[name]] = None
    hx, hy = head_position(make_pose("b", [body]), 0, 512, 512)
    assert hx == pytest.approx(256)
    assert hy < (0.1 + 0.18 * 0.8) * 512
    with pytest.raises(PoseError, match="no person 3"):
        head_position(pose, 2, 100, 100)


def test_check_pose_for_panel():
    pose = make_pose("two", [skeleton(0.3, scale=0.5), skeleton(0.7, scale=0.5)])
    check_pose_for_panel(pose, 2)
    with pytest.raises(PoseError, match=r"has 2 people but the panel has 1 character \(\[Mara\]\)"):
        check_pose_for_panel(pose, 1, ["Mara"])
    with pytest.raises(PoseError, match="3 characters"):
        check_pose_for_panel(pose, 3)
