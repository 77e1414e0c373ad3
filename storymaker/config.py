"""One Settings object for the whole application.

Every field can be set from the environment with the prefix ``STORYMAKER_`` and the field name in
upper case (``STORYMAKER_BASE_MODEL=/models/sdxl``). Model locations are hub ids or local folders /
files. Nothing here touches the network or imports torch.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from .errors import ConfigError

ENV_PREFIX = "STORYMAKER_"

BACKENDS = ("auto", "storymaker", "draft", "tiny")
ZERO_GPU_MODES = ("auto", "on", "off")


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "storymaker"


#: Where the pipeline's components live on a GPU (storymaker/models/placement.py, docs/gpu.md).
MEMORY_MODES = ("auto", "resident", "balanced", "offload")
#: Render quality presets: "standard" (the settings' steps and guidance) or "fast" (4 steps, SDXL-Lightning).
QUALITIES = ("standard", "fast")


@dataclass(frozen=True)
class Settings:
    # Where projects, session folders and caches live.
    data_dir: Path = field(default_factory=_default_data_dir)

    # Models: a hub id or a local path each.
    base_model: str = "stabilityai/stable-diffusion-xl-base-1.0"
    adapter_model: str = "RED-AIGC/StoryMaker"
    adapter_filename: str = "mask.bin"
    image_encoder: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    controlnet_pose: str = "xinsir/controlnet-openpose-sdxl-1.0"
    face_model: str = "buffalo_l"
    face_model_root: Path = field(default_factory=lambda: Path.home() / ".insightface")
    segmentation_model: str = "u2net_human_seg"
    pose_annotators: str = "lllyasviel/Annotators"
    # Optional extra SDXL LoRAs, "path_or_id[:weight]" separated by commas.
    extra_loras: str = ""

    # Compute.
    backend: str = "auto"
    device: str = "auto"  # "auto", "cuda", "cuda:1", "cpu", "mps"
    dtype: str = "auto"  # "auto" (fp16 on CUDA, fp32 elsewhere), "float16", "bfloat16", "float32"
    cpu_offload: bool = False
    vae_slicing: bool = True
    vae_tiling: bool = False
    fuse_lora: bool = True
    # ZeroGPU (Hugging Face Spaces): "auto" (on when SPACES_ZERO_GPU is set), "on" or "off". On: the
    # pipeline and encoders load at start-up and each GPU call asks spaces.GPU for a duration
    # computed from the work (panels x steps), at most gpu_duration_max seconds.
    zero_gpu: str = "auto"
    gpu_duration_max: int = 300
    # Estimated seconds per denoising step of a 1-megapixel panel on the Space's GPU.
    gpu_step_seconds: float = 0.3

    # Render defaults (the authors' demo values).
    width: int = 960
    height: int = 1280
    steps: int = 25
    guidance_scale: float = 7.5
    ip_adapter_scale: float = 0.8
    lora_scale: float = 0.8
    controlnet_conditioning_scale: float = 0.7
    negative_prompt: str = "bad quality, NSFW, low quality, ugly, disfigured, deformed"

    # Largest panel side in pixels that a render accepts (script, Render tab and CLI alike).
    max_panel_side: int = 2048

    # Consistency scores (storymaker.services.scores). best_of: seeds rendered per panel, the
    # best-scoring one selected; off_model_threshold: face cosine similarity below which a character
    # is flagged off-model (0.28: a published same-person threshold for ArcFace, see the README).
    score_renders: bool = True
    best_of: int = 1
    off_model_threshold: float = 0.28

    # App limits.
    max_upload_mb: int = 20
    max_project_mb: int = 2048  # largest project .zip (uncompressed) that import accepts
    session_max_age_hours: float = 24.0

    # GPU memory and the Fast preset (docs/gpu.md).
    # memory_mode: "resident" (everything on the GPU), "balanced" (UNet, adapter, ControlNet and VAE
    # resident; text and image encoders on the GPU only while they run), "offload" (every part only
    # while it runs, the UNet and ControlNet block by block), "auto" (offload when CPU_OFFLOAD=1,
    # resident on the CPU and on ZeroGPU, else balanced).
    memory_mode: str = "auto"
    quality: str = "standard"  # "standard" or "fast" (the default preset of the CLI and the app)
    fast_lora: str = "ByteDance/SDXL-Lightning"  # hub id or local folder/file of the 4-step LoRA
    fast_lora_filename: str = "sdxl_lightning_4step_lora.safetensors"
    fast_steps: int = 4  # the step count the Fast LoRA was distilled for

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from ``STORYMAKER_*`` variables, then apply explicit ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in environ:
                values[f.name] = _parse(f, environ[key], key)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __post_init__(self) -> None:
        # Normalise types so that Settings(data_dir="x") works like Settings.from_env.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and _field_type(f) is not str:
                object.__setattr__(self, f.name, _parse(f, value, f.name))
        if self.memory_mode not in MEMORY_MODES:
            raise ConfigError(
                f"Unknown memory mode {self.memory_mode!r}: use one of {', '.join(MEMORY_MODES)} "
                f"(set {ENV_PREFIX}MEMORY_MODE)."
            )
        if self.quality not in QUALITIES:
            raise ConfigError(
                f"Unknown quality {self.quality!r}: use one of {', '.join(QUALITIES)} "
                f"(set {ENV_PREFIX}QUALITY or --quality)."
            )
        if self.fast_steps < 1:
            raise ConfigError(f"{ENV_PREFIX}FAST_STEPS={self.fast_steps}: use the LoRA's step count (4).")
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"Unknown backend {self.backend!r}: use one of {', '.join(BACKENDS)} "
                f"(set {ENV_PREFIX}BACKEND or --backend)."
            )
        if self.best_of < 1 or self.best_of > 16:
            raise ConfigError(f"best_of={self.best_of} is not usable: render 1 to 16 seeds per panel.")
        if self.width % 8 or self.height % 8 or self.width <= 0 or self.height <= 0:
            raise ConfigError(
                f"Default size {self.width}x{self.height} is not usable: width and height must be "
                "positive multiples of 8."
            )

        zero = str(self.zero_gpu).strip().lower()
        zero = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off", "": "auto"}.get(zero, zero)
        if zero not in ZERO_GPU_MODES:
            raise ConfigError(
                f"{ENV_PREFIX}ZERO_GPU={self.zero_gpu!r} is not understood: use auto (on when SPACES_ZERO_GPU "
                "is set), on or off."
            )
        object.__setattr__(self, "zero_gpu", zero)
        if self.gpu_duration_max < 10 or self.gpu_step_seconds <= 0:
            raise ConfigError(
                f"{ENV_PREFIX}GPU_DURATION_MAX must be at least 10 seconds and {ENV_PREFIX}GPU_STEP_SECONDS "
                "above 0."
            )
        if self.max_panel_side < 64 or self.max_panel_side % 8:
            raise ConfigError(f"{ENV_PREFIX}MAX_PANEL_SIDE={self.max_panel_side}: use a multiple of 8, at least 64.")
        check_panel_size(self.width, self.height, self, what="Default size")

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def projects_dir(self) -> Path:
        return Path(self.data_dir) / "projects"

    @property
    def sessions_dir(self) -> Path:
        return Path(self.data_dir) / "sessions"


def check_panel_size(width: int, height: int, settings: "Settings", *, what: str = "Panel size") -> None:
    """Refuse a panel size above ``settings.max_panel_side`` before any work, saying what to do
    (:class:`InvalidInputError`; :class:`ConfigError` for the settings' own default size)."""
    from .errors import InvalidInputError

    limit = settings.max_panel_side
    if width > limit or height > limit:
        error = ConfigError if what == "Default size" else InvalidInputError
        raise error(
            f"{what} {width}x{height} is above the largest panel side this app renders ({limit} pixels): "
            f"use a smaller size (e.g. 960x1280), or raise {ENV_PREFIX}MAX_PANEL_SIDE if the GPU has the memory."
        )


def _field_type(f: dataclasses.Field) -> type:
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"Path": Path, "bool": bool, "int": int, "float": float}.get(annotation, str)


def _parse(f: dataclasses.Field, raw: str, key: str):
    kind = _field_type(f)
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind is Path:
            return Path(text).expanduser()
        return kind(text)
    except ValueError:
        raise ConfigError(
            f"{key}={raw!r} is not a valid {kind.__name__}; fix or unset it."
        ) from None
