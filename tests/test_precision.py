"""Half precision on the CPU (issue 10): the tiny pipeline in float16 and bfloat16.

- No weight drift: after 30 renders alternating ``lora_scale`` 0.5/0.9 (LoRA fused at load, or not),
  every UNet tensor is bit-identical to what it was after loading, and the same seed and settings
  give bit-identical latents.
- Unfusing restores the weights bit for bit (no subtraction, so no rounding).
- float16 and bfloat16 images agree with float32 within the tolerances stated below.
- The float16 VAE decodes in float32 (SDXL's ``force_upcast``) and is left exactly as it was.
- ``python -m storymaker doctor --precision`` measures the drift and prints 0.

The drift is measured once, by running the doctor command (``models.precision.measure_weight_drift``
for each dtype, fused and unfused); the tests check both what it printed and what it measured, and a
negative control shows that the measurement does catch rounding drift. float16 convolutions are slow
on CPUs, so the 30 alternating calls render 16x16 (the drift does not depend on the size) and the
reference renders 32x32 or 64x64; 2 steps each.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from storymaker.cli import main
from storymaker.models import precision
from storymaker.models.attention import LORA_TARGETS, base_linear
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
    if fused:  # as the app loads it (STORYMAKER_FUSE_LORA=1, the default): fused once, no unfused copy kept
        pipe.enable_storymaker_lora_fusion(0.8, keep_original=False)
    return pipe


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]


@pytest.fixture(scope="module")
def doctor_run():
    """``python -m storymaker doctor --precision``, run once: (exit code, what it printed, the
    DriftReport it measured for each (dtype, fused))."""
    reports = []
    measure = precision.measure_weight_drift

    def recording(*args, **kwargs):
        reports.append(measure(*args, **kwargs))
        return reports[-1]

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(precision, "measure_weight_drift", recording)
        code = main(["doctor", "--precision"])
    return code, out.getvalue(), {(r.dtype, r.fused): r for r in reports}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_no_weight_drift_after_30_calls_at_alternating_scales(doctor_run, dtype, fused):
    report = doctor_run[2][(dtype, fused)]
    assert report.calls == 30
    assert report.scales_differ  # lora_scale 0.5 and 0.9 really gave different results
    assert report.changed_tensors == 0 and report.max_weight_change == 0.0  # every UNet tensor bit-identical
    assert report.same_latents  # same seed and settings, bit-identical latents


def test_doctor_precision_prints_zero_drift(doctor_run):
    code, out, _ = doctor_run
    assert code == 0
    lines = [line.split() for line in out.splitlines() if "max weight drift" in line]
    assert [(words[0], words[1]) for words in lines] == [
        ("float16", "fused"), ("float16", "unfused"), ("bfloat16", "fused"), ("bfloat16", "unfused"),
    ]
    for words in lines:
        assert words[words.index("drift") + 1] == "0"  # measured, printed as 0
        assert words[-1] == "yes"  # same seed, same latents
    assert "No drift" in out


def test_drift_measurement_catches_rounding(monkeypatch):
    """Negative control: with the old behaviour (each call adds its LoRA into the weights and
    subtracts it again, rounding to the weights' dtype) the same measurement reports drift."""
    from storymaker.models.pipeline import StoryMakerPipeline

    render = StoryMakerPipeline.render

    @torch.no_grad()
    def refusing_render(self, *args, lora_scale=0.8, **kwargs):
        for name, processor in zip(self.adapter.processor_names, self.adapter.ip_adapter):
            attn = self.unet.get_submodule(name[: -len(".processor")])
            for target, _ in LORA_TARGETS:
                weight = base_linear(attn, target).weight
                delta = processor.lora(target).delta_weight()
                weight.copy_((weight.float() + lora_scale * delta).to(weight.dtype))
                weight.copy_((weight.float() - lora_scale * delta).to(weight.dtype))
        return render(self, *args, lora_scale=lora_scale, **kwargs)

    monkeypatch.setattr(StoryMakerPipeline, "render", refusing_render)
    report = precision.measure_weight_drift(torch.bfloat16, fused=False, calls=4)
    assert report.changed_tensors > 0 and report.max_weight_change > 0.0 and not report.ok
    assert "max weight drift 0 " not in report.line()


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
