"""Where model weights come from: hub ids or local paths, presence checks, downloads, loading.

Every model the configuration needs is a :class:`ModelSpec`. A source is either an existing local
path (a diffusers/transformers folder, or a file) or a Hugging Face hub id ``owner/name`` (optionally
``owner/name/sub/folder``). Presence checks are local only (the hub cache or the folder), so
``doctor`` never touches the network; loading reads local files only, so a missing model fails at
once with a :class:`WeightsNotFoundError` that names it and says how to provide it.

The insightface and rembg models come from GitHub releases (their own loaders fetch them); here
they are listed with where to get them and where to put them.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import ConfigError, WeightsNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..config import Settings

logger = logging.getLogger(__name__)

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


# ------------------------------------------------------------------------------------ specs
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


def resolve_fast_lora(settings: "Settings", *, download: bool | None = None, progress: Progress | None = None) -> Path:
    """The local file of the Fast LoRA (downloaded first when missing and allowed); a
    :class:`WeightsNotFoundError` naming it and how to get it otherwise."""
    spec = fast_lora_spec(settings)
    if spec.local_path is not None and spec.local_path.is_file():
        return spec.local_path
    path = ensure_present([spec], download_missing=download, progress=progress)[spec.key]
    return _adapter_file(spec, path)


# ------------------------------------------------------------------------------------ local checks
def hub_cache_dir() -> Path:
    """The hub cache, read from the environment at call time (HF_HUB_CACHE, HF_HOME/hub, default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface" / "hub"


def hub_offline() -> bool:
    """Whether the hub is switched off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _check_source(spec: ModelSpec) -> None:
    if spec.kind in (INSIGHTFACE, REMBG) or spec.local_path is not None:
        return
    if not spec.source.strip():
        raise ConfigError(f"{spec.env_var} is empty: give a hub id or a local path for the {spec.name}.")
    if not _HUB_ID_RE.match(spec.source) or spec.source.startswith((".", "/", "~")):
        raise ConfigError(
            f"{spec.env_var}={spec.source!r} is neither an existing local path nor a hub id (owner/name): "
            "fix the path or the id."
        )


def _cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of ``repo_id`` at ``main`` (local only), or None."""
    repo_dir = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snapshot = repo_dir / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    snapshots = sorted((repo_dir / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime) if repo_dir.is_dir() else []
    return snapshots[-1] if snapshots else None


def _weight_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*") if _WEIGHT_RE.match(p.name) and not p.name.endswith(".json"))


def _missing_model_files(folder: Path, label: str = "") -> list[str]:
    prefix = f"{label}/" if label else ""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append(prefix + "config.json")
    if not _weight_files(folder):
        missing.append(prefix + "weights (*.safetensors)")
    return missing


def missing_files(spec: ModelSpec, folder: Path) -> list[str]:
    """What ``folder`` (a local copy of ``spec``) lacks; empty when complete."""
    if spec.kind == DIFFUSERS_PIPELINE:
        if not (folder / "model_index.json").is_file():
            return ["model_index.json"]
        missing = []
        for name in SDXL_COMPONENTS:
            sub = folder / name
            if name in _MODEL_COMPONENTS:
                missing += _missing_model_files(sub, name)
            elif name == "scheduler":
                if not (sub / "scheduler_config.json").is_file():
                    missing.append("scheduler/scheduler_config.json")
            elif not any(sub.glob("*.json")) and not any(sub.glob("*.txt")):
                missing.append(f"{name}/")
        return missing
    if spec.kind in (DIFFUSERS_MODEL, TRANSFORMERS_MODEL):
        return _missing_model_files(folder)
    if spec.kind == HUB_FILES:
        return [name for name in spec.files if not (folder / name).is_file()]
    if spec.kind == INSIGHTFACE:
        return [] if any(folder.glob("*.onnx")) else [f"{folder}/*.onnx"]
    if spec.kind == REMBG:
        return [] if folder.is_file() else [str(folder)]
    raise ValueError(f"unknown model kind {spec.kind}")


def status(spec: ModelSpec) -> WeightStatus:
    """Where ``spec`` is on this machine, or what is missing (local checks only)."""
    _check_source(spec)
    if spec.kind in (INSIGHTFACE, REMBG):
        path = Path(spec.target)
    elif spec.local_path is not None:
        path = spec.local_path
        if spec.kind == HUB_FILES and path.is_file():  # a file given directly (adapter .bin/.safetensors)
            return WeightStatus(spec, True, path)
    else:
        snapshot = _cached_snapshot(spec.repo_id)
        if snapshot is None:
            return WeightStatus(spec, False, None, (), f"not downloaded (nothing in the hub cache {hub_cache_dir()})")
        path = snapshot / spec.subfolder if spec.subfolder else snapshot
    missing = missing_files(spec, path)
    return WeightStatus(spec, not missing, path if not missing else None, tuple(missing))


def is_present(spec: ModelSpec) -> bool:
    """Whether every file ``spec`` needs is on this machine (no network)."""
    return status(spec).present


def weights_status(settings: "Settings", *, with_controlnet: bool = True, perception: bool = True,
                   fast: bool = False) -> list[WeightStatus]:
    """Status of every model the configuration names (``fast``: the Fast preset's LoRA too)."""
    return [status(spec) for spec in model_specs(settings, with_controlnet=with_controlnet, perception=perception,
                                                 fast=fast)]


def missing_error(statuses: Iterable[WeightStatus], *, reason: str = "") -> WeightsNotFoundError:
    """One error naming every missing model, its id, what is missing and how to provide it."""
    lines = ["StoryMaker needs model weights that are not on this machine" + (f" ({reason})" if reason else "") + ":"]
    for st in statuses:
        what = f": {st.what_is_missing()}" if st.what_is_missing() else ""
        lines.append(f"  - {st.spec.describe()}{what}")
        lines.append(f"    -> {st.spec.how_to_provide()}")
    lines.append(
        "Run `python -m storymaker download` (needs access to huggingface.co) or point each setting at a "
        "local copy, e.g. STORYMAKER_BASE_MODEL=/models/sdxl. `python -m storymaker doctor` lists what is present."
    )
    return WeightsNotFoundError("\n".join(lines))


# ------------------------------------------------------------------------------------ download
def _network_errors() -> tuple[type[BaseException], ...]:
    """What the hub client raises for network trouble (its HTTP library is httpx2 or httpx)."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    errors: list[type[BaseException]] = [LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError, ValueError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _probe_hub(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached (DNS or TCP to the endpoint), or None when it can or a proxy
    is configured. Avoids the hub client's ~25 s of retries when there is no network at all."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"cannot reach {host}:{port} ({err})"


def choose_weight_files(repo_files: Iterable[str], folder: str = "", *, prefer_fp16: bool) -> list[str]:
    """The weight files of one model folder to download: one variant (fp16 or full), safetensors
    before .bin, every shard and its index."""
    prefix = f"{folder}/" if folder else ""
    groups: dict[tuple[str | None, str], list[str]] = {}
    for path in repo_files:
        if not path.startswith(prefix) or "/" in path[len(prefix):]:
            continue
        match = _WEIGHT_RE.match(path[len(prefix):])
        if match:
            groups.setdefault((match["variant"], match["ext"]), []).append(path)
    order = [("fp16", "safetensors"), (None, "safetensors"), ("fp16", "bin"), (None, "bin")]
    if not prefer_fp16:
        order = [(None, "safetensors"), ("fp16", "safetensors"), (None, "bin"), ("fp16", "bin")]
    for key in order:
        if key in groups:
            return sorted(groups[key])
    return []


def _download_patterns(spec: ModelSpec, repo_files: list[str], prefer_fp16: bool) -> list[str]:
    base = spec.subfolder
    join = (lambda p: f"{base}/{p}") if base else (lambda p: p)
    if spec.kind == DIFFUSERS_PIPELINE:
        patterns = [join("model_index.json")]
        for name in SDXL_COMPONENTS:
            patterns += [join(f"{name}/*.json"), join(f"{name}/*.txt")]
            if name in _MODEL_COMPONENTS:
                patterns += choose_weight_files(repo_files, join(name), prefer_fp16=prefer_fp16)
        return patterns
    if spec.kind in (DIFFUSERS_MODEL, TRANSFORMERS_MODEL):
        configs = [join(p) for p in ("config.json", "preprocessor_config.json")]
        return configs + choose_weight_files(repo_files, base, prefer_fp16=prefer_fp16)
    return [join(name) for name in spec.files]


def download(spec: ModelSpec, *, prefer_fp16: bool = True, progress: Progress | None = None) -> Path:
    """Download what ``spec`` needs into the hub cache (tqdm progress on stderr); return its folder.

    Raises :class:`WeightsNotFoundError` when the hub cannot be reached or the files do not exist."""
    from huggingface_hub import HfApi, snapshot_download

    current = status(spec)
    if current.present:
        return current.path  # type: ignore[return-value]
    if not spec.is_hub:
        raise missing_error([current], reason=f"{spec.env_var} points to a local path that is incomplete")
    if hub_offline():
        raise missing_error([current], reason="the hub is offline: HF_HUB_OFFLINE is set")
    say = progress or (lambda message: None)
    cache = hub_cache_dir()
    unreachable = _probe_hub()
    if unreachable:
        raise missing_error([current], reason=f"download impossible: {unreachable}")
    try:
        repo_files = HfApi().list_repo_files(spec.repo_id)
        patterns = _download_patterns(spec, repo_files, prefer_fp16)
        say(f"downloading {spec.describe()}")
        folder = Path(snapshot_download(spec.repo_id, allow_patterns=patterns, cache_dir=cache))
    except _network_errors() as err:
        raise missing_error([current], reason=f"download failed: {type(err).__name__}: {_first_line(err)}") from None
    after = status(spec)
    if not after.present:
        raise missing_error([after], reason=f"{spec.repo_id} does not have the expected files")
    return folder


def download_all(
    settings: "Settings",
    progress: Progress | None = None,
    *,
    with_controlnet: bool = True,
    perception: bool = True,
    prefer_fp16: bool | None = None,
) -> list[WeightStatus]:
    """Download every hub model the configuration needs (present ones are skipped); return the
    final status of all of them. GitHub-release models are reported, not downloaded."""
    say = progress or (lambda message: None)
    if prefer_fp16 is None:
        prefer_fp16 = resolve_dtype_name(settings) == "float16"
    results = []
    for spec in model_specs(settings, with_controlnet=with_controlnet, perception=perception):
        st = status(spec)
        if st.present:
            say(f"present: {spec.describe()} -> {st.path}")
        elif spec.kind in (INSIGHTFACE, REMBG):
            say(f"manual: {spec.describe()}: {spec.how_to_provide()}")
        else:
            download(spec, prefer_fp16=prefer_fp16, progress=say)
            st = status(spec)
            say(f"done: {spec.describe()} -> {st.path}")
        results.append(st)
    return results


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ------------------------------------------------------------------------------------ device / dtype
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


# ------------------------------------------------------------------------------------ loading
def _variant(folder: Path, dtype: "torch.dtype") -> str | None:
    """"fp16" when ``folder`` holds fp16 variant weights and they suit ``dtype`` (or are all there is)."""
    import torch

    files = _weight_files(folder)
    has_fp16 = any(".fp16." in f for f in files)
    has_full = any(".fp16." not in f for f in files)
    if has_fp16 and (dtype == torch.float16 or not has_full):
        return "fp16"
    return None


def ensure_present(
    specs: list[ModelSpec], *, download_missing: bool | None = None, prefer_fp16: bool = True,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """The local folder/file of each spec; missing ones are downloaded when allowed (``None``:
    unless the hub is offline), otherwise one :class:`WeightsNotFoundError` lists them all."""
    statuses = [status(spec) for spec in specs]
    missing = [st for st in statuses if not st.present]
    if download_missing is None:
        download_missing = not hub_offline()
    if missing and download_missing and all(st.spec.is_hub for st in missing):
        unreachable = _probe_hub()
        if unreachable:
            raise missing_error(missing, reason=f"download impossible: {unreachable}")
        for st in missing:
            download(st.spec, prefer_fp16=prefer_fp16, progress=progress)
        statuses = [status(spec) for spec in specs]
        missing = [st for st in statuses if not st.present]
    if missing:
        reason = "the hub is offline (HF_HUB_OFFLINE=1)" if hub_offline() else ""
        raise missing_error(missing, reason=reason)
    return {st.spec.key: st.path for st in statuses}  # type: ignore[misc]


def resolve(spec: ModelSpec, *, download: bool | None = None, progress: Progress | None = None) -> Path:
    """The local folder (or file) of ``spec``, downloaded first when missing and allowed."""
    return ensure_present([spec], download_missing=download, progress=progress)[spec.key]


def _adapter_file(spec: ModelSpec, path: Path) -> Path:
    return path if path.is_file() else path / spec.files[0]


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

    from .adapter import StoryMakerAdapter
    from .adapter_checkpoint import load_checkpoint_state
    from .placement import resolve_memory_mode

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
