"""What the models see in a character photo: the face (insightface), the person mask (rembg or
the user's), the two crops and their image-encoder features, gathered in a
:class:`CharacterPreview`. Nothing is written here: :class:`~storymaker.services.characters.CharacterRegistry`
stores previews and keeps the conditioning cache.

The components are used lazily (their ``name`` is read without loading anything), and every pass
through a model is counted in :class:`RegistryStats`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PIL import Image

from ..domain.character import Character, FaceInfo
from ..errors import ImageError, WeightsNotFoundError
from ..images import ImageSource, load_mask, read_image
from ..perception.base import DetectedFace, FaceAnalyzer, ImageEncoder, Segmenter
from ..perception.crops import CROP_SIZE, character_crop, draw_faces, face_crop, mask_bbox
from .character_records import face_info

if TYPE_CHECKING:
    import torch

#: Longest side of a stored character photo (bigger photos are downscaled while loading).
MAX_PHOTO_SIDE = 2048
#: Smallest usable face: the shorter side of its box, in pixels of the (downscaled) photo.
MIN_FACE_SIZE = 64


@dataclass
class RegistryStats:
    """Work done by a registry (the render engine's tests assert a known character costs nothing)."""

    face_passes: int = 0  # face analyses run (one per photo analysed)
    segment_passes: int = 0  # automatic person masks computed
    clip_passes: int = 0  # images run through the image encoder
    disk_loads: int = 0  # conditionings read from embeddings.safetensors
    memory_hits: int = 0  # conditionings served from memory
    recomputed: int = 0  # stored characters re-encoded because the models differ

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class CharacterPreview:
    """What ``analyze`` understood from a photo; nothing is saved until ``add(preview)``."""

    name: str
    description: str
    photo: Image.Image  # RGB, as it will be stored
    mask: Image.Image  # "L", photo size, white = the person
    face_overlay: Image.Image  # the photo with the detected faces outlined (chosen one in green)
    body_crop: Image.Image  # 224x224 RGB on white: what the image encoder sees
    face_crop: Image.Image  # 224x224 aligned face from the original photo
    face: FaceInfo
    faces: tuple[DetectedFace, ...]  # all detected faces, largest first (faces[0] is used)
    face_id: "torch.Tensor"  # (512,)
    clip_character: "torch.Tensor"  # (T, C)
    clip_face: "torch.Tensor"  # (T, C)
    mask_source: str  # "user" or the segmentation model's name
    face_model: str
    image_encoder: str
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()  # things the user should know ("3 faces found; the largest is used")

    @property
    def prompt_noun(self) -> str:
        return Character(id="-", name=self.name or "-", description=self.description, face=self.face).prompt_noun

    @property
    def annotated(self) -> Image.Image:
        """Alias of ``face_overlay``."""
        return self.face_overlay


class PhotoAnalyzer:
    """The three components a character photo goes through, each the object itself or a
    zero-argument factory called on first use; ``stats`` counts their passes."""

    def __init__(
        self,
        *,
        face_analyzer: FaceAnalyzer | Callable[[], FaceAnalyzer],
        segmenter: Segmenter | Callable[[], Segmenter] | None,
        image_encoder: ImageEncoder | Callable[[], ImageEncoder],
        stats: RegistryStats | None = None,
    ):
        self._sources = {"face": face_analyzer, "segment": segmenter, "encode": image_encoder}
        self._components: dict[str, Any] = {}
        self._lock = threading.RLock()
        self.stats = stats if stats is not None else RegistryStats()

    def _component(self, kind: str, method: str) -> Any:
        with self._lock:
            if kind not in self._components:
                source = self._sources[kind]
                if source is not None and not hasattr(source, method) and callable(source):
                    source = source()
                self._components[kind] = source
            return self._components[kind]

    @property
    def face_analyzer(self) -> FaceAnalyzer:
        return self._component("face", "analyze")

    @property
    def segmenter(self) -> Segmenter | None:
        return self._component("segment", "segment")

    @property
    def image_encoder(self) -> ImageEncoder:
        return self._component("encode", "encode")

    def analyze(
        self, photo: ImageSource, *, name: str = "", description: str = "", mask: ImageSource | None = None
    ) -> CharacterPreview:
        """Understand a photo: face, mask, crops and embeddings (``name`` and ``description``, already
        checked, are carried into the preview). Writes nothing."""
        loaded = read_image(photo, what="photo", max_side=MAX_PHOTO_SIDE)
        self.preflight(needs_segmenter=mask is None)
        rgb_image = loaded.image
        notes: list[str] = []
        if loaded.downscaled:
            notes.append(
                f"The photo was downscaled from {loaded.original_size[0]}x{loaded.original_size[1]} "
                f"to {rgb_image.width}x{rgb_image.height}."
            )
        # Check the user's mask before any model runs: a wrong size is the user's to fix.
        user_mask = None
        if mask is not None:
            user_mask = load_mask(mask, what="mask", size=rgb_image.size, original_size=loaded.original_size)
            mask_bbox(user_mask)
        faces = self.detect(rgb_image)
        chosen = faces[0]
        if len(faces) > 1:
            notes.append(
                f"{len(faces)} faces found; the largest (box 1, outlined in green) is used. "
                "Crop the photo to one person to choose another."
            )
        if user_mask is not None:
            person_mask, mask_source = user_mask, "user"
        else:
            person_mask, mask_source = self.segment(rgb_image), getattr(self.segmenter, "name", "none")
        body, face_image = self.crops(rgb_image, person_mask, chosen.kps)
        clip_character, clip_face = self.encode([body, face_image])
        import torch

        info = face_info(chosen, len(faces))
        return CharacterPreview(
            name=name,
            description=description,
            photo=rgb_image,
            mask=person_mask,
            face_overlay=draw_faces(rgb_image, faces, 0),
            body_crop=body,
            face_crop=face_image,
            face=info,
            faces=tuple(faces),
            face_id=torch.from_numpy(np.asarray(chosen.embedding, dtype=np.float32).reshape(-1).copy()),
            clip_character=clip_character,
            clip_face=clip_face,
            mask_source=mask_source,
            face_model=self.face_analyzer.name,
            image_encoder=self.image_encoder.name,
            original_size=loaded.original_size,
            notes=tuple(notes),
        )

    def preflight(self, *, needs_segmenter: bool) -> None:
        """Report every missing model at once (components with a ``check()``), before any runs."""
        components = [self.face_analyzer, self.image_encoder] + ([self.segmenter] if needs_segmenter else [])
        problems = []
        for component in components:
            check = getattr(component, "check", None)
            if component is None or check is None:
                continue
            try:
                check()
            except WeightsNotFoundError as err:
                problems.append(str(err))
        if len(problems) == 1:
            raise WeightsNotFoundError(problems[0])
        if problems:
            raise WeightsNotFoundError(
                "Registering a character needs model weights that are not on this machine:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )

    def detect(self, rgb_image: Image.Image) -> list[DetectedFace]:
        faces = list(self.face_analyzer.analyze(np.asarray(rgb_image.convert("RGB"), dtype=np.uint8)))
        self.stats.face_passes += 1
        if not faces:
            raise ImageError(
                "No face was found in the photo: use a photo where one face is clearly visible, "
                f"frontal and well lit, at least {MIN_FACE_SIZE} pixels tall."
            )
        faces.sort(key=lambda f: f.area, reverse=True)
        x1, y1, x2, y2 = faces[0].bbox
        side = min(x2 - x1, y2 - y1)
        if side < MIN_FACE_SIZE:
            raise ImageError(
                f"The face in the photo is too small ({x2 - x1:.0f}x{y2 - y1:.0f} pixels; at least "
                f"{MIN_FACE_SIZE}x{MIN_FACE_SIZE} is needed): use a closer or higher-resolution photo."
            )
        return faces

    def segment(self, rgb_image: Image.Image) -> Image.Image:
        if self.segmenter is None:
            raise ImageError("No segmentation model is configured: supply the person mask yourself (white = the person).")
        person_mask = self.segmenter.segment(rgb_image).convert("L")
        self.stats.segment_passes += 1
        if person_mask.size != rgb_image.size:
            person_mask = person_mask.resize(rgb_image.size, Image.Resampling.BILINEAR)
        try:
            mask_bbox(person_mask)
        except ImageError:
            raise ImageError(
                "The automatic person mask is empty (nobody was segmented): supply your own mask "
                "(white = the person, same size as the photo) or use a photo with a plainer background."
            ) from None
        return person_mask

    def crops(self, photo: Image.Image, person_mask: Image.Image, kps: np.ndarray) -> tuple[Image.Image, Image.Image]:
        return character_crop(photo, person_mask, CROP_SIZE), face_crop(photo, kps, CROP_SIZE)

    def encode(self, images: list[Image.Image]) -> list["torch.Tensor"]:
        features = self.image_encoder.encode(images)
        self.stats.clip_passes += len(images)
        return [features[i].clone() for i in range(len(images))]


def closest_face(faces: list[DetectedFace], bbox: tuple[float, float, float, float] | None) -> DetectedFace:
    if bbox is None:
        return faces[0]

    def iou(face: DetectedFace) -> float:
        ax1, ay1, ax2, ay2 = face.bbox
        bx1, by1, bx2, by2 = bbox
        w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
        h = max(0.0, min(ay2, by2) - max(ay1, by1))
        inter = w * h
        union = face.area + max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
        return inter / union if union > 0 else 0.0

    return max(faces, key=iou)
