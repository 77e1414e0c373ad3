"""Shared helpers for the pose tests (test_poses*.py)."""

from __future__ import annotations

from storymaker.domain.poses import KEYPOINT_INDEX as I
from storymaker.domain.poses import NUM_KEYPOINTS


def skeleton(cx: float = 0.5, top: float = 0.1, scale: float = 0.8, facing: str = "front") -> list:
    """A simple front-facing skeleton centred at ``cx`` (normalised), person's right on image left."""
    s = scale
    pts: list = [None] * NUM_KEYPOINTS
    side = -1 if facing == "front" else 1  # where the person's right side is drawn
    pts[I["nose"]] = (cx, top + 0.09 * s)
    pts[I["neck"]] = (cx, top + 0.18 * s)
    for name, sign in (("right", side), ("left", -side)):
        pts[I[f"{name}_shoulder"]] = (cx + sign * 0.12 * s, top + 0.18 * s)
        pts[I[f"{name}_elbow"]] = (cx + sign * 0.14 * s, top + 0.37 * s)
        pts[I[f"{name}_wrist"]] = (cx + sign * 0.15 * s, top + 0.51 * s)
        pts[I[f"{name}_hip"]] = (cx + sign * 0.08 * s, top + 0.47 * s)
        pts[I[f"{name}_knee"]] = (cx + sign * 0.085 * s, top + 0.715 * s)
        pts[I[f"{name}_ankle"]] = (cx + sign * 0.09 * s, top + 0.96 * s)
        pts[I[f"{name}_eye"]] = (cx + sign * 0.018 * s, top + 0.067 * s)
        pts[I[f"{name}_ear"]] = (cx + sign * 0.045 * s, top + 0.075 * s)
    if facing == "back":
        for name in ("nose", "right_eye", "left_eye"):
            pts[I[name]] = None
    return pts
