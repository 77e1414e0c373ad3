"""Pose data: OpenPose body keypoints (18 COCO-order points per person, normalised 0..1).

Coordinates are normalised to the pose's own frame (``width`` x ``height`` gives its aspect), so a
pose can be drawn at any panel size without distortion. A missing point is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

# OpenPose COCO-18 order, as controlnet-aux draws it.
KEYPOINT_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

Point = tuple[float, float] | None


@dataclass(frozen=True)
class Person:
    """One skeleton: exactly 18 points in COCO order, each ``(x, y)`` in 0..1 or ``None``."""

    points: tuple[Point, ...]


@dataclass(frozen=True)
class Pose:
    """A named pose of one or more people. People are in character-slot order."""

    name: str
    people: tuple[Person, ...]
    width: int = 512
    height: int = 512
    description: str = ""
    source: str = "preset"  # "preset" (assets/poses) or "project" (saved in a project)

    @property
    def num_people(self) -> int:
        return len(self.people)
