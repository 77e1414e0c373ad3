"""`python -m storymaker download` / `doctor`: offline behaviour, exit codes, no network for doctor."""

from __future__ import annotations

from pathlib import Path

from net_guard import no_network  # noqa: F401  (a fixture: any network access or sleep fails the test)
from storymaker.cli import main
from storymaker.models import weights
from storymaker.models.weights import hub


def test_doctor_reports_environment_and_missing_weights_without_network(no_network, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for text in ("Python", "CUDA", "diffusers 0.", "transformers", "Device       cpu", "HF cache",
                 "MISSING  SDXL base model (stabilityai/stable-diffusion-xl-base-1.0",
                 "MISSING  StoryMaker adapter (RED-AIGC/StoryMaker, file mask.bin",
                 "buffalo_l.zip", "u2net_human_seg.onnx", "lllyasviel/Annotators", "python -m storymaker download"):
        assert text in out, text


def test_doctor_sees_local_and_manual_models(no_network, monkeypatch, tmp_path, capsys):
    sdxl = tmp_path / "sdxl"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        (sdxl / name).mkdir(parents=True)
        (sdxl / name / "config.json").write_text("{}")
        weight = "model.safetensors" if name.startswith("text") else "diffusion_pytorch_model.fp16.safetensors"
        (sdxl / name / weight).write_bytes(b"")
    for name in ("tokenizer", "tokenizer_2"):
        (sdxl / name).mkdir()
        (sdxl / name / "tokenizer.json").write_text("{}")
    (sdxl / "scheduler").mkdir()
    (sdxl / "scheduler" / "scheduler_config.json").write_text("{}")
    (sdxl / "model_index.json").write_text("{}")
    monkeypatch.setenv("STORYMAKER_BASE_MODEL", str(sdxl))
    face_dir = Path(weights.model_specs(_settings())[4].target)
    face_dir.mkdir(parents=True)
    (face_dir / "w600k_r50.onnx").write_bytes(b"")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"present  SDXL base model ({sdxl}" in out
    assert "present  insightface face analysis (buffalo_l" in out
    assert "MISSING  rembg person segmentation" in out


def _settings():
    from storymaker.config import Settings

    return Settings.from_env()


def test_download_offline_is_a_clear_error_exit_2(no_network, capsys):
    assert main(["download"]) == 2
    no_network.check()  # offline means no connection attempt and no retry wait
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "SDXL base model (stabilityai/stable-diffusion-xl-base-1.0" in err and "HF_HUB_OFFLINE" in err
    assert "unset HF_HUB_OFFLINE" in err  # not only "run download", which is what was run


def test_download_without_network_fails_fast(no_network, monkeypatch, capsys):
    """One probe says the hub cannot be reached: the hub client (whose retries take ~25 s) is never
    called, nothing else tries the network, nothing waits."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    probes, hub_calls = [], []
    monkeypatch.setattr(hub, "_probe_hub", lambda timeout=5.0: probes.append(timeout) or
                        "cannot reach huggingface.co:443 (test)")

    def hub_client(name):
        def called(*args, **kwargs):
            hub_calls.append(name)
            raise AssertionError(f"the hub client was called ({name}) although the hub cannot be reached")
        return called

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", hub_client("list_repo_files"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub_client("snapshot_download"))
    assert main(["download", "--no-perception"]) == 2
    assert len(probes) == 1 and hub_calls == []
    no_network.check()
    assert "download impossible: cannot reach huggingface.co" in capsys.readouterr().err


def test_download_with_hub_models_present_lists_manual_steps(monkeypatch, tmp_path, capsys):
    """Everything from the hub present (local paths): only the GitHub-release models remain (exit 1),
    and once they are in place, exit 0."""
    from test_models_weights import fake_hub_snapshot

    adapter = tmp_path / "mask.bin"
    adapter.write_bytes(b"")
    monkeypatch.setenv("STORYMAKER_ADAPTER_MODEL", str(adapter))
    fast_lora = tmp_path / weights.FAST_LORA_FILENAME  # the Fast preset's LoRA, a local file
    fast_lora.write_bytes(b"")
    monkeypatch.setenv("STORYMAKER_FAST_LORA", str(fast_lora))
    for key in ("BASE_MODEL", "IMAGE_ENCODER", "CONTROLNET_POSE"):
        monkeypatch.setenv(f"STORYMAKER_{key}", "")
    monkeypatch.setattr(hub, "status", _fake_status(weights.status))
    annotators = tmp_path / "annotators"
    annotators.mkdir()
    for name in weights.POSE_ANNOTATOR_FILES:
        (annotators / name).write_bytes(b"")
    fake_hub_snapshot("lllyasviel/Annotators", annotators)

    assert main(["download"]) == 1
    out = capsys.readouterr().out
    assert "present: OpenPose annotators (lllyasviel/Annotators" in out
    assert "buffalo_l.zip" in out and "u2net_human_seg.onnx" in out

    settings = _settings()
    specs = {s.key: s for s in weights.model_specs(settings)}
    Path(specs["face_model"].target).mkdir(parents=True)
    (Path(specs["face_model"].target) / "det_10g.onnx").write_bytes(b"")
    Path(specs["segmentation_model"].target).parent.mkdir(parents=True)
    Path(specs["segmentation_model"].target).write_bytes(b"")
    assert main(["download"]) == 0
    assert "All model weights are present." in capsys.readouterr().out


def _fake_status(real):
    """Treat the SDXL/CLIP/ControlNet specs (set to "" above) as present: this test is about the rest."""

    def status(spec):
        if spec.key in ("base_model", "image_encoder", "controlnet_pose"):
            return weights.WeightStatus(spec, True, Path("/fake"))
        return real(spec)

    return status
