"""Half precision on the CPU (issue 10): the tiny pipeline in float16 and bfloat16.

- No weight drift: after 30 renders alternating ``lora_scale`` 0.5/0.9 (LoRA fused at load, or not),
  every UNet tensor is bit-identical to what it was after loading, and the same seed and settings
  give bit-identical latents.
- Unfusing restores the weights bit for bit (no subtraction, so no rounding).
- float16 and bfloat16 images agree with float32 within the tolerances stated below.
- The float16 VAE decodes in float32 (SDXL's ``force_upcast``) and is left exactly as it was.
- ``python -m storymaker doctor --precision`` measures the drift and prints 0.

float16 convolutions are slow on CPUs, so the 30 alternating calls render 16x16 (the drift does not
depend on the size) and the reference renders 32x32 or 64x64; 2 steps each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storymaker.cli import main
from storymaker.models.tiny import tiny_conditioning, tiny_pipeline

HALF = [torch.float16, torch.bfloat16]
STEPS = 2

#: Largest difference (max over pixels and channels, images in 0..1) from the float32 render of the
#: same seed and settings, 64x64, 2 steps, two characters. Measured on these CPUs (3 seeds, fused and
#: unfused): float16 <= 0.0021, bfloat16 <= 0.019; the bounds leave about 3-5x headroom.
IMAGE_TOLERANCE = {torch.float16: 0.01, torch.bfloat16: 0.05}


def half_pipeline(dtype: torch.dtype, fused: bool, seed: int = 0):
    pipe = tiny_pipeline(seed=seed, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    # As the app loads it (STORYMAKER_FUSE_LORA=1 is the default): fused once, no unfused copy kept.
    pipe.apply_runtime_options(device="cpu", fuse_lora=fused, lora_scale=0.8)
    return pipe


def latents(pipe, lora_scale: float, size: int, characters, seed: int = 0) -> torch.Tensor:
    return pipe(
        prompt="a knight and a dragon", characters=characters, num_inference_steps=STEPS, width=size, height=size,
        lora_scale=lora_scale, output_type="latent", generator=torch.Generator().manual_seed(seed),
    ).images


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
def test_no_weight_drift_after_30_calls_at_alternating_scales(dtype, fused):
    pipe = half_pipeline(dtype, fused)
    assert pipe.unet.dtype == dtype and pipe.storymaker_lora_fusion == fused
    loaded = snapshot(pipe.unet)
    characters = tiny_conditioning(2)
    reference = latents(pipe, 0.8, 32, characters)

    seen = {}
    for call in range(30):
        scale = (0.5, 0.9)[call % 2]
        seen[scale] = latents(pipe, scale, 16, characters)
    assert not torch.equal(seen[0.5], seen[0.9])  # the scale really changes the result

    assert changed(pipe.unet, loaded) == []  # every UNet tensor bit-identical to after loading
    assert torch.equal(latents(pipe, 0.8, 32, characters), reference)  # same seed, same latents


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
def test_unfuse_and_refuse_restore_weights_exactly(dtype):
    pipe = half_pipeline(dtype, fused=False)
    original = snapshot(pipe.unet)
    pipe.enable_storymaker_lora_fusion(0.8)
    fused = snapshot(pipe.unet)
    assert changed(pipe.unet, original)  # fusing did change the attention weights

    pipe.enable_storymaker_lora_fusion(0.5)  # another scale: exact restore, then fuse at 0.5
    pipe.enable_storymaker_lora_fusion(0.8)
    assert changed(pipe.unet, fused) == []
    pipe.disable_storymaker_lora_fusion()
    assert changed(pipe.unet, original) == []


@pytest.fixture(scope="module")
def float32_image() -> np.ndarray:
    pipe = half_pipeline(torch.float32, fused=False)
    return render_image(pipe)


def render_image(pipe) -> np.ndarray:
    out = pipe(
        prompt="a knight and a dragon", characters=tiny_conditioning(2), num_inference_steps=STEPS, width=64,
        height=64, generator=torch.Generator().manual_seed(0), output_type="np",
    )
    return out.images


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
def test_half_precision_agrees_with_float32(dtype, float32_image):
    image = render_image(half_pipeline(dtype, fused=True))
    assert image.dtype == np.float32 and image.shape == float32_image.shape
    difference = float(np.abs(image - float32_image).max())
    assert difference <= IMAGE_TOLERANCE[dtype], difference
    assert difference > 0.0  # it really ran in another precision


@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
def test_vae_decodes_in_float32_only_when_it_must(dtype):
    pipe = half_pipeline(dtype, fused=True)
    vae_before = snapshot(pipe.vae)
    seen: list[torch.dtype] = []
    handle = pipe.vae.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    try:
        render_image(pipe)
    finally:
        handle.remove()
    # SDXL's VAE overflows in float16 (force_upcast): decoded in float32; bfloat16 has float32's range.
    assert seen == [torch.float32 if dtype == torch.float16 else torch.bfloat16]
    assert pipe.vae.dtype == dtype and changed(pipe.vae, vae_before) == []


def test_doctor_precision_measures_zero_drift(capsys):
    assert main(["doctor", "--precision"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if "max weight drift" in line]
    assert [(words[0], words[1]) for words in lines] == [
        ("float16", "fused"), ("float16", "unfused"), ("bfloat16", "fused"), ("bfloat16", "unfused"),
    ]
    for words in lines:
        assert words[words.index("drift") + 1] == "0"  # measured, printed as 0
        assert words[-1] == "yes"  # same seed, same latents
    assert "No drift" in out
