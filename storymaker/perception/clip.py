"""CLIP image features as StoryMaker takes them: penultimate hidden states of a
``CLIPVisionModelWithProjection`` (``hidden_states[-2]``, (257, 1280) per image for ViT-H/14),
on images prepared by ``CLIPImageProcessor()`` with its defaults.

The encoder wraps an already-loaded model (the pipeline's own instance, so it is in memory once)
or loads one from ``Settings.image_encoder`` (a hub id or a local folder) on first use.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from PIL import Image

from ..errors import WeightsNotFoundError

if TYPE_CHECKING:
    import torch

    from ..config import Settings

log = logging.getLogger(__name__)

#: Recorded with characters encoded by the tiny random encoder (never a real model's name).
TINY_ENCODER_NAME = "tiny-clip-vision-random (not a real image encoder)"


def _offline() -> bool:
    return any(
        os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on")
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def load_clip_vision(source: str | Path, *, dtype: "torch.dtype | None" = None):
    """Load a ``CLIPVisionModelWithProjection`` from a local folder or a hub id.

    Tries the local cache first; goes to the network only when not offline. Missing weights raise
    :class:`WeightsNotFoundError` at once, naming the model and how to provide it.
    """
    from transformers import CLIPVisionModelWithProjection

    text = str(source)
    path = Path(text).expanduser()
    how = (
        f"Download it while online (python -m storymaker download, or huggingface-cli download {text}), "
        "or set STORYMAKER_IMAGE_ENCODER to a local folder holding config.json and model weights. "
        "Offline, use --backend tiny."
    )
    kwargs: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    if path.exists():
        if not (path / "config.json").is_file():
            raise WeightsNotFoundError(
                f"The image encoder folder {path} has no config.json: it must hold a CLIP vision model "
                "in transformers layout (config.json + model.safetensors)."
            )
        try:
            return CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True, **kwargs).eval()
        except (OSError, ValueError) as err:
            raise WeightsNotFoundError(f"The image encoder in {path} cannot be loaded ({err}). {how}") from None
    try:
        return CLIPVisionModelWithProjection.from_pretrained(text, local_files_only=True, **kwargs).eval()
    except (OSError, ValueError) as err:
        if _offline():
            raise WeightsNotFoundError(
                f"The image encoder {text!r} is not in the local cache and downloads are off ({err.__class__.__name__}). {how}"
            ) from None
    try:
        return CLIPVisionModelWithProjection.from_pretrained(text, **kwargs).eval()
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(f"The image encoder {text!r} could not be downloaded ({err}). {how}") from None


class ClipImageEncoder:
    """:class:`~storymaker.perception.base.ImageEncoder`: penultimate CLIP hidden states.

    Give ``model`` (an already-loaded ``CLIPVisionModelWithProjection``, e.g. the pipeline's) or
    ``source`` (hub id / folder, loaded on first ``encode``). ``name`` is recorded with every
    character's embeddings; it defaults to ``source`` or the model's ``name_or_path``.
    """

    def __init__(
        self,
        model: Any | None = None,
        *,
        source: str | Path | None = None,
        factory: Callable[[], Any] | None = None,
        name: str | None = None,
        device: "str | torch.device | None" = None,
        dtype: "torch.dtype | None" = None,
    ):
        if model is None and source is None and factory is None:
            raise ValueError("ClipImageEncoder needs a loaded model, a source or a factory")
        self._model = model
        self._factory = factory
        self.source = None if source is None else str(source)
        self.device = device
        self.dtype = dtype
        self.name = name or self.source or getattr(getattr(model, "config", None), "_name_or_path", "") or "clip-vision"
        self._processor = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise :class:`WeightsNotFoundError` now if the weights are clearly unavailable: a local
        folder without config.json, or a hub id that is not in the cache while offline."""
        if self._model is not None or self.source is None:
            return
        path = Path(self.source).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise WeightsNotFoundError(
                    f"The image encoder folder {path} has no config.json: it must hold a CLIP vision model "
                    "in transformers layout (config.json + model.safetensors)."
                )
            return
        if not _offline():
            return  # it may be downloaded on first use
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(self.source, "config.json")
        except ValueError:  # not a valid repo id
            cached = None
        if not isinstance(cached, str):
            raise WeightsNotFoundError(
                f"The image encoder {self.source!r} is not in the local Hugging Face cache and downloads are off "
                "(HF_HUB_OFFLINE). Download it while online (python -m storymaker download), or set "
                "STORYMAKER_IMAGE_ENCODER to a local folder holding config.json and model weights. "
                "Offline, use --backend tiny."
            )

    @property
    def loaded(self) -> bool:
        """Whether the vision model is in memory (nothing is loaded to answer)."""
        return self._model is not None

    @property
    def model(self):
        """The vision model (loaded now if it was given as a source)."""
        with self._lock:
            if self._model is None and self._factory is not None:
                self._model = self._factory()
            if self._model is None:
                import torch

                if self.device == "auto":
                    self.device = "cuda" if torch.cuda.is_available() else "cpu"
                if self.dtype is None and str(self.device).startswith("cuda"):
                    self.dtype = torch.float16
                model = load_clip_vision(self.source, dtype=self.dtype)  # type: ignore[arg-type]
                self._model = model.to(self.device) if self.device is not None else model
                log.info("Loaded image encoder %s on %s", self.name, self.device or "cpu")
            return self._model

    def load(self):
        """Load the vision model now (start-up in ZeroGPU mode); returns it."""
        return self.model

    def adopt(self, model: Any) -> None:
        """Use ``model`` (the pipeline's instance) from now on and drop our own copy, if any: the
        weights stay in memory once."""
        with self._lock:
            self._model = model
            self._factory = None

    @property
    def processor(self):
        if self._processor is None:
            from transformers import CLIPImageProcessor

            self._processor = CLIPImageProcessor()
        return self._processor

    def encode(self, images: Sequence[Image.Image]) -> "torch.Tensor":
        """(N, tokens, hidden) float32 CPU tensor: ``hidden_states[-2]`` of each image."""
        import torch

        model = self.model
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        param = next(model.parameters())
        pixels = pixels.to(device=param.device, dtype=param.dtype)
        with torch.inference_mode():
            out = model(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[-2].detach().to("cpu", torch.float32).contiguous()


def tiny_clip_encoder(seed: int = 0) -> ClipImageEncoder:
    """The tiny random CLIP vision model (``storymaker.models.tiny``), labelled as such; built on
    first use."""

    def build():
        from ..models.tiny import tiny_image_encoder

        return tiny_image_encoder(seed)

    return ClipImageEncoder(factory=build, name=TINY_ENCODER_NAME if seed == 0 else f"{TINY_ENCODER_NAME} seed {seed}")


_SHARED: dict[str, ClipImageEncoder] = {}
_SHARED_LOCK = threading.Lock()


def shared_image_encoder(settings: "Settings", model: Any | None = None) -> ClipImageEncoder:
    """The process-wide encoder for ``settings.image_encoder``.

    Loaded alone it takes the pipeline's device and dtype (``models.weights.resolve_device`` /
    ``resolve_dtype``), so the pipeline can take this very instance when it loads later;
    ``model`` (the pipeline's loaded instance) is adopted when given: the weights are in memory once.
    """
    key = str(settings.image_encoder)
    with _SHARED_LOCK:
        encoder = _SHARED.get(key)
        if encoder is None:
            encoder = _SHARED[key] = ClipImageEncoder(
                model, source=key, name=key, factory=None if model is not None else _standalone_loader(settings, key)
            )
        elif model is not None and encoder._model is not model:
            encoder.adopt(model)
        return encoder


def loaded_shared_encoder(settings: "Settings") -> Any | None:
    """The vision model of the shared encoder for ``settings.image_encoder`` if it is in memory
    already (the pipeline loader reuses it instead of loading a second copy), else None."""
    with _SHARED_LOCK:
        encoder = _SHARED.get(str(settings.image_encoder))
    return encoder._model if encoder is not None else None


def _standalone_loader(settings: "Settings", source: str) -> Callable[[], Any]:
    def load():
        from ..models.weights import resolve_device, resolve_dtype

        device = resolve_device(settings)
        dtype = resolve_dtype(settings, device)
        model = load_clip_vision(source, dtype=dtype).to(device)
        log.info("Loaded image encoder %s alone on %s (%s)", source, device, dtype)
        return model

    return load
