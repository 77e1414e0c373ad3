"""storymaker.models.weights and storymaker.services.export are packages of small modules; every
public name each offered as one module is still imported from the package, and nothing heavy is."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# Every public name each package offered as one module, and the module that now has it.
WEIGHTS_HOMES = {
    "DIFFUSERS_MODEL": "specs", "DIFFUSERS_PIPELINE": "specs", "FAST_LORA_FILENAME": "specs",
    "HUB_FILES": "specs", "INSIGHTFACE": "specs", "INSIGHTFACE_URL": "specs",
    "POSE_ANNOTATOR_FILES": "specs", "REMBG": "specs", "REMBG_URL": "specs", "SDXL_COMPONENTS": "specs",
    "TRANSFORMERS_MODEL": "specs", "ModelSpec": "specs", "Progress": "specs", "WeightStatus": "specs",
    "fast_lora_spec": "specs", "model_specs": "specs", "u2net_home": "specs",
    "hub_cache_dir": "presence", "hub_offline": "presence", "is_present": "presence",
    "missing_error": "presence", "missing_files": "presence", "status": "presence",
    "weights_status": "presence",
    "choose_weight_files": "hub", "download": "hub", "download_all": "hub", "ensure_present": "hub",
    "resolve": "hub", "resolve_fast_lora": "hub",
    "resolve_device": "device", "resolve_dtype": "device", "resolve_dtype_name": "device",
    "load_extra_loras": "loading", "load_pipeline_components": "loading", "parse_extra_loras": "loading",
}
EXPORT_HOMES = {
    "ComicPage": "compose", "ComicPanel": "compose", "ExportError": "compose",
    "changed_panel_numbers": "compose", "project_comic_panels": "compose", "render_comic": "compose",
    "render_pages": "compose", "SOFTWARE": "files", "safe_filename": "files", "PANEL_KEY": "png",
    "export_png": "png", "read_png_metadata": "png", "export_pdf": "pdf", "main": "sample",
    "sample_panel_image": "sample", "sample_panels": "sample",
}
CASES = [("storymaker.models.weights", name, home) for name, home in WEIGHTS_HOMES.items()] + [
    ("storymaker.services.export", name, home) for name, home in EXPORT_HOMES.items()]


@pytest.mark.parametrize(("package", "name", "home"), CASES, ids=[f"{p.rsplit('.', 1)[1]}.{n}" for p, n, _ in CASES])
def test_every_public_name_is_still_importable_from_the_package(package, name, home):
    pkg = importlib.import_module(package)
    module = importlib.import_module(f"{package}.{home}")
    assert getattr(pkg, name) is getattr(module, name)
    assert name in pkg.__all__


@pytest.mark.parametrize("package", ["storymaker.models.weights", "storymaker.services.export"])
def test_all_lists_exactly_the_public_names(package):
    homes = WEIGHTS_HOMES if package.endswith("weights") else EXPORT_HOMES
    assert sorted(importlib.import_module(package).__all__) == sorted(homes)


def test_the_weights_package_imports_nothing_heavy():
    code = ("import sys, storymaker.models.weights; print(sorted(m for m in "
            "('torch', 'diffusers', 'transformers', 'huggingface_hub') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_export_demo_still_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "storymaker.services.export", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m storymaker.services.export") and "--demo" in out.stdout
