"""StoryMaker image projection (``image_proj_model`` in the checkpoint; ``SPEC-model.md``).

Turns each character's identity embedding and CLIP features into 20 image tokens of the UNet's
cross-attention width, adds the character's position embedding, and puts the learned background
tokens first. Parameter names and shapes match the published checkpoint exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConditioningError


def _heads(dim: int, dim_head: int) -> tuple[int, int]:
    """Heads and head width for an attention of width ``dim`` (tiny widths get one narrower head)."""
    if dim >= dim_head:
        if dim % dim_head:
            raise ValueError(f"width {dim} is not a multiple of the head width {dim_head}")
        return dim // dim_head, dim_head
    return 1, dim


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    """LayerNorm, Linear(dim -> mult*dim, no bias), GELU, Linear(mult*dim -> dim, no bias).

    Keys ``0`` (norm), ``1`` and ``3`` (linears), as in the checkpoint.
    """
    inner = int(dim * mult)
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, inner, bias=False),
        nn.GELU(),
        nn.Linear(inner, dim, bias=False),
    )


class PerceiverAttention(nn.Module):
    """Latents attend to ``concat(features, latents)`` (keys ``norm1``, ``norm2``, ``to_q``,
    ``to_kv``, ``to_out``; no biases)."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        self.dim_head = dim_head
        self.heads = heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """features (B, T, dim), latents (B, L, dim) -> (B, L, dim)."""
        features = self.norm1(features)
        latents = self.norm2(latents)
        batch, length, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((features, latents), dim=-2)).chunk(2, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], self.heads, self.dim_head).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        scale = 1.0 / math.sqrt(math.sqrt(self.dim_head))
        weight = (q * scale) @ (k * scale).transpose(-2, -1)
        weight = torch.softmax(weight.float(), dim=-1).to(weight.dtype)
        out = (weight @ v).transpose(1, 2).reshape(batch, length, self.heads * self.dim_head)
        return self.to_out(out)


def _perceiver_layers(dim: int, depth: int, dim_head: int, heads: int, ff_mult: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.ModuleList([PerceiverAttention(dim, dim_head, heads), feed_forward(dim, ff_mult)])
        for _ in range(depth)
    )


class FacePerceiver(nn.Module):
    """Refines the identity tokens with the face crop's CLIP features (``perceiver_resampler``)."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, embedding_dim: int,
                 output_dim: int, ff_mult: int = 4):
        super().__init__()
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = _perceiver_layers(dim, depth, dim_head, heads, ff_mult)

    def forward(self, latents: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        features = self.proj_in(features)
        for attn, ff in self.layers:
            latents = attn(features, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


class Resampler(nn.Module):
    """Learned query latents that read the character crop's CLIP features (``resample``)."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, num_queries: int,
                 embedding_dim: int, output_dim: int, ff_mult: int = 4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = _perceiver_layers(dim, depth, dim_head, heads, ff_mult)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        latents = self.latents.expand(features.shape[0], -1, -1)
        features = self.proj_in(features)
        for attn, ff in self.layers:
            latents = attn(features, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


class StoryMakerImageProjection(nn.Module):
    """Face identity + CLIP features of up to ``max_characters`` characters -> image tokens.

    ``D = cross_attention_dim``. Keys: ``proj.0``/``proj.2``/``norm`` (identity -> 4 tokens),
    ``perceiver_resampler.*`` (face perceiver), ``resample.*`` (16 character tokens),
    ``pos_embed`` (max_characters, 20, D), ``bg_embed`` (1, 20, D), ``proj_out``, ``norm_out``.
    """

    def __init__(self, cross_attention_dim: int = 2048, face_id_dim: int = 512, clip_dim: int = 1280,
                 num_face_tokens: int = 4, num_clip_tokens: int = 16, max_characters: int = 3,
                 depth: int = 4, dim_head: int = 64, ff_mult: int = 4):
        super().__init__()
        dim = cross_attention_dim
        self.cross_attention_dim = dim
        self.face_id_dim = face_id_dim
        self.clip_dim = clip_dim
        self.num_face_tokens = num_face_tokens
        self.num_clip_tokens = num_clip_tokens
        self.max_characters = max_characters
        self.tokens_per_character = num_face_tokens + num_clip_tokens

        self.proj = nn.Sequential(
            nn.Linear(face_id_dim, face_id_dim * 2),
            nn.GELU(),
            nn.Linear(face_id_dim * 2, dim * num_face_tokens),
        )
        self.norm = nn.LayerNorm(dim)
        face_heads, face_dim_head = _heads(dim, dim_head)
        self.perceiver_resampler = FacePerceiver(
            dim=dim, depth=depth, dim_head=face_dim_head, heads=face_heads,
            embedding_dim=clip_dim, output_dim=dim, ff_mult=ff_mult,
        )
        clip_heads, clip_dim_head = _heads(clip_dim, dim_head)
        self.resample = Resampler(
            dim=clip_dim, depth=depth, dim_head=clip_dim_head, heads=clip_heads,
            num_queries=num_clip_tokens, embedding_dim=clip_dim, output_dim=dim, ff_mult=ff_mult,
        )
        self.pos_embed = nn.Parameter(torch.randn(max_characters, self.tokens_per_character, dim) / dim**0.5)
        self.bg_embed = nn.Parameter(torch.randn(1, self.tokens_per_character, dim) / dim**0.5)
        self.proj_out = nn.Linear(dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def num_tokens(self, num_characters: int) -> int:
        """Image tokens produced for ``num_characters`` characters (background included)."""
        return self.tokens_per_character * (num_characters + 1)

    def _check(self, face_id: torch.Tensor, clip_character: torch.Tensor,
               clip_face: torch.Tensor) -> tuple[int, int]:
        if face_id.ndim != 3 or face_id.shape[-1] != self.face_id_dim:
            raise ConditioningError(
                f"face_id must have shape (batch, characters, {self.face_id_dim}); got {tuple(face_id.shape)}."
            )
        batch, count = face_id.shape[:2]
        if count > self.max_characters:
            raise ConditioningError(
                f"{count} characters in one panel, but StoryMaker supports at most "
                f"{self.max_characters}: split the panel or remove characters."
            )
        for name, value in (("clip_character", clip_character), ("clip_face", clip_face)):
            if value.ndim != 4 or tuple(value.shape[:2]) != (batch, count) or value.shape[-1] != self.clip_dim:
                raise ConditioningError(
                    f"{name} must have shape ({batch}, {count}, tokens, {self.clip_dim}) to match face_id; "
                    f"got {tuple(value.shape)} (is the image encoder the one this adapter was built for?)."
                )
        return batch, count

    def forward(self, face_id: torch.Tensor, clip_character: torch.Tensor,
                clip_face: torch.Tensor) -> torch.Tensor:
        """face_id (B, N, 512), clip_character (B, N, T, C), clip_face (B, N, T, C) with 0 <= N <= 3
        -> image tokens (B, 20*(N+1), D): bg_embed first, then each character + pos_embed[i]."""
        batch, count = self._check(face_id, clip_character, clip_face)
        dim = self.cross_attention_dim
        background = self.bg_embed.expand(batch, -1, -1)
        if count == 0:
            return background
        flat_id = face_id.reshape(batch * count, self.face_id_dim)
        flat_char = clip_character.reshape(batch * count, *clip_character.shape[2:])
        flat_face = clip_face.reshape(batch * count, *clip_face.shape[2:])

        x = self.norm(self.proj(flat_id).reshape(batch * count, self.num_face_tokens, dim))
        face_tokens = x + self.perceiver_resampler(x, flat_face)
        clip_tokens = self.resample(flat_char)
        tokens = torch.cat((face_tokens, clip_tokens), dim=1)
        tokens = tokens.reshape(batch, count, self.tokens_per_character, dim) + self.pos_embed[:count]
        tokens = self.norm_out(self.proj_out(tokens)) + tokens
        tokens = tokens.reshape(batch, count * self.tokens_per_character, dim)
        return torch.cat((background, tokens), dim=1)
