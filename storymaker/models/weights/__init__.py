"""Where model weights come from: hub ids or local paths, presence checks, downloads, loading.

Every model the configuration needs is a :class:`ModelSpec`. A source is either an existing local
path (a diffusers/transformers folder, or a file) or a Hugging Face hub id ``owner/name`` (optionally
``owner/name/sub/folder``). Presence checks are local only (the hub cache or the folder), so
``doctor`` never touches the network; loading reads local files only, so a missing model fails at
once with a :class:`WeightsNotFoundError` that names it and says how to provide it.

The insightface and rembg models come from GitHub releases (their own loaders fetch them); here
they are listed with where to get them and where to put them.

The modules, each readable in one sitting:

- :mod:`.specs`     plain data: ``ModelSpec``, ``WeightStatus``, the kinds of sources, ``model_specs``
- :mod:`.presence`  local checks: ``status``, ``weights_status``, ``missing_error``, the hub cache
- :mod:`.hub`       downloads: ``download``, ``download_all``, ``ensure_present``, ``resolve``
- :mod:`.device`    ``resolve_device``, ``resolve_dtype`` (``STORYMAKER_DEVICE`` / ``STORYMAKER_DTYPE``)
- :mod:`.loading`   ``load_pipeline_components``, ``load_extra_loras``

Everything a caller needs is imported from here. A test that patches a function patches it in the
module that calls it (``storymaker.models.weights.hub.status`` for downloads, for instance).
"""

from __future__ import annotations

from .device import resolve_device, resolve_dtype, resolve_dtype_name
from .hub import choose_weight_files, download, download_all, ensure_present, resolve, resolve_fast_lora
from .loading import load_extra_loras, load_pipeline_components, parse_extra_loras
from .presence import hub_cache_dir, hub_offline, is_present, missing_error, missing_files, status, weights_status
from .specs import (
    DIFFUSERS_MODEL,
    DIFFUSERS_PIPELINE,
    FAST_LORA_FILENAME,
    HUB_FILES,
    INSIGHTFACE,
    INSIGHTFACE_URL,
    POSE_ANNOTATOR_FILES,
    REMBG,
    REMBG_URL,
    SDXL_COMPONENTS,
    TRANSFORMERS_MODEL,
    ModelSpec,
    Progress,
    WeightStatus,
    fast_lora_spec,
    model_specs,
    u2net_home,
)

__all__ = [
    "DIFFUSERS_MODEL",
    "DIFFUSERS_PIPELINE",
    "FAST_LORA_FILENAME",
    "HUB_FILES",
    "INSIGHTFACE",
    "INSIGHTFACE_URL",
    "POSE_ANNOTATOR_FILES",
    "REMBG",
    "REMBG_URL",
    "SDXL_COMPONENTS",
    "TRANSFORMERS_MODEL",
    "ModelSpec",
    "Progress",
    "WeightStatus",
    "choose_weight_files",
    "download",
    "download_all",
    "ensure_present",
    "fast_lora_spec",
    "hub_cache_dir",
    "hub_offline",
    "is_present",
    "load_extra_loras",
    "load_pipeline_components",
    "missing_error",
    "missing_files",
    "model_specs",
    "parse_extra_loras",
    "resolve",
    "resolve_device",
    "resolve_dtype",
    "resolve_dtype_name",
    "resolve_fast_lora",
    "status",
    "u2net_home",
    "weights_status",
]
