"""Whether each model is on this machine, checked locally (the folder, or the hub cache), never
over the network: :func:`status`, :func:`weights_status`, and :func:`missing_error`, the one error
that names every missing model and how to provide it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ...errors import ConfigError, WeightsNotFoundError
from .specs import (
    _HUB_ID_RE,
    _MODEL_COMPONENTS,
    _WEIGHT_RE,
    DIFFUSERS_MODEL,
    DIFFUSERS_PIPELINE,
    HUB_FILES,
    INSIGHTFACE,
    REMBG,
    SDXL_COMPONENTS,
    TRANSFORMERS_MODEL,
    ModelSpec,
    WeightStatus,
    model_specs,
)

if TYPE_CHECKING:  # pragma: no cover
    from ...config import Settings


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
