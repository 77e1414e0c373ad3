"""Tiny SDXL-style UNet and StoryMaker adapter for the model-layer tests (real architecture, random weights)."""

from __future__ import annotations

import torch

TINY_CLIP_DIM = 32
TINY_CLIP_TOKENS = 257

TINY_UNET_CONFIG = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2),
    "attention_head_dim": (2, 4),
    "cross_attention_dim": 64,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    # 6 time ids * 8 + pooled text embedding of 32
    "projection_class_embeddings_input_dim": 80,
    "norm_num_groups": 32,
}


def tiny_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_UNET_CONFIG).eval()


def tiny_adapter(unet, seed: int = 1, rank: int = 8):
    from storymaker.models.adapter import StoryMakerAdapter

    torch.manual_seed(seed)
    adapter = StoryMakerAdapter.for_unet(unet, clip_dim=TINY_CLIP_DIM, rank=rank).eval()
    randomize_(adapter, seed)
    return adapter


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Give every parameter non-trivial random values (LayerNorm scales around 1) so nothing is an identity."""
    gen = torch.Generator().manual_seed(seed)
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            noise = torch.randn(param.shape, generator=gen) * std
            if isinstance(sub, torch.nn.LayerNorm) and name == "weight":
                param.copy_(1.0 + noise)
            else:
                param.copy_(noise)


def character_inputs(batch: int, count: int, seed: int = 0, tokens: int = TINY_CLIP_TOKENS,
                     clip_dim: int = TINY_CLIP_DIM):
    gen = torch.Generator().manual_seed(seed)
    face_id = torch.nn.functional.normalize(torch.randn(batch, count, 512, generator=gen), dim=-1)
    clip_character = torch.randn(batch, count, tokens, clip_dim, generator=gen)
    clip_face = torch.randn(batch, count, tokens, clip_dim, generator=gen)
    return face_id, clip_character, clip_face


def unet_inputs(batch: int = 2, seed: int = 0, text_tokens: int = 7):
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, 16, 16, generator=gen)
    text = torch.randn(batch, text_tokens, 64, generator=gen)
    added = {
        "text_embeds": torch.randn(batch, 32, generator=gen),
        "time_ids": torch.tensor([[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]]).repeat(batch, 1),
    }
    return sample, torch.tensor(10), text, added


@torch.no_grad()
def run_unet(unet, inputs, cross_attention_kwargs=None) -> torch.Tensor:
    sample, t, text, added = inputs
    return unet(sample, t, encoder_hidden_states=text, added_cond_kwargs=added,
                cross_attention_kwargs=cross_attention_kwargs).sample
