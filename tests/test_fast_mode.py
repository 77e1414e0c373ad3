"""The Fast preset (issue 11): SDXL-Lightning's 4-step LoRA in the same pipeline, switched on per call,
leaving no trace on any other call; weights spec, download/doctor, CLI and UI on the tiny backend."""

from __future__ import annotations

import pytest
import torch

from storymaker.config import Settings
from storymaker.errors import ConfigError, WeightsNotFoundError
from storymaker.models import weights
from storymaker.models.fast import FAST_ADAPTER, ensure_fast_lora, fast_lora_loaded
from storymaker.models.tiny import tiny_conditioning, tiny_lightning_lora, with_tiny_fast_lora
from storymaker.models.tiny import tiny_pipeline as plain_tiny_pipeline
from storymaker.models.weights.hub import _download_patterns


def tiny_pipeline(**kwargs):
    """The tiny pipeline with a tiny Lightning-style LoRA as its Fast LoRA (as the tiny backend has)."""
    return with_tiny_fast_lora(plain_tiny_pipeline(**kwargs))


def _render(pipe, *, fast=False, pose=None, seed=3):
    return pipe(
        "a lighthouse keeper", negative_prompt="blurry", characters=tiny_conditioning(2),
        pose_image=pose, width=64, height=64,
        num_inference_steps=4 if fast else 2, guidance_scale=1.0 if fast else 7.5,
        generator=torch.Generator().manual_seed(seed), output_type="latent", fast=fast,
    ).images


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_standard_after_fast_equals_standard_before_bit_for_bit(dtype):
    from PIL import Image

    pipe = tiny_pipeline(with_controlnet=True)
    pipe.set_progress_bar_config(disable=True)
    if dtype == torch.float16:
        pipe.to(dtype=torch.float16)
    pipe.enable_storymaker_lora_fusion(0.8)  # as loaded from settings (fuse_lora=True)
    pose = Image.new("RGB", (64, 64), (20, 20, 20))
    weights_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    scheduler = pipe.scheduler

    before = _render(pipe)
    before_pose = _render(pipe, pose=pose)
    fast = _render(pipe, fast=True)
    assert fast_lora_loaded(pipe)
    after = _render(pipe)
    after_pose = _render(pipe, pose=pose)
    fast_again = _render(pipe, fast=True)

    assert torch.equal(before, after) and torch.equal(before_pose, after_pose)
    assert torch.equal(fast, fast_again)  # a Fast render is reproducible too
    assert not torch.equal(fast, before) and torch.isfinite(fast.float()).all()
    assert pipe.scheduler is scheduler
    # No weight of the base UNet was touched (the LoRA is kept unfused and only switched).
    weights_after = {k.replace(".base_layer", ""): v for k, v in pipe.unet.state_dict().items() if ".lora_" not in k}
    assert weights_after.keys() == weights_before.keys()
    for key, value in weights_before.items():
        assert torch.equal(weights_after[key], value), key


def test_fast_call_uses_the_lora_trailing_euler_and_no_cfg_batch():
    from diffusers import EulerDiscreteScheduler

    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    seen = []

    ensure_fast_lora(pipe)
    lora_layers = [m for m in pipe.unet.modules() if hasattr(m, "lora_A") and FAST_ADAPTER in m.lora_A]
    assert lora_layers and all(m.disable_adapters for m in lora_layers)  # loaded, inactive

    def record(module, args, kwargs):
        active = all(not m.disable_adapters and FAST_ADAPTER in m.active_adapters for m in lora_layers)
        seen.append((args[0].shape[0], type(pipe.scheduler).__name__,
                     pipe.scheduler.config.get("timestep_spacing"), active))

    hook = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    _render(pipe, fast=True)
    hook.remove()
    assert len(seen) == 4
    assert seen == [(1, "EulerDiscreteScheduler", "trailing", True)] * 4
    assert all(m.disable_adapters for m in lora_layers)  # inactive again
    assert not isinstance(pipe.scheduler, EulerDiscreteScheduler)  # the pipeline's own scheduler is back


def test_fast_lora_loads_from_a_file_in_the_published_layout(tmp_path):
    from safetensors.torch import save_file

    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    state = tiny_lightning_lora(pipe.unet)
    assert all(k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha"))
               for k in state)
    path = tmp_path / weights.FAST_LORA_FILENAME
    save_file(state, str(path))
    pipe.fast_lora_source = tmp_path  # the folder holding the file, as the hub cache has it
    from_file = _render(pipe, fast=True)
    reference = tiny_pipeline()
    reference.set_progress_bar_config(disable=True)
    assert torch.equal(from_file, _render(reference, fast=True))  # same tensors, same result


def test_missing_fast_lora_is_a_clear_error(tmp_path):
    pipe = tiny_pipeline()
    pipe.fast_lora_source = None
    with pytest.raises(WeightsNotFoundError, match="SDXL-Lightning"):
        _render(pipe, fast=True)
    pipe.fast_lora_source = tmp_path / "nowhere"
    with pytest.raises(WeightsNotFoundError, match="STORYMAKER_FAST_LORA"):
        _render(pipe, fast=True)
    # From settings, offline (the tests' hub is offline): names the model and how to get it.
    with pytest.raises(WeightsNotFoundError) as info:
        weights.resolve_fast_lora(Settings(data_dir=tmp_path))
    text = str(info.value)
    assert "ByteDance/SDXL-Lightning" in text and weights.FAST_LORA_FILENAME in text and "download" in text


def test_download_and_doctor_know_the_fast_lora(tmp_path, capsys):
    from storymaker.cli import main

    specs = {s.key: s for s in weights.model_specs(Settings(data_dir=tmp_path))}
    spec = specs["fast_lora"]
    assert spec.source == "ByteDance/SDXL-Lightning" and spec.files == (weights.FAST_LORA_FILENAME,)
    assert not spec.required
    repo_files = ["sdxl_lightning_2step_lora.safetensors", weights.FAST_LORA_FILENAME, "sdxl_lightning_4step_unet.safetensors"]
    assert _download_patterns(spec, repo_files, True) == [weights.FAST_LORA_FILENAME]
    # A pipeline load never requires it (only a Fast render does).
    assert "fast_lora" not in {s.key for s in weights.model_specs(Settings(data_dir=tmp_path), fast=False)}
    assert main(["doctor"]) == 0
    assert "MISSING  SDXL-Lightning 4-step LoRA (Fast preset) (ByteDance/SDXL-Lightning, file " \
           "sdxl_lightning_4step_lora.safetensors" in capsys.readouterr().out
    local = tmp_path / weights.FAST_LORA_FILENAME
    local.write_bytes(b"")
    assert weights.status(weights.fast_lora_spec(Settings(data_dir=tmp_path, fast_lora=str(local)))).present


def test_settings_validate_quality_and_memory_mode(tmp_path):
    assert Settings(data_dir=tmp_path).quality == "standard"
    with pytest.raises(ConfigError, match="quality"):
        Settings(data_dir=tmp_path, quality="turbo")
    with pytest.raises(ConfigError, match="STORYMAKER_MEMORY_MODE"):
        Settings(data_dir=tmp_path, memory_mode="tiny")


def test_cli_quality_fast_end_to_end_on_the_tiny_backend(tmp_path, capsys):
    from render_helpers import PHOTO
    from storymaker.cli import main
    from storymaker.services.storage import Project

    story = tmp_path / "story.txt"
    story.write_text("title: Fast\nsteps: 30\nguidance: 9\n\n[Ava] waves at the sea\n", encoding="utf-8")
    project_dir = tmp_path / "proj"
    out = tmp_path / "comic.png"
    rc = main(["render", str(story), "--project", str(project_dir), "--out", str(out), "--backend", "tiny",
               "--size", "64x64", "--quality", "fast", "--characters", f"Ava={PHOTO}"])
    assert rc == 0, capsys.readouterr().err
    meta = Project.open(project_dir).selected(0).meta
    assert meta["quality"] == "fast" and meta["num_inference_steps"] == 4 and meta["guidance_scale"] == 1.0
    assert out.is_file()


def test_ui_fast_preset_end_to_end_on_the_tiny_backend(tmp_path):
    from ui_helpers import make_services

    from storymaker.ui import render_tab, story_tab
    from storymaker.ui.context import StudioContext
    from storymaker.ui.session import SessionManager

    services = make_services(tmp_path / "data", backend="tiny", width=64, height=64)
    ctx = StudioContext(services, services.settings, SessionManager(services.settings.sessions_dir))
    sid = ctx.sessions.new_session()
    story_tab.validate(ctx, sid, "a lighthouse on a cliff\n")
    assert "Fast" in render_tab.PRESET_NAMES and render_tab.preset("Fast").steps == 4
    fast = render_tab.with_quality(render_tab.settings_from_widgets(64, 64, 4, 1.0, 0.8, 0.8, 0.7, 5), "Fast")
    assert "1 of 1 panel rendered" in render_tab.run_render(ctx, sid, "all", 1, fast)
    standard = render_tab.with_quality(render_tab.settings_from_widgets(64, 64, 2, 7.5, 0.8, 0.8, 0.7, 5), "Standard")
    assert "Panel 1 rendered" in render_tab.run_render(ctx, sid, "panel", 1, standard)
    versions = ctx.project(sid).panel_renders(["a lighthouse on a cliff"])[0].versions
    assert [v.meta["quality"] for v in versions] == ["fast", "standard"]
    assert [v.meta["num_inference_steps"] for v in versions] == [4, 2]
