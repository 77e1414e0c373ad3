"""Pose data: OpenPose body keypoints (18 COCO-order points per person, normalised 0..1).

Coordinates are normalised to the pose's own frame (``width`` x ``height`` gives its aspect), so a
pose can be drawn at any panel size without distortion. A missing point is ``None``.

Everything here is pure Python (no torch, no controlnet-aux): JSON load/save, validation,
mirroring, left-to-right ordering, reordering, bounding boxes, and the geometry that fits a pose's
frame inside a panel (``fit_points``, ``head_position``). Drawing lives in
``storymaker.perception.pose``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import PoseError

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
KEYPOINT_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Index of the same joint on the other side of the body (mirroring swaps these).
FLIP_INDEX = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)

# Limbs as 0-based keypoint pairs, in controlnet-aux's drawing order (its ``limbSeq`` minus one):
# limb i is drawn with controlnet-aux's colour i (times 0.6); keypoint j with colour j.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)

FORMAT = "storymaker-pose"
FORMAT_VERSION = 1
NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_NAME_LENGTH = 64
MAX_PEOPLE = 8
MIN_POINTS_PER_PERSON = 2
# Extraction and editors can land a hair outside the frame: accept and clamp this much.
_TOLERANCE = 0.02

Point = tuple[float, float] | None


@dataclass(frozen=True)
class Person:
    """One skeleton: exactly 18 points in COCO order, each ``(x, y)`` in 0..1 or ``None``."""

    points: tuple[Point, ...]

    @property
    def present(self) -> tuple[int, ...]:
        """Indices of the points that are not missing."""
        return tuple(i for i, p in enumerate(self.points) if p is not None)

    def point(self, name: str) -> Point:
        """The point called ``name`` (see ``KEYPOINT_NAMES``), or None if missing."""
        return self.points[KEYPOINT_INDEX[name]]

    def bbox(self) -> tuple[float, float, float, float] | None:
        """``(x1, y1, x2, y2)`` of the present points (normalised), None if there are none."""
        pts = [p for p in self.points if p is not None]
        if not pts:
            return None
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def center_x(self) -> float:
        """Horizontal centre used to order people left to right (bbox centre; 0.5 if empty)."""
        box = self.bbox()
        return 0.5 if box is None else (box[0] + box[2]) / 2.0

    def mirrored(self) -> "Person":
        """This skeleton seen in a mirror: ``x -> 1 - x`` and left/right joints swapped."""
        flipped = [None if p is None else (1.0 - p[0], p[1]) for p in self.points]
        return Person(tuple(flipped[FLIP_INDEX[i]] for i in range(NUM_KEYPOINTS)))


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

    @property
    def aspect(self) -> float:
        """Width over height of the pose's frame."""
        return self.width / self.height

    def bbox(self) -> tuple[float, float, float, float] | None:
        return pose_bbox(self)

    def mirrored(self) -> "Pose":
        return mirror_pose(self)

    def ordered_left_to_right(self) -> "Pose":
        return order_left_to_right(self)

    def reordered(self, order: Sequence[int]) -> "Pose":
        return reorder_people(self, order)


@dataclass(frozen=True)
class FitTransform:
    """How a pose's frame sits inside a ``width`` x ``height`` panel: scaled uniformly, centred.

    A normalised point ``(x, y)`` lands at pixel ``(offset_x + x * frame_width,
    offset_y + y * frame_height)``; ``frame_width / frame_height`` equals the pose's aspect.
    """

    width: int
    height: int
    frame_width: float
    frame_height: float
    offset_x: float
    offset_y: float

    def to_pixels(self, point: tuple[float, float]) -> tuple[float, float]:
        return (self.offset_x + point[0] * self.frame_width, self.offset_y + point[1] * self.frame_height)


# -- names and validation -----------------------------------------------------------------------


def validate_name(name: str) -> str:
    """Return ``name`` if it is a usable pose name (kebab-case), else raise :class:`PoseError`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or len(name) > MAX_NAME_LENGTH:
        raise PoseError(
            f"{name!r} is not a valid pose name: use lower-case letters, digits and single hyphens "
            f"(kebab-case, e.g. 'two-talking'), at most {MAX_NAME_LENGTH} characters."
        )
    return name


def suggest_name(text: str) -> str:
    """A valid pose name derived from free text (a file name, a title); ``"pose"`` if nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:MAX_NAME_LENGTH].strip("-")
    return slug or "pose"


def validate_pose(pose: Pose) -> Pose:
    """Check a pose and return it with points clamped into 0..1; raise :class:`PoseError` if unusable.

    Rules: a valid name; positive integer frame size; 1 to ``MAX_PEOPLE`` people; 18 points per person;
    each point ``None`` or two finite numbers within 0..1 (a tolerance of 0.02 is clamped); at least
    ``MIN_POINTS_PER_PERSON`` points per person.
    """
    validate_name(pose.name)
    label = f"Pose {pose.name!r}"
    for attr in ("width", "height"):
        value = getattr(pose, attr)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PoseError(f"{label}: {attr} must be a positive whole number of pixels, got {value!r}.")
    if not pose.people:
        raise PoseError(
            f"{label} has no people: a pose needs at least one person. If it came from a photo, "
            "nobody was found in it; use a photo where the whole body is visible and well lit."
        )
    if len(pose.people) > MAX_PEOPLE:
        raise PoseError(f"{label} has {len(pose.people)} people; at most {MAX_PEOPLE} are supported.")
    people = []
    for n, person in enumerate(pose.people, start=1):
        if not isinstance(person, Person) or len(person.points) != NUM_KEYPOINTS:
            count = len(person.points) if isinstance(person, Person) else "no"
            raise PoseError(
                f"{label}, person {n}: expected {NUM_KEYPOINTS} keypoints in OpenPose COCO order, "
                f"got {count}."
            )
        points: list[Point] = []
        for i, point in enumerate(person.points):
            points.append(_checked_point(point, f"{label}, person {n}, {KEYPOINT_NAMES[i]}"))
        checked = Person(tuple(points))
        if len(checked.present) < MIN_POINTS_PER_PERSON:
            raise PoseError(
                f"{label}, person {n} has {len(checked.present)} visible keypoint(s); at least "
                f"{MIN_POINTS_PER_PERSON} are needed to draw a skeleton."
            )
        people.append(checked)
    return replace(pose, people=tuple(people))


def _checked_point(point: Any, where: str) -> Point:
    if point is None:
        return None
    try:
        x, y = point
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise PoseError(f"{where}: a point must be [x, y] or null, got {point!r}.") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PoseError(f"{where}: coordinates must be finite numbers, got {point!r}.")
    if not (-_TOLERANCE <= x <= 1 + _TOLERANCE and -_TOLERANCE <= y <= 1 + _TOLERANCE):
        raise PoseError(
            f"{where}: ({x:g}, {y:g}) is outside the frame; coordinates are normalised to 0..1 "
            "(mark an invisible point as null)."
        )
    return (min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0))


def check_pose_for_panel(pose: Pose, n_characters: int, characters: Sequence[str] = ()) -> None:
    """Refuse a pose whose number of people differs from the panel's number of characters.

    People map to characters in order (person 0 = slot 0 = first character in the prompt).
    """
    if pose.num_people == n_characters:
        return
    people = f"{pose.num_people} {'person' if pose.num_people == 1 else 'people'}"
    chars = f"{n_characters} character{'' if n_characters == 1 else 's'}"
    if characters:
        chars += " (" + ", ".join(f"[{c}]" for c in characters) + ")"
    raise PoseError(
        f"Pose {pose.name!r} has {people} but the panel has {chars}: each character takes one "
        f"skeleton, left to right. Pick a pose with {n_characters} "
        f"{'person' if n_characters == 1 else 'people'}"
        + (" or remove the pose." if n_characters == 0 else ", or change the characters in the prompt.")
    )


# -- transforms ---------------------------------------------------------------------------------


def mirror_pose(pose: Pose) -> Pose:
    """Mirror horizontally: ``x -> 1 - x`` and left/right limbs swapped for every person.

    People keep their slot order (each character keeps its skeleton, now on the other side); call
    :func:`order_left_to_right` afterwards to re-map slots by position.
    """
    return replace(pose, people=tuple(p.mirrored() for p in pose.people))


def order_left_to_right(pose: Pose) -> Pose:
    """People sorted by the horizontal centre of their keypoints (stable for ties)."""
    order = sorted(range(pose.num_people), key=lambda i: (pose.people[i].center_x, i))
    return replace(pose, people=tuple(pose.people[i] for i in order))


def reorder_people(pose: Pose, order: Sequence[int]) -> Pose:
    """People rearranged so that new slot ``k`` holds old person ``order[k]`` (a permutation)."""
    order = list(order)
    if sorted(order) != list(range(pose.num_people)):
        raise PoseError(
            f"Reordering pose {pose.name!r}: {order} is not an arrangement of its "
            f"{pose.num_people} people; give each index 0..{pose.num_people - 1} exactly once."
        )
    return replace(pose, people=tuple(pose.people[i] for i in order))


def pose_bbox(pose: Pose) -> tuple[float, float, float, float] | None:
    """``(x1, y1, x2, y2)`` around every present point of every person (normalised), or None."""
    boxes = [b for b in (p.bbox() for p in pose.people) if b is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


# -- fitting a pose into a panel ------------------------------------------------------------------


def fit_transform(pose: Pose, width: int, height: int) -> FitTransform:
    """The largest copy of the pose's frame that fits inside ``width`` x ``height``, centred.

    Body proportions are kept: x and y are scaled by the same factor (never stretched).
    """
    if width <= 0 or height <= 0:
        raise PoseError(f"Cannot fit a pose into {width}x{height}: the size must be positive.")
    scale = min(width / pose.width, height / pose.height)
    fw, fh = pose.width * scale, pose.height * scale
    return FitTransform(width, height, fw, fh, (width - fw) / 2.0, (height - fh) / 2.0)


def fit_points(pose: Pose, width: int, height: int) -> list[list[tuple[float, float] | None]]:
    """Per person, the 18 points in pixels of a ``width`` x ``height`` panel (None where missing)."""
    t = fit_transform(pose, width, height)
    return [[None if p is None else t.to_pixels(p) for p in person.points] for person in pose.people]


def fit_normalised(pose: Pose, width: int, height: int) -> list[list[tuple[float, float] | None]]:
    """Like :func:`fit_points` but normalised to the panel (what controlnet-aux's drawing takes)."""
    return [
        [None if p is None else (p[0] / width, p[1] / height) for p in person]
        for person in fit_points(pose, width, height)
    ]


_FACE = ("nose", "right_eye", "left_eye", "right_ear", "left_ear")


def head_position(pose: Pose, person_index: int, width: int, height: int) -> tuple[float, float] | None:
    """The centre of a person's head in panel pixels (for a speech-bubble tail), or None.

    Uses the face points (eyes, ears, nose) when present; for a back view or a face the detector
    missed, it extrapolates above the neck by a third of the shoulder width (or a fixed fraction of
    the body's height). None when the person has neither face points nor a neck.
    """
    if not 0 <= person_index < pose.num_people:
        raise PoseError(
            f"Pose {pose.name!r} has {pose.num_people} people; there is no person {person_index + 1}."
        )
    pixels = fit_points(pose, width, height)[person_index]
    named = {name: pixels[KEYPOINT_INDEX[name]] for name in KEYPOINT_NAMES}
    eyes_ears = [named[n] for n in _FACE[1:] if named[n] is not None]
    if eyes_ears:
        xs = [p[0] for p in eyes_ears]
        ys = [p[1] for p in eyes_ears]
        return (sum(xs) / len(xs), sum(ys) / len(ys))
    if named["nose"] is not None:
        return named["nose"]
    neck = named["neck"]
    if neck is None:
        return None
    t = fit_transform(pose, width, height)
    right, left = named["right_shoulder"], named["left_shoulder"]
    if right is not None and left is not None:
        rise = 0.45 * math.dist(right, left)
    else:
        box = pose.people[person_index].bbox()
        rise = 0.12 * (box[3] - box[1]) * t.frame_height if box else 0.0
    # Shoulders seen edge-on (a profile) are close together: never less than 3% of the frame.
    rise = max(rise, 0.03 * t.frame_height)
    return (neck[0], neck[1] - rise)


# -- JSON ---------------------------------------------------------------------------------------


def pose_to_dict(pose: Pose) -> dict[str, Any]:
    """The JSON form of a pose (the ``source`` is where it was loaded from, so it is not stored)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "name": pose.name,
        "description": pose.description,
        "width": pose.width,
        "height": pose.height,
        "keypoints": list(KEYPOINT_NAMES),
        "people": [
            {"points": [None if p is None else [round(p[0], 5), round(p[1], 5)] for p in person.points]}
            for person in pose.people
        ],
    }


def pose_from_dict(data: Mapping[str, Any], *, name: str | None = None, source: str = "preset") -> Pose:
    """Read a pose from its JSON form, or from OpenPose's JSON (``pose_keypoints_2d``), and validate it.

    OpenPose JSON (as written by OpenPose and pose editors) has pixel coordinates with a confidence per
    point and ``canvas_width`` / ``canvas_height``; a confidence of 0 marks a missing point.
    """
    if not isinstance(data, Mapping):
        raise PoseError("A pose file must hold a JSON object.")
    people_raw = data.get("people")
    if not isinstance(people_raw, list):
        raise PoseError("A pose file needs a 'people' list (one entry per person).")
    pose_name = name if name is not None else data.get("name")
    if pose_name is None:
        raise PoseError("A pose file needs a 'name'.")
    if data.get("format", FORMAT) != FORMAT:
        raise PoseError(f"Unknown pose format {data.get('format')!r}; expected {FORMAT!r}.")
    version = data.get("version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PoseError(
            f"Pose {pose_name!r} was written by a newer StoryMaker (format version {version}); "
            "update StoryMaker to read it."
        )
    openpose = any(isinstance(p, Mapping) and "pose_keypoints_2d" in p for p in people_raw)
    if openpose:
        width = data.get("canvas_width", data.get("width"))
        height = data.get("canvas_height", data.get("height"))
        if not isinstance(width, (int, float)) or not isinstance(height, (int, float)) or width <= 0 or height <= 0:
            raise PoseError("An OpenPose JSON pose needs a positive canvas_width and canvas_height.")
        people = tuple(_person_from_openpose(p, float(width), float(height), i) for i, p in enumerate(people_raw, 1))
        width, height = int(round(width)), int(round(height))
    else:
        width, height = data.get("width", 512), data.get("height", 512)
        people = tuple(_person_from_points(p, i) for i, p in enumerate(people_raw, 1))
    description = data.get("description", "")
    pose = Pose(
        name=pose_name,
        people=people,
        width=width,
        height=height,
        description=str(description) if description is not None else "",
        source=source,
    )
    return validate_pose(pose)


def _person_from_points(raw: Any, n: int) -> Person:
    points = raw.get("points") if isinstance(raw, Mapping) else raw
    if not isinstance(points, list):
        raise PoseError(f"Person {n}: 'points' must be a list of {NUM_KEYPOINTS} [x, y] pairs or nulls.")
    if len(points) != NUM_KEYPOINTS:
        raise PoseError(
            f"Person {n}: expected {NUM_KEYPOINTS} keypoints in OpenPose COCO order, got {len(points)}."
        )
    return Person(tuple(None if p is None else _pair(p, n) for p in points))


def _pair(p: Any, n: int) -> tuple[float, float]:
    if not isinstance(p, (list, tuple)) or len(p) != 2:
        raise PoseError(f"Person {n}: a point must be [x, y] or null, got {p!r}.")
    try:
        return (float(p[0]), float(p[1]))
    except (TypeError, ValueError):
        raise PoseError(f"Person {n}: a point must hold two numbers, got {p!r}.") from None


def _person_from_openpose(raw: Mapping[str, Any], width: float, height: float, n: int) -> Person:
    flat = raw.get("pose_keypoints_2d")
    if not isinstance(flat, list) or len(flat) < NUM_KEYPOINTS * 3:
        raise PoseError(f"Person {n}: pose_keypoints_2d must hold {NUM_KEYPOINTS} x (x, y, confidence).")
    points: list[Point] = []
    for i in range(NUM_KEYPOINTS):
        try:
            x, y, c = (float(v) for v in flat[3 * i: 3 * i + 3])
        except (TypeError, ValueError):
            raise PoseError(f"Person {n}: pose_keypoints_2d must hold numbers.") from None
        points.append(None if c <= 0 else (x / width, y / height))
    return Person(tuple(points))


def dumps_pose(pose: Pose) -> str:
    return json.dumps(pose_to_dict(pose), indent=2, ensure_ascii=False) + "\n"


def loads_pose(text: str, *, name: str | None = None, source: str = "preset") -> Pose:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PoseError(f"The pose is not valid JSON ({err}); fix or replace the file.") from None
    return pose_from_dict(data, name=name, source=source)


def load_pose(path: str | Path, *, source: str = "preset") -> Pose:
    """Read and validate a pose file. Its name is the file's stem when the file names none."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PoseError(f"Pose file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PoseError(f"Cannot read pose file {path}: {err}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PoseError(f"Pose file {path} is not valid JSON ({err}); fix or replace it.") from None
    name = data.get("name") if isinstance(data, Mapping) else None
    try:
        return pose_from_dict(data, name=name if name is not None else suggest_name(path.stem), source=source)
    except PoseError as err:
        raise PoseError(f"{path}: {err}") from None


def save_pose(pose: Pose, path: str | Path) -> Path:
    """Validate and write a pose as JSON, atomically."""
    from ..fsutil import atomic_write_text

    validate_pose(pose)
    return atomic_write_text(path, dumps_pose(pose))


def make_pose(
    name: str,
    people: Iterable[Sequence[Sequence[float] | None]],
    width: int = 512,
    height: int = 512,
    description: str = "",
    source: str = "project",
) -> Pose:
    """Build and validate a pose from plain lists: one list of 18 ``(x, y)`` / None per person."""
    persons = tuple(Person(tuple(None if p is None else (float(p[0]), float(p[1])) for p in pts)) for pts in people)
    return validate_pose(Pose(name, persons, width, height, description, source))
