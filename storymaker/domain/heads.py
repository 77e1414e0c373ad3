"""Where the heads are in a panel image, so that lettering keeps off faces and tails reach speakers.

A :class:`Head` is a box normalised to its image (0..1) with the character's name when known. Three
sources, best first:

- ``detector``: face boxes found on the rendered image (``perception.heads.detect_heads``, the
  face analyser used for registration), recorded in the version's metadata at render time;
- ``draft``: the boxes the draft renderer drew (each character's thumbnail and name label);
- ``pose``: estimated from the pose's head keypoints (eyes, ears, nose, neck, shoulders).

The render records ``heads`` (and optionally ``keep_clear`` boxes lettering must not cover) in the
version's metadata (:func:`record_on_image` puts them in ``image.info`` for the engine to store);
:func:`panel_heads` reads them back, names detected faces from the pose (or left to right), and
falls back to the pose when nothing was recorded. Pure Python: no PIL, no numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .poses import Pose
    from .story import Panel

Box = tuple[float, float, float, float]  # x0, y0, x1, y1, normalised to the image

#: ``image.info`` key under which a backend leaves what it measured for the version's metadata.
RECORD_INFO_KEY = "storymaker:record"
SOURCES = ("detector", "draft", "pose")


@dataclass(frozen=True)
class Head:
    """One head in a panel image: ``box`` normalised (x0, y0, x1, y1), ``name`` its character."""

    box: Box
    name: str | None = None
    source: str = "pose"

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    def named(self, name: str | None) -> "Head":
        return Head(self.box, name, self.source)


@dataclass(frozen=True)
class SpeakerAnchor:
    """Where a speaker is in a panel: ``head`` (centre) and ``box`` normalised 0..1 in the panel
    image when known; otherwise ``slot`` of ``num_slots`` (slot 0 of 2 = left, 1 of 2 = right).
    ``slot=-1`` means off-panel (the bubble's tail points down at the panel's centre)."""

    name: str
    head: tuple[float, float] | None = None
    slot: int = 0
    num_slots: int = 1
    box: Box | None = None


# ---------------------------------------------------------------------------------------------
# Metadata


def _clean_box(value: Any) -> Box | None:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def heads_to_record(heads: Iterable[Head]) -> list[dict]:
    """The JSON form stored in a version's metadata under ``"heads"``."""
    return [{"box": [round(v, 4) for v in h.box], "name": h.name, "source": h.source} for h in heads]


def heads_from_record(meta: Mapping[str, Any] | None) -> list[Head] | None:
    """Heads recorded in a version's metadata; None when the render recorded none (older
    versions), ``[]`` when it looked and found none. Malformed entries are skipped."""
    if not meta or not isinstance(meta.get("heads"), list):
        return None
    out = []
    for item in meta["heads"]:
        if not isinstance(item, Mapping):
            continue
        box = _clean_box(item.get("box"))
        if box is None:
            continue
        name = item.get("name")
        source = item.get("source") if item.get("source") in SOURCES else "detector"
        out.append(Head(box, str(name) if name else None, source))
    return out


def keep_clear_from_record(meta: Mapping[str, Any] | None) -> tuple[Box, ...]:
    """Boxes the render asked lettering to leave visible (the draft's slug line and mark)."""
    items = (meta or {}).get("keep_clear")
    if not isinstance(items, list):
        return ()
    return tuple(b for b in (_clean_box(v) for v in items) if b is not None)


def record_on_image(image: Any, *, heads: Iterable[Head] | None = None,
                    keep_clear: Iterable[Box] = ()) -> Any:
    """Leave ``heads`` / ``keep_clear`` in ``image.info`` for the render engine, which copies them
    into the version's metadata. Returns ``image``."""
    record = image.info.setdefault(RECORD_INFO_KEY, {})
    if heads is not None:
        record["heads"] = heads_to_record(heads)
    boxes = [[round(v, 4) for v in b] for b in keep_clear]
    if boxes:
        record["keep_clear"] = boxes
    return image


def recorded(image: Any) -> dict:
    """What a backend left in ``image.info`` for the version's metadata (``{}`` if nothing)."""
    record = getattr(image, "info", {}).get(RECORD_INFO_KEY)
    return dict(record) if isinstance(record, Mapping) else {}


# ---------------------------------------------------------------------------------------------
# Heads from a pose


def pose_heads(pose: "Pose", names: Sequence[str], width: int, height: int) -> list[Head]:
    """Head boxes estimated from a pose fitted into a ``width`` x ``height`` image (as the pose
    ControlNet and the draft draw it). Person ``i`` is named ``names[i]`` when there is one."""
    from .poses import KEYPOINT_INDEX, fit_points, head_position

    heads = []
    people = fit_points(pose, width, height)
    for i, pts in enumerate(people):
        center = head_position(pose, i, width, height)
        if center is None:
            continue

        def dist(a: str, b: str) -> float | None:
            p, q = pts[KEYPOINT_INDEX[a]], pts[KEYPOINT_INDEX[b]]
            return math.dist(p, q) if p is not None and q is not None else None

        # Head width from whatever the pose has: ears (about a head apart), eyes (a third of
        # one), nose to neck (about one), shoulders (two and a half).
        guesses = [d * k for d, k in ((dist("right_ear", "left_ear"), 1.1),
                                      (dist("right_eye", "left_eye"), 2.6),
                                      (dist("nose", "neck"), 1.0),
                                      (dist("right_shoulder", "left_shoulder"), 0.42)) if d]
        guesses.sort()
        w = guesses[len(guesses) // 2] if guesses else 0.08 * min(width, height)
        w = min(max(w, 0.035 * min(width, height)), 0.5 * min(width, height))
        h = 1.3 * w
        cx, cy = center
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)  # eyes: half-way down a head
        heads.append(Head(_normalise(box, width, height), names[i] if i < len(names) else None,
                          "pose"))
    return heads


def _normalise(box: Box, width: float, height: float) -> Box:
    return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)


# ---------------------------------------------------------------------------------------------
# Putting it together for a panel


def _distance(a: Head, b: Head) -> float:
    return math.dist(a.center, b.center)


def name_detected(detected: Sequence[Head], expected: Sequence[Head],
                  names: Sequence[str]) -> list[Head]:
    """Names for detected heads: each expected (pose) head takes the nearest unclaimed detection
    within a head and a half of it; without a pose, the faces are named left to right when their
    number equals the number of characters. Unmatched detections stay unnamed; expected heads no
    detection matched are kept (a face the detector missed is still a face)."""
    detected = [d.named(None) for d in detected]
    if not expected:
        if names and len(detected) == len(names):
            order = sorted(range(len(detected)), key=lambda i: detected[i].center[0])
            for name, i in zip(names, order):
                detected[i] = detected[i].named(name)
        return detected
    pairs = sorted((_distance(d, e), di, ei) for di, d in enumerate(detected)
                   for ei, e in enumerate(expected))
    used_d: set[int] = set()
    used_e: set[int] = set()
    for dist, di, ei in pairs:
        if di in used_d or ei in used_e or dist > 1.5 * max(expected[ei].size, detected[di].size):
            continue
        used_d.add(di)
        used_e.add(ei)
        detected[di] = detected[di].named(expected[ei].name)
    return detected + [e for ei, e in enumerate(expected) if ei not in used_e]


def panel_heads(characters: Sequence[str], pose: "Pose | None", meta: Mapping[str, Any] | None,
                size: tuple[int, int]) -> tuple[Head, ...]:
    """Every head in a panel image of ``size``: recorded at render time (draft boxes as drawn,
    detected faces named through the pose), else estimated from the pose; ``()`` when nothing
    says where they are."""
    expected = pose_heads(pose, characters, *size) if pose is not None else []
    recorded_heads = heads_from_record(meta)
    if recorded_heads is None:
        return tuple(expected)
    drawn = [h for h in recorded_heads if h.source != "detector"]
    found = [h for h in recorded_heads if h.source == "detector"]
    if drawn and not found:
        return tuple(drawn)
    return tuple(drawn + name_detected(found, [] if drawn else expected, characters))


def anchors_for_panel(panel: "Panel", pose: "Pose | None" = None,
                      heads: Sequence[Head] | None = None,
                      size: tuple[int, int] | None = None) -> tuple[SpeakerAnchor, ...]:
    """One anchor per speaker of ``panel``'s dialogue: slot from the panel's characters (slot
    order), head from ``heads`` (by name) or else from the pose fitted into ``size`` (the pose's
    own frame when no size is given); off-panel voices get ``slot=-1``."""
    if heads is None:
        frame = size or ((pose.width, pose.height) if pose is not None else (1, 1))
        heads = pose_heads(pose, panel.characters, *frame) if pose is not None else ()
    by_name = {h.name.casefold(): h for h in heads if h.name}
    slots = {name.casefold(): i for i, name in enumerate(panel.characters)}
    out: dict[str, SpeakerAnchor] = {}
    for line in panel.dialogue:
        key = line.speaker.casefold()
        if key in out:
            continue
        head = by_name.get(key)
        out[key] = SpeakerAnchor(line.speaker, head.center if head else None, slots.get(key, -1),
                                 max(1, len(panel.characters)), head.box if head else None)
    return tuple(out.values())
