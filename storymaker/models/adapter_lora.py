"""Fusing StoryMaker's LoRA into the UNet's attention weights, and unfusing it bit for bit.

:class:`StoryMakerLoRAFusion`, mixed into :class:`~storymaker.models.adapter.StoryMakerAdapter`:
``fuse_lora`` adds every processor's LoRA delta into to_q/to_k/to_v/to_out[0] once (at load),
keeping the original weights on the CPU when asked; ``unfuse_lora`` puts them back. Per-call
scales never touch the weights (the processors add the difference; ``attention.py``).
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from .attention import LORA_TARGETS, base_linear


class StoryMakerLoRAFusion:
    """LoRA fusion of :class:`~storymaker.models.adapter.StoryMakerAdapter` (uses its ``ip_adapter``
    processors, ``_installed_pairs``, ``fused_scale`` and ``_unfused_weights``)."""

    def _fused_linears(self, unet):
        """(linear, processor, target) for every attention projection the LoRA adapts."""
        for attn, processor in self._installed_pairs(unet):
            for target, _ in LORA_TARGETS:
                yield base_linear(attn, target), processor, target

    @torch.no_grad()
    def fuse_lora(self, unet, lora_scale: float, *, keep_original: bool = True) -> None:
        """Add ``lora_scale * up @ down`` (computed in float32, cast once) into to_q/to_k/to_v/to_out[0]
        of every attention layer, once (at load): the processors then skip their LoRA branch at that
        scale, and a call with another ``storymaker_lora_scale`` adds only the difference through the
        branch, so calls never touch the (shared) weights again.

        ``keep_original``: keep the weights as they were before fusing on the CPU (their own dtype;
        1.8 GiB for SDXL in float16) so that :meth:`unfuse_lora` restores them bit for bit. Without
        it, unfusing or re-fusing at another scale raises :class:`CheckpointError` (subtracting
        again would round the weights in float16/bfloat16). Fusing again at the same scale does
        nothing; at another scale it restores the kept weights exactly, then fuses at the new scale."""
        lora_scale = float(lora_scale)
        if self.fused_scale is not None:
            if self.fused_scale == lora_scale:
                return
            self.unfuse_lora(unet)
        pairs = list(self._fused_linears(unet))
        originals: list[torch.Tensor] | None = [] if keep_original else None
        for linear, processor, target in pairs:
            weight = linear.weight
            if originals is not None:
                originals.append(weight.detach().to("cpu", copy=True))
            delta = processor.lora(target).delta_weight().to(weight.device)
            weight.copy_((weight.float() + lora_scale * delta).to(weight.dtype))
        self._unfused_weights = originals
        for processor in self.ip_adapter:
            processor.fused_scale = lora_scale
        self.fused_scale = lora_scale

    @torch.no_grad()
    def unfuse_lora(self, unet) -> None:
        """Put back the weights :meth:`fuse_lora` kept, bit for bit (no arithmetic, so no rounding in
        float16/bfloat16); a no-op when not fused. Anything else written into those weights after
        fusing (e.g. another LoRA fused later) is replaced too: fuse StoryMaker's LoRA last."""
        if self.fused_scale is None:
            return
        originals = self._unfused_weights
        if originals is None:
            raise CheckpointError(
                "StoryMaker's LoRA was fused at load without keeping the original weights (to save memory), "
                "so it cannot be unfused exactly: reload the pipeline (STORYMAKER_FUSE_LORA=0 keeps it unfused)."
            )
        pairs = list(self._fused_linears(unet))
        if len(originals) != len(pairs):
            raise CheckpointError("The UNet changed since the LoRA was fused: reload the pipeline.")
        for (linear, _, _), original in zip(pairs, originals):
            linear.weight.copy_(original.to(device=linear.weight.device, dtype=linear.weight.dtype))
        self._unfused_weights = []
        for processor in self.ip_adapter:
            processor.fused_scale = 0.0
        self.fused_scale = None
