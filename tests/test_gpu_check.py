"""benchmarks/gpu_check.py (issue 11) runs here, on the tiny components on the CPU, so that the
script that gives the GPU figures cannot rot. The figures themselves mean nothing here."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_cpu_run_prints_the_table_and_writes_every_figure(gpu_check, tmp_path, capsys):
    out = tmp_path / "figures.json"
    # The same code as a GPU run; fewer rounds and steps to keep the suite short.
    assert gpu_check.main(["--device", "cpu", "--tiny", "--runs", "1", "--steps", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for heading in ("==== StoryMaker GPU check ====", "seconds per denoising step, 64x64, CFG batch 2",
                    "seconds per panel", "memory modes: one 3-step panel", "float16 vs float32, one step",
                    "[gpu_check] memory mode balanced"):
        assert heading in text, heading
    figures = json.loads(out.read_text())
    assert figures["environment"]["device_name"] == "CPU" and figures["environment"]["diffusers"]
    assert set(figures["steps"]) == {v for v, _, _ in gpu_check.STEP_VARIANTS}
    assert all(s > 0 for by in figures["steps"].values() for s in by.values())
    assert len(figures["panels"]) == 3 and any("Fast (4 steps" in k for k in figures["panels"])
    assert [row["mode"] for row in figures["memory"]] == [m for m, _, _ in gpu_check.MEMORY_MODES]
    assert all(row["seconds"] > 0 and row["peak_gib"] is None for row in figures["memory"])  # no CUDA here
    precision = figures["precision"]
    assert precision["finite_fp16"] and 0 < precision["max_abs_diff"] < precision["max_abs_fp32"]
    assert set(figures["weights_gib"]) >= {"UNet", "StoryMaker adapter", "ControlNet", "VAE"}


def test_sdxl_dimensions_are_the_published_ones(gpu_check, monkeypatch):
    """The components gpu_check builds for a GPU, kept on the meta device here: their weight sizes
    in float16 are those of the published checkpoints, and one step's shapes go through."""
    import torch

    from storymaker.models.pipeline import StoryMakerPipeline

    monkeypatch.setattr(gpu_check, "_materialise", lambda m, device, dtype, gen: m.to(dtype=dtype).eval())
    pipe = StoryMakerPipeline(**gpu_check.sdxl_components(torch.device("meta"), torch.float16))
    sizes = gpu_check.weight_gib(pipe)
    expected_gb = {"UNet": 5.1, "text encoders": 1.6, "CLIP image encoder": 1.3, "StoryMaker adapter": 1.7,
                   "ControlNet": 2.5}
    for name, gb in expected_gb.items():
        assert math.isclose(sizes[name] * 2**30 / 1e9, gb, rel_tol=0.06), (name, sizes[name])
    assert pipe.expected_clip_shape() == (257, 1280)
    noise = gpu_check.one_step(pipe, gpu_check.step_inputs(pipe, 1024, 1024), storymaker=True, controlnet=True,
                               cached=False)
    assert tuple(noise.shape) == (2, 4, 128, 128)


def test_without_cuda_it_says_what_to_do(gpu_check, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert gpu_check.main([]) == 2
    assert "--device cpu --tiny" in capsys.readouterr().err
