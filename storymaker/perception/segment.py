"""Person segmentation with rembg (default model ``u2net_human_seg``, trained for people).

The ONNX file is found on disk *before* rembg is involved: rembg would otherwise try to download it
(offline: a ``ConnectionError``). The u2net family is run through rembg's ``u2net_custom`` session
with that exact file, so rembg never reaches for the network. ``import rembg`` is slow the first
time in an environment (~30 s, numba), so it happens only when a mask is first needed.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..errors import WeightsNotFoundError

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

#: rembg models that share U2Net's pre/post-processing (320x320, ImageNet mean/std, 1st output).
U2NET_FAMILY = ("u2net", "u2netp", "u2net_human_seg")


def rembg_search_dirs() -> list[Path]:
    """The folders searched for ``<name>.onnx``, in order (rembg's own home first)."""
    dirs: list[Path] = []
    if os.environ.get("U2NET_HOME"):
        dirs.append(Path(os.environ["U2NET_HOME"]))
    if os.environ.get("REMBG_HOME"):
        dirs.append(Path(os.environ["REMBG_HOME"]))
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        dirs += [Path(xdg) / ".u2net", Path(xdg) / "rembg"]
    dirs += [Path("~/.u2net"), Path("~/.rembg")]
    seen: list[Path] = []
    for folder in dirs:
        folder = folder.expanduser()
        if folder not in seen:
            seen.append(folder)
    return seen


def find_segmentation_model(model: str) -> Path:
    """The ONNX file for ``model`` (a rembg model name or a path to an .onnx file), or raise
    :class:`WeightsNotFoundError` naming where to put it."""
    candidate = Path(model).expanduser()
    if candidate.suffix == ".onnx":
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
        raise WeightsNotFoundError(
            f"The segmentation model file {candidate} does not exist: fix STORYMAKER_SEGMENTATION_MODEL "
            "or supply your own person mask (--mask)."
        )
    for folder in rembg_search_dirs():
        path = folder / f"{model}.onnx"
        if path.is_file() and path.stat().st_size > 0:
            return path
    where = ", ".join(str(d) for d in rembg_search_dirs())
    raise WeightsNotFoundError(
        f"The person segmentation model {model!r} is not installed (looked for {model}.onnx in {where}). "
        f"Download https://github.com/danielgatis/rembg/releases/download/v0.0.0/{model}.onnx into "
        "$U2NET_HOME (default ~/.u2net), or supply your own person mask (--mask; white = the person), "
        "or use --backend tiny offline."
    )


@contextmanager
def keep_torch_threads():
    """Torch's intra-op thread count as it was before the block, whatever the block did to it.

    ``import rembg`` imports pymatting, whose numba functions start numba's OpenMP thread pool at
    import and set the OpenMP thread count (which torch shares) to numba's own (every CPU). Without
    this, every later render in the process ran with that many threads: slower on a small machine,
    and its float sums in another order (a panel rendered after registering a character differed
    from the same panel rendered on a Ray worker)."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)  # always: torch may report the old count while OpenMP's changed


class RembgSegmenter:
    """:class:`~storymaker.perception.base.Segmenter` over a rembg session (loaded on first use)."""

    def __init__(self, model: str = "u2net_human_seg"):
        self.model = str(model)
        self.name = Path(self.model).stem if self.model.endswith(".onnx") else self.model
        self._session = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise :class:`WeightsNotFoundError` now if the model file is missing (imports nothing)."""
        if self._session is None:
            find_segmentation_model(self.model)

    def load(self):
        with self._lock:
            if self._session is not None:
                return self._session
            path = find_segmentation_model(self.model)
            with keep_torch_threads():
                from rembg import new_session  # slow the first time: numba compiles

            kind = self.name if self.name in U2NET_FAMILY else None
            if kind is not None or self.model.endswith(".onnx"):
                session = new_session("u2net_custom", model_path=str(path))
            else:
                # Other rembg models have their own pre-processing and are read from rembg's home
                # only (where rembg would otherwise download them).
                home = Path(os.path.expanduser(os.getenv(
                    "U2NET_HOME", os.path.join(os.getenv("XDG_DATA_HOME", "~"), ".u2net"))))
                if path.parent.resolve() != home.resolve():
                    raise WeightsNotFoundError(
                        f"rembg reads {self.name}.onnx only from {home}: move {path} there "
                        "(or set U2NET_HOME to its folder)."
                    )
                session = new_session(self.name)
            log.info("Loaded segmentation model %s from %s", self.name, path)
            self._session = session
            return session

    def segment(self, image: Image.Image) -> Image.Image:
        """Person mask ("L", same size as ``image``, white = person)."""
        session = self.load()
        masks = session.predict(image.convert("RGB"))
        mask = masks[0].convert("L")
        if mask.size != image.size:
            mask = mask.resize(image.size, Image.Resampling.BILINEAR)
        return mask


_SHARED: dict[str, RembgSegmenter] = {}
_SHARED_LOCK = threading.Lock()


def shared_segmenter(settings: "Settings") -> RembgSegmenter:
    """The process-wide segmenter for ``settings.segmentation_model`` (loaded lazily)."""
    with _SHARED_LOCK:
        segmenter = _SHARED.get(settings.segmentation_model)
        if segmenter is None:
            segmenter = _SHARED[settings.segmentation_model] = RembgSegmenter(settings.segmentation_model)
        return segmenter
