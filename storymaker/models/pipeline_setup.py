"""Loading and serving set-up of a :class:`~storymaker.models.pipeline.StoryMakerPipeline`.

:class:`StoryMakerSetupMixin`, mixed into the pipeline: ``from_settings`` (load every component the
settings name and build the pipeline), ``apply_runtime_options`` (placement through the one placement
policy, ``placement.py``; diffusers' VAE memory options; StoryMaker's LoRA fused once, at load) and the
LoRA fusion switches. Nothing here runs per call: a call never changes the shared weights.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import torch

from .pipeline_inputs import DEFAULT_LORA_SCALE

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from .pipeline import StoryMakerPipeline

logger = logging.getLogger(__name__)


def _resolve_fast_lora(settings: "Settings", **kwargs):
    from .weights import resolve_fast_lora

    return resolve_fast_lora(settings, **kwargs)


class StoryMakerSetupMixin:
    """Construction from settings, runtime options and LoRA fusion of
    :class:`~storymaker.models.pipeline.StoryMakerPipeline` (uses its ``adapter`` and ``unet``)."""

    @classmethod
    def from_settings(
        cls,
        settings: "Settings",
        *,
        with_controlnet: bool | None = None,
        download: bool | None = None,
        progress: Callable[[str], None] | None = None,
        image_encoder: Any | None = None,
    ) -> "StoryMakerPipeline":
        """Load every component that ``settings`` names (hub ids or local paths) and build the pipeline.

        ``with_controlnet``: None loads the pose ControlNet when ``settings.controlnet_pose`` is set.
        ``download``: None downloads missing weights unless the hub is offline (``HF_HUB_OFFLINE=1``).
        Missing weights raise :class:`WeightsNotFoundError` naming each model and how to provide it.
        ``image_encoder``: a CLIP vision model already in memory, used instead of loading a second copy.
        """
        from .weights import load_extra_loras, load_pipeline_components

        components, options = load_pipeline_components(
            settings, with_controlnet=with_controlnet, download=download, progress=progress,
            image_encoder=image_encoder,
        )
        pipe = cls(**components)
        load_extra_loras(pipe, settings)
        pipe.apply_runtime_options(**options)
        # The Fast preset's LoRA is resolved on the first Fast render (a missing file fails only that).
        pipe.fast_lora_source = lambda: _resolve_fast_lora(settings, download=download, progress=progress)
        return pipe

    def apply_runtime_options(
        self,
        *,
        device: str | torch.device = "cpu",
        cpu_offload: bool = False,
        memory_mode: str | None = None,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
        fuse_lora: bool = False,
        lora_scale: float = DEFAULT_LORA_SCALE,
    ) -> "StoryMakerPipeline":
        """Place the pipeline (the one placement policy, storymaker/models/placement.py), set diffusers'
        memory options and fuse StoryMaker's LoRA at ``lora_scale`` (once, here: calls never re-fuse;
        no copy of the unfused weights is kept, so unfusing it means reloading).

        ``memory_mode`` ("auto", "resident", "balanced", "offload"); None: "offload" when
        ``cpu_offload`` is set, else "resident"."""
        from types import SimpleNamespace

        from .placement import apply_placement, resolve_memory_mode

        device = torch.device(device)
        if memory_mode is None:
            memory_mode = "offload" if cpu_offload else "resident"
        mode = resolve_memory_mode(SimpleNamespace(memory_mode=memory_mode, cpu_offload=cpu_offload), device)
        apply_placement(self, device, mode)
        if vae_slicing:
            self.vae.enable_slicing()
        if vae_tiling:
            self.vae.enable_tiling()
        if fuse_lora:
            # Loaded to serve: calls never unfuse, so no copy of the unfused weights is kept.
            self.enable_storymaker_lora_fusion(lora_scale, keep_original=False)
        return self

    # ------------------------------------------------------------------ LoRA fusion
    @property
    def storymaker_lora_fusion(self) -> bool:
        """Whether StoryMaker's LoRA is fused into the UNet's attention weights."""
        return self.adapter.fused_scale is not None

    def enable_storymaker_lora_fusion(self, lora_scale: float = DEFAULT_LORA_SCALE, *,
                                      keep_original: bool = True) -> None:
        """Fuse the LoRA at ``lora_scale`` (faster steps): do it once, when loading (the settings'
        scale). Calls at any other scale stay exact (the processors add the difference) and never
        touch the weights. ``keep_original`` keeps a CPU copy of the unfused weights (1.8 GiB for
        SDXL in float16) so that unfusing, or fusing again at another scale, restores them exactly;
        without it those raise :class:`CheckpointError` (reload instead)."""
        if self.adapter.fused_scale != float(lora_scale):
            logger.info("fusing the StoryMaker LoRA at scale %s", lora_scale)
        self.adapter.fuse_lora(self.unet, float(lora_scale), keep_original=keep_original)

    def disable_storymaker_lora_fusion(self) -> None:
        """Restore the UNet weights as they were before fusing (bit for bit); every call then runs
        the LoRA branches at its own scale."""
        self.adapter.unfuse_lora(self.unet)
