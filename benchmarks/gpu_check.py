"""The GPU figures in one run, with no downloads: speed per step and per panel, peak memory per
memory mode, float16 against float32. Output format: docs/gpu.md, "Measuring: benchmarks/gpu_check.py".

    python benchmarks/gpu_check.py                      # CUDA, SDXL dimensions, float16 (< 8 min on an H100)
    python benchmarks/gpu_check.py --device cpu --tiny  # the same code on the tiny components (< 2 min)
    python benchmarks/gpu_check.py --json figures.json  # also write the figures as JSON

Every component has its real architecture and random weights: the SDXL UNet, VAE and both text
encoders, the CLIP ViT-H/14 image encoder, the StoryMaker adapter (rank 128) and an SDXL OpenPose
ControlNet (xinsir's layout), built on the meta device and materialised on the GPU in float16; the
Fast preset's LoRA is a random one in SDXL-Lightning's file layout. Speed and memory do not depend on
the weights' values, so the figures are those of the real models (images are noise).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storymaker.models.attention import (  # noqa: E402
    IMAGE_TOKENS_KWARG,
    IP_CACHE_KWARG,
    IP_SCALE_KWARG,
    LORA_SCALE_KWARG,
)
from storymaker.models.placement import apply_placement  # noqa: E402

PROMPT = "two friends walking along a harbour at dusk, comic style"
NEGATIVE = "bad quality, NSFW, low quality, ugly, disfigured, deformed"
GiB = 2**30

# The published configurations (SDXL base 1.0, laion CLIP ViT-H/14), as their config.json files give them.
SDXL_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=1024,
                block_out_channels=(128, 256, 512, 512), norm_num_groups=32, act_fn="silu",
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                scaling_factor=0.13025, force_upcast=True)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=0, eos_token_id=2)
CLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                 num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
                 bos_token_id=0, eos_token_id=2)
CLIP_VIT_H = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                  image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")


def say(message: str) -> None:
    print(f"[gpu_check] {message}", flush=True)


# ------------------------------------------------------------------------------------ components
def _materialise(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, generator: torch.Generator):
    """A meta-device module -> ``device`` in ``dtype`` with small random weights (no float32 detour)."""
    module = module.to(dtype=dtype).to_empty(device=device)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("position_ids"):
                tensor.copy_(torch.arange(tensor.shape[-1], device=device).expand_as(tensor))
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator, device="cpu" if device.type != "cuda"
                                         else device, dtype=torch.float32).mul_(0.02).to(dtype))
    return module.eval().requires_grad_(False)


def sdxl_components(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Every StoryMakerPipeline component at the real dimensions, random, on ``device``."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig, \
        CLIPVisionModelWithProjection

    from storymaker.models.adapter import StoryMakerAdapter
    from storymaker.models.adapter_checkpoint import SDXL_CLIP_DIM, SDXL_UNET_CONFIG
    from storymaker.models.tiny import tiny_scheduler, tiny_tokenizer

    generator = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(0)
    built = {}
    with torch.device("meta"):
        built["unet"] = UNet2DConditionModel(**{k: v for k, v in SDXL_UNET_CONFIG.items() if not k.startswith("_")})
        built["controlnet"] = ControlNetModel.from_unet(built["unet"], load_weights_from_unet=False)
        built["vae"] = AutoencoderKL(**SDXL_VAE)
        built["text_encoder"] = CLIPTextModel(CLIPTextConfig(**CLIP_L))
        built["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG))
        built["image_encoder"] = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VIT_H))
    for name in list(built):
        say(f"materialising {name} on {device} ({dtype})")
        built[name] = _materialise(built[name], device, dtype, generator)
    with torch.device("meta"):
        adapter = StoryMakerAdapter.for_unet(built["unet"], clip_dim=SDXL_CLIP_DIM, rank=128)
    say("materialising the StoryMaker adapter")
    built["adapter"] = _materialise(adapter, device, dtype, generator)
    built.update(tokenizer=tiny_tokenizer(), tokenizer_2=tiny_tokenizer(), scheduler=tiny_scheduler())
    return built


def tiny_components_for(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    from storymaker.models.tiny import tiny_components

    components = tiny_components(with_controlnet=True)
    for value in components.values():
        if isinstance(value, torch.nn.Module):
            value.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return components


def characters_for(pipe, count: int = 2):
    from storymaker.models.conditioning import CharacterConditioning

    tokens, hidden = pipe.expected_clip_shape()
    generator = torch.Generator().manual_seed(5)
    out = []
    for _ in range(count):
        face = torch.randn(512, generator=generator)
        out.append(CharacterConditioning(face / face.norm(), torch.randn(tokens, hidden, generator=generator),
                                         torch.randn(tokens, hidden, generator=generator)))
    return out


def pose_image(width: int, height: int):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "black")
    draw = ImageDraw.Draw(image)
    for x in (width // 3, 2 * width // 3):  # two stick figures
        draw.line((x, height // 5, x, 3 * height // 5), fill=(255, 0, 0), width=max(2, width // 100))
    return image


# ------------------------------------------------------------------------------------ measuring
class Clock:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn: Callable[[], Any]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / GiB if self.cuda else None


def step_inputs(pipe, width: int, height: int, characters: int = 2) -> dict[str, Any]:
    """One CFG batch of 2 at ``width`` x ``height``: what the pipeline hands the ControlNet and the UNet."""
    unet = pipe.unet
    device, dtype = unet.device, unet.dtype
    config = unet.config
    generator = torch.Generator().manual_seed(1)
    pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    scale = pipe.vae_scale_factor

    def rand(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    return {
        "sample": rand(2, config.in_channels, height // scale, width // scale),
        "timestep": torch.tensor(999, device=device),
        "encoder_hidden_states": rand(2, 77, config.cross_attention_dim),
        "added_cond_kwargs": {"text_embeds": rand(2, pooled),
                              "time_ids": torch.tensor([[height, width, 0, 0, height, width]] * 2, device=device,
                                                       dtype=dtype)},
        "image_tokens": rand(2, 20 * (characters + 1), config.cross_attention_dim),
        "control": torch.rand(2, 3, height, width, generator=generator).to(device=device, dtype=dtype),
        "ip_cache": {},
    }


@torch.no_grad()
def one_step(pipe, inputs: dict[str, Any], *, storymaker: bool, controlnet: bool, cached: bool) -> torch.Tensor:
    """ControlNet (optional) + UNet for one denoising step; returns the noise prediction."""
    down = mid = None
    if controlnet:
        down, mid = pipe.controlnet(inputs["sample"], inputs["timestep"],
                                    encoder_hidden_states=inputs["encoder_hidden_states"],
                                    controlnet_cond=inputs["control"], conditioning_scale=0.7, guess_mode=False,
                                    added_cond_kwargs=inputs["added_cond_kwargs"], return_dict=False)
    kwargs = None
    if storymaker:
        kwargs = {IMAGE_TOKENS_KWARG: inputs["image_tokens"], IP_SCALE_KWARG: 0.8, LORA_SCALE_KWARG: 0.8,
                  IP_CACHE_KWARG: inputs["ip_cache"] if cached else {}}
    return pipe.unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"],
                     added_cond_kwargs=inputs["added_cond_kwargs"], cross_attention_kwargs=kwargs,
                     down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False)[0]


STEP_VARIANTS = (("plain SDXL", False, False), ("StoryMaker, first step", True, False),
                 ("StoryMaker, later steps (image K/V cached)", True, True))


def measure_steps(pipe, clock: Clock, size: tuple[int, int], warmup: int, runs: int) -> dict[str, dict[str, float]]:
    """Median seconds per step for each variant, without and with the ControlNet (rounds interleaved)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    inputs = step_inputs(pipe, *size)
    times: dict[str, dict[str, list[float]]] = {v: {"no ControlNet": [], "ControlNet": []} for v, _, _ in STEP_VARIANTS}
    for round_index in range(warmup + runs):
        for variant, storymaker, cached in STEP_VARIANTS:
            if storymaker:
                pipe.adapter.install(pipe.unet)
            else:
                pipe.unet.set_attn_processor(AttnProcessor2_0())
            for label, with_cn in (("no ControlNet", False), ("ControlNet", True)):
                seconds = clock.time(lambda: one_step(pipe, inputs, storymaker=storymaker, controlnet=with_cn,
                                                      cached=cached))
                if round_index >= warmup:
                    times[variant][label].append(seconds)
        say(f"step timings: round {round_index + 1}/{warmup + runs}{' (warm-up)' if round_index < warmup else ''}")
    pipe.adapter.install(pipe.unet)
    return {v: {k: statistics.median(t) for k, t in by.items()} for v, by in times.items()}


def run_panel(pipe, clock: Clock, size: tuple[int, int], steps: int, *, guidance: float = 7.5, fast: bool = False,
              characters=None) -> float:
    width, height = size
    return clock.time(lambda: pipe(
        prompt=PROMPT, negative_prompt=NEGATIVE if guidance > 1 else None, characters=characters,
        pose_image=pose_image(width, height), width=width, height=height, num_inference_steps=steps,
        guidance_scale=guidance, generator=torch.Generator().manual_seed(0), output_type="pt", fast=fast))


MEMORY_MODES = (("resident", "resident", False), ("balanced", "balanced", False),
                ("balanced + VAE tiling (tiles <= 512 px)", "balanced", True), ("offload (block by block)", "offload", False))
#: The SDXL VAE tiles only images larger than its sample size (1024 px): the tiling row uses 512-px
#: tiles so that it says what tiling saves on a 1024x1024 panel.
TILE_PIXELS = 512


def measure_memory(pipe, clock: Clock, device: torch.device, size, steps, characters) -> list[dict[str, Any]]:
    rows = []
    for label, mode, tiling in MEMORY_MODES:
        say(f"memory mode {label}: placing and rendering a {size[0]}x{size[1]} panel")
        placement = apply_placement(pipe, device, mode)
        tiles = (pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size)
        if tiling:
            pipe.vae.enable_tiling()
            tile = min(TILE_PIXELS, size[0] // 2)
            pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size = tile, tile // pipe.vae_scale_factor
        clock.reset_peak()
        seconds = run_panel(pipe, clock, size, steps, characters=characters)
        rows.append({"mode": label, "peak_gib": clock.peak_gib(), "seconds": seconds})
        if tiling:
            pipe.vae.disable_tiling()
            pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size = tiles
        placement.remove(pipe)
    apply_placement(pipe, device, "resident")
    return rows


@torch.no_grad()
def measure_precision(pipe, size) -> dict[str, Any]:
    """One step (StoryMaker, ControlNet, CFG batch 2) in the pipeline's dtype and in the other one."""
    inputs = step_inputs(pipe, *size)
    first_dtype = pipe.unet.dtype
    other = torch.float32 if first_dtype != torch.float32 else torch.float16
    results = {}
    for dtype in (first_dtype, other):
        for module in (pipe.unet, pipe.controlnet):
            module.to(dtype=dtype)
        cast = {k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                for k, v in inputs.items()}
        cast["added_cond_kwargs"] = {k: v.to(dtype) for k, v in inputs["added_cond_kwargs"].items()}
        cast["ip_cache"] = {}
        results[dtype] = one_step(pipe, cast, storymaker=True, controlnet=True, cached=False).float()
    for module in (pipe.unet, pipe.controlnet):
        module.to(dtype=first_dtype)  # float16 -> float32 -> float16 is exact
    half = results[torch.float16]
    full = results[torch.float32]
    return {"max_abs_diff": float((half - full).abs().max()), "max_abs_fp32": float(full.abs().max()),
            "finite_fp16": bool(torch.isfinite(half).all())}


def weight_gib(pipe) -> dict[str, float]:
    def size(params):
        return sum(p.numel() * p.element_size() for p in params) / GiB

    unet_own = [p for n, p in pipe.unet.named_parameters() if ".processor." not in n and ".lora_" not in n]
    out = {"UNet": size(unet_own), "StoryMaker adapter": size(pipe.adapter.parameters()),
           "text encoders": size(list(pipe.text_encoder.parameters()) + list(pipe.text_encoder_2.parameters())),
           "CLIP image encoder": size(pipe.image_encoder.parameters()), "VAE": size(pipe.vae.parameters())}
    if pipe.controlnet is not None:
        out["ControlNet"] = size(pipe.controlnet.parameters())
    return out


# ------------------------------------------------------------------------------------ report
def report(figures: dict[str, Any]) -> str:
    def num(value, fmt="{:.3f}"):
        return "n/a" if value is None else fmt.format(value)

    env = figures["environment"]
    w, h = figures["step_size"]
    lines = ["", "==== StoryMaker GPU check ====",
             f"device: {env['device_name']} | torch {env['torch']} | diffusers {env['diffusers']} | "
             f"{env['dtype']} | {env['components']}",
             "weights (GiB): " + ", ".join(f"{k} {v:.2f}" for k, v in figures["weights_gib"].items()),
             "", f"seconds per denoising step, {w}x{h}, CFG batch 2, two characters (median of {figures['runs']})",
             f"  {'variant':<44}{'no ControlNet':>15}{'ControlNet':>12}"]
    for variant, by in figures["steps"].items():
        lines.append(f"  {variant:<44}{by['no ControlNet']:>15.4f}{by['ControlNet']:>12.4f}")
    lines += ["", "seconds per panel (pose, two characters, prompt encoded, VAE decode; resident)",
              f"  {'panel':<44}{'seconds':>15}"]
    for label, seconds in figures["panels"].items():
        lines.append(f"  {label:<44}{seconds:>15.2f}")
    size = figures["memory_size"]
    lines += ["", f"memory modes: one {figures['panel_steps']}-step panel, {size[0]}x{size[1]}, pose, two characters",
              f"  {'mode':<44}{'peak GiB':>15}{'seconds':>12}{'vs resident':>13}"]
    base = figures["memory"][0]["seconds"]
    for row in figures["memory"]:
        lines.append(f"  {row['mode']:<44}{num(row['peak_gib'], '{:.2f}'):>15}{row['seconds']:>12.2f}"
                     f"{row['seconds'] / base:>12.3f}x")
    p = figures["precision"]
    lines += ["", f"float16 vs float32, one step (StoryMaker + ControlNet, CFG batch 2): max |difference| of the noise "
                  f"prediction {p['max_abs_diff']:.3g} (max |prediction| {p['max_abs_fp32']:.3g}; float16 finite: "
                  f"{p['finite_fp16']})",
              f"total {figures['total_seconds']:.0f} s", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny components (smoke run: the figures mean nothing)")
    parser.add_argument("--runs", type=int, default=None, help="timed rounds per step variant (default 10; tiny 3)")
    parser.add_argument("--steps", type=int, default=25, help="steps of a Standard panel (default 25)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; run it on a CUDA machine, or with --device cpu --tiny.", file=sys.stderr)
        return 2
    if not args.tiny and device.type != "cuda":
        print("gpu_check: the SDXL dimensions need a GPU; on the CPU use --tiny.", file=sys.stderr)
        return 2
    import diffusers

    from storymaker.models.fast import FAST_GUIDANCE, FAST_STEPS
    from storymaker.models.pipeline import StoryMakerPipeline
    from storymaker.models.tiny import tiny_lightning_lora

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    runs = args.runs or (3 if args.tiny else 10)
    warmup = 1 if args.tiny else 3
    # Panel sizes: the real ones, or (tiny) the same shapes at 1/16 of the side.
    square, portrait = ((64, 64), (64, 80)) if args.tiny else ((1024, 1024), (960, 1280))
    say(f"building {'tiny' if args.tiny else 'SDXL-size'} components on {device}")
    components = tiny_components_for(device, dtype) if args.tiny else sdxl_components(device, dtype)
    pipe = StoryMakerPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    pipe.fast_lora_source = lambda: tiny_lightning_lora(pipe.unet, rank=4 if args.tiny else 64)
    apply_placement(pipe, device, "resident")
    pipe.enable_storymaker_lora_fusion(0.8)  # as from_settings does (fuse_lora=True)
    clock = Clock(device)
    characters = characters_for(pipe)

    figures: dict[str, Any] = {
        "environment": {
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
            "torch": torch.__version__, "diffusers": diffusers.__version__, "dtype": str(dtype).replace("torch.", ""),
            "components": "tiny random components" if args.tiny else "SDXL dimensions, random weights"},
        "weights_gib": weight_gib(pipe), "runs": runs, "step_size": square, "panel_steps": args.steps,
        "memory_size": square,
    }
    say(f"timing one denoising step at {square[0]}x{square[1]} ({warmup} warm-up + {runs} rounds)")
    figures["steps"] = measure_steps(pipe, clock, square, warmup, runs)

    say("warm-up panels (2 steps each size)")
    for size in (square, portrait):
        run_panel(pipe, clock, size, 2, characters=characters)
    panels = {}
    for size in (square, portrait):
        say(f"panel {size[0]}x{size[1]}, {args.steps} steps")
        panels[f"{size[0]}x{size[1]}, {args.steps} steps, guidance 7.5"] = run_panel(pipe, clock, size, args.steps,
                                                                                   characters=characters)
    figures["memory"] = measure_memory(pipe, clock, device, square, args.steps, characters)

    say("loading the Fast LoRA (random, SDXL-Lightning layout) and rendering Fast panels")
    run_panel(pipe, clock, square, 1, guidance=FAST_GUIDANCE, fast=True, characters=characters)  # load + warm-up
    panels[f"{square[0]}x{square[1]}, Fast ({FAST_STEPS} steps, guidance 1)"] = run_panel(
        pipe, clock, square, FAST_STEPS, guidance=FAST_GUIDANCE, fast=True, characters=characters)
    figures["panels"] = panels

    say("float16 against float32, one step")
    figures["precision"] = measure_precision(pipe, square)
    figures["total_seconds"] = time.perf_counter() - started
    print(report(figures), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
        say(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
