"""StoryMaker adapter checkpoint files: read, check, describe, convert (no adapter module needed).

The published checkpoint (``mask.bin``) is a torch pickle ``{"image_proj_model": {...},
"ip_adapter": {"<index>.<param>": ...}}`` where ``<index>`` is the processor's position in
``unet.attn_processors``. This module reads one once without ever running pickle code
(``.safetensors`` too), normalises it, checks it key for key and shape for shape against a layout,
describes the problems in one message, summarises and converts it; and holds the SDXL UNet config
and CLIP width the published checkpoint was made for. The adapter module that loads it, and the
layouts it must match (``expected_layout``, ``sdxl_layout``), are in ``adapter.py``.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..fsutil import atomic_output_path

#: The two top-level entries of a StoryMaker checkpoint.
SECTIONS = ("image_proj_model", "ip_adapter")

#: How many problems an error message lists before summarising the rest.
MAX_LISTED_PROBLEMS = 20

#: The UNet config of SDXL base 1.0 (``stabilityai/stable-diffusion-xl-base-1.0``, ``unet/config.json``):
#: the UNet the published checkpoint was trained for.
SDXL_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

#: Hidden size of the image encoder the published checkpoint uses (CLIP ViT-H/14).
SDXL_CLIP_DIM = 1280


def _not_a_checkpoint(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a StoryMaker adapter checkpoint ({why}). Use mask.bin from the RED-AIGC/StoryMaker "
        "model repository (or a .safetensors made from it with `python -m storymaker adapter convert`)."
    )


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return (lines[0] if lines else "no details")[:200]


def _is_safetensors(path: Path) -> bool:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


def normalize_checkpoint(state: Mapping[str, Any], label: str) -> dict[str, dict[str, torch.Tensor]]:
    """``{"image_proj_model": {...}, "ip_adapter": {...}}`` from a nested or flattened
    (``"image_proj_model.<k>"``) state dict; :class:`CheckpointError` for anything else."""
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{label} holds a {type(state).__name__}, not a StoryMaker checkpoint dict with "
            "'image_proj_model' and 'ip_adapter'."
        )
    keys = list(state)
    if keys and all(isinstance(k, str) and "." in k and k.split(".", 1)[0] in SECTIONS for k in keys):
        nested: dict[str, dict[str, Any]] = {}
        for key, value in state.items():
            section, rest = key.split(".", 1)
            nested.setdefault(section, {})[rest] = value
        state = nested
    elif not any(k in SECTIONS for k in keys):
        shown = ", ".join(repr(k) for k in keys[:5]) + (", ..." if len(keys) > 5 else "")
        raise CheckpointError(
            f"{label} has top-level keys [{shown}] but a StoryMaker checkpoint has 'image_proj_model' and "
            "'ip_adapter': use mask.bin from RED-AIGC/StoryMaker."
        )
    result: dict[str, dict[str, torch.Tensor]] = {}
    for section, value in state.items():
        if section in SECTIONS:
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in value.items()
            ):
                raise CheckpointError(
                    f"{label}: '{section}' must map parameter names to tensors; it does not. "
                    "Use mask.bin from RED-AIGC/StoryMaker."
                )
            result[section] = dict(value)
        else:
            result[section] = value  # reported as unexpected by check_checkpoint
    return result


def load_checkpoint_state(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """Read a checkpoint file once: ``.safetensors`` (detected by content) or a torch pickle
    (``torch.load(weights_only=True)``, memory-mapped when it is a zip archive). Never runs code
    from the file: one that needs code, garbage, or a wrong top level raises :class:`CheckpointError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"No adapter checkpoint at {path}: download mask.bin from the RED-AIGC/StoryMaker model "
            "repository and give its path (STORYMAKER_ADAPTER_MODEL / --adapter)."
        )
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            flat = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise _not_a_checkpoint(path, f"unreadable safetensors: {err}") from None
        return normalize_checkpoint(flat, str(path))
    is_zip = zipfile.is_zipfile(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Unsupported global" in text or "Unsupported operand" in text or "GLOBAL" in text:
            why = "it needs code to unpickle, which is never run; only plain tensors are accepted"
        else:
            why = "neither a torch weights file nor safetensors; torch says: " + _first_line(text)
        raise _not_a_checkpoint(path, why) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError,
            AttributeError, zipfile.BadZipFile, struct.error) as err:
        why = f"neither a torch weights file nor safetensors; torch says: {type(err).__name__}: {_first_line(str(err))}"
        raise _not_a_checkpoint(path, why) from None
    return normalize_checkpoint(state, str(path))


def _shape(value: Any) -> list[int]:
    return list(value.shape) if hasattr(value, "shape") else list(value)


def check_checkpoint(state: Mapping[str, Any], layout: Mapping[str, Any]) -> list[str]:
    """Every problem of ``state`` against ``layout`` (``{"image_proj_model": {key: shape}, "ip_adapter":
    {...}}``, other entries ignored): missing sections/keys, unexpected sections/keys, wrong shapes.
    One line each, prefixed "missing", "unexpected" or "wrong shape"."""
    problems: list[str] = []
    for section in state:
        if section not in SECTIONS:
            problems.append(f"unexpected top-level entry {section!r}")
    for section in SECTIONS:
        expected = layout[section]
        if section not in state:
            problems.append(f"missing top-level entry {section!r} ({len(expected)} tensors)")
            continue
        given = state[section]
        for key, shape in expected.items():
            if key not in given:
                problems.append(f"missing key {section}.{key} (expected shape {list(shape)})")
            elif _shape(given[key]) != list(shape):
                problems.append(
                    f"wrong shape for {section}.{key}: checkpoint {_shape(given[key])}, expected {list(shape)}"
                )
        for key in given:
            if key not in expected:
                problems.append(f"unexpected key {section}.{key} (shape {_shape(given[key])})")
    return problems


def describe_problems(label: str, problems: Sequence[str], limit: int | None = MAX_LISTED_PROBLEMS) -> str:
    """One message for all problems: counts by kind, then the listing (capped at ``limit``)."""
    counts = {
        kind: sum(1 for p in problems if p.startswith(kind))
        for kind in ("missing", "unexpected", "wrong shape")
    }
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    shown = list(problems if limit is None else problems[:limit])
    lines = [
        f"{label} does not match the StoryMaker adapter for this UNet and image encoder ({summary}):",
        *(f"  - {p}" for p in shown),
    ]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    lines.append(
        "Use mask.bin from RED-AIGC/StoryMaker with an SDXL base model and CLIP ViT-H/14 "
        "(laion/CLIP-ViT-H-14-laion2B-s32B-b79K)."
    )
    return "\n".join(lines)


def checkpoint_summary(state: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, Any]:
    """Counts for a (normalised) checkpoint: keys, parameters, processors, dtypes."""
    sections = {s: state.get(s, {}) for s in SECTIONS}
    tensors = [t for section in sections.values() for t in section.values()]
    indices = {k.split(".", 1)[0] for k in sections["ip_adapter"]}
    return {
        "keys": len(tensors),
        "parameters": sum(t.numel() for t in tensors),
        "processors": len(indices),
        "dtypes": sorted({str(t.dtype).replace("torch.", "") for t in tensors}),
    }


def convert_checkpoint(src: str | os.PathLike, dst_safetensors: str | os.PathLike) -> None:
    """Write ``src`` (any readable checkpoint) as safetensors with flat keys ``"image_proj_model.<k>"`` /
    ``"ip_adapter.<k>"``, atomically (temporary sibling, fsync, rename)."""
    from safetensors.torch import save_file

    state = load_checkpoint_state(src)
    unknown = [k for k in state if k not in SECTIONS]
    if unknown:
        raise CheckpointError(f"{src} has unexpected top-level entries {unknown}: not converted.")
    flat = {
        f"{section}.{key}": tensor.contiguous()
        for section in SECTIONS for key, tensor in state.get(section, {}).items()
    }
    dst = Path(dst_safetensors).expanduser()
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"{dst}: the converted file must end in .safetensors.")
    with atomic_output_path(dst) as tmp:
        save_file(flat, str(tmp), metadata={"format": "pt", "storymaker": "adapter"})
