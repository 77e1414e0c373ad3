"""Weights: specs, local presence checks, offline errors, loading from local folders and the hub cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from net_guard import no_network, refuse_model_loads  # noqa: F401  (no_network: a fixture)
from storymaker.config import Settings
from storymaker.errors import ConfigError, WeightsNotFoundError
from storymaker.models import weights
from storymaker.models.pipeline import StoryMakerPipeline
from storymaker.models.tiny import tiny_components, tiny_conditioning



@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """Tiny components saved as the real ones are published: a diffusers SDXL folder, a CLIP vision
    folder, a ControlNet folder and a ``mask.bin`` torch pickle."""
    from diffusers import StableDiffusionXLPipeline

    root = tmp_path_factory.mktemp("tiny_weights")
    components = tiny_components(seed=0, with_controlnet=True)
    sdxl = {k: components[k] for k in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")}
    StableDiffusionXLPipeline(**sdxl, add_watermarker=False).save_pretrained(root / "sdxl")
    components["image_encoder"].save_pretrained(root / "clip")
    components["controlnet"].save_pretrained(root / "controlnet")
    torch.save(components["adapter"].state_dict_for_checkpoint(), root / "mask.bin")
    return root, components


def local_settings(root: Path, **changes) -> Settings:
    values = dict(
        base_model=str(root / "sdxl"),
        image_encoder=str(root / "clip"),
        controlnet_pose=str(root / "controlnet"),
        adapter_model=str(root / "mask.bin"),
        device="cpu",
        fuse_lora=False,
    )
    values.update(changes)
    return Settings(**values)


def render(pipe, seed=0, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        "a knight",
        characters=tiny_conditioning(2),
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **kwargs,
    ).images


def fake_hub_snapshot(repo_id: str, source: Path, subfolder: str = "") -> Path:
    """Put ``source`` into the (test-isolated) hub cache as ``repo_id`` at ``main``, as
    huggingface_hub lays it out."""
    repo_dir = weights.hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    target = repo_dir / "snapshots" / commit / subfolder
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return repo_dir / "snapshots" / commit


# ------------------------------------------------------------------------------------ offline errors
def test_offline_from_settings_fails_fast_naming_every_model(tmp_path, no_network, monkeypatch):
    """Fails at once: no network attempt, no retry wait, no model loaded before the error."""
    settings = Settings(data_dir=tmp_path, device="cpu")
    loaded = refuse_model_loads(monkeypatch)
    with pytest.raises(WeightsNotFoundError) as info:
        StoryMakerPipeline.from_settings(settings)
    no_network.check()
    assert loaded == []
    message = str(info.value)
    for text in (
        "SDXL base model",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        "RED-AIGC/StoryMaker",
        "mask.bin",
        "xinsir/controlnet-openpose-sdxl-1.0",
        "python -m storymaker download",
        "STORYMAKER_BASE_MODEL=",
        "HF_HUB_OFFLINE",
    ):
        assert text in message, text


def test_offline_download_fails_fast(tmp_path, no_network):
    """With HF_HUB_OFFLINE the download fails without trying the network (no retries)."""
    spec = weights.model_specs(Settings(data_dir=tmp_path))[0]
    with pytest.raises(WeightsNotFoundError, match="stabilityai/stable-diffusion-xl-base-1.0"):
        weights.download(spec)
    with pytest.raises(WeightsNotFoundError, match="SDXL base model"):
        weights.download_all(Settings(data_dir=tmp_path))
    no_network.check()


def test_only_the_missing_model_is_named(saved_tiny):
    root, _ = saved_tiny
    settings = local_settings(root, adapter_model="RED-AIGC/StoryMaker")
    with pytest.raises(WeightsNotFoundError) as info:
        StoryMakerPipeline.from_settings(settings)
    message = str(info.value)
    assert "StoryMaker adapter (RED-AIGC/StoryMaker" in message and "STORYMAKER_ADAPTER_MODEL" in message
    assert "SDXL base model" not in message


def test_incomplete_local_folder_is_reported(saved_tiny, tmp_path):
    root, _ = saved_tiny
    broken = tmp_path / "sdxl"
    shutil.copytree(root / "sdxl", broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    spec = weights.model_specs(local_settings(root, base_model=str(broken)))[0]
    st = weights.status(spec)
    assert not st.present and st.missing == ("unet/weights (*.safetensors)",)
    with pytest.raises(WeightsNotFoundError, match="unet/weights"):
        StoryMakerPipeline.from_settings(local_settings(root, base_model=str(broken)))


def test_source_that_is_neither_path_nor_hub_id(tmp_path):
    spec = weights.model_specs(Settings(data_dir=tmp_path, base_model="./no/such/folder"))[0]
    with pytest.raises(ConfigError, match="STORYMAKER_BASE_MODEL"):
        weights.status(spec)


# ------------------------------------------------------------------------------------ loading
def test_from_settings_loads_local_folders_and_matches_direct_construction(saved_tiny):
    root, components = saved_tiny
    loaded = StoryMakerPipeline.from_settings(local_settings(root))
    assert loaded.controlnet is not None and loaded.adapter.is_installed(loaded.unet)
    assert loaded.unet.dtype == torch.float32 and loaded.device.type == "cpu"
    direct = StoryMakerPipeline(**{**components, "unet": _copy(components["unet"]), "adapter": _copy(components["adapter"])})
    np.testing.assert_allclose(render(loaded), render(direct), atol=1e-5)
    # Without a ControlNet: nothing of it is loaded.
    plain = StoryMakerPipeline.from_settings(local_settings(root, controlnet_pose=""))
    assert plain.controlnet is None


def _copy(module):
    import copy

    return copy.deepcopy(module)


def test_from_settings_reads_the_hub_cache_offline(saved_tiny):
    root, _ = saved_tiny
    fake_hub_snapshot("tiny-org/tiny-sdxl", root / "sdxl")
    fake_hub_snapshot("tiny-org/tiny-clip", root / "clip", subfolder="models/image_encoder")
    fake_hub_snapshot("tiny-org/tiny-storymaker", root / "mask.bin", subfolder="mask.bin")
    settings = local_settings(
        root,
        base_model="tiny-org/tiny-sdxl",
        image_encoder="tiny-org/tiny-clip/models/image_encoder",
        adapter_model="tiny-org/tiny-storymaker",
        controlnet_pose="",
    )
    statuses = weights.weights_status(settings, perception=False)
    assert [s.present for s in statuses] == [True, True, True]
    pipe = StoryMakerPipeline.from_settings(settings)
    assert render(pipe).shape == (1, 64, 64, 3)


def test_extra_loras_and_fusion_from_settings(saved_tiny, tmp_path):
    from test_models_pipeline import _save_tiny_sdxl_lora

    root, _ = saved_tiny
    _save_tiny_sdxl_lora(tmp_path)
    base = StoryMakerPipeline.from_settings(local_settings(root, controlnet_pose=""))
    styled = StoryMakerPipeline.from_settings(
        local_settings(root, controlnet_pose="", fuse_lora=True, lora_scale=0.8,
                       extra_loras=f"{tmp_path / 'pytorch_lora_weights.safetensors'}:0.7")
    )
    assert styled.get_active_adapters() == ["extra_0"]
    assert styled.adapter.fused_scale == 0.8 and styled.storymaker_lora_fusion
    assert float(np.abs(render(base) - render(styled)).max()) > 1e-4


def test_missing_extra_lora_is_a_weights_error(saved_tiny):
    root, _ = saved_tiny
    with pytest.raises(WeightsNotFoundError, match="STORYMAKER_EXTRA_LORAS"):
        StoryMakerPipeline.from_settings(local_settings(root, controlnet_pose="", extra_loras="some-org/some-lora:0.5"))


# ------------------------------------------------------------------------------------ pieces
def test_specs_cover_every_model_with_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2net"))
    settings = Settings(data_dir=tmp_path, face_model_root=tmp_path / "insightface")
    specs = {s.key: s for s in weights.model_specs(settings)}
    assert set(specs) == {
        "base_model", "image_encoder", "adapter_model", "controlnet_pose", "face_model", "segmentation_model",
        "pose_annotators", "fast_lora",
    }
    assert all(s.size_gb > 0 for s in specs.values())
    assert specs["adapter_model"].files == ("mask.bin",)
    assert specs["pose_annotators"].files == ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")
    face, seg = specs["face_model"], specs["segmentation_model"]
    assert face.target == str(tmp_path / "insightface" / "models" / "buffalo_l")
    assert seg.target == str(tmp_path / "u2net" / "u2net_human_seg.onnx")
    assert "github.com" in face.url and "github.com" in seg.url
    assert not weights.is_present(face) and not weights.is_present(seg)
    Path(face.target).mkdir(parents=True)
    (Path(face.target) / "det_10g.onnx").write_bytes(b"x")
    Path(seg.target).parent.mkdir(parents=True)
    Path(seg.target).write_bytes(b"x")
    assert weights.is_present(face) and weights.is_present(seg)


def test_choose_weight_files():
    files = [
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "unet/sub/diffusion_pytorch_model.safetensors",
        "text_encoder_2/model-00001-of-00002.safetensors",
        "text_encoder_2/model-00002-of-00002.safetensors",
        "text_encoder_2/model.safetensors.index.json",
        "vae/diffusion_pytorch_model.bin",
        "sd_xl_base_1.0.safetensors",
    ]
    assert weights.choose_weight_files(files, "unet", prefer_fp16=True) == ["unet/diffusion_pytorch_model.fp16.safetensors"]
    assert weights.choose_weight_files(files, "unet", prefer_fp16=False) == ["unet/diffusion_pytorch_model.safetensors"]
    assert weights.choose_weight_files(files, "text_encoder_2", prefer_fp16=True) == [
        "text_encoder_2/model-00001-of-00002.safetensors",
        "text_encoder_2/model-00002-of-00002.safetensors",
        "text_encoder_2/model.safetensors.index.json",
    ]
    assert weights.choose_weight_files(files, "vae", prefer_fp16=True) == ["vae/diffusion_pytorch_model.bin"]
    assert weights.choose_weight_files(files, "", prefer_fp16=True) == []  # a single-file checkpoint is not diffusers layout


def test_parse_extra_loras():
    assert weights.parse_extra_loras("") == []
    assert weights.parse_extra_loras("a/b, /x/y.safetensors:0.5 ,C:\\loras\\z.safetensors") == [
        ("a/b", 1.0),
        ("/x/y.safetensors", 0.5),
        ("C:\\loras\\z.safetensors", 1.0),
    ]


def test_device_and_dtype_resolution(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert weights.resolve_device(settings).type == "cpu"  # no GPU in tests (CUDA_VISIBLE_DEVICES="")
    assert weights.resolve_dtype(settings, torch.device("cpu")) == torch.float32
    assert weights.resolve_dtype(settings, torch.device("cuda")) == torch.float16
    assert weights.resolve_dtype(settings.replace(dtype="bf16"), torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ConfigError, match="STORYMAKER_DTYPE"):
        weights.resolve_dtype(settings.replace(dtype="int8"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="CUDA"):
        weights.resolve_device(settings.replace(device="cuda"))


def test_controlnet_asked_for_but_not_configured(saved_tiny):
    root, _ = saved_tiny
    with pytest.raises(ConfigError, match="STORYMAKER_CONTROLNET_POSE"):
        StoryMakerPipeline.from_settings(local_settings(root, controlnet_pose=""), with_controlnet=True)
