"""Peak accelerator memory of a whole panel at the real SDXL dimensions, estimated on any machine
(no GPU, no downloads, seconds): the pipeline runs for real, with the meta device standing for the
GPU. Every tensor the render allocates there is counted from the operation that creates it until
its storage is freed, so the peak is that of the live tensors: what ``torch.cuda.max_memory_allocated``
reports on a GPU, less what the kernels allocate for themselves (cuDNN/cuBLAS workspaces) and the
caching allocator's rounding. It is an estimate: ``benchmarks/gpu_check.py`` measures on a GPU.

    python benchmarks/memory_estimate.py               # SDXL dimensions, float16, every memory mode
    python benchmarks/memory_estimate.py --tiny        # the same code on the tiny components
    python benchmarks/memory_estimate.py --json F      # also write the figures as JSON

Attention is counted as the memory-efficient kernels a GPU runs (flash / memory-efficient SDPA: the
output and its log-sum-exp, never the score matrix), as torch picks them for float16 on CUDA and for
the VAE's float32 decode.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_check  # noqa: E402

from storymaker.models.placement import ON_DEMAND_COMPONENTS, RESIDENT_COMPONENTS, Placement  # noqa: E402

GiB = 2**30
ACCELERATOR = torch.device("meta")


# ------------------------------------------------------------------------------------ counting
class LiveBytes(TorchDispatchMode):
    """Counts the bytes of every storage alive on ``device``: each operation's outputs from the moment
    they are created, each storage until it is freed (a weak reference's finaliser). ``peak`` is the
    largest total seen; ``where`` says which component was running then (see :meth:`watch`)."""

    def __init__(self, device: torch.device = ACCELERATOR):
        super().__init__()
        self.device = device
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.where = "-"
        self.running: list[str] = []
        self.by_component: dict[str, int] = {}  # the peak while each component ran

    def _add(self, tensor: torch.Tensor) -> None:
        if tensor.device != self.device:
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self.live:
            return
        self.live[key] = storage.nbytes()
        self.current += self.live[key]
        weakref.finalize(storage, self._release, key)
        if self.running:
            name = self.running[-1]
            self.by_component[name] = max(self.by_component.get(name, 0), self.current)
        if self.current > self.peak:
            self.peak = self.current
            self.where = " > ".join(self.running) or "-"

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def count_existing(self, modules) -> None:
        """Count the tensors already on the device (the resident weights) before the render starts."""
        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                self._add(tensor)

    def reset_peak(self) -> None:
        self.peak, self.where, self.by_component = self.current, "-", {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._add(value)
        return out

    @contextlib.contextmanager
    def watch(self, components: dict[str, torch.nn.Module]):
        """Name the component running at the peak (forward hooks on each top-level component)."""
        handles = []
        for name, module in components.items():
            handles.append(module.register_forward_pre_hook(lambda *_, n=name: self.running.append(n) and None))
            handles.append(module.register_forward_hook(lambda *_: self.running.pop() and None))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class EfficientAttention(TorchFunctionMode):
    """``scaled_dot_product_attention`` as the GPU's memory-efficient kernels allocate: the output and
    a float32 log-sum-exp per query (the meta device would otherwise take the math path, which
    materialises the whole score matrix, as no GPU run does)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            query, value = args[0], args[2] if len(args) > 2 else kwargs["value"]
            logsumexp = query.new_empty(query.shape[:-1], dtype=torch.float32)
            out = query.new_empty(*query.shape[:-1], value.shape[-1])
            del logsumexp
            return out
        return func(*args, **kwargs)


# ------------------------------------------------------------------------------------ components
def components(tiny: bool, dtype: torch.dtype) -> dict[str, Any]:
    """Every component with its real architecture; the ones that stay on the accelerator are built
    on the meta device (no memory), the on-demand ones (the encoders) in uninitialised CPU memory,
    where the balanced mode keeps them between their forward passes."""
    if tiny:  # built on the CPU: the resident ones go to the meta device
        built = gpu_check.tiny_components_for(torch.device("cpu"), dtype)
        for name in RESIDENT_COMPONENTS:
            built[name] = built[name].to(ACCELERATOR)
    else:  # built on the meta device: the on-demand ones get CPU memory
        with _keep_on_meta():
            built = gpu_check.sdxl_components(ACCELERATOR, dtype)
        for name in ON_DEMAND_COMPONENTS:
            built[name] = built[name].to_empty(device="cpu")
    return built


@contextlib.contextmanager
def _keep_on_meta():
    """gpu_check's builder materialises random weights; here the modules stay on the meta device."""
    original = gpu_check._materialise
    gpu_check._materialise = lambda module, device, dtype, generator: module.to(dtype=dtype).eval().requires_grad_(False)
    try:
        yield
    finally:
        gpu_check._materialise = original


class MetaPlacement(Placement):
    """The placement policy unchanged, with the meta device for the accelerator: moves onto it are
    copies as on a GPU (counted); leaving it gives the module fresh CPU memory where a GPU run points
    back at the kept CPU copies (a meta tensor's data cannot be pointed at CPU memory)."""

    def __init__(self, mode: str):
        super().__init__(ACCELERATOR, mode, mover=self._meta_mover)

    @staticmethod
    def _meta_mover(module: torch.nn.Module, device: torch.device) -> None:
        module.to(device) if device.type == "meta" else module.to_empty(device=device)

    @staticmethod
    def _point_to_host_copies(module: torch.nn.Module, copies) -> None:
        module.to_empty(device="cpu")


@contextlib.contextmanager
def _timesteps_on_cpu(pipe):
    """The schedulers' few timesteps and sigmas (bytes) stay on the CPU: a scheduler reads their
    values, and the meta device has none (the Standard scheduler and the Fast preset's)."""
    from storymaker.models.fast import fast_scheduler

    classes = {type(pipe.scheduler), type(fast_scheduler(pipe.scheduler))}
    originals = {cls: cls.set_timesteps for cls in classes}
    for cls, original in originals.items():
        cls.set_timesteps = lambda self, steps=None, device=None, *a, _o=original, **kw: _o(self, steps, "cpu", *a, **kw)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.set_timesteps = original


# ------------------------------------------------------------------------------------ runs
MODES = (("resident", "resident", False), ("balanced", "balanced", False),
         ("balanced + VAE tiling (tiles <= 512 px)", "balanced", True), ("offload (block by block)", "offload", False))


def estimate_panel(pipe, counter: LiveBytes, size: tuple[int, int], steps: int, *, characters, tiling: bool = False,
                   guidance: float = 7.5, fast: bool = False) -> dict[str, Any]:
    width, height = size
    tiles = (pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size)
    if tiling:
        pipe.vae.enable_tiling()
        tile = min(gpu_check.TILE_PIXELS, width // 2)
        pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size = tile, tile // pipe.vae_scale_factor
    watched = {name: getattr(pipe, name) for name in ("text_encoder", "text_encoder_2", "controlnet", "unet")}
    watched["vae decode"] = pipe.vae.decoder
    counter.reset_peak()
    before = counter.current
    try:
        with counter.watch(watched):
            pipe(prompt=gpu_check.PROMPT, negative_prompt=gpu_check.NEGATIVE if guidance > 1 else None,
                 characters=characters, pose_image=gpu_check.pose_image(width, height), width=width, height=height,
                 num_inference_steps=steps, guidance_scale=guidance, generator=torch.Generator().manual_seed(0),
                 output_type="pt", fast=fast)
    finally:
        if tiling:
            pipe.vae.disable_tiling()
            pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size = tiles
    return {"peak_gib": counter.peak / GiB, "resident_gib": before / GiB, "at_peak": counter.where,
            "while_running_gib": {name: peak / GiB for name, peak in counter.by_component.items()}}


def estimate(tiny: bool = False, modes=MODES, sizes=None, steps: int = 3, fast: bool = True) -> dict[str, Any]:
    """The figures: one row per memory mode and panel size (and a Fast panel in balanced mode)."""
    started = time.perf_counter()
    from storymaker.models.pipeline import StoryMakerPipeline
    from storymaker.models.tiny import tiny_lightning_lora

    dtype = torch.float16
    sizes = sizes or (((64, 64), (64, 80)) if tiny else ((1024, 1024), (960, 1280)))
    gpu_check.say(f"building {'tiny' if tiny else 'SDXL-size'} components (meta device for the accelerator)")
    pipe = StoryMakerPipeline(**components(tiny, dtype))
    pipe.set_progress_bar_config(disable=True)
    pipe.fast_lora_source = lambda: tiny_lightning_lora(pipe.unet, rank=4 if tiny else 64)
    characters = gpu_check.characters_for(pipe)
    weights = gpu_check.weight_gib(pipe)
    rows: list[dict[str, Any]] = []
    with EfficientAttention(), LiveBytes() as counter, _timesteps_on_cpu(pipe):
        for label, mode, tiling in modes:
            placement = MetaPlacement(mode).apply(pipe)
            if not rows:
                pipe.enable_storymaker_lora_fusion(0.8, keep_original=False)  # as loading to serve does
            counter.count_existing(m for m in pipe.components.values() if isinstance(m, torch.nn.Module))
            for size in sizes:
                gpu_check.say(f"{label}: one {size[0]}x{size[1]} panel, pose, two characters")
                row = estimate_panel(pipe, counter, size, steps, characters=characters, tiling=tiling)
                rows.append({"mode": label, "size": list(size), **row})
            if fast and mode == "balanced" and not tiling:
                gpu_check.say(f"{label}: one {sizes[0][0]}x{sizes[0][1]} Fast panel (4 steps, guidance 1)")
                row = estimate_panel(pipe, counter, sizes[0], 4, characters=characters, guidance=1.0, fast=True)
                rows.append({"mode": label + ", Fast", "size": list(sizes[0]), **row})
            placement.remove(pipe)
    return {"components": "tiny random components" if tiny else "SDXL dimensions", "dtype": "float16",
            "torch": torch.__version__, "rows": rows, "weights_gib": weights, "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny components (the figures mean nothing)")
    parser.add_argument("--steps", type=int, default=3, help="denoising steps per panel (the peak does not "
                        "depend on the count past the second; default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    figures = estimate(args.tiny, steps=args.steps)
    print(report(figures), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


def report(figures: dict[str, Any]) -> str:
    lines = ["", "==== StoryMaker memory estimate (live tensors on the accelerator; not a GPU measurement) ====",
             f"{figures['components']}, {figures['dtype']}, torch {figures['torch']}",
             f"  {'mode':<42}{'panel':>11}{'weights GiB':>13}{'peak GiB':>10}  running at the peak"]
    for row in figures["rows"]:
        size = "x".join(map(str, row["size"]))
        lines.append(f"  {row['mode']:<42}{size:>11}{row['resident_gib']:>13.2f}{row['peak_gib']:>10.2f}  {row['at_peak']}")
    names = ("text_encoder", "text_encoder_2", "controlnet", "unet", "vae decode")
    lines += ["", "peak GiB while each component runs", f"  {'mode':<42}{'panel':>11}" + "".join(f"{n:>16}" for n in names)]
    for row in figures["rows"]:
        size = "x".join(map(str, row["size"]))
        peaks = row["while_running_gib"]
        lines.append(f"  {row['mode']:<42}{size:>11}" + "".join(f"{peaks.get(n, 0):>16.2f}" for n in names))
    lines += ["", "weights GiB (float16): " + ", ".join(f"{k} {v:.2f}" for k, v in figures["weights_gib"].items()),
              f"total {figures['seconds']:.0f} s", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
