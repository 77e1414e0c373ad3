"""The process-wide pipeline cache: one loaded pipeline per model configuration, its lock and its
prompt-embedding cache."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from typing import Any, Callable, Hashable

from ..config import Settings
from .gpu import DEVICE_LOCK

logger = logging.getLogger(__name__)


class _PipelineEntry:
    """A loaded pipeline, the lock that serialises calls on it (the GPU worker's device lock unless
    given), and its prompt-embedding cache."""

    def __init__(self, pipeline: Any, max_prompts: int = 256, lock: Any = None):
        self.pipeline = pipeline
        self.lock = lock if lock is not None else DEVICE_LOCK
        self.embeddings: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self.max_prompts = max_prompts
        self.encode_calls = 0
        self._prompt_encoder = None

    def embed(self, text: str, *, negative: bool = False) -> tuple[Any, Any]:
        """``(prompt_embeds, pooled_prompt_embeds)`` for ``text``, computed once (call under lock).

        An empty (or blank) ``negative`` prompt gives zeros of those shapes, as diffusers' SDXL
        pipeline does when no negative prompt is given (``force_zeros_for_empty_prompt``, on for
        SDXL): not the encoding of "".
        """
        import torch

        if negative and not text.strip() and getattr(getattr(self.pipeline, "config", None),
                                                      "force_zeros_for_empty_prompt", False):
            embeds, pooled = self.embed("")
            return torch.zeros_like(embeds), torch.zeros_like(pooled)
        hit = self.embeddings.get(text)
        if hit is not None:
            self.embeddings.move_to_end(text)
            return hit
        embeds, pooled = self.prompt_encoder().encode(text)  # long prompts, (word:1.3) weighting
        self.encode_calls += 1
        self.embeddings[text] = (embeds, pooled)
        while len(self.embeddings) > self.max_prompts:
            self.embeddings.popitem(last=False)
        return embeds, pooled

    def embed_pair(self, prompt: str, negative: str) -> tuple[Any, Any, Any, Any]:
        """``(prompt_embeds, negative_prompt_embeds, pooled, negative_pooled)``, the two embeddings
        padded to the same length (a long prompt makes more than 77 tokens; call under lock)."""
        embeds, pooled = self.embed(prompt)
        negative_embeds, negative_pooled = self.embed(negative, negative=True)
        embeds, negative_embeds = self.prompt_encoder().same_length(embeds, negative_embeds)
        return embeds, negative_embeds, pooled, negative_pooled

    def prompt_encoder(self):
        """The pipeline's :class:`~storymaker.services.prompts.PromptEncoder`, made on first use."""
        if self._prompt_encoder is None:
            from .prompts import PromptEncoder

            self._prompt_encoder = PromptEncoder(self.pipeline)
        return self._prompt_encoder


class PipelineCache:
    """Process-wide, thread-safe: one pipeline per model configuration, loaded once.

    Every pipeline's calls hold ``device_lock`` (the GPU worker's: one accelerator, one lock)."""

    def __init__(self, device_lock: Any = DEVICE_LOCK) -> None:
        self._lock = threading.Lock()
        self.device_lock = device_lock
        self._entries: dict[Hashable, _PipelineEntry] = {}
        self.loads: Counter = Counter()

    def entry(self, key: Hashable, loader: Callable[[], Any]) -> _PipelineEntry:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                started = time.perf_counter()
                pipeline = loader()
                found = _PipelineEntry(pipeline, lock=self.device_lock)
                self._entries[key] = found
                self.loads[key] += 1
                logger.info("loaded pipeline %s in %.1f s", key, time.perf_counter() - started)
            return found

    def get(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        return self.entry(key, loader).pipeline

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def clear(self) -> None:
        """Drop every pipeline (tests; freeing memory)."""
        with self._lock:
            self._entries.clear()
            self.loads.clear()


#: The process-wide pipeline cache.
PIPELINES = PipelineCache()


def pipeline_key(settings: Settings, backend: str) -> tuple:
    """The cache key of a model configuration (what changes the loaded weights or their placement)."""
    if backend == "tiny":
        return ("tiny",)
    return (
        backend,
        settings.base_model,
        settings.adapter_model,
        settings.adapter_filename,
        settings.image_encoder,
        settings.controlnet_pose,
        settings.extra_loras,
        settings.device,
        settings.dtype,
        settings.cpu_offload,
        settings.vae_slicing,
        settings.vae_tiling,
        settings.fuse_lora,
        settings.memory_mode,
        settings.fast_lora,
        settings.fast_lora_filename,
    )


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
