"""Test-wide setup: offline, CPU only, no user folders touched."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers / diffusers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["DIFFUSERS_OFFLINE"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's caches and data: HF cache, insightface, rembg, data dir."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("U2NET_HOME", str(home / "u2net"))
    monkeypatch.setenv("STORYMAKER_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("STORYMAKER_FACE_MODEL_ROOT", str(home / "insightface"))
    yield


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
