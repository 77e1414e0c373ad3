"""Pose drawing and extraction with controlnet-aux (OpenPose).

- :func:`render_pose` draws a :class:`~storymaker.domain.poses.Pose` at a panel's size with
  controlnet-aux's own drawing (``draw_poses`` / ``draw_bodypose``: OpenPose colours on black), the
  pose's frame fitted inside the panel and centred so bodies keep their proportions.
- :class:`OpenposeEstimator` finds people in a photo with controlnet-aux's ``OpenposeDetector``
  (weights ``body_pose_model.pth``, ``hand_pose_model.pth``, ``facenet.pth`` from
  ``Settings.pose_annotators``: a hub id or a local folder). Missing weights raise a quick
  :class:`WeightsNotFoundError` that says how to provide them.

controlnet-aux imports torch, torchvision and timm at import time: it is imported lazily, inside
functions, never at module import.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

from ..domain.poses import (
    NUM_KEYPOINTS,
    Person,
    Pose,
    fit_normalised,
    fit_points,
    head_position,
    order_left_to_right,
    validate_name,
)
from ..errors import CheckpointError, ImageError, PoseError, WeightsNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)

__all__ = [
    "ANNOTATOR_FILES",
    "OpenposeEstimator",
    "PoseEstimator",
    "extract_pose",
    "fit_points",
    "head_position",
    "people_from_results",
    "render_pose",
    "resolve_annotators",
]

#: Files ``OpenposeDetector.from_pretrained`` loads from ``Settings.pose_annotators``.
ANNOTATOR_FILES = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")
_HOW_TO = (
    "Run `python -m storymaker download` on a machine with internet access, or download "
    "body_pose_model.pth, hand_pose_model.pth and facenet.pth from the Hugging Face repo "
    "lllyasviel/Annotators into a folder and set STORYMAKER_POSE_ANNOTATORS to that folder."
)


def _import_open_pose():
    """``controlnet_aux.open_pose``, imported quietly (its package import warns about optional extras)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux import open_pose
    return open_pose


# -- drawing ------------------------------------------------------------------------------------


def render_pose(pose: Pose, width: int, height: int) -> "Image.Image":
    """The ControlNet pose image: an RGB ``width`` x ``height`` picture, OpenPose limbs on black.

    Drawn with controlnet-aux's ``draw_poses`` (body only). The pose's frame is scaled uniformly to
    fit inside the panel and centred, so a pose whose aspect differs from the panel is never stretched.
    """
    from PIL import Image

    if width <= 0 or height <= 0:
        raise PoseError(f"Cannot draw a pose at {width}x{height}: the size must be positive.")
    op = _import_open_pose()
    results = []
    for person in fit_normalised(pose, width, height):
        keypoints = [None if p is None else op.Keypoint(x=p[0], y=p[1]) for p in person]
        present = sum(k is not None for k in keypoints)
        results.append(op.PoseResult(op.BodyResult(keypoints, float(present), present), None, None, None))
    canvas = op.draw_poses(results, height, width, draw_body=True, draw_hand=False, draw_face=False)
    return Image.fromarray(canvas, "RGB")


# -- weights ------------------------------------------------------------------------------------


def annotators_spec(source: str | os.PathLike) -> Any:
    """The :class:`~storymaker.models.weights.ModelSpec` of the OpenPose annotators at ``source``."""
    from ..models.weights import HUB_FILES, POSE_ANNOTATOR_FILES, ModelSpec

    return ModelSpec(
        "pose_annotators", "OpenPose annotators", str(source).strip(), HUB_FILES,
        files=POSE_ANNOTATOR_FILES, size_gb=0.5, purpose="reads a pose from a photo", required=False,
    )


def resolve_annotators(source: str | os.PathLike, *, allow_download: bool = True) -> Path:
    """A local folder holding the three OpenPose annotator files, from a folder or a hub repo id.

    Checked locally first (the folder, or the hub cache) through ``storymaker.models.weights``; a hub
    id is downloaded only if ``allow_download`` and the hub is not offline (``HF_HUB_OFFLINE``).
    Anything missing raises :class:`WeightsNotFoundError` naming the files and how to provide them.
    """
    from ..models.weights import resolve

    text = str(source).strip()
    if not text:
        raise WeightsNotFoundError(f"No pose annotator location is configured. {_HOW_TO}")
    path = Path(text).expanduser()
    if path.is_file():
        raise WeightsNotFoundError(
            f"The pose annotator location {path} is a file; it must be a folder holding "
            f"{', '.join(ANNOTATOR_FILES)}. {_HOW_TO}"
        )
    if not path.exists() and (text.startswith((".", "/", "~", "\\")) or text.count("/") != 1):
        raise WeightsNotFoundError(f"The pose annotator folder {path} does not exist. {_HOW_TO}")
    return Path(resolve(annotators_spec(text), download=None if allow_download else False))


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


_DETECTORS: dict[tuple, Any] = {}
_DETECTORS_LOCK = threading.Lock()


def _load_detector(folder: Path, device: str) -> Any:
    stamps = tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns) for n in ANNOTATOR_FILES)
    key = (str(folder.resolve()), stamps, device)
    with _DETECTORS_LOCK:
        if key in _DETECTORS:
            return _DETECTORS[key]
        op = _import_open_pose()
        log.info("Loading OpenPose annotators from %s on %s", folder, device)
        try:
            detector = op.OpenposeDetector.from_pretrained(str(folder))
        except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError, ValueError, OSError) as err:
            raise CheckpointError(
                f"The pose annotator weights in {folder} could not be loaded "
                f"({type(err).__name__}: {err}); replace them with the files from "
                "lllyasviel/Annotators."
            ) from None
        detector = detector.to(device)
        _DETECTORS[key] = detector
        return detector


# -- extraction ---------------------------------------------------------------------------------


@runtime_checkable
class PoseEstimator(Protocol):
    """Finds body skeletons in a photo."""

    name: str

    def detect(self, image: "Image.Image") -> list[Person]:
        """People found in an RGB image, each 18 points normalised to the image (any order)."""


class OpenposeEstimator:
    """controlnet-aux's ``OpenposeDetector``, loaded once on first use (thread-safe)."""

    def __init__(
        self,
        source: str | os.PathLike = "lllyasviel/Annotators",
        *,
        device: str = "cpu",
        detect_resolution: int = 512,
        allow_download: bool = True,
    ) -> None:
        if detect_resolution < 64:
            raise PoseError(f"detect_resolution must be at least 64 pixels, got {detect_resolution}.")
        self.source = str(source)
        self.device = device
        self.detect_resolution = int(detect_resolution)
        self.allow_download = allow_download
        self.name = f"openpose:{self.source}"
        self._detector: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "OpenposeEstimator":
        """From ``Settings.pose_annotators`` and ``Settings.device``."""
        return cls(settings.pose_annotators, device=kwargs.pop("device", settings.device), **kwargs)

    def load(self) -> Any:
        """Check the weight files, then build ``OpenposeDetector`` (quick error when missing).

        Detectors are shared process-wide per (folder, file stamps, device): a second estimator on
        the same weights does not load them again.
        """
        with self._lock:
            if self._detector is None:
                folder = resolve_annotators(self.source, allow_download=self.allow_download)
                self._detector = _load_detector(folder, _resolve_device(self.device))
            return self._detector

    def detect(self, image: "Image.Image") -> list[Person]:
        """People in ``image`` (RGB), normalised to the image, in the detector's order."""
        import numpy as np

        detector = self.load()
        from controlnet_aux.util import HWC3, resize_image

        array = HWC3(np.asarray(image.convert("RGB"), dtype=np.uint8))
        array = resize_image(array, self.detect_resolution)
        results = detector.detect_poses(array, include_hand=False, include_face=False)
        return people_from_results(results)


def people_from_results(results: Sequence[Any]) -> list[Person]:
    """controlnet-aux ``PoseResult``s (or ``BodyResult``s) -> :class:`Person`s.

    Points outside the image are dropped (treated as missing); people with fewer than two points are
    skipped.
    """
    people = []
    for result in results:
        body = getattr(result, "body", result)
        keypoints = list(body.keypoints)[:NUM_KEYPOINTS]
        keypoints += [None] * (NUM_KEYPOINTS - len(keypoints))
        points = []
        for k in keypoints:
            if k is None:
                points.append(None)
                continue
            x, y = float(k.x), float(k.y)
            points.append((x, y) if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 else None)
        person = Person(tuple(points))
        if len(person.present) >= 2:
            people.append(person)
    return people


def extract_pose(
    image: Any,
    name: str,
    estimator: PoseEstimator,
    *,
    description: str = "",
) -> Pose:
    """A pose from a photo (a path, bytes or PIL image): its people ordered left to right.

    The result may have zero people (nobody found); saving such a pose raises a clear
    :class:`PoseError`. The pose's frame is the photo's size, so its aspect is kept.
    """
    from ..images import load_image

    validate_name(name)
    photo = load_image(image, what="pose photo")
    if photo.width < 32 or photo.height < 32:
        raise ImageError(
            f"The pose photo is only {photo.width}x{photo.height} pixels; use a photo of at least 32x32 "
            "(a few hundred pixels tall works best)."
        )
    people = estimator.detect(photo)
    log.info("%s found %d people in the pose photo", estimator.name, len(people))
    pose = Pose(
        name=name,
        people=tuple(people),
        width=photo.width,
        height=photo.height,
        description=description,
        source="project",
    )
    return order_left_to_right(pose)
