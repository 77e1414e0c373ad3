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
# One torch/OpenMP thread, in this process and in the CLI subprocesses the tests start: the tiny
# models are dominated by per-op threading overhead, and on the 2-core test machines one thread
# made a tiny 64x64 render ~10x faster (0.4 s instead of 5 s, measured under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

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


@pytest.fixture
def ctx(tmp_path):
    """What the studio's handlers get (draft backend, tiny perception) over ``tmp_path / "data"``;
    its sessions never expire."""
    from ui_helpers import make_context

    return make_context(tmp_path / "data", max_age_hours=0)


@pytest.fixture
def sid(ctx):
    """A new browser workspace of :func:`ctx`."""
    return ctx.sessions.new_session()
