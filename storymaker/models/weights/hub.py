"""Getting weights onto this machine from the Hugging Face hub: :func:`download` (one model, only the
files it needs, one weight variant), :func:`download_all` (what ``python -m storymaker download``
does), :func:`ensure_present` / :func:`resolve` (the local path of each model, downloaded first when
missing and allowed) and :func:`resolve_fast_lora`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .device import resolve_dtype_name
from .presence import hub_cache_dir, hub_offline, missing_error, status
from .specs import (
    _MODEL_COMPONENTS,
    _WEIGHT_RE,
    DIFFUSERS_MODEL,
    DIFFUSERS_PIPELINE,
    INSIGHTFACE,
    REMBG,
    SDXL_COMPONENTS,
    TRANSFORMERS_MODEL,
    ModelSpec,
    Progress,
    WeightStatus,
    fast_lora_spec,
    model_specs,
)

if TYPE_CHECKING:  # pragma: no cover
    from ...config import Settings


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


def resolve_fast_lora(settings: "Settings", *, download: bool | None = None, progress: Progress | None = None) -> Path:
    """The local file of the Fast LoRA (downloaded first when missing and allowed); a
    :class:`WeightsNotFoundError` naming it and how to get it otherwise."""
    spec = fast_lora_spec(settings)
    if spec.local_path is not None and spec.local_path.is_file():
        return spec.local_path
    path = ensure_present([spec], download_missing=download, progress=progress)[spec.key]
    return _adapter_file(spec, path)


def _adapter_file(spec: ModelSpec, path: Path) -> Path:
    return path if path.is_file() else path / spec.files[0]
