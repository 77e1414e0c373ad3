"""Tiny random-weight components with the real architectures, for tests and smoke runs.

Outputs of these models are meaningless; they exist so that the real code paths run in seconds on
a CPU. Anything rendered with them is labelled "tiny" wherever it appears.

The layout follows diffusers' own SDXL tests: UNet ``block_out_channels=(32, 64)``,
``cross_attention_dim=64`` (two text encoders of hidden size 32, concatenated), the SDXL "text_time"
added conditioning (``projection_class_embeddings_input_dim = 32 + 6 * 8 = 80``), a 2-level VAE
(latents at half the image size) and a byte-level CLIP tokenizer built in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .conditioning import CharacterConditioning
    from .pipeline import StoryMakerPipeline

TINY_SEED = 0
TINY_TEXT_HIDDEN = 32  # each text encoder; the UNet sees 2 * 32 = 64
TINY_CROSS_ATTENTION_DIM = 64
TINY_CLIP_TOKENS = 257  # 224x224 / patch 14 -> 16 * 16 + 1
TINY_CLIP_HIDDEN = 32
TINY_ADAPTER_RANK = 4
FACE_ID_DIM = 512


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


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2 / CLIP)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_tokenizer(model_max_length: int = 77):
    """A CLIPTokenizer built in memory: one token per byte (plus its end-of-word form) and the two
    special tokens; no merges, no files."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in _bytes_to_unicode().values():
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _tiny_text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=TINY_TEXT_HIDDEN,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=TINY_TEXT_HIDDEN,
    )


def tiny_unet(seed: int = TINY_SEED):
    """An SDXL-style UNet2DConditionModel (DownBlock2D then CrossAttn blocks, text_time added
    conditioning) at a tiny width."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=TINY_CROSS_ATTENTION_DIM,
        norm_num_groups=1,
    ).eval()


def tiny_vae(seed: int = TINY_SEED):
    """A 2-level AutoencoderKL (latents at half the image size, 4 channels)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=128,
        norm_num_groups=32,
    ).eval()


def tiny_scheduler(kind: str = "unipc"):
    """The SDXL noise schedule in a UniPC (the authors' demo) or Euler scheduler."""
    from diffusers import EulerDiscreteScheduler, UniPCMultistepScheduler

    config = dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    if kind == "euler":
        return EulerDiscreteScheduler(**config)
    return UniPCMultistepScheduler(**config)


def _randomize_zero_parameters(module: torch.nn.Module, generator: torch.Generator, std: float) -> None:
    """Give zero-initialised parameters (LoRA ``up``, ControlNet zero convs) random values so that
    they change the output, as trained weights do."""
    with torch.no_grad():
        for param in module.parameters():
            if param.numel() and not torch.any(param):
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def tiny_controlnet(unet, seed: int = TINY_SEED):
    """A ControlNetModel made from ``unet`` (its encoder weights), with random zero convolutions so
    that a pose visibly changes the result."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    # The conditioning embedding must downsample as much as the VAE: 2 levels -> factor 2.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    _randomize_zero_parameters(controlnet, torch.Generator().manual_seed(seed + 1), std=0.05)
    return controlnet.eval()


def tiny_adapter(unet, seed: int = TINY_SEED, rank: int = TINY_ADAPTER_RANK):
    """A StoryMakerAdapter for ``unet`` with random weights everywhere (LoRA ``up`` included)."""
    from .adapter import StoryMakerAdapter

    torch.manual_seed(seed)
    adapter = StoryMakerAdapter.for_unet(unet, clip_dim=TINY_CLIP_HIDDEN, face_id_dim=FACE_ID_DIM, rank=rank)
    _randomize_zero_parameters(adapter, torch.Generator().manual_seed(seed + 2), std=0.05)
    return adapter.eval()


def tiny_components(seed: int = TINY_SEED, with_controlnet: bool = False, with_adapter: bool = True) -> dict[str, Any]:
    """Everything :class:`StoryMakerPipeline` takes, tiny and random (seeded, reproducible).

    The adapter is built but not installed: the pipeline installs it on the UNet.
    """
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = tiny_tokenizer()
    tokenizer_2 = tiny_tokenizer()
    vocab_size = len(tokenizer)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_tiny_text_config(vocab_size)).eval()
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_text_config(vocab_size)).eval()
    unet = tiny_unet(seed)
    components: dict[str, Any] = {
        "vae": tiny_vae(seed),
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "unet": unet,
        "scheduler": tiny_scheduler(),
        "image_encoder": tiny_image_encoder(seed),
        "adapter": tiny_adapter(unet, seed) if with_adapter else None,
        "controlnet": tiny_controlnet(unet, seed) if with_controlnet else None,
    }
    return components


def tiny_pipeline(seed: int = TINY_SEED, with_controlnet: bool = False, dtype: torch.dtype | None = None,
                  **kwargs) -> "StoryMakerPipeline":
    """A StoryMakerPipeline on tiny components (CPU; float32, or every component cast to ``dtype``:
    float16 and bfloat16 run on the CPU too, which is how half precision is tested without a GPU)."""
    from .pipeline import StoryMakerPipeline, quiet_dtype_casts

    pipe = StoryMakerPipeline(**tiny_components(seed, with_controlnet=with_controlnet), **kwargs)
    if dtype is not None and dtype != torch.float32:
        with quiet_dtype_casts():
            pipe.to(dtype=dtype)
    return pipe


def tiny_conditioning(n: int = 1, seed: int = TINY_SEED) -> "list[CharacterConditioning]":
    """``n`` random, well-shaped character conditionings for the tiny image encoder:
    ``face_id`` (512,) L2-normalised, CLIP features (257, 32)."""
    from .conditioning import CharacterConditioning

    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        face_id = torch.randn(FACE_ID_DIM, generator=generator)
        face_id = face_id / face_id.norm()
        clip_character = torch.randn(TINY_CLIP_TOKENS, TINY_CLIP_HIDDEN, generator=generator)
        clip_face = torch.randn(TINY_CLIP_TOKENS, TINY_CLIP_HIDDEN, generator=generator)
        out.append(CharacterConditioning(face_id, clip_character, clip_face))
    return out


def tiny_lightning_lora(unet, seed: int = TINY_SEED, rank: int = 4) -> dict[str, torch.Tensor]:
    """A random LoRA for ``unet`` in the file layout of SDXL-Lightning's LoRA files (kohya keys:
    ``lora_unet_<module path with _>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``) over the
    Linear layers of every transformer block and their proj_in/proj_out: what the Fast preset loads,
    for tests and smoke runs (its effect is meaningless, but visible)."""
    generator = torch.Generator().manual_seed(seed + 3)
    state: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".attentions." not in f".{name}" or ".processor." in name:
            continue  # (the StoryMaker processors' own Linear layers are not the UNet's)
        if "transformer_blocks" not in name and not name.endswith(("proj_in", "proj_out")):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        state[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) / rank
        state[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.05
        state[f"{key}.alpha"] = torch.tensor(float(rank))
    return state


def with_tiny_fast_lora(pipe, seed: int = TINY_SEED):
    """``pipe`` with :func:`tiny_lightning_lora` as its Fast preset's LoRA (loaded on the first Fast call)."""
    pipe.fast_lora_source = lambda: tiny_lightning_lora(pipe.unet, seed)
    return pipe
