"""Where each component of a :class:`StoryMakerPipeline` lives: the one placement policy.

Three memory modes (``STORYMAKER_MEMORY_MODE``, docs/gpu.md):

- ``resident``: every component on the accelerator (fastest; most memory).
- ``balanced``: the components every denoising step uses (UNet with the adapter's processors, the
  adapter's image projection, the pose ControlNet, the VAE) stay on the accelerator; the text
  encoders (they run once per distinct prompt: their outputs are cached) and the CLIP image encoder
  (once per character: its features are cached on disk) live in CPU memory and are moved to the
  accelerator only for their own forward pass. Leaving costs no copy: the module's parameters are
  pointed back at the CPU tensors kept for it (pinned, so that entering is a fast copy).
- ``offload``: every component waits in CPU memory and visits the accelerator only while it runs, the
  UNet and the ControlNet one block at a time (each of their down/up blocks and their middle block;
  their small stems and heads stay). Least memory, slowest: every step copies the denoiser's weights
  in. (Model CPU offload, whole models at a time, cannot go below the UNet with StoryMaker's
  processors: 6.3 GiB of weights in float16.)

The VAE's decode is the largest single allocation of a panel: the SDXL VAE overflows in float16, so
it decodes in float32 (about 3.3 GiB of activations at 1024x1024). In ``balanced`` and ``offload``
the policy keeps a float16 VAE in bfloat16 instead, where the accelerator computes bfloat16 natively
(CUDA compute capability 8.0 and newer; the CPU): float32's range, so no overflow and no upcast, and
half the activations. ``resident`` keeps the VAE as loaded (float32 decode: the most precise).
The policy keeps the VAE's loaded tensors on the host (0.16 GiB for SDXL in float16), so that a later
placement of the same pipeline (another mode: benchmarks/gpu_check.py switches in one process), or
:meth:`Placement.remove`, gives the VAE back bit for bit: bfloat16 -> float16 would not.

Nothing else in the code base calls ``.to(device)`` on these components: the pipeline asks
:func:`apply_placement`. :class:`Placement` records where each component is (``location``), and every
move goes through :meth:`Placement.move`, so a test can watch it on a machine without a GPU.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

logger = logging.getLogger(__name__)

MODES = ("resident", "balanced", "offload")
#: Used at every denoising step (or by the decode at the end of every panel): always on the accelerator.
RESIDENT_COMPONENTS = ("unet", "adapter", "controlnet", "vae")
#: Used once per prompt or per character: on the accelerator only while they run (balanced mode).
ON_DEMAND_COMPONENTS = ("text_encoder", "text_encoder_2", "image_encoder")
#: Offload mode: these children of a component visit the accelerator while they run (lists: each
#: element on its own); the component's other children stay on the accelerator. Components not named
#: here visit whole. The adapter's processors live inside the UNet's blocks and travel with them.
OFFLOAD_UNITS = {
    "unet": ("down_blocks", "mid_block", "up_blocks"),
    "controlnet": ("down_blocks", "mid_block"),
    "vae": ("encoder", "decoder"),
    "adapter": ("image_proj",),
}

ACCELERATOR = "accelerator"
HOST = "host"


def resolve_memory_mode(settings: "Settings", device: torch.device | str) -> str:
    """``settings.memory_mode`` with "auto" decided: ``offload`` when ``cpu_offload`` is set;
    ``resident`` on the CPU and on ZeroGPU Spaces (``SPACES_ZERO_GPU`` set, or a ``zero_gpu`` setting
    "on": memory is not the limit there, and models must stay where start-up put them); else ``balanced``."""
    mode = (getattr(settings, "memory_mode", "auto") or "auto").strip().lower()
    device = torch.device(device)
    if mode == "auto":
        if settings.cpu_offload:
            mode = "offload"
        elif device.type == "cpu" or os.environ.get("SPACES_ZERO_GPU") or getattr(settings, "zero_gpu", "") == "on":
            mode = "resident"
        else:
            mode = "balanced"
    if mode not in MODES:
        raise ConfigError(f"Unknown memory mode {mode!r}: use auto, {', '.join(MODES)} (STORYMAKER_MEMORY_MODE).")
    return mode


def bfloat16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (not emulated): CUDA from compute capability 8.0
    (Ampere), the CPU, and the meta device (benchmarks/memory_estimate.py stands it in for a GPU)."""
    if device.type in ("cpu", "meta"):
        return True
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return False


def _tensors(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(module.named_parameters()) + list(module.named_buffers())


def _to_host(tensor: torch.Tensor, host: torch.device) -> torch.Tensor:
    """``tensor`` in host memory (itself when it is there already). A meta tensor has no data
    (benchmarks/memory_estimate.py stands the meta device in for a GPU): empty host memory of its
    shape and dtype stands for the copy."""
    if tensor.is_meta:
        return torch.empty_like(tensor, device=host)
    return tensor.to(host)


def _move_inputs(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_move_inputs(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _move_inputs(v, device) for k, v in value.items()}
    return value


class Placement:
    """The placement of one pipeline's components for one memory mode.

    ``device`` is the accelerator, ``host`` where on-demand components wait (the CPU). ``mover``
    performs every move (default ``module.to(device)``); tests pass one that records.
    """

    def __init__(self, device: torch.device | str, mode: str = "balanced", *, host: torch.device | str = "cpu",
                 mover: Callable[[torch.nn.Module, torch.device], Any] | None = None):
        if mode not in MODES:
            raise ConfigError(f"Unknown memory mode {mode!r}: use {', '.join(MODES)} (STORYMAKER_MEMORY_MODE).")
        self.device = torch.device(device)
        self.host = torch.device(host)
        self.mode = mode
        # Host copies are pinned on CUDA machines, so the copy to the GPU may run asynchronously (the
        # forward that follows is queued on the same stream).
        self.mover = mover or (lambda module, device: module.to(device, non_blocking=device.type == "cuda"))
        self.location: dict[str, str] = {}
        self.vae_dtype: torch.dtype | None = None  # the dtype the policy gave the VAE (None: unchanged)
        # The VAE's tensors before that cast (on the host), restored by remove(): (vae, {name: tensor}).
        self._vae_loaded: tuple[torch.nn.Module, dict[str, torch.Tensor]] | None = None
        self.moves: list[tuple[str, str]] = []  # (component, ACCELERATOR or HOST), in order
        self._host_copies: dict[str, dict[str, torch.Tensor]] = {}
        self._hooks: list[Any] = []

    # ------------------------------------------------------------------ moves
    def move(self, name: str, module: torch.nn.Module, where: str) -> None:
        """Put component ``name`` on the accelerator or the host (the one place modules move)."""
        if where == ACCELERATOR:
            self.mover(module, self.device)
        elif name in self._host_copies:
            self._point_to_host_copies(module, self._host_copies[name])
        else:
            self.mover(module, self.host)
        self.location[name] = where
        self.moves.append((name, where))

    def _keep_host_copies(self, name: str, module: torch.nn.Module) -> None:
        """Remember the module's host tensors (pinned when CUDA is there) so that leaving the
        accelerator is a pointer change, not a copy. Inference weights never change, so they match."""
        pin = self.device.type == "cuda" and torch.cuda.is_available()
        copies = {}
        for key, tensor in _tensors(module):
            data = tensor.data.pin_memory() if pin and not tensor.data.is_pinned() else tensor.data
            tensor.data = data
            copies[key] = data
        self._host_copies[name] = copies

    @staticmethod
    def _point_to_host_copies(module: torch.nn.Module, copies: dict[str, torch.Tensor]) -> None:
        for key, tensor in _tensors(module):
            kept = copies.get(key)
            if kept is None or kept.shape != tensor.shape or kept.dtype != tensor.dtype:
                tensor.data = tensor.data.to("cpu")  # a module changed since (a LoRA loaded): copy it
                copies[key] = tensor.data
            else:
                tensor.data = kept

    # ------------------------------------------------------------------ policy
    def apply(self, pipe) -> "Placement":
        """Place ``pipe``'s components for this mode (removing an earlier placement's hooks)."""
        previous = getattr(pipe, "_storymaker_placement", None)
        if previous is not None:
            previous.remove(pipe)
        components = {name: getattr(pipe, name, None) for name in RESIDENT_COMPONENTS + ON_DEMAND_COMPONENTS}
        components = {name: module for name, module in components.items() if isinstance(module, torch.nn.Module)}
        self._place_vae_dtype(pipe)  # first: the host copies kept below are then of the final dtype
        if self.mode == "offload":
            for name, module in components.items():
                self._offload(name, module)
        else:
            on_demand = self.mode == "balanced"
            for name, module in components.items():
                if on_demand and name in ON_DEMAND_COMPONENTS:
                    self.move(name, module, HOST)
                    self._keep_host_copies(name, module)
                    self._install_hooks(name, module)
                else:
                    self.move(name, module, ACCELERATOR)
        pipe._storymaker_placement = self
        logger.info("memory mode %s on %s: %s (VAE %s)", self.mode, self.device, self.location,
                    getattr(getattr(pipe, "vae", None), "dtype", None))
        return self

    def _place_vae_dtype(self, pipe) -> None:
        """bfloat16 for a float16 VAE that would decode in float32 (module docstring), once, here:
        float16 -> bfloat16 rounds the weights once at placement, never per render (no drift)."""
        vae = getattr(pipe, "vae", None)
        if self.mode == "resident" or vae is None or vae.dtype != torch.float16:
            return
        if not getattr(vae.config, "force_upcast", False) or not bfloat16_is_native(self.device):
            return
        from .pipeline import quiet_dtype_casts

        # The cast gives the module new tensors: keeping the loaded ones costs no copy on the host.
        loaded = {key: _to_host(tensor.data, self.host) for key, tensor in _tensors(vae)}
        with quiet_dtype_casts():
            vae.to(dtype=torch.bfloat16)
        self._vae_loaded = (vae, loaded)
        self.vae_dtype = torch.bfloat16

    def _restore_vae(self) -> None:
        """Give the VAE the tensors it had before :meth:`_place_vae_dtype`, where it is now."""
        if self._vae_loaded is None:
            return
        vae, loaded = self._vae_loaded
        self._vae_loaded = None
        self.vae_dtype = None
        for key, tensor in _tensors(vae):
            kept = loaded.get(key)
            if kept is not None and kept.shape == tensor.shape:
                tensor.data = kept.to(tensor.device)

    def _offload(self, name: str, module: torch.nn.Module) -> None:
        """Offload mode for one component: its units wait on the host (hooks bring each in for its
        own forward), the rest goes to the accelerator. The blocks of the UNet, the ControlNet and the
        VAE get their inputs on the accelerator already (and a dict that must not be copied: the image
        K/V cache); a whole component, and the adapter's projection, get theirs from the CPU."""
        children = OFFLOAD_UNITS.get(name)
        if children is None:
            units = [(name, module, True)]
        else:
            units = []
            outside_inputs = name == "adapter"
            for child in children:
                part = getattr(module, child, None)
                if isinstance(part, torch.nn.ModuleList):
                    units += [(f"{name}.{child}.{i}", block, outside_inputs) for i, block in enumerate(part)]
                elif isinstance(part, torch.nn.Module):
                    units.append((f"{name}.{child}", part, outside_inputs))
            for child_name, child in module.named_children():
                if child_name not in children and not (name == "adapter" and child_name == "ip_adapter"):
                    self.move(f"{name}.{child_name}", child, ACCELERATOR)
        for unit_name, unit, move_inputs in units:
            self.move(unit_name, unit, HOST)
            self._keep_host_copies(unit_name, unit)
            self._install_hooks(unit_name, unit, move_inputs=move_inputs)

    def _install_hooks(self, name: str, module: torch.nn.Module, *, move_inputs: bool = True) -> None:
        def enter(mod, args, kwargs):
            self.move(name, mod, ACCELERATOR)
            if not move_inputs:
                return None
            return _move_inputs(args, self.device), _move_inputs(kwargs, self.device)

        def leave(mod, args, output):
            self.move(name, mod, HOST)
            return output

        self._hooks.append(module.register_forward_pre_hook(enter, with_kwargs=True))
        self._hooks.append(module.register_forward_hook(leave))

    def remove(self, pipe) -> None:
        """Undo what this placement changed: its hooks, its kept host tensors, the VAE's dtype (the
        VAE gets its loaded tensors back, bit for bit). Components stay where they are."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._restore_vae()
        self._host_copies = {}
        if getattr(pipe, "_storymaker_placement", None) is self:
            pipe._storymaker_placement = None


def apply_placement(pipe, device: torch.device | str, mode: str, **kwargs) -> Placement:
    """Place ``pipe`` for ``mode`` on ``device``; returns the :class:`Placement` (also ``pipe._storymaker_placement``)."""
    return Placement(device, mode, **kwargs).apply(pipe)
