"""StoryMaker attention processors for diffusers' ``Attention`` (``ip_adapter`` in the checkpoint).

- :class:`StoryMakerLoRAAttnProcessor` (self-attention, ``attn1``): LoRA on q, k, v and out.
- :class:`StoryMakerIPAttnProcessor` (cross-attention, ``attn2``): the same LoRA, plus a second
  attention of the same query over the image tokens (``to_k_ip``/``to_v_ip``):
  ``hidden = text_attn + ip_scale * image_attn``.

Per-call values travel in ``cross_attention_kwargs`` and are never stored on the (shared) modules:

- ``storymaker_image_tokens``: (B, T_img, D) or None (None: plain text attention + LoRA);
- ``storymaker_ip_scale``: float (default 1.0);
- ``storymaker_lora_scale``: float (default: the fused scale when fused, else 1.0);
- ``storymaker_ip_cache``: a dict the caller creates once per denoising call (or None). The image
  tokens are the same at every step, so each cross-attention layer projects them through
  ``to_k_ip``/``to_v_ip`` once and keeps the result there for the later steps of that call.

When the LoRA is fused into the attention weights (:meth:`StoryMakerAdapter.fuse_lora`), the
processor knows the fused scale and only runs its LoRA branch for the difference
``lora_scale - fused_scale`` (skipped when zero), so any per-call scale stays exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConditioningError

#: Names of the cross_attention_kwargs the processors read.
IMAGE_TOKENS_KWARG = "storymaker_image_tokens"
IP_SCALE_KWARG = "storymaker_ip_scale"
LORA_SCALE_KWARG = "storymaker_lora_scale"
IP_CACHE_KWARG = "storymaker_ip_cache"

#: Attention projections that carry LoRA, with their LoRA module names in the checkpoint.
LORA_TARGETS = (("to_q", "to_q_lora"), ("to_k", "to_k_lora"), ("to_v", "to_v_lora"), ("to_out", "to_out_lora"))


class LoRALinear(nn.Module):
    """Low-rank ``up(down(x))`` without bias (keys ``down.weight`` [rank, in], ``up.weight`` [out, rank])."""

    def __init__(self, in_features: int, out_features: int, rank: int = 128):
        super().__init__()
        self.rank = rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        # Inference only (weights always come from a checkpoint): a small random ``up`` instead of
        # the usual zeros so that tiny random adapters exercise the LoRA path.
        nn.init.normal_(self.down.weight, std=1.0 / rank)
        nn.init.normal_(self.up.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        return self.up(self.down(x.to(self.down.weight.dtype))).to(dtype)

    def delta_weight(self) -> torch.Tensor:
        """``up @ down`` in float32: what this LoRA adds to the base weight at scale 1."""
        return self.up.weight.float() @ self.down.weight.float()


def attention_dims(attn) -> dict[str, tuple[int, int]]:
    """(in, out) features of ``to_q``, ``to_k``, ``to_v`` and ``to_out[0]`` of a diffusers Attention."""
    return {
        "to_q": (attn.to_q.in_features, attn.to_q.out_features),
        "to_k": (attn.to_k.in_features, attn.to_k.out_features),
        "to_v": (attn.to_v.in_features, attn.to_v.out_features),
        "to_out": (attn.to_out[0].in_features, attn.to_out[0].out_features),
    }


def base_linear(attn, target: str) -> nn.Linear:
    """The Linear of ``attn`` that the LoRA named by ``target`` ("to_q", ... "to_out") adapts."""
    return attn.to_out[0] if target == "to_out" else getattr(attn, target)


class _StoryMakerProcessorBase(nn.Module):
    """LoRA on q, k, v, out and the diffusers Attention plumbing shared by both processors."""

    def __init__(self, dims: dict[str, tuple[int, int]], rank: int = 128):
        super().__init__()
        self.rank = rank
        self.dims = dict(dims)
        for target, name in LORA_TARGETS:
            in_features, out_features = dims[target]
            setattr(self, name, LoRALinear(in_features, out_features, rank))
        # Scale fused into the attention weights (0.0: not fused). Set only by the adapter's
        # fuse_lora/unfuse_lora, which change the shared UNet weights anyway.
        self.fused_scale = 0.0

    def lora(self, target: str) -> LoRALinear:
        return getattr(self, f"{target}_lora")

    def _lora_delta(self, lora_scale: float | None) -> float:
        """The scale the LoRA branch must still add on top of the (possibly fused) weights."""
        if lora_scale is None:
            return 0.0 if self.fused_scale else 1.0
        return float(lora_scale) - self.fused_scale

    @staticmethod
    def _project(attn_linear: nn.Module, lora: LoRALinear, x: torch.Tensor, scale: float) -> torch.Tensor:
        out = attn_linear(x)
        if scale != 0.0:
            out = out + scale * lora(x)
        return out

    def _prologue(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        shape4d = None
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            shape4d = (batch, channel, height, width)
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        return residual, hidden_states, attention_mask, shape4d, batch_size

    @staticmethod
    def _heads(attn, x: torch.Tensor, batch_size: int, head_dim: int) -> torch.Tensor:
        return x.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)

    def _epilogue(self, attn, hidden_states, residual, shape4d, delta: float) -> torch.Tensor:
        hidden_states = self._project(attn.to_out[0], self.to_out_lora, hidden_states, delta)
        hidden_states = attn.to_out[1](hidden_states)
        if shape4d is not None:
            hidden_states = hidden_states.transpose(-1, -2).reshape(*shape4d)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _text_attention(self, attn, hidden_states, encoder_hidden_states, attention_mask, batch_size, delta):
        query = self._project(attn.to_q, self.to_q_lora, hidden_states, delta)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = self._project(attn.to_k, self.to_k_lora, encoder_hidden_states, delta)
        value = self._project(attn.to_v, self.to_v_lora, encoder_hidden_states, delta)
        head_dim = key.shape[-1] // attn.heads
        query = self._heads(attn, query, batch_size, head_dim)
        key = self._heads(attn, key, batch_size, head_dim)
        value = self._heads(attn, value, batch_size, head_dim)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        return out, query, head_dim

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        storymaker_image_tokens: torch.Tensor | None = None,
        storymaker_ip_scale: float = 1.0,
        storymaker_lora_scale: float | None = None,
        storymaker_ip_cache: dict | None = None,
    ) -> torch.Tensor:
        """Attention of ``attn`` with LoRA, plus what :meth:`_image_attention` adds."""
        delta = self._lora_delta(storymaker_lora_scale)
        residual, hidden_states, attention_mask, shape4d, batch_size = self._prologue(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb
        )
        out, query, head_dim = self._text_attention(
            attn, hidden_states, encoder_hidden_states, attention_mask, batch_size, delta
        )
        out = self._image_attention(attn, out, query, head_dim, batch_size, storymaker_image_tokens,
                                    float(storymaker_ip_scale), storymaker_ip_cache)
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        return self._epilogue(attn, out, residual, shape4d, delta)

    def _image_attention(self, attn, out, query, head_dim, batch_size, image_tokens, ip_scale, ip_cache):
        """Self-attention has no image part."""
        return out


class StoryMakerLoRAAttnProcessor(_StoryMakerProcessorBase):
    """Self-attention (``attn1``) with StoryMaker's LoRA on q, k, v and out.

    ``dims`` maps "to_q"/"to_k"/"to_v"/"to_out" to the (in, out) features of the attention's
    projections (see :func:`attention_dims`). The image tokens, ip scale and cache are ignored.
    """


class StoryMakerIPAttnProcessor(_StoryMakerProcessorBase):
    """Cross-attention (``attn2``): LoRA text attention plus image attention over the image tokens.

    ``cross_attention_dim`` is the width of the image tokens (the UNet's cross_attention_dim).
    """

    def __init__(self, dims: dict[str, tuple[int, int]], cross_attention_dim: int, rank: int = 128):
        super().__init__(dims, rank)
        self.cross_attention_dim = cross_attention_dim
        self.to_k_ip = nn.Linear(cross_attention_dim, dims["to_k"][1], bias=False)
        self.to_v_ip = nn.Linear(cross_attention_dim, dims["to_v"][1], bias=False)

    def _image_attention(self, attn, out, query, head_dim, batch_size, image_tokens, ip_scale, ip_cache):
        """``text_attn + ip_scale * image_attn`` (skipped without tokens or at scale 0)."""
        if image_tokens is None or ip_scale == 0.0:
            return out
        ip_key, ip_value = self._image_key_value(attn, image_tokens, ip_cache, batch_size, head_dim, query)
        ip_out = F.scaled_dot_product_attention(query, ip_key, ip_value, attn_mask=None, dropout_p=0.0, is_causal=False)
        return out + ip_scale * ip_out

    def _image_key_value(self, attn, image_tokens, cache, batch_size, head_dim, query):
        """Keys and values of the image tokens, in heads; from ``cache`` when this call has them."""
        key = (id(self), id(image_tokens), batch_size, query.dtype, query.device)
        if cache is not None and key in cache:
            return cache[key]
        tokens = self._match_batch(image_tokens, batch_size).to(
            device=query.device, dtype=self.to_k_ip.weight.dtype
        )
        ip_key = self._heads(attn, self.to_k_ip(tokens).to(query.dtype), batch_size, head_dim)
        ip_value = self._heads(attn, self.to_v_ip(tokens).to(query.dtype), batch_size, head_dim)
        if cache is not None:
            # Keep the tokens alive with their projections so their id() cannot be reused by
            # another tensor while this cache lives.
            cache[key] = (ip_key, ip_value)
            cache.setdefault("_tokens", []).append(image_tokens)
        return ip_key, ip_value

    def _match_batch(self, tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.cross_attention_dim:
            raise ConditioningError(
                f"storymaker_image_tokens must have shape (batch, tokens, {self.cross_attention_dim}); "
                f"got {tuple(tokens.shape)}."
            )
        if tokens.shape[0] == batch_size:
            return tokens
        if tokens.shape[0] == 1:
            return tokens.expand(batch_size, -1, -1)
        raise ConditioningError(
            f"storymaker_image_tokens has batch {tokens.shape[0]} but the UNet runs batch {batch_size}: "
            "give one row per UNet batch row (unconditional rows first under guidance), or a single row."
        )
