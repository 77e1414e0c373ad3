"""Face analysis with insightface (``FaceAnalysis``, default model pack ``buffalo_l``) and face alignment.

The model pack is looked up on disk *before* insightface is asked to load it, so a missing pack
gives a :class:`WeightsNotFoundError` at once instead of insightface's download attempt (which, offline,
fails with a ``ConnectionError`` and leaves an empty folder that breaks the next try).
insightface and onnxruntime are imported lazily; a loaded analyzer is shared per (name, root).
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import ImageError, WeightsNotFoundError
from .base import DetectedFace

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

#: Files of insightface's ``buffalo_l`` pack (detector, recognizer, landmarks, gender/age).
BUFFALO_L_FILES = ("det_10g.onnx", "w600k_r50.onnx", "1k3d68.onnx", "2d106det.onnx", "genderage.onnx")


def face_model_dir(name: str, root: str | Path) -> Path:
    """Where insightface looks for model pack ``name``: a folder given directly, or ``<root>/models/<name>``."""
    direct = Path(str(name)).expanduser()
    if direct.is_dir():
        return direct.resolve()
    return Path(root).expanduser() / "models" / str(name)


def check_face_model(name: str, root: str | Path) -> Path:
    """The folder of face model pack ``name`` if it holds ONNX files; else :class:`WeightsNotFoundError`."""
    folder = face_model_dir(name, root)
    onnx_files = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
    if not onnx_files:
        state = "is empty" if folder.is_dir() else "does not exist"
        raise WeightsNotFoundError(
            f"The face model {name!r} is not installed: {folder} {state}. Download "
            f"https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip and unzip "
            f"its .onnx files ({', '.join(BUFFALO_L_FILES) if name == 'buffalo_l' else 'detector + recognizer'}) "
            f"into {folder}, or set STORYMAKER_FACE_MODEL to a folder that holds them "
            "(STORYMAKER_FACE_MODEL_ROOT sets the root folder). Offline, use --backend tiny."
        )
    return folder


class InsightFaceAnalyzer:
    """:class:`~storymaker.perception.base.FaceAnalyzer` over insightface ``FaceAnalysis``.

    ``analyze`` takes RGB and hands insightface BGR (as OpenCV loads it); keypoints come back in
    pixel coordinates that are the same for both orders. Loads on first use, once.
    """

    def __init__(
        self,
        name: str = "buffalo_l",
        root: str | Path = "~/.insightface",
        *,
        det_size: tuple[int, int] | None = (640, 640),
        det_thresh: float = 0.5,
        providers: list[str] | None = None,
    ):
        self.model_name = str(name)
        self.root = Path(root).expanduser()
        self.det_size = det_size
        self.det_thresh = det_thresh
        self.providers = providers  # None: insightface's default (CUDA when onnxruntime-gpu has it, else CPU)
        self.name = Path(self.model_name).name if Path(self.model_name).is_dir() else self.model_name
        self._app = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise :class:`WeightsNotFoundError` now if the model pack is not on disk (loads nothing)."""
        if self._app is None:
            check_face_model(self.model_name, self.root)

    def load(self):
        """Load the model pack (once). Raises :class:`WeightsNotFoundError` if it is not on disk."""
        with self._lock:
            if self._app is not None:
                return self._app
            folder = check_face_model(self.model_name, self.root)
            from insightface.app import FaceAnalysis

            try:
                # A directory name makes insightface load it directly: it never downloads.
                kwargs = {} if self.providers is None else {"providers": self.providers}
                app = FaceAnalysis(name=str(folder), root=str(self.root), **kwargs)
            except AssertionError:
                raise WeightsNotFoundError(
                    f"The face model folder {folder} has no face detector ONNX file that insightface "
                    "recognises: put the complete model pack (e.g. buffalo_l's det_10g.onnx and w600k_r50.onnx) there."
                ) from None
            if "recognition" not in app.models:
                raise WeightsNotFoundError(
                    f"The face model folder {folder} has a detector but no recognition model (ArcFace, "
                    "e.g. w600k_r50.onnx): StoryMaker needs the face embedding. Add it and retry."
                )
            app.prepare(ctx_id=-1 if self.providers == ["CPUExecutionProvider"] else 0,
                        det_thresh=self.det_thresh, det_size=self.det_size)
            log.info("Loaded face model %s from %s (%s)", self.name, folder, ", ".join(sorted(app.models)))
            self._app = app
            return app

    def analyze(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Faces in an RGB uint8 (H, W, 3) image, largest first."""
        app = self.load()
        bgr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, ::-1])
        with warnings.catch_warnings():  # scikit-image deprecation inside insightface's alignment
            warnings.simplefilter("ignore", FutureWarning)
            found = app.get(bgr)
        faces = []
        for face in found:
            if face.kps is None or face.embedding is None:
                continue
            gender = None
            if face.gender is not None:
                gender = "man" if int(face.gender) == 1 else "woman"
            faces.append(
                DetectedFace(
                    bbox=tuple(float(v) for v in face.bbox[:4]),
                    kps=np.asarray(face.kps, dtype=np.float32).reshape(5, 2),
                    embedding=np.asarray(face.normed_embedding, dtype=np.float32).reshape(-1),
                    det_score=float(face.det_score),
                    gender=gender,
                    age=None if face.age is None else int(face.age),
                )
            )
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces


_SHARED: dict[tuple[str, str], InsightFaceAnalyzer] = {}
_SHARED_LOCK = threading.Lock()


def shared_face_analyzer(settings: "Settings") -> InsightFaceAnalyzer:
    """The process-wide analyzer for ``settings.face_model`` / ``face_model_root`` (loaded lazily)."""
    key = (str(settings.face_model), str(settings.face_model_root))
    with _SHARED_LOCK:
        analyzer = _SHARED.get(key)
        if analyzer is None:
            analyzer = _SHARED[key] = InsightFaceAnalyzer(settings.face_model, settings.face_model_root)
        return analyzer


def align_face(rgb: np.ndarray | Image.Image, kps: np.ndarray, image_size: int = 224) -> Image.Image:
    """The aligned face crop: insightface ``face_align.norm_crop(photo, landmark=kps, image_size)``."""
    from insightface.utils import face_align

    array = np.asarray(rgb, dtype=np.uint8)
    landmarks = np.asarray(kps, dtype=np.float32).reshape(5, 2)
    try:
        with warnings.catch_warnings():  # scikit-image deprecation inside insightface, not ours
            warnings.simplefilter("ignore", FutureWarning)
            aligned = face_align.norm_crop(array, landmark=landmarks, image_size=image_size)
    except (ValueError, AssertionError) as err:  # degenerate keypoints
        raise ImageError(f"The face could not be aligned ({err}): use a clearer, frontal photo.") from None
    return Image.fromarray(np.ascontiguousarray(aligned), mode="RGB")
