"""Tiny random-weight components with the real architectures, for tests and smoke runs.

Outputs of these models are meaningless; they exist so that the real code paths run in seconds on
a CPU. Anything rendered with them is labelled "tiny" wherever it appears.
"""

from __future__ import annotations

import torch

TINY_SEED = 0


def tiny_image_encoder(seed: int = TINY_SEED):
    """A CLIPVisionModelWithProjection with the real token layout (224x224 input, patch 14 ->
    257 tokens) and a tiny width (hidden 32)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        patch_size=14,
        num_channels=3,
    )
    return CLIPVisionModelWithProjection(config).eval()
