"""The StoryMaker adapter: image projection + UNet attention processors, and its checkpoint.

The published checkpoint (``mask.bin``) is a torch pickle ``{"image_proj_model": {...},
"ip_adapter": {"<index>.<param>": ...}}`` where ``<index>`` is the processor's position in
``unet.attn_processors``. This module builds a matching adapter for any UNet config (so tiny UNets
get a tiny adapter), checks a checkpoint key for key and shape for shape, loads it once without ever
running pickle code, installs the processors, and fuses/unfuses the LoRA.

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
import pickle
import struct
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConditioningError
from ..fsutil import atomic_output_path
from .attention import (
    IMAGE_TOKENS_KWARG,
    IP_SCALE_KWARG,
    LORA_SCALE_KWARG,
    LORA_TARGETS,
    StoryMakerIPAttnProcessor,
    StoryMakerLoRAAttnProcessor,
    attention_dims,
    base_linear,
)
from .projection import StoryMakerImageProjection

logger = logging.getLogger(__name__)

#: The two top-level entries of a StoryMaker checkpoint.
SECTIONS = ("image_proj_model", "ip_adapter")

#: How many problems an error message lists before summarising the rest.
MAX_LISTED_PROBLEMS = 20

#: The UNet config of SDXL base 1.0 (``stabilityai/stable-diffusion-xl-base-1.0``, ``unet/config.json``):
#: the UNet the published checkpoint was trained for.
SDXL_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

#: Hidden size of the image encoder the published checkpoint uses (CLIP ViT-H/14).
SDXL_CLIP_DIM = 1280


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

class StoryMakerAdapter(nn.Module):
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

    # ---- LoRA fusion --------------------------------------------------------------------

    def _installed_pairs(self, unet):
        if not self.is_installed(unet):
            raise CheckpointError(
                "The adapter is not installed on this UNet: call adapter.install(unet) first."
            )
        for name, processor in zip(self.processor_names, self.ip_adapter):
            yield _attention_module(unet, name), processor

    def _fused_linears(self, unet):
        """(linear, processor, target) for every attention projection the LoRA adapts."""
        for attn, processor in self._installed_pairs(unet):
            for target, _ in LORA_TARGETS:
                yield base_linear(attn, target), processor, target

    @torch.no_grad()
    def fuse_lora(self, unet, lora_scale: float, *, keep_original: bool = True) -> None:
        """Add ``lora_scale * up @ down`` (computed in float32, cast once) into to_q/to_k/to_v/to_out[0]
        of every attention layer, once (at load): the processors then skip their LoRA branch at that
        scale, and a call with another ``storymaker_lora_scale`` adds only the difference through the
        branch, so calls never touch the (shared) weights again.

        ``keep_original``: keep the weights as they were before fusing on the CPU (their own dtype;
        1.8 GiB for SDXL in float16) so that :meth:`unfuse_lora` restores them bit for bit. Without
        it, unfusing or re-fusing at another scale raises :class:`CheckpointError` (subtracting
        again would round the weights in float16/bfloat16). Fusing again at the same scale does
        nothing; at another scale it restores the kept weights exactly, then fuses at the new scale."""
        lora_scale = float(lora_scale)
        if self.fused_scale is not None:
            if self.fused_scale == lora_scale:
                return
            self.unfuse_lora(unet)
        pairs = list(self._fused_linears(unet))
        originals: list[torch.Tensor] | None = [] if keep_original else None
        for linear, processor, target in pairs:
            weight = linear.weight
            if originals is not None:
                originals.append(weight.detach().to("cpu", copy=True))
            delta = processor.lora(target).delta_weight().to(weight.device)
            weight.copy_((weight.float() + lora_scale * delta).to(weight.dtype))
        self._unfused_weights = originals
        for processor in self.ip_adapter:
            processor.fused_scale = lora_scale
        self.fused_scale = lora_scale

    @torch.no_grad()
    def unfuse_lora(self, unet) -> None:
        """Put back the weights :meth:`fuse_lora` kept, bit for bit (no arithmetic, so no rounding in
        float16/bfloat16); a no-op when not fused. Anything else written into those weights after
        fusing (e.g. another LoRA fused later) is replaced too: fuse StoryMaker's LoRA last."""
        if self.fused_scale is None:
            return
        originals = self._unfused_weights
        if originals is None:
            raise CheckpointError(
                "StoryMaker's LoRA was fused at load without keeping the original weights (to save memory), "
                "so it cannot be unfused exactly: reload the pipeline (STORYMAKER_FUSE_LORA=0 keeps it unfused)."
            )
        pairs = list(self._fused_linears(unet))
        if len(originals) != len(pairs):
            raise CheckpointError("The UNet changed since the LoRA was fused: reload the pipeline.")
        for (linear, _, _), original in zip(pairs, originals):
            linear.weight.copy_(original.to(device=linear.weight.device, dtype=linear.weight.dtype))
        self._unfused_weights = []
        for processor in self.ip_adapter:
            processor.fused_scale = 0.0
        self.fused_scale = None


# --------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------

def _not_a_checkpoint(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a StoryMaker adapter checkpoint ({why}). Use mask.bin from the RED-AIGC/StoryMaker "
        "model repository (or a .safetensors made from it with `python -m storymaker adapter convert`)."
    )


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return (lines[0] if lines else "no details")[:200]


def _is_safetensors(path: Path) -> bool:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


def normalize_checkpoint(state: Mapping[str, Any], label: str) -> dict[str, dict[str, torch.Tensor]]:
    """``{"image_proj_model": {...}, "ip_adapter": {...}}`` from a nested or flattened
    (``"image_proj_model.<k>"``) state dict; :class:`CheckpointError` for anything else."""
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{label} holds a {type(state).__name__}, not a StoryMaker checkpoint dict with "
            "'image_proj_model' and 'ip_adapter'."
        )
    keys = list(state)
    if keys and all(isinstance(k, str) and "." in k and k.split(".", 1)[0] in SECTIONS for k in keys):
        nested: dict[str, dict[str, Any]] = {}
        for key, value in state.items():
            section, rest = key.split(".", 1)
            nested.setdefault(section, {})[rest] = value
        state = nested
    elif not any(k in SECTIONS for k in keys):
        shown = ", ".join(repr(k) for k in keys[:5]) + (", ..." if len(keys) > 5 else "")
        raise CheckpointError(
            f"{label} has top-level keys [{shown}] but a StoryMaker checkpoint has 'image_proj_model' and "
            "'ip_adapter': use mask.bin from RED-AIGC/StoryMaker."
        )
    result: dict[str, dict[str, torch.Tensor]] = {}
    for section, value in state.items():
        if section in SECTIONS:
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in value.items()
            ):
                raise CheckpointError(
                    f"{label}: '{section}' must map parameter names to tensors; it does not. "
                    "Use mask.bin from RED-AIGC/StoryMaker."
                )
            result[section] = dict(value)
        else:
            result[section] = value  # reported as unexpected by check_checkpoint
    return result


def load_checkpoint_state(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """Read a checkpoint file once: ``.safetensors`` (detected by content) or a torch pickle
    (``torch.load(weights_only=True)``, memory-mapped when it is a zip archive). Never runs code
    from the file: one that needs code, garbage, or a wrong top level raises :class:`CheckpointError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"No adapter checkpoint at {path}: download mask.bin from the RED-AIGC/StoryMaker model "
            "repository and give its path (STORYMAKER_ADAPTER_MODEL / --adapter)."
        )
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            flat = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise _not_a_checkpoint(path, f"unreadable safetensors: {err}") from None
        return normalize_checkpoint(flat, str(path))
    is_zip = zipfile.is_zipfile(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Unsupported global" in text or "Unsupported operand" in text or "GLOBAL" in text:
            why = "it needs code to unpickle, which is never run; only plain tensors are accepted"
        else:
            why = "neither a torch weights file nor safetensors; torch says: " + _first_line(text)
        raise _not_a_checkpoint(path, why) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError,
            AttributeError, zipfile.BadZipFile, struct.error) as err:
        why = f"neither a torch weights file nor safetensors; torch says: {type(err).__name__}: {_first_line(str(err))}"
        raise _not_a_checkpoint(path, why) from None
    return normalize_checkpoint(state, str(path))


def _shape(value: Any) -> list[int]:
    return list(value.shape) if hasattr(value, "shape") else list(value)


def check_checkpoint(state: Mapping[str, Any], layout: Mapping[str, Any]) -> list[str]:
    """Every problem of ``state`` against ``layout`` (``{"image_proj_model": {key: shape}, "ip_adapter":
    {...}}``, other entries ignored): missing sections/keys, unexpected sections/keys, wrong shapes.
    One line each, prefixed "missing", "unexpected" or "wrong shape"."""
    problems: list[str] = []
    for section in state:
        if section not in SECTIONS:
            problems.append(f"unexpected top-level entry {section!r}")
    for section in SECTIONS:
        expected = layout[section]
        if section not in state:
            problems.append(f"missing top-level entry {section!r} ({len(expected)} tensors)")
            continue
        given = state[section]
        for key, shape in expected.items():
            if key not in given:
                problems.append(f"missing key {section}.{key} (expected shape {list(shape)})")
            elif _shape(given[key]) != list(shape):
                problems.append(
                    f"wrong shape for {section}.{key}: checkpoint {_shape(given[key])}, expected {list(shape)}"
                )
        for key in given:
            if key not in expected:
                problems.append(f"unexpected key {section}.{key} (shape {_shape(given[key])})")
    return problems


def describe_problems(label: str, problems: Sequence[str], limit: int | None = MAX_LISTED_PROBLEMS) -> str:
    """One message for all problems: counts by kind, then the listing (capped at ``limit``)."""
    counts = {
        kind: sum(1 for p in problems if p.startswith(kind))
        for kind in ("missing", "unexpected", "wrong shape")
    }
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    shown = list(problems if limit is None else problems[:limit])
    lines = [
        f"{label} does not match the StoryMaker adapter for this UNet and image encoder ({summary}):",
        *(f"  - {p}" for p in shown),
    ]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    lines.append(
        "Use mask.bin from RED-AIGC/StoryMaker with an SDXL base model and CLIP ViT-H/14 "
        "(laion/CLIP-ViT-H-14-laion2B-s32B-b79K)."
    )
    return "\n".join(lines)


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


def checkpoint_summary(state: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, Any]:
    """Counts for a (normalised) checkpoint: keys, parameters, processors, dtypes."""
    sections = {s: state.get(s, {}) for s in SECTIONS}
    tensors = [t for section in sections.values() for t in section.values()]
    indices = {k.split(".", 1)[0] for k in sections["ip_adapter"]}
    return {
        "keys": len(tensors),
        "parameters": sum(t.numel() for t in tensors),
        "processors": len(indices),
        "dtypes": sorted({str(t.dtype).replace("torch.", "") for t in tensors}),
    }


def convert_checkpoint(src: str | os.PathLike, dst_safetensors: str | os.PathLike) -> None:
    """Write ``src`` (any readable checkpoint) as safetensors with flat keys ``"image_proj_model.<k>"`` /
    ``"ip_adapter.<k>"``, atomically (temporary sibling, fsync, rename)."""
    from safetensors.torch import save_file

    state = load_checkpoint_state(src)
    unknown = [k for k in state if k not in SECTIONS]
    if unknown:
        raise CheckpointError(f"{src} has unexpected top-level entries {unknown}: not converted.")
    flat = {
        f"{section}.{key}": tensor.contiguous()
        for section in SECTIONS for key, tensor in state.get(section, {}).items()
    }
    dst = Path(dst_safetensors).expanduser()
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"{dst}: the converted file must end in .safetensors.")
    with atomic_output_path(dst) as tmp:
        save_file(flat, str(tmp), metadata={"format": "pt", "storymaker": "adapter"})
