"""Loading the models from local files: :func:`load_pipeline_components` (every component of
:class:`~storymaker.models.pipeline.StoryMakerPipeline`, its adapter included, in the configured
device's dtype) and :func:`load_extra_loras` (``STORYMAKER_EXTRA_LORAS``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, WeightsNotFoundError
from .device import resolve_device, resolve_dtype
from .hub import _adapter_file, _first_line, _network_errors, ensure_present
from .presence import _weight_files
from .specs import Progress, model_specs

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ...config import Settings


def _variant(folder: Path, dtype: "torch.dtype") -> str | None:
    """"fp16" when ``folder`` holds fp16 variant weights and they suit ``dtype`` (or are all there is)."""
    import torch

    files = _weight_files(folder)
    has_fp16 = any(".fp16." in f for f in files)
    has_full = any(".fp16." not in f for f in files)
    if has_fp16 and (dtype == torch.float16 or not has_full):
        return "fp16"
    return None


def _load_errors() -> tuple[type[BaseException], ...]:
    return (OSError, ValueError, KeyError, RuntimeError, EnvironmentError)


def load_pipeline_components(
    settings: "Settings",
    *,
    with_controlnet: bool | None = None,
    download: bool | None = None,
    progress: Progress | None = None,
    image_encoder: Any | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load every component of :class:`StoryMakerPipeline` from local files (downloading missing
    ones when allowed); return ``(constructor kwargs, runtime options)``. ``image_encoder``: a CLIP
    vision model already in memory (the one registration loaded), used instead of a second copy."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

    from ..adapter import StoryMakerAdapter
    from ..adapter_checkpoint import load_checkpoint_state
    from ..placement import resolve_memory_mode

    say = progress or (lambda message: None)
    if with_controlnet is None:
        with_controlnet = bool(settings.controlnet_pose)
    elif with_controlnet and not settings.controlnet_pose:
        raise ConfigError("A pose ControlNet was asked for but STORYMAKER_CONTROLNET_POSE is empty: name one "
                          "(e.g. xinsir/controlnet-openpose-sdxl-1.0) or load without it.")
    device = resolve_device(settings)
    dtype = resolve_dtype(settings, device)
    specs = model_specs(settings, with_controlnet=with_controlnet, perception=False, fast=False)
    paths = ensure_present(specs, download_missing=download, prefer_fp16=dtype == torch.float16, progress=say)

    def load(label: str, fn, *args, **kwargs):
        say(f"loading {label}")
        try:
            return fn(*args, **kwargs)
        except _load_errors() as err:
            raise WeightsNotFoundError(
                f"Could not load the {label} from {args[0]}: {type(err).__name__}: {_first_line(err)}. "
                "The files may be incomplete or of another model: run `python -m storymaker download` "
                "again, or check the setting that names it."
            ) from None

    base = paths["base_model"]
    common = {"local_files_only": True}
    models = {}
    for name, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL)):
        models[name] = load(f"SDXL {name}", cls.from_pretrained, base, subfolder=name, dtype=dtype,
                            variant=_variant(base / name, dtype), **common)
    for name, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
        models[name] = load(f"SDXL {name}", cls.from_pretrained, base, subfolder=name, dtype=dtype,
                            variant=_variant(base / name, dtype), **common)
    for name in ("tokenizer", "tokenizer_2"):
        models[name] = load(f"SDXL {name}", CLIPTokenizer.from_pretrained, base, subfolder=name, **common)
    # The authors' demo renders with UniPC on the base model's noise schedule.
    models["scheduler"] = load("scheduler", UniPCMultistepScheduler.from_pretrained, base, subfolder="scheduler", **common)
    encoder_path = paths["image_encoder"]
    if image_encoder is not None:
        models["image_encoder"] = image_encoder.to(dtype=dtype)
    else:
        models["image_encoder"] = load("CLIP image encoder", CLIPVisionModelWithProjection.from_pretrained,
                                       encoder_path, dtype=dtype, variant=_variant(encoder_path, dtype), **common)
    controlnet = None
    if with_controlnet:
        cn_path = paths["controlnet_pose"]
        controlnet = load("pose ControlNet", ControlNetModel.from_pretrained, cn_path, dtype=dtype,
                          variant=_variant(cn_path, dtype), **common)

    adapter_spec = next(s for s in specs if s.key == "adapter_model")
    checkpoint = _adapter_file(adapter_spec, paths["adapter_model"])
    say(f"loading StoryMaker adapter {checkpoint}")
    state = load_checkpoint_state(checkpoint)
    rank = _lora_rank(state)
    with torch.device("meta"):
        adapter = StoryMakerAdapter.for_unet(
            models["unet"], clip_dim=int(models["image_encoder"].config.hidden_size), rank=rank
        )
    adapter.load_checkpoint(state, device="cpu", dtype=dtype)
    for module in (*models.values(), controlnet, adapter):
        if isinstance(module, torch.nn.Module):
            module.eval().requires_grad_(False)

    components = {**models, "adapter": adapter, "controlnet": controlnet}
    options = {
        "device": device,
        "cpu_offload": bool(settings.cpu_offload),
        "vae_slicing": bool(settings.vae_slicing),
        "vae_tiling": bool(settings.vae_tiling),
        "fuse_lora": bool(settings.fuse_lora),
        "lora_scale": float(settings.lora_scale),
        "memory_mode": resolve_memory_mode(settings, device),
    }
    return components, options


def _lora_rank(state: dict[str, Any]) -> int:
    """The LoRA rank of a StoryMaker checkpoint (128 for the published one)."""
    for key, value in state.get("ip_adapter", {}).items():
        if key.endswith("to_q_lora.down.weight"):
            return int(value.shape[0])
    return 128


def parse_extra_loras(text: str) -> list[tuple[str, float]]:
    """``"path_or_id[:weight], ..."`` -> [(source, weight)]; weight defaults to 1.0."""
    result = []
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        source, weight = item, 1.0
        head, sep, tail = item.rpartition(":")
        if sep and head:
            try:
                weight = float(tail)
                source = head
            except ValueError:
                pass  # a ':' inside a path (C:\...), not a weight
        result.append((source.strip(), weight))
    return result


def load_extra_loras(pipe, settings: "Settings") -> list[str]:
    """Load ``settings.extra_loras`` with diffusers' ``load_lora_weights`` (peft) and activate them
    at their weights; return the adapter names."""
    loras = parse_extra_loras(settings.extra_loras)
    names, weights = [], []
    for index, (source, weight) in enumerate(loras):
        name = f"extra_{index}"
        path = Path(source).expanduser()
        try:
            if path.is_file():
                pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
            else:
                pipe.load_lora_weights(source, adapter_name=name)
        except _network_errors() as err:
            raise WeightsNotFoundError(
                f"Could not load the LoRA {source!r} from STORYMAKER_EXTRA_LORAS: {_first_line(err)}. Give a local "
                ".safetensors file or folder, or a hub id that is in the cache (run it once online)."
            ) from None
        names.append(name)
        weights.append(weight)
    if names:
        pipe.set_adapters(names, adapter_weights=weights)
    # What the Fast preset re-activates after its own LoRA (storymaker/models/fast.py).
    pipe.storymaker_extra_loras = list(zip(names, weights))
    return names
