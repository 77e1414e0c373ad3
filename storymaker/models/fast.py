"""The Fast preset: 4 steps with SDXL-Lightning's 4-step LoRA, guidance 1 (no CFG batch).

The LoRA (``ByteDance/SDXL-Lightning``, ``sdxl_lightning_4step_lora.safetensors``) is loaded once,
unfused, into the pipeline's own UNet with diffusers' LoRA loading (PEFT) under the adapter name
:data:`FAST_ADAPTER`, and left inactive. A Fast call activates it and uses an Euler scheduler with
"trailing" timesteps (what the LoRA was distilled for); when the call ends both are switched back.
An inactive PEFT adapter adds nothing to a layer's output (the layer returns its base result), and
no weight is ever changed, so a Standard call after a Fast one gives the same result bit for bit,
in float16 as in float32 (``tests/test_fast_mode.py``). Other LoRAs (``STORYMAKER_EXTRA_LORAS``)
stay active at their weights in both modes.

``pipe.fast_lora_source`` says where the LoRA comes from: a path (file or folder), a state dict,
or a callable returning one of those (``from_settings`` resolves the configured weights lazily, so
a missing LoRA only fails a Fast render, with a message saying how to get it).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

from ..errors import WeightsNotFoundError

logger = logging.getLogger(__name__)

#: The PEFT adapter name of the Fast LoRA inside the UNet.
FAST_ADAPTER = "storymaker_fast"
FAST_STEPS = 4
FAST_GUIDANCE = 1.0


def fast_lora_loaded(pipe) -> bool:
    """Whether the Fast LoRA is in ``pipe``'s UNet."""
    peft_config = getattr(pipe.unet, "peft_config", None) or {}
    return FAST_ADAPTER in peft_config


def _other_loras(pipe) -> list[tuple[str, float]]:
    """The other LoRAs of the UNet that are meant to be active, with their weights."""
    return [(name, weight) for name, weight in getattr(pipe, "storymaker_extra_loras", [])
            if name in (getattr(pipe.unet, "peft_config", None) or {})]


def _activate(pipe, fast: bool) -> None:
    """Make exactly the other LoRAs (and the Fast one when ``fast``) active on the UNet."""
    loras = _other_loras(pipe) + ([(FAST_ADAPTER, 1.0)] if fast else [])
    if not loras:
        pipe.unet.disable_lora()
        return
    pipe.unet.enable_lora()
    pipe.unet.set_adapters([name for name, _ in loras], weights=[weight for _, weight in loras])


def load_fast_lora(pipe, source: Any) -> None:
    """Load the Fast LoRA from ``source`` (a .safetensors file, a folder holding the 4-step file,
    or a state dict) into ``pipe``'s UNet, inactive."""
    from .weights import FAST_LORA_FILENAME

    # PEFT freezes the base weights it wraps. On the CPU, float16 F.linear takes another kernel for a
    # weight without requires_grad (other rounding), so a pipeline built with trainable flags (the tiny
    # one) would render differently after loading: put every flag back as it was.
    flags = [(param, param.requires_grad) for param in pipe.unet.parameters()]
    try:
        _load(pipe, source, FAST_LORA_FILENAME)
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
    _activate(pipe, False)
    logger.info("loaded the Fast LoRA (inactive until a Fast render)")


def _load(pipe, source: Any, filename: str) -> None:
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / filename
        if not path.is_file():
            raise WeightsNotFoundError(
                f"The Fast preset's LoRA {path} is missing: run `python -m storymaker download`, or set "
                "STORYMAKER_FAST_LORA to the folder or file of sdxl_lightning_4step_lora.safetensors."
            )
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=FAST_ADAPTER)
    else:
        pipe.load_lora_weights(dict(source), adapter_name=FAST_ADAPTER)


def ensure_fast_lora(pipe) -> None:
    """Load the Fast LoRA from ``pipe.fast_lora_source`` unless it is there already."""
    if fast_lora_loaded(pipe):
        return
    source = getattr(pipe, "fast_lora_source", None)
    if callable(source):
        source = source()
    if source is None:
        raise WeightsNotFoundError(
            "The Fast preset needs SDXL-Lightning's 4-step LoRA (ByteDance/SDXL-Lightning, file "
            "sdxl_lightning_4step_lora.safetensors), and this pipeline has none: load it with "
            "StoryMakerPipeline.from_settings, or render with the Standard preset."
        )
    load_fast_lora(pipe, source)


def fast_scheduler(scheduler):
    """An Euler scheduler with "trailing" timesteps on ``scheduler``'s noise schedule (made once per
    pipeline and kept, so that the pipeline's own scheduler is never reconfigured)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(scheduler.config, timestep_spacing="trailing")


@contextlib.contextmanager
def fast_mode(pipe) -> Iterator[None]:
    """Within the block, ``pipe`` renders with the Fast LoRA active and the trailing Euler scheduler;
    afterwards both are exactly as before (call under the pipeline's lock: it is shared state)."""
    ensure_fast_lora(pipe)
    scheduler = pipe.scheduler
    fast = getattr(pipe, "_storymaker_fast_scheduler", None)
    if fast is None:
        fast = pipe._storymaker_fast_scheduler = fast_scheduler(scheduler)
    _activate(pipe, True)
    pipe.scheduler = fast
    try:
        yield
    finally:
        pipe.scheduler = scheduler
        _activate(pipe, False)
