"""Head boxes on a rendered panel, found with the face analyser used for registration.

A render backend calls :func:`detect_and_record` on each finished image (before any label is
stamped on it): the boxes go into the version's metadata (``domain/heads.py``) and the comic's
lettering keeps bubbles off those faces. Detection never fails a render: without a usable face
analyser nothing is recorded and the layout falls back to the pose.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..domain.heads import Box, Head, record_on_image
from ..errors import StoryMakerError

log = logging.getLogger(__name__)

# A face detector's box covers brows to chin; a head adds hair above and a little at the sides.
_GROW_SIDES, _GROW_TOP, _GROW_BOTTOM = 0.15, 0.35, 0.08


#: ``image.info`` key of the faces analysed on a render (:func:`detect_and_record`), so that the
#: consistency scores reuse them instead of analysing the same image again.
FACES_INFO_KEY = "storymaker_faces"


def head_boxes(faces: Any, width: int, height: int, min_score: float = 0.3) -> list[Box]:
    """Head boxes (x0, y0, x1, y1), normalised 0..1, of ``faces`` (DetectedFace, pixel
    coordinates of a ``width`` x ``height`` image), left to right. Each face box is grown to cover
    the hair."""
    boxes = []
    for face in faces:
        if getattr(face, "det_score", 1.0) < min_score:
            continue
        x0, y0, x1, y1 = (float(v) for v in face.bbox)
        fw, fh = x1 - x0, y1 - y0
        if fw <= 1 or fh <= 1:
            continue
        box = (max(0.0, (x0 - _GROW_SIDES * fw) / width), max(0.0, (y0 - _GROW_TOP * fh) / height),
               min(1.0, (x1 + _GROW_SIDES * fw) / width), min(1.0, (y1 + _GROW_BOTTOM * fh) / height))
        boxes.append(box)
    boxes.sort(key=lambda b: (b[0] + b[2]) / 2)
    return boxes


def _analyse(image: Any, face_analyzer: Any) -> list:
    return list(face_analyzer.analyze(np.asarray(image.convert("RGB"), dtype=np.uint8)))


def detect_heads(image: Any, face_analyzer: Any, min_score: float = 0.3) -> list[Box]:
    """Head boxes (x0, y0, x1, y1), normalised 0..1, of the faces ``face_analyzer`` finds in
    ``image`` (a PIL image), left to right. Each face box is grown to cover the hair."""
    return head_boxes(_analyse(image, face_analyzer), image.width, image.height, min_score)


def analysed_faces(image: Any) -> list | None:
    """The faces :func:`detect_and_record` found on ``image`` (None when it did not run)."""
    faces = getattr(image, "info", {}).get(FACES_INFO_KEY)
    return list(faces) if isinstance(faces, list) else None


def detect_and_record(image: Any, face_analyzer: Any) -> Any:
    """Record the heads :func:`detect_heads` finds in ``image.info`` for the version's metadata;
    with no analyser, or one that cannot run (weights missing), record nothing. Returns ``image``."""
    if face_analyzer is None:
        return image
    try:
        faces = _analyse(image, face_analyzer)
    except StoryMakerError as err:
        log.warning("Face detection for lettering skipped: %s", err)
        return image
    image.info[FACES_INFO_KEY] = faces  # for the consistency scores: one face analysis per render
    boxes = head_boxes(faces, image.width, image.height)
    return record_on_image(image, heads=[Head(b, None, "detector") for b in boxes])
