"""Measured precision behaviour of the real pipeline code, on tiny components on the CPU.

:func:`measure_weight_drift` answers "does rendering change the shared weights?": it loads a tiny
pipeline in a dtype (float16/bfloat16 run on the CPU), optionally fuses StoryMaker's LoRA as the
app does at load, renders once at the reference scale, makes ``calls`` renders alternating between
other ``lora_scale`` values (what visitors of a shared app do with the slider), renders at the
reference scale again with the same seed, and reports how far every UNet weight moved and whether
the two reference latents are bit-identical. ``python -m storymaker doctor --precision`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

#: The issue's scenario: 30 calls alternating these scales, reference renders at 0.8.
DRIFT_CALLS = 30
DRIFT_SCALES = (0.5, 0.9)
REFERENCE_SCALE = 0.8


@dataclass(frozen=True)
class DriftReport:
    """What :func:`measure_weight_drift` measured."""

    dtype: str
    fused: bool
    calls: int
    max_weight_change: float  # max |w_after - w_loaded| over every UNet parameter and buffer
    changed_tensors: int  # UNet tensors not bit-identical to the loaded ones
    same_latents: bool  # the same seed and settings gave bit-identical latents before and after
    scales_differ: bool  # the alternating scales gave different latents (the LoRA scale is in use)

    @property
    def ok(self) -> bool:
        return self.changed_tensors == 0 and self.max_weight_change == 0.0 and self.same_latents

    def line(self) -> str:
        mode = "fused  " if self.fused else "unfused"
        return (f"{self.dtype:<9} {mode} max weight drift {self.max_weight_change:g} after {self.calls} calls "
                f"({self.changed_tensors} tensors changed); same seed, same latents: "
                f"{'yes' if self.same_latents else 'NO'}")


def unet_weight_change(before: dict[str, torch.Tensor], unet) -> tuple[float, int]:
    """(max absolute change, number of changed tensors) of ``unet``'s state against ``before``."""
    worst, changed = 0.0, 0
    for key, value in unet.state_dict().items():
        if not torch.equal(value, before[key]):
            changed += 1
            worst = max(worst, float((value.double() - before[key].double()).abs().max()))
    return worst, changed


def measure_weight_drift(dtype: torch.dtype, *, fused: bool, calls: int = DRIFT_CALLS,
                         scales: Sequence[float] = DRIFT_SCALES, reference_scale: float = REFERENCE_SCALE,
                         size: int = 16, reference_size: int = 32, steps: int = 2,
                         seed: int = 0) -> DriftReport:
    """Weight drift and latent reproducibility after ``calls`` renders at alternating ``scales``.

    The alternating calls render ``size`` x ``size`` (the drift does not depend on the size; float16
    convolutions are slow on CPUs), the two reference renders ``reference_size``; ``steps`` each.
    """
    from .tiny import tiny_conditioning, tiny_pipeline

    pipe = tiny_pipeline(seed=seed, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    if fused:  # as apply_runtime_options(fuse_lora=True) does when the app loads the pipeline
        pipe.enable_storymaker_lora_fusion(reference_scale, keep_original=False)
    loaded = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    characters = tiny_conditioning(2, seed=seed)

    def latents(scale: float, side: int) -> torch.Tensor:
        return pipe(
            prompt="a knight and a dragon", characters=characters, num_inference_steps=steps,
            width=side, height=side, lora_scale=scale, output_type="latent",
            generator=torch.Generator().manual_seed(seed),
        ).images

    before = latents(reference_scale, reference_size)
    last: dict[float, torch.Tensor] = {}
    for index in range(calls):
        scale = scales[index % len(scales)]
        last[scale] = latents(scale, size)
    after = latents(reference_scale, reference_size)
    worst, changed = unet_weight_change(loaded, pipe.unet)
    outputs = list(last.values())
    scales_differ = len(outputs) > 1 and not all(torch.equal(outputs[0], other) for other in outputs[1:])
    return DriftReport(str(dtype).replace("torch.", ""), fused, calls, worst, changed, torch.equal(before, after),
                       scales_differ)
