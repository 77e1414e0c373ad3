"""Render backends behind one interface.

- ``storymaker``: the real :class:`~storymaker.models.pipeline.StoryMakerPipeline` (SDXL + adapter +
  optional pose ControlNet) loaded from the configured weights;
- ``tiny``: the same pipeline code on tiny random weights (tests, smoke runs); every image it makes
  carries a "TINY MODEL" mark and ``"backend": "tiny"`` in its metadata;
- ``draft``: a storyboard sketch drawn at once on the CPU (:mod:`storymaker.services.draft`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Hashable, Protocol

from PIL import Image, ImageDraw

from ..config import Settings
from ..errors import GPUOutOfMemoryError, RenderCancelled, RenderError
from ..perception.heads import detect_and_record
from .jobs import CharacterSlot, PanelJob
from .pipelines import PIPELINES, PipelineCache, _free_cuda_memory, _PipelineEntry, pipeline_key

logger = logging.getLogger(__name__)


class RenderBackend(Protocol):
    """What the engine needs from a backend."""

    name: str  # "storymaker", "tiny", "draft"
    label: str  # mark drawn on images ("TINY MODEL", "DRAFT") or ""

    def model_ids(self) -> dict[str, str]:
        """Model identifiers recorded with every version."""

    def prepare(self) -> None:
        """Load what every panel needs (once); a StoryMakerError here fails the whole run."""

    def render(
        self,
        job: PanelJob,
        *,
        registry: Any,
        on_step: Callable[[int, int], None],
        cancel: threading.Event | None,
    ) -> Image.Image:
        """Render one panel. Raises :class:`RenderCancelled` when ``cancel`` was set."""


def oom_message(job: PanelJob) -> str:
    return (
        f"The GPU ran out of memory rendering a {job.width}x{job.height} panel with "
        f"{len(job.characters)} character(s). Try a smaller size (e.g. 768x1024), set "
        "STORYMAKER_CPU_OFFLOAD=1 to keep idle parts of the model in CPU memory, or use fewer "
        "characters in the panel; close other programs using the GPU. Other panels are kept."
    )


LABEL_COLOUR = (255, 230, 0)


def stamp_label(image: Image.Image, label: str) -> Image.Image:
    """A copy of ``image`` with ``label`` on a yellow band across its middle, so that the mark
    survives any crop a comic layout makes (tiny-model output is noise: nothing is hidden)."""
    from .draft import load_font

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(6, out.width // (len(label) + 2))
    font = load_font(size)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    pad = max(1, size // 4)
    band_h = bottom - top + 2 * pad
    y0 = (out.height - band_h) // 2
    draw.rectangle((0, y0, out.width - 1, y0 + band_h), fill=LABEL_COLOUR)
    draw.text(((out.width - (right - left)) // 2 - left, y0 + pad - top), label, fill=(0, 0, 0), font=font)
    return out


class DiffusionBackend:
    """The StoryMaker pipeline (real weights or tiny random ones) behind :class:`RenderBackend`."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        loader: Callable[[], Any],
        *,
        key: Hashable | None = None,
        cache: PipelineCache = PIPELINES,
        label: str = "",
        model_ids: dict[str, str] | None = None,
    ):
        self.name = name
        self.settings = settings
        self.label = label
        self._loader = self._quiet(loader)
        self._key = key if key is not None else pipeline_key(settings, name)
        self._cache = cache
        self._model_ids = dict(model_ids or {})

    @staticmethod
    def _quiet(loader: Callable[[], Any]) -> Callable[[], Any]:
        """The loader, with diffusers' own progress bar off (the engine reports progress)."""

        def load():
            pipeline = loader()
            if hasattr(pipeline, "set_progress_bar_config"):
                pipeline.set_progress_bar_config(disable=True)
            return pipeline

        return load

    @property
    def key(self) -> Hashable:
        return self._key

    @property
    def loaded(self) -> bool:
        """Whether this backend's pipeline is in the cache already."""
        return self._key in self._cache

    def entry(self) -> _PipelineEntry:
        return self._cache.entry(self._key, self._loader)

    def model_ids(self) -> dict[str, str]:
        return dict(self._model_ids)

    def prepare(self) -> None:
        """Load the pipeline now (once per process and configuration)."""
        import torch

        try:
            self.entry()
        except torch.OutOfMemoryError:
            _free_cuda_memory()
            raise GPUOutOfMemoryError(
                "The GPU ran out of memory loading the model. Set STORYMAKER_CPU_OFFLOAD=1 (keeps idle "
                "parts in CPU memory), use STORYMAKER_DTYPE=float16, or free the GPU from other programs."
            ) from None

    def render(
        self,
        job: PanelJob,
        *,
        registry: Any,
        on_step: Callable[[int, int], None],
        cancel: threading.Event | None,
    ) -> Image.Image:
        import torch

        def step_end(pipe, step: int, timestep, tensors: dict) -> dict:
            on_step(step + 1, job.steps)
            if cancel is not None and cancel.is_set():
                return {"interrupt": True}  # the pipeline stops after this step
            return {}

        on_step(0, job.steps)
        try:
            entry = self.entry()  # loads the pipeline on first use (an OOM here is handled too)
            characters = [_conditioning(registry, slot) for slot in job.characters]
            pose_image = _pose_image(job)
            with entry.lock:
                if cancel is not None and cancel.is_set():
                    raise RenderCancelled("Render cancelled before this panel started.")
                prompt_embeds, negative_embeds, pooled, negative_pooled = entry.embed_pair(
                    job.prompt, job.negative_prompt)
                generator = torch.Generator(device="cpu").manual_seed(job.seed)
                output = entry.pipeline(
                    characters=characters,
                    pose_image=pose_image,
                    prompt_embeds=prompt_embeds,
                    negative_prompt_embeds=negative_embeds,
                    pooled_prompt_embeds=pooled,
                    negative_pooled_prompt_embeds=negative_pooled,
                    width=job.width,
                    height=job.height,
                    num_inference_steps=job.steps,
                    guidance_scale=job.guidance_scale,
                    ip_adapter_scale=job.ip_adapter_scale,
                    lora_scale=job.lora_scale,
                    controlnet_conditioning_scale=job.controlnet_conditioning_scale,
                    generator=generator,
                    callback_on_step_end=step_end,
                    **({"fast": True} if job.quality == "fast" else {}),
                )
        except (torch.OutOfMemoryError, GPUOutOfMemoryError) as err:
            # The pipeline turns an OOM into GPUOutOfMemoryError itself; either way the panel's own
            # advice (its size, its characters) replaces the message and the CUDA cache is freed.
            logger.warning("out of memory on panel %d: %s", job.index + 1, err)
            _free_cuda_memory()
            raise GPUOutOfMemoryError(oom_message(job)) from None
        if getattr(output, "interrupted", False) or (cancel is not None and cancel.is_set()):
            raise RenderCancelled("Render cancelled during this panel; it was not kept.")
        images = getattr(output, "images", output)
        image = images[0]
        if not isinstance(image, Image.Image):
            raise RenderError("The pipeline returned no image; report this as a bug.")
        detect_and_record(image, getattr(registry, "face_analyzer", None))  # head boxes for lettering
        if self.label:
            image = stamp_label(image, self.label)
        return image


def _conditioning(registry: Any, slot: CharacterSlot):
    if registry is None:
        raise RenderError(
            f"Panel uses [{slot.name}] but no character registry is open: register characters in a "
            "project (python -m storymaker characters add) and render that project."
        )
    return registry.conditioning(slot.name, outfit=slot.outfit)


def _pose_image(job: PanelJob) -> Image.Image | None:
    if job.pose is None:
        return None
    from ..perception.pose import render_pose

    return render_pose(job.pose, job.width, job.height)


class DraftBackend:
    """Storyboard sketches drawn with PIL on the CPU: no model, no torch."""

    name = "draft"
    label = "DRAFT"

    def __init__(self, settings: Settings | None = None):
        self.settings = settings

    def model_ids(self) -> dict[str, str]:
        return {"renderer": "storymaker-draft-sketch"}

    def prepare(self) -> None:
        return None

    def render(
        self,
        job: PanelJob,
        *,
        registry: Any,
        on_step: Callable[[int, int], None],
        cancel: threading.Event | None,
    ) -> Image.Image:
        from .draft import draw_draft

        if cancel is not None and cancel.is_set():
            raise RenderCancelled("Render cancelled before this panel started.")
        on_step(0, 1)
        thumbnails = {slot.name: _thumbnail(registry, slot.name) for slot in job.characters}
        image = draw_draft(job, thumbnails)
        on_step(1, 1)
        return image


def _thumbnail(registry: Any, name: str) -> Image.Image | None:
    """The character's aligned face crop (else its photo) for a draft; None without a registry."""
    if registry is None:
        return None
    for which in ("face", "photo"):
        try:
            return registry.image(name, which).convert("RGB")
        except OSError:
            logger.debug("no %s image for %s", which, name)
    return None
