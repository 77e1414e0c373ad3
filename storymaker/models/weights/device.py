"""The device and dtype the models run in, from ``STORYMAKER_DEVICE`` / ``STORYMAKER_DTYPE``
("auto": CUDA, else MPS, else CPU; float16 on CUDA, else float32)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ...config import Settings


def resolve_device(settings: "Settings") -> "torch.device":
    """``settings.device``, with "auto" -> CUDA when available, else MPS, else CPU."""
    import torch

    name = (settings.device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"STORYMAKER_DEVICE={settings.device!r} is not a device: use auto, cpu, cuda, cuda:1 or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("STORYMAKER_DEVICE asks for CUDA but no CUDA GPU is available: use auto or cpu.")
    return device


_DTYPES = {"float16": "float16", "fp16": "float16", "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float32": "float32", "fp32": "float32", "float": "float32"}


def resolve_dtype_name(settings: "Settings", device: "torch.device | None" = None) -> str:
    """``settings.dtype`` as "float16"/"bfloat16"/"float32"; "auto" is float16 on CUDA, else float32."""
    name = (settings.dtype or "auto").strip().lower()
    if name == "auto":
        device = device if device is not None else resolve_device(settings)
        return "float16" if device.type == "cuda" else "float32"
    if name not in _DTYPES:
        raise ConfigError(f"STORYMAKER_DTYPE={settings.dtype!r} is not a dtype: use auto, float16, bfloat16 or float32.")
    return _DTYPES[name]


def resolve_dtype(settings: "Settings", device: "torch.device") -> "torch.dtype":
    import torch

    return getattr(torch, resolve_dtype_name(settings, device))
