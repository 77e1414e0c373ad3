"""Tiny stand-ins for face analysis and person segmentation: the ``tiny`` backend's perception.

They need no downloaded weights, so the whole photo -> comic flow runs on any machine, offline.
They are deterministic and crude, and say so in their ``name`` (recorded with every character they
produce): NOT real face recognition, NOT real segmentation.

- :class:`StandInFaceAnalyzer`: OpenCV's bundled Haar cascade finds face boxes; the 5 keypoints are
  placed at fixed proportions of the box (ArcFace template); the "embedding" is a fixed random
  projection of the aligned grayscale face pixels, L2-normalised (similar pixels -> similar vector).
- :class:`StandInSegmenter`: OpenCV GrabCut from a rectangle just inside the frame (the border is
  background), holes filled, largest regions kept.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from .base import DetectedFace

STANDIN_FACE_NAME = "standin-face (not a real face model)"
STANDIN_SEGMENTER_NAME = "standin-segmenter (not a real segmentation model)"

# insightface's ArcFace 112x112 landmark template, as fractions of the face box.
_KPS_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
) / 112.0


class StandInFaceAnalyzer:
    """Deterministic face "analysis" from OpenCV's Haar cascade (not a real face model)."""

    name = STANDIN_FACE_NAME

    def __init__(self, min_size: int = 24, embedding_dim: int = 512, seed: int = 0):
        self.min_size = min_size
        self.embedding_dim = embedding_dim
        self.seed = seed
        self._cascade = None
        self._projection: np.ndarray | None = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._cascade is None:
                import cv2

                path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
                cascade = cv2.CascadeClassifier(path)
                if cascade.empty():  # pragma: no cover - broken OpenCV install
                    raise RuntimeError(f"OpenCV's Haar cascade {path} did not load")
                self._cascade = cascade
                rng = np.random.default_rng(self.seed)
                self._projection = rng.standard_normal((32 * 32, self.embedding_dim)).astype(np.float32)
            return self._cascade

    def analyze(self, rgb: np.ndarray) -> list[DetectedFace]:
        import cv2

        cascade = self._load()
        array = np.asarray(rgb, dtype=np.uint8)
        gray = cv2.cvtColor(array, cv2.COLOR_RGB2GRAY)
        gray_eq = cv2.equalizeHist(gray)
        boxes, _, weights = cascade.detectMultiScale3(
            gray_eq, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_size, self.min_size), outputRejectLevels=True
        )
        faces = []
        for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            kps = _KPS_TEMPLATE * np.array([w, h], dtype=np.float32) + np.array([x, y], dtype=np.float32)
            patch = cv2.resize(gray[y : y + h, x : x + w], (32, 32), interpolation=cv2.INTER_AREA)
            vector = (patch.astype(np.float32).reshape(-1) / 255.0 - 0.5) @ self._projection
            norm = float(np.linalg.norm(vector)) or 1.0
            faces.append(
                DetectedFace(
                    bbox=(float(x), float(y), float(x + w), float(y + h)),
                    kps=kps.astype(np.float32),
                    embedding=(vector / norm).astype(np.float32),
                    det_score=float(1.0 / (1.0 + np.exp(-float(weight)))),
                )
            )
        faces.sort(key=lambda f: (-f.area, f.bbox))
        return faces


class StandInSegmenter:
    """Deterministic "person" mask from OpenCV GrabCut (not a real segmenter).

    GrabCut starts from a rectangle a little inside the frame (the border is taken as background),
    on a copy downscaled to ``work_side``; holes are filled and the largest regions kept.
    """

    name = STANDIN_SEGMENTER_NAME

    def __init__(self, work_side: int = 256, margin: float = 0.03, iterations: int = 4, keep_regions: int = 2):
        self.work_side = work_side
        self.margin = margin
        self.iterations = iterations
        self.keep_regions = keep_regions

    def segment(self, image: Image.Image) -> Image.Image:
        import cv2

        rgb = image.convert("RGB")
        scale = min(1.0, self.work_side / max(rgb.size))
        small = rgb.resize((max(8, round(rgb.width * scale)), max(8, round(rgb.height * scale))), Image.Resampling.BILINEAR)
        bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])
        h, w = bgr.shape[:2]
        mx, my = max(1, round(w * self.margin)), max(1, round(h * self.margin))
        labels = np.zeros((h, w), np.uint8)
        bg_model = np.zeros((1, 65), np.float64)
        fg_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means initialisation: fixed for determinism
        try:
            cv2.grabCut(bgr, labels, (mx, my, w - 2 * mx, h - 2 * my), bg_model, fg_model,
                        self.iterations, cv2.GC_INIT_WITH_RECT)
            fg = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
        except cv2.error:  # e.g. a flat image: GrabCut cannot model two colours
            fg = np.zeros((h, w), np.uint8)
        fg = _largest_regions(_fill_holes(fg), self.keep_regions)
        mask = Image.fromarray(fg * 255, mode="L")
        return mask.resize(rgb.size, Image.Resampling.BILINEAR) if mask.size != rgb.size else mask


def _fill_holes(fg: np.ndarray) -> np.ndarray:
    """Background regions not connected to the border become foreground."""
    import cv2

    h, w = fg.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = fg
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return np.where(holes, 1, fg).astype(np.uint8)


def _largest_regions(fg: np.ndarray, keep: int) -> np.ndarray:
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count <= 2:
        return fg
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(-areas, kind="stable")[:keep]
    minimum = 0.02 * fg.size
    chosen = [int(i) + 1 for i in order if areas[i] >= minimum] or [int(order[0]) + 1]
    return np.isin(labels, chosen).astype(np.uint8)
