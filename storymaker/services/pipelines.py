"""The process-wide pipeline cache: one loaded pipeline per model configuration, its lock and its
prompt-embedding cache."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from typing import Any, Callable, Hashable

from ..config import Settings

logger = logging.getLogger(__name__)


class _PipelineEntry:
    """A loaded pipeline, the lock that serialises calls on it, and its prompt-embedding cache."""

    def __init__(self, pipeline: Any, max_prompts: int = 256):
        self.pipeline = pipeline
        self.lock = threading.RLock()
        self.embeddings: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self.max_prompts = max_prompts
        self.encode_calls = 0

    def embed(self, text: str) -> tuple[Any, Any]:
        """``(prompt_embeds, pooled_prompt_embeds)`` for ``text``, computed once (call under lock)."""
        hit = self.embeddings.get(text)
        if hit is not None:
            self.embeddings.move_to_end(text)
            return hit
        import torch

        pipe = self.pipeline
        with torch.no_grad():
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt=text,
                device=getattr(pipe, "_execution_device", None),
                num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
        self.encode_calls += 1
        self.embeddings[text] = (embeds, pooled)
        while len(self.embeddings) > self.max_prompts:
            self.embeddings.popitem(last=False)
        return embeds, pooled


class PipelineCache:
    """Process-wide, thread-safe: one pipeline per model configuration, loaded once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _PipelineEntry] = {}
        self.loads: Counter = Counter()

    def entry(self, key: Hashable, loader: Callable[[], Any]) -> _PipelineEntry:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                started = time.perf_counter()
                pipeline = loader()
                found = _PipelineEntry(pipeline)
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
