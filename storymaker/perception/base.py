"""Interfaces of the perception components. Implementations load their models lazily."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class DetectedFace:
    """One face found by face analysis, in pixel coordinates of the analysed image."""

    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2
    kps: np.ndarray  # (5, 2) float32
    embedding: np.ndarray  # (512,) float32, L2-normalised (insightface ``normed_embedding``)
    det_score: float = 0.0
    gender: str | None = None  # "man" / "woman"
    age: int | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@runtime_checkable
class FaceAnalyzer(Protocol):
    name: str  # recorded with each character ("buffalo_l", "tiny-random")

    def analyze(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Faces in an RGB uint8 image (H, W, 3); largest first."""


@runtime_checkable
class Segmenter(Protocol):
    name: str

    def segment(self, image: Image.Image) -> Image.Image:
        """A person mask ("L", same size as ``image``; white = person)."""


@runtime_checkable
class ImageEncoder(Protocol):
    name: str

    def encode(self, images: Sequence[Image.Image]) -> "torch.Tensor":  # noqa: F821
        """Penultimate CLIP hidden states, (N, tokens, hidden) float32 on the CPU."""
