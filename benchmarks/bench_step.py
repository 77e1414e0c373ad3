"""Time ONE denoising step (UNet forward, classifier-free-guidance batch of 2) for plain SDXL,
StoryMaker with its LoRA unfused, and StoryMaker with its LoRA fused, side by side.

    python benchmarks/bench_step.py                      # tiny components, then the real SDXL UNet
    python benchmarks/bench_step.py --only tiny          # tiny only (seconds)
    python benchmarks/bench_step.py --only sdxl --latent 32 --runs 3

(a) "sdxl": the real SDXL UNet dimensions (2.6 B parameters) with random weights, built once and
    reused for all variants (~10 GB of RAM in float32; ~12.5 GB with the adapter's processors).
(b) "tiny": the tiny test components.
StoryMaker variants get 2 characters' image tokens (60 tokens) at ip_adapter_scale 0.8, lora_scale
0.8; "StoryMaker fused" also runs the image attention and projects the image tokens to keys/values
(a render's first step); "fused, image K/V cached" is every later step of a render (the pipeline
keeps each layer's image keys/values for the call); "fused, no image tokens" leaves the image
attention out, isolating what the fused LoRA itself costs. Rounds
interleave the variants (plain, unfused, fused) so that load drift on a shared machine hits them
alike; each figure is the median (and the minimum) over rounds after warm-up rounds. Times are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storymaker.models.adapter import StoryMakerAdapter  # noqa: E402
from storymaker.models.adapter_checkpoint import SDXL_UNET_CONFIG  # noqa: E402
from storymaker.models.attention import (  # noqa: E402
    IMAGE_TOKENS_KWARG,
    IP_CACHE_KWARG,
    IP_SCALE_KWARG,
    LORA_SCALE_KWARG,
)

VARIANTS = ("plain SDXL", "StoryMaker unfused", "StoryMaker fused", "fused, image K/V cached",
            "fused, no image tokens")


def _fill_random(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Small random values everywhere (no denormals, no NaN): timing only."""
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0.0, 0.02, generator=generator)
        for buffer in module.buffers():
            if buffer.is_floating_point():
                buffer.normal_(0.0, 0.02, generator=generator)


def build_sdxl(clip_dim: int = 1280, rank: int = 128):
    """The SDXL UNet and a StoryMaker adapter's processors, random, float32 on the CPU. Built on
    the meta device and materialised once (no 2.6 B-parameter default init)."""
    from diffusers import UNet2DConditionModel

    generator = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**{k: v for k, v in SDXL_UNET_CONFIG.items() if not k.startswith("_")})
    unet = unet.to_empty(device="cpu")
    _fill_random(unet, generator)
    # diffusers' sinusoidal time projection has no parameters; nothing else is left on meta.
    with torch.device("meta"):
        adapter = StoryMakerAdapter.for_unet(unet, clip_dim=clip_dim, rank=rank)
    adapter.ip_adapter.to_empty(device="cpu")  # the image projection is not part of a step: left on meta
    _fill_random(adapter.ip_adapter, generator)
    return unet.eval(), adapter


def build_tiny():
    from storymaker.models.tiny import tiny_adapter, tiny_unet

    unet = tiny_unet()
    return unet, tiny_adapter(unet)


def step_inputs(unet, latent: int, characters: int = 2, text_tokens: int = 77):
    """A CFG batch of 2: latents, timestep, text embeddings, SDXL added conditioning, image tokens."""
    generator = torch.Generator().manual_seed(1)
    config = unet.config
    dim = config.cross_attention_dim
    pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    return {
        "sample": torch.randn(2, config.in_channels, latent, latent, generator=generator),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(2, text_tokens, dim, generator=generator),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(2, pooled, generator=generator),
            "time_ids": torch.tensor([[latent * 8, latent * 8, 0, 0, latent * 8, latent * 8]] * 2, dtype=torch.float32),
        },
        "image_tokens": torch.randn(2, 20 * (characters + 1), dim, generator=generator),
        "ip_cache": {},  # filled by the first cached step (a warm-up round), as in a render's first step
    }


@torch.no_grad()
def time_step(unet, inputs, storymaker: bool, image_tokens: bool = True, ip_cache: dict | None = None) -> float:
    kwargs = None
    if storymaker:
        tokens = inputs["image_tokens"] if image_tokens else None
        kwargs = {IMAGE_TOKENS_KWARG: tokens, IP_SCALE_KWARG: 0.8, LORA_SCALE_KWARG: 0.8}
        if ip_cache is not None:
            kwargs[IP_CACHE_KWARG] = ip_cache
    start = time.perf_counter()
    unet(
        inputs["sample"],
        inputs["timestep"],
        encoder_hidden_states=inputs["encoder_hidden_states"],
        added_cond_kwargs=inputs["added_cond_kwargs"],
        cross_attention_kwargs=kwargs,
        return_dict=False,
    )
    return time.perf_counter() - start


def run_variant(unet, adapter, inputs, variant: str) -> float:
    from diffusers.models.attention_processor import AttnProcessor2_0

    if variant == "plain SDXL":
        unet.set_attn_processor(AttnProcessor2_0())
        return time_step(unet, inputs, storymaker=False)
    adapter.install(unet)
    if variant.startswith("fused") or variant == "StoryMaker fused":
        adapter.fuse_lora(unet, 0.8)
        try:
            # "image K/V cached": a step after the first one of a render, whose per-call cache
            # already holds each layer's image keys/values (the pipeline keeps one cache per call).
            return time_step(unet, inputs, storymaker=True, image_tokens=variant != "fused, no image tokens",
                             ip_cache=inputs["ip_cache"] if variant == "fused, image K/V cached" else None)
        finally:
            adapter.unfuse_lora(unet)
    return time_step(unet, inputs, storymaker=True)


def bench(label: str, unet, adapter, latent: int, warmup: int, runs: int) -> dict[str, list[float]]:
    inputs = step_inputs(unet, latent)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for round_index in range(warmup + runs):
        measured = {variant: run_variant(unet, adapter, inputs, variant) for variant in VARIANTS}
        warm = round_index < warmup
        if not warm:
            for variant, seconds in measured.items():
                times[variant].append(seconds)
        print(f"  [{label}] round {round_index + 1}/{warmup + runs}{' (warm-up)' if warm else ''}: "
              + ", ".join(f"{v} {s:.3f}s" for v, s in measured.items()), flush=True)
    return times


def report(label: str, times: dict[str, list[float]], runs: int) -> None:
    """Median and minimum per variant, and their ratios to plain SDXL. On a machine shared with
    other work the minimum is the steadier figure (other load only ever adds time)."""
    med = {v: statistics.median(t) for v, t in times.items()}
    low = {v: min(t) for v, t in times.items()}
    print(f"\n{label}: {runs} timed runs, one UNet step, CFG batch 2")
    print(f"  {'variant':<24}{'median s':>10}{'vs plain':>10}{'min s':>10}{'vs plain':>10}")
    for variant in VARIANTS:
        print(f"  {variant:<24}{med[variant]:>10.4f}{med[variant] / med['plain SDXL']:>9.3f}x"
              f"{low[variant]:>10.4f}{low[variant] / low['plain SDXL']:>9.3f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("tiny", "sdxl"), default=None)
    parser.add_argument("--latent", type=int, default=32, help="SDXL latent side (32 = 256x256 pixels)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds for the SDXL UNet")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tiny-runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 on CPU")

    results = []
    if args.only in (None, "tiny"):
        unet, adapter = build_tiny()
        results.append(("tiny components, latent 32x32 (64x64 px)",
                        bench("tiny", unet, adapter, 32, 3, args.tiny_runs), args.tiny_runs))
        report(*results[-1])
    if args.only in (None, "sdxl"):
        start = time.perf_counter()
        unet, adapter = build_sdxl()
        params = sum(p.numel() for p in unet.parameters()) / 1e9
        lora = sum(p.numel() for p in adapter.ip_adapter.parameters()) / 1e6
        print(f"\nbuilt SDXL UNet ({params:.2f} B params) + StoryMaker processors ({lora:.0f} M params) "
              f"in {time.perf_counter() - start:.0f}s", flush=True)
        px = args.latent * 8
        results.append((f"SDXL UNet dimensions, random weights, latent {args.latent}x{args.latent} ({px}x{px} px)",
                        bench("sdxl", unet, adapter, args.latent, args.warmup, args.runs), args.runs))
        del unet, adapter
        gc.collect()
    print("\n==== one denoising step, side by side ====")
    for label, medians, runs in results:
        report(label, medians, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
