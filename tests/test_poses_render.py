"""Pose drawing with controlnet-aux: colours at the right pixels, aspect kept, black background."""

from __future__ import annotations

import numpy as np
import pytest

from storymaker.domain.poses import LIMBS, fit_points, make_pose
from storymaker.errors import PoseError
from storymaker.perception.pose import render_pose
from poses_helpers import skeleton

# OpenPose's body colour table as controlnet-aux draws it (RGB): keypoint j in colour j, limb i in
# colour i scaled by 0.6. Written out here so the test checks the drawing, not a copy of itself.
OPENPOSE_COLOURS = [
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
]
# controlnet-aux's limbSeq (1-based keypoint pairs).
CONTROLNET_AUX_LIMBS = [
    [2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13],
    [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18],
]


def test_limb_table_matches_controlnet_aux_order():
    assert [[a + 1, b + 1] for a, b in LIMBS] == CONTROLNET_AUX_LIMBS


@pytest.fixture(scope="module")
def drawn():
    pose = make_pose("known", [skeleton(0.5, top=0.05, scale=0.9)], 1000, 1000)
    image = render_pose(pose, 1000, 1000)
    return pose, image


def test_render_is_rgb_on_black_at_the_panel_size(drawn):
    pose, image = drawn
    assert image.mode == "RGB" and image.size == (1000, 1000)
    arr = np.asarray(image)
    assert arr[0, 0].tolist() == [0, 0, 0] and arr[-1, -1].tolist() == [0, 0, 0]
    assert (arr.sum(axis=2) > 0).mean() < 0.1  # lines on black, not a filled picture


def test_keypoints_have_their_colours(drawn):
    pose, image = drawn
    arr = np.asarray(image)
    for j, (x, y) in enumerate(fit_points(pose, 1000, 1000)[0]):
        assert tuple(arr[int(y), int(x)]) == OPENPOSE_COLOURS[j], f"keypoint {j}"


def test_limbs_have_their_colours(drawn):
    pose, image = drawn
    arr = np.asarray(image)
    pts = fit_points(pose, 1000, 1000)[0]
    for i, (a, b) in enumerate(LIMBS):
        mx, my = (pts[a][0] + pts[b][0]) / 2, (pts[a][1] + pts[b][1]) / 2
        expected = tuple(int(c * 0.6) for c in OPENPOSE_COLOURS[i])
        assert tuple(arr[int(round(my)), int(round(mx))]) == expected, f"limb {i} {a}->{b}"


def test_missing_points_draw_nothing_around_them():
    pts = skeleton(0.5, top=0.05, scale=0.9)
    pts[0] = None  # nose: neck->nose and both nose->eye limbs vanish
    pose = make_pose("no-nose", [pts], 1000, 1000)
    arr = np.asarray(render_pose(pose, 1000, 1000))
    full = make_pose("full", [skeleton(0.5, top=0.05, scale=0.9)], 1000, 1000)
    nose = fit_points(full, 1000, 1000)[0][0]
    neck = fit_points(full, 1000, 1000)[0][1]
    mid = (int((nose[1] + neck[1]) / 2), int(nose[0]))
    assert arr[int(nose[1]), int(nose[0])].tolist() == [0, 0, 0]
    assert arr[mid].tolist() == [0, 0, 0]


def test_aspect_is_kept_when_the_panel_differs():
    """A 2:3 pose in a 2:1 panel: fitted to the height, centred, nothing drawn in the side bands."""
    pose = make_pose("tall", [skeleton()], 512, 768)
    arr = np.asarray(render_pose(pose, 1200, 600))
    assert arr.shape == (600, 1200, 3)
    ink = np.argwhere(arr.sum(axis=2) > 0)
    assert ink[:, 1].min() >= 400 - 5 and ink[:, 1].max() < 800 + 5
    pts = fit_points(pose, 1200, 600)[0]
    for j in (1, 2, 5, 10, 13):
        x, y = pts[j]
        assert tuple(arr[int(y), int(x)]) == OPENPOSE_COLOURS[j]
    # Proportions: the drawn skeleton's height/width equals the original one's.
    own = fit_points(pose, 512, 768)[0]

    def extent(points):
        xs = [p[0] for p in points if p]
        ys = [p[1] for p in points if p]
        return (max(ys) - min(ys)) / (max(xs) - min(xs))

    assert extent(pts) == pytest.approx(extent(own))
    # Centred: the neck stays in the middle column.
    assert pts[1][0] == pytest.approx(600)


def test_several_people_are_all_drawn():
    pose = make_pose("two", [skeleton(0.25, scale=0.45), skeleton(0.75, scale=0.45)], 800, 400)
    arr = np.asarray(render_pose(pose, 800, 400))
    for person in fit_points(pose, 800, 400):
        x, y = person[1]
        assert tuple(arr[int(y), int(x)]) == OPENPOSE_COLOURS[1]


def test_bad_size_is_refused():
    pose = make_pose("p", [skeleton()])
    with pytest.raises(PoseError, match="positive"):
        render_pose(pose, 0, 100)
