"""The StoryMaker adapter: image projection + UNet attention processors.

This module builds a matching adapter for any UNet config (so tiny UNets get a tiny adapter), gives
the layout (keys and shapes) a checkpoint must match, loads a checkpoint into it once, installs the
processors on the UNet, sets the per-call scales and makes the image tokens. Reading and checking
checkpoint files (never running pickle code) is in ``adapter_checkpoint.py``; fusing and unfusing
the LoRA in ``adapter_lora.py`` (mixed into :class:`StoryMakerAdapter`).

Typical use (real weights, no 3 GB fp32 detour)::

    adapter = StoryMakerAdapter.from_checkpoint(path, unet, clip_dim=image_encoder.config.hidden_size)
    # = build inside ``with torch.device("meta"):`` + load_checkpoint(path, device=..., dtype=...)
    adapter.install(unet)
    unet(..., cross_attention_kwargs=adapter.cross_attention_kwargs(tokens, ip_scale=0.8, lora_scale=0.8))
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConditioningError
from .adapter_checkpoint import (
    MAX_LISTED_PROBLEMS,
    SDXL_CLIP_DIM,
    SDXL_UNET_CONFIG,
    SECTIONS,
    check_checkpoint,
    describe_problems,
    load_checkpoint_state,
    normalize_checkpoint,
)
from .adapter_lora import StoryMakerLoRAFusion
from .attention import (
    IMAGE_TOKENS_KWARG,
    IP_SCALE_KWARG,
    LORA_SCALE_KWARG,
    StoryMakerIPAttnProcessor,
    StoryMakerLoRAAttnProcessor,
    attention_dims,
)
from .projection import StoryMakerImageProjection

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# UNet helpers
# --------------------------------------------------------------------------------------------

def _is_unet(obj: Any) -> bool:
    return isinstance(obj, nn.Module) and hasattr(obj, "attn_processors")


def meta_unet(unet_config: Mapping[str, Any]):
    """A ``UNet2DConditionModel`` for ``unet_config`` on the meta device (no memory, ~1 s for SDXL)."""
    from diffusers import UNet2DConditionModel

    config = {k: v for k, v in dict(unet_config).items() if not k.startswith("_")}
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def _unet_from(unet_or_config: Any):
    if _is_unet(unet_or_config):
        return unet_or_config
    config = getattr(unet_or_config, "config", unet_or_config)
    if isinstance(config, (str, os.PathLike)):
        config = read_unet_config(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"expected a UNet or its config mapping, got {type(unet_or_config).__name__}")
    return meta_unet(config)


def read_unet_config(path: str | os.PathLike) -> dict[str, Any]:
    """A UNet config from ``config.json``, a UNet folder, or a diffusers pipeline folder (``unet/``)."""
    path = Path(path)
    for candidate in (path, path / "config.json", path / "unet" / "config.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise CheckpointError(f"Cannot read the UNet config {candidate}: {err}. Give a valid config.json.") from None
    raise CheckpointError(
        f"No UNet config at {path}: give a UNet config.json, a UNet folder, or a diffusers SDXL folder "
        "(with unet/config.json)."
    )


def _attention_module(unet, processor_name: str):
    return unet.get_submodule(processor_name[: -len(".processor")])


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------

class StoryMakerAdapter(StoryMakerLoRAFusion, nn.Module):
    """Image projection + one attention processor per UNet attention layer.

    ``image_proj`` holds ``image_proj_model``; ``ip_adapter`` (a ModuleList, in
    ``unet.attn_processors`` order, ``processor_names`` giving each name) holds ``ip_adapter``.
    """

    image_proj: StoryMakerImageProjection

    def __init__(self, image_proj: StoryMakerImageProjection, processors: Mapping[str, nn.Module]):
        super().__init__()
        self.image_proj = image_proj
        self.processor_names: tuple[str, ...] = tuple(processors)
        self.ip_adapter = nn.ModuleList(processors.values())
        self.fused_scale: float | None = None
        # The attention weights as they were before fuse_lora (CPU copies), for an exact unfuse;
        # None when fused without keeping them.
        self._unfused_weights: list[torch.Tensor] | None = []

    @property
    def device(self) -> torch.device:
        """Device of the image projection (diffusers pipelines ask every component for it)."""
        return self.image_proj.bg_embed.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the image projection (diffusers pipelines ask every component for it)."""
        return self.image_proj.bg_embed.dtype

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def for_unet(cls, unet_or_config, clip_dim: int, face_id_dim: int = 512, rank: int = 128,
                 **projection_kwargs) -> "StoryMakerAdapter":
        """An adapter matching ``unet_or_config`` (a UNet2DConditionModel, its config mapping, or a
        config.json path) and an image encoder of hidden size ``clip_dim``.

        Every width comes from the UNet (its attention layers' projections, ``cross_attention_dim``),
        so tiny UNets get a tiny adapter. Parameters are created on the current default device:
        build it inside ``with torch.device("meta"):`` to allocate nothing, then ``load_checkpoint``.
        A config is instantiated on the meta device to read the layer widths.
        """
        unet = _unet_from(unet_or_config)
        cross_attention_dim = int(unet.config.cross_attention_dim)
        processors: dict[str, nn.Module] = {}
        for name in unet.attn_processors:
            attn = _attention_module(unet, name)
            dims = attention_dims(attn)
            if name.endswith("attn1.processor"):
                processors[name] = StoryMakerLoRAAttnProcessor(dims, rank=rank)
            else:
                processors[name] = StoryMakerIPAttnProcessor(dims, cross_attention_dim, rank=rank)
        image_proj = StoryMakerImageProjection(
            cross_attention_dim=cross_attention_dim, face_id_dim=face_id_dim, clip_dim=clip_dim,
            **projection_kwargs,
        )
        return cls(image_proj, processors)

    @classmethod
    def from_checkpoint(cls, source: str | os.PathLike | Mapping[str, Any], unet, clip_dim: int, *,
                        face_id_dim: int = 512, rank: int = 128, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None, strict: bool = True) -> "StoryMakerAdapter":
        """Build on the meta device for ``unet`` and load ``source`` straight into ``device``/``dtype``
        (default: the UNet's). Not installed: call :meth:`install`."""
        with torch.device("meta"):
            adapter = cls.for_unet(unet, clip_dim=clip_dim, face_id_dim=face_id_dim, rank=rank)
        if _is_unet(unet):
            device = device if device is not None else unet.device
            dtype = dtype if dtype is not None else unet.dtype
        adapter.load_checkpoint(source, strict=strict, device=device, dtype=dtype)
        return adapter.eval()

    # ---- layout / checkpoint ------------------------------------------------------------

    def layout(self) -> dict[str, Any]:
        """Keys and shapes this adapter expects, in the fixture's format."""
        return {
            "checkpoint_top_level_keys": list(SECTIONS),
            "unet_attn_processor_order": list(self.processor_names),
            "image_proj_model": {k: list(v.shape) for k, v in self.image_proj.state_dict().items()},
            "ip_adapter": {k: list(v.shape) for k, v in self.ip_adapter.state_dict().items()},
        }

    def state_dict_for_checkpoint(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{"image_proj_model": {...}, "ip_adapter": {"0.to_q_lora.down.weight": ...}}`` (detached)."""
        return {
            "image_proj_model": {k: v.detach() for k, v in self.image_proj.state_dict().items()},
            "ip_adapter": {k: v.detach() for k, v in self.ip_adapter.state_dict().items()},
        }

    def load_checkpoint(self, source: str | os.PathLike | Mapping[str, Any], *, strict: bool = True,
                        device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None) -> None:
        """Load a checkpoint file (``.bin``/``.pt``/``.safetensors``) or state dict, read once.

        ``strict``: any missing, unexpected or wrongly shaped key raises one
        :class:`CheckpointError` listing them. Non-strict: missing and unexpected keys are logged
        and skipped; wrong shapes still raise. Tensors go straight to the parameters' dtype/device
        (or ``dtype``/``device``): copied into existing parameters, or assigned when the adapter
        was built on the meta device (then ``device`` defaults to CPU), so no fp32 copy is kept.
        """
        if self.fused_scale is not None:
            raise CheckpointError(
                "The adapter's LoRA is fused into a UNet: call unfuse_lora(unet) before loading new weights."
            )
        if isinstance(source, Mapping):
            label = "the given state dict"
            state = normalize_checkpoint(source, label)
        else:
            state = load_checkpoint_state(source)
            label = str(source)
        layout = self.layout()
        problems = check_checkpoint(state, layout)
        if problems:
            shape_problems = [p for p in problems if p.startswith("wrong shape")]
            if strict or shape_problems:
                raise CheckpointError(describe_problems(
                    label, problems if strict else shape_problems, limit=MAX_LISTED_PROBLEMS,
                ))
            logger.warning("%s", describe_problems(label, problems, limit=MAX_LISTED_PROBLEMS))
        on_meta = any(p.is_meta for p in self.parameters())
        if not on_meta and (device is not None or dtype is not None):
            self.to(device=device, dtype=dtype)
        for section, module in (("image_proj_model", self.image_proj), ("ip_adapter", self.ip_adapter)):
            own = module.state_dict()
            given = {k: v for k, v in state.get(section, {}).items() if k in own}
            if on_meta:
                target_device = torch.device(device) if device is not None else torch.device("cpu")
                given = {
                    k: v.to(device=target_device, dtype=dtype or own[k].dtype) for k, v in given.items()
                }
                module.load_state_dict(given, strict=strict, assign=True)
            else:
                with torch.no_grad():
                    module.load_state_dict(given, strict=strict)
        self.requires_grad_(False)
        still_meta = [n for n, p in self.named_parameters() if p.is_meta]
        if still_meta:
            raise CheckpointError(
                f"{len(still_meta)} adapter parameters were not in {label} (e.g. {still_meta[0]}) and the "
                "adapter was built on the meta device: load a complete checkpoint or build it on a real device."
            )
        logger.info("loaded StoryMaker adapter weights from %s", label)

    # ---- UNet plumbing -----------------------------------------------------------------

    def _installed_pairs(self, unet):
        if not self.is_installed(unet):
            raise CheckpointError(
                "The adapter is not installed on this UNet: call adapter.install(unet) first."
            )
        for name, processor in zip(self.processor_names, self.ip_adapter):
            yield _attention_module(unet, name), processor

    def install(self, unet) -> None:
        """Set this adapter's processors on ``unet`` (in ``unet.attn_processors`` order)."""
        names = tuple(unet.attn_processors)
        if names != self.processor_names:
            raise CheckpointError(
                f"This StoryMaker adapter was built for a UNet with {len(self.processor_names)} attention "
                f"layers, but this UNet has {len(names)} (or a different order): build the adapter with "
                "StoryMakerAdapter.for_unet(unet, ...) for this UNet."
            )
        for name, processor in zip(self.processor_names, self.ip_adapter):
            if attention_dims(_attention_module(unet, name)) != processor.dims:
                raise CheckpointError(
                    f"Attention layer {name} has other widths than the adapter's processor: build the "
                    "adapter with StoryMakerAdapter.for_unet(unet, ...) for this UNet."
                )
        unet.set_attn_processor(dict(zip(self.processor_names, self.ip_adapter)))

    def uninstall(self, unet) -> None:
        """Give ``unet`` diffusers' default processors back (unfuses the LoRA first if fused)."""
        from diffusers.models.attention_processor import AttnProcessor2_0

        if self.fused_scale is not None:
            self.unfuse_lora(unet)
        unet.set_attn_processor(AttnProcessor2_0())

    def is_installed(self, unet) -> bool:
        """Whether every attention layer of ``unet`` runs this adapter's processor."""
        processors = unet.attn_processors
        return tuple(processors) == self.processor_names and all(
            processors[n] is p for n, p in zip(self.processor_names, self.ip_adapter)
        )

    @staticmethod
    def cross_attention_kwargs(image_tokens: torch.Tensor | None, ip_scale: float = 1.0,
                               lora_scale: float | None = None) -> dict[str, Any]:
        """The per-call ``cross_attention_kwargs`` the processors read."""
        kwargs: dict[str, Any] = {IMAGE_TOKENS_KWARG: image_tokens, IP_SCALE_KWARG: float(ip_scale)}
        if lora_scale is not None:
            kwargs[LORA_SCALE_KWARG] = float(lora_scale)
        return kwargs

    # ---- image tokens ------------------------------------------------------------------

    def image_tokens(self, face_id: torch.Tensor, clip_character: torch.Tensor,
                     clip_face: torch.Tensor, *, device: torch.device | None = None) -> torch.Tensor:
        """Image tokens (B, 20*(N+1), D) for face_id (B, N, 512), clip_* (B, N, T, C); inputs are
        moved to ``device`` (default: the projection's; the placement policy may bring the projection
        there only for its forward pass) and the projection's dtype."""
        param = self.image_proj.bg_embed
        convert = {"device": device or param.device, "dtype": param.dtype}
        return self.image_proj(face_id.to(**convert), clip_character.to(**convert), clip_face.to(**convert))

    def image_tokens_for(self, characters: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditional and unconditional tokens, each (1, 20*(N+1), D), for a panel's characters
        (objects with ``face_id`` (512,), ``clip_character`` and ``clip_face`` (T, C), e.g.
        :class:`~storymaker.models.conditioning.CharacterConditioning`). The unconditional tokens
        are the projection of all-zero inputs (background included), as the reference computes them."""
        proj = self.image_proj
        if len(characters) > proj.max_characters:
            raise ConditioningError(
                f"{len(characters)} characters in one panel, but StoryMaker supports at most "
                f"{proj.max_characters}: split the panel or remove characters."
            )
        if characters:
            face_id = torch.stack([c.face_id.reshape(-1) for c in characters])[None]
            clip_character = torch.stack([c.clip_character for c in characters])[None]
            clip_face = torch.stack([c.clip_face for c in characters])[None]
        else:
            face_id = torch.zeros(1, 0, proj.face_id_dim)
            clip_character = torch.zeros(1, 0, 1, proj.clip_dim)
            clip_face = torch.zeros(1, 0, 1, proj.clip_dim)
        cond = self.image_tokens(face_id, clip_character, clip_face)
        uncond = self.image_tokens(
            torch.zeros_like(face_id), torch.zeros_like(clip_character), torch.zeros_like(clip_face)
        )
        return cond, uncond


# --------------------------------------------------------------------------------------------
# Layouts a checkpoint must match (files: adapter_checkpoint.py)
# --------------------------------------------------------------------------------------------

def expected_layout(unet_config: Any, clip_dim: int, face_id_dim: int = 512, rank: int = 128) -> dict[str, Any]:
    """Keys/shapes our modules produce for a UNet (config mapping, config path or model) and an image
    encoder of hidden size ``clip_dim``, computed on the meta device (allocates nothing)."""
    unet = _unet_from(unet_config)
    with torch.device("meta"):
        adapter = StoryMakerAdapter.for_unet(unet, clip_dim=clip_dim, face_id_dim=face_id_dim, rank=rank)
    return adapter.layout()


def sdxl_layout() -> dict[str, Any]:
    """:func:`expected_layout` of SDXL base with CLIP ViT-H/14: what the published mask.bin must match
    (computed once per process, a few seconds on the meta device)."""
    return copy.deepcopy(_sdxl_layout_cached())


@functools.lru_cache(maxsize=1)
def _sdxl_layout_cached() -> dict[str, Any]:
    return expected_layout(SDXL_UNET_CONFIG, SDXL_CLIP_DIM)
