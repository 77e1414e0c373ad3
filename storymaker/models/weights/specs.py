"""The models StoryMaker needs, as plain data: :class:`ModelSpec` (one model: its setting, source,
kind, files, size, where to get it) and :class:`WeightStatus` (whether it is on this machine), the
kinds of model sources and the file-name patterns of their weights, and :func:`model_specs`, the
list the configuration names."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ...config import Settings

Progress = Callable[[str], None]

# Kinds of model sources.
DIFFUSERS_PIPELINE = "diffusers_pipeline"  # model_index.json + component folders (SDXL)
DIFFUSERS_MODEL = "diffusers_model"  # config.json + diffusion_pytorch_model*.safetensors (ControlNet)
TRANSFORMERS_MODEL = "transformers_model"  # config.json + model*.safetensors (CLIP vision)
HUB_FILES = "hub_files"  # named files of a hub repo or local folder (adapter, pose annotators)
INSIGHTFACE = "insightface"  # <root>/models/<name>/*.onnx, from GitHub releases
REMBG = "rembg"  # $U2NET_HOME/<name>.onnx, from GitHub releases

SDXL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
_MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
_WEIGHT_RE = re.compile(
    r"^(?:diffusion_pytorch_model|model|pytorch_model)(?:\.(?P<variant>fp16))?(?:-\d{5}-of-\d{5})?"
    r"\.(?P<ext>safetensors|bin)(?:\.index\.json)?$"
)
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?:/[\w./-]+)?$")

INSIGHTFACE_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"
REMBG_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/{name}.onnx"
POSE_ANNOTATOR_FILES = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")
#: SDXL-Lightning's 4-step LoRA, used by the Fast preset (storymaker/models/fast.py).
FAST_LORA_FILENAME = "sdxl_lightning_4step_lora.safetensors"


@dataclass(frozen=True)
class ModelSpec:
    """One model the configuration needs."""

    key: str  # the Settings field that names it ("base_model", "adapter_model", ...)
    name: str  # what a person calls it
    source: str  # hub id (``owner/name[/subfolder]``) or local path
    kind: str
    files: tuple[str, ...] = ()  # HUB_FILES: the files needed
    size_gb: float = 0.0  # approximate download size
    purpose: str = ""
    required: bool = True  # False: only some features need it
    url: str = ""  # GitHub-release models: where to get it
    target: str = ""  # GitHub-release models: where to put it

    @property
    def env_var(self) -> str:
        return "STORYMAKER_" + self.key.upper()

    @property
    def local_path(self) -> Path | None:
        """The source as an existing local path, or None when it is a hub id."""
        if self.kind in (INSIGHTFACE, REMBG):
            return Path(self.target)
        if not self.source.strip():
            return None
        path = Path(self.source).expanduser()
        return path if path.exists() else None

    @property
    def is_hub(self) -> bool:
        return self.kind not in (INSIGHTFACE, REMBG) and self.local_path is None

    @property
    def repo_id(self) -> str:
        return "/".join(self.source.split("/")[:2])

    @property
    def subfolder(self) -> str:
        return "/".join(self.source.split("/")[2:])

    def describe(self) -> str:
        size = f", ~{self.size_gb:g} GB" if self.size_gb else ""
        files = f", file {', '.join(self.files)}" if self.kind == HUB_FILES and self.files else ""
        return f"{self.name} ({self.source}{files}{size})"

    def how_to_provide(self) -> str:
        if self.kind == INSIGHTFACE:
            return f"download {self.url} and unzip it so that the .onnx files are in {self.target}/"
        if self.kind == REMBG:
            return f"download {self.url} to {self.target} (the folder is $U2NET_HOME, default ~/.u2net)"
        return (
            f"run `python -m storymaker download` on a machine with internet access, or set "
            f"{self.env_var}=/path/to/a/local/copy"
        )


@dataclass(frozen=True)
class WeightStatus:
    """Whether a model is on this machine (checked locally, never over the network)."""

    spec: ModelSpec
    present: bool
    path: Path | None = None
    missing: tuple[str, ...] = field(default_factory=tuple)
    reason: str = ""  # why it is missing when no single file explains it

    def what_is_missing(self) -> str:
        if self.reason:
            return self.reason
        return f"missing {', '.join(self.missing[:4])}" if self.missing else ""

    def line(self) -> str:
        if self.present:
            return f"present  {self.spec.describe()} -> {self.path}"
        what = f": {self.what_is_missing()}" if self.what_is_missing() else ""
        return f"MISSING  {self.spec.describe()}{what}\n         -> {self.spec.how_to_provide()}"


def u2net_home() -> Path:
    """Where rembg looks for its models (its own rule: $U2NET_HOME, else $XDG_DATA_HOME or ~ /.u2net)."""
    home = os.environ.get("U2NET_HOME") or os.path.join(os.environ.get("XDG_DATA_HOME", "~"), ".u2net")
    return Path(home).expanduser()


def model_specs(settings: "Settings", *, with_controlnet: bool = True, perception: bool = True,
                fast: bool = True) -> list[ModelSpec]:
    """Every model ``settings`` names: the render models, then (``perception``) the character and
    pose models that other parts load, then (``fast``) the Fast preset's LoRA."""
    specs = [
        ModelSpec("base_model", "SDXL base model", settings.base_model, DIFFUSERS_PIPELINE, size_gb=7.0,
                  purpose="renders panels"),
        ModelSpec("image_encoder", "CLIP image encoder", settings.image_encoder, TRANSFORMERS_MODEL, size_gb=3.9,
                  purpose="encodes character photos"),
        ModelSpec("adapter_model", "StoryMaker adapter", settings.adapter_model, HUB_FILES,
                  files=(settings.adapter_filename,), size_gb=3.3, purpose="keeps characters consistent"),
    ]
    if with_controlnet and settings.controlnet_pose:
        specs.append(ModelSpec("controlnet_pose", "OpenPose ControlNet for SDXL", settings.controlnet_pose,
                               DIFFUSERS_MODEL, size_gb=2.5, purpose="poses", required=False))
    if perception:
        face_dir = Path(settings.face_model).expanduser()
        if not face_dir.is_dir():
            face_dir = Path(settings.face_model_root).expanduser() / "models" / settings.face_model
        specs += [
            ModelSpec("face_model", "insightface face analysis", settings.face_model, INSIGHTFACE, size_gb=0.3,
                      purpose="finds faces and identity", url=INSIGHTFACE_URL.format(name=settings.face_model),
                      target=str(face_dir)),
            ModelSpec("segmentation_model", "rembg person segmentation", settings.segmentation_model, REMBG,
                      size_gb=0.2, purpose="cuts the character out of the photo",
                      url=REMBG_URL.format(name=settings.segmentation_model),
                      target=str(u2net_home() / f"{settings.segmentation_model}.onnx")),
            ModelSpec("pose_annotators", "OpenPose annotators", settings.pose_annotators, HUB_FILES,
                      files=POSE_ANNOTATOR_FILES, size_gb=0.5, purpose="reads a pose from a photo", required=False),
        ]
    if fast and settings.fast_lora:
        specs.append(fast_lora_spec(settings))
    return specs


def fast_lora_spec(settings: "Settings") -> ModelSpec:
    """SDXL-Lightning's 4-step LoRA (``STORYMAKER_FAST_LORA``: hub id, folder, or the file itself)."""
    return ModelSpec("fast_lora", "SDXL-Lightning 4-step LoRA (Fast preset)", settings.fast_lora, HUB_FILES,
                     files=(settings.fast_lora_filename or FAST_LORA_FILENAME,), size_gb=0.4,
                     purpose="the Fast preset (4 steps)", required=False)
