"""A registered character: what the registry stores about one person (no tensors here).

The embeddings live beside the record in safetensors, managed by ``storymaker.services.characters``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaceInfo:
    """The face chosen on the character's photo (pixel coordinates of the stored photo)."""

    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2
    kps: tuple[tuple[float, float], ...]  # 5 keypoints (eyes, nose, mouth corners)
    det_score: float = 0.0
    gender: str | None = None  # "man" / "woman" when face analysis says so
    age: int | None = None
    faces_found: int = 1


@dataclass(frozen=True)
class Outfit:
    """A named outfit: an image whose CLIP features replace the body crop's when asked for."""

    name: str
    image_file: str  # relative to the character's folder


@dataclass(frozen=True)
class Character:
    """A registered character. ``id`` is a safe folder name; ``name`` is what the user typed."""

    id: str
    name: str
    description: str = ""
    face: FaceInfo | None = None
    outfits: tuple[Outfit, ...] = ()
    photo_file: str = "photo.png"
    mask_file: str = "mask.png"
    body_crop_file: str = "body.png"
    face_crop_file: str = "face.png"
    embeddings_file: str = "embeddings.safetensors"
    face_model: str = ""  # which face model produced face_id
    image_encoder: str = ""  # which image encoder produced the CLIP features
    created: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def prompt_noun(self) -> str:
        """How ``[Name]`` is written in the text sent to the model."""
        if self.description.strip():
            return self.description.strip()
        if self.face is not None and self.face.gender in ("man", "woman"):
            return f"a {self.face.gender}"
        return "a person"

    def outfit(self, name: str) -> Outfit | None:
        key = name.strip().casefold()
        for item in self.outfits:
            if item.name.casefold() == key:
                return item
        return None
