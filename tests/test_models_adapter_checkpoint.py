"""StoryMaker checkpoint: layout vs the published mask.bin, safe loading, strict checks, convert, CLI."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models_helpers import (
    TINY_CLIP_DIM,
    TINY_UNET_CONFIG,
    character_inputs,
    run_unet,
    tiny_adapter,
    tiny_unet,
    unet_inputs,
)
from storymaker.cli import main as cli_main
from storymaker.errors import CheckpointError
from storymaker.models import adapter as adapter_mod
from storymaker.models import adapter_checkpoint as checkpoint_mod
from storymaker.models.adapter import StoryMakerAdapter, expected_layout
from storymaker.models.adapter_checkpoint import check_checkpoint, convert_checkpoint, load_checkpoint_state

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixture_layout():
    return json.loads((Path(__file__).parent / "fixtures" / "storymaker_checkpoint_layout.json").read_text())


@pytest.fixture(scope="module")
def sdxl_layout():
    """Computed from the real SDXL UNet config on the meta device (nothing allocated)."""
    from diffusers import UNet2DConditionModel

    config = dict(checkpoint_mod.SDXL_UNET_CONFIG)
    assert tuple(config["block_out_channels"]) == (320, 640, 1280)
    assert tuple(config["transformer_layers_per_block"]) == (1, 2, 10)
    assert config["cross_attention_dim"] == 2048 and config["addition_embed_type"] == "text_time"
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        adapter = StoryMakerAdapter.for_unet(unet, clip_dim=1280)
    assert all(p.is_meta for p in adapter.parameters())
    return adapter.layout()


@pytest.fixture(scope="module")
def tiny():
    unet = tiny_unet()
    return unet, tiny_adapter(unet, seed=1)


@pytest.fixture(scope="module")
def tiny_layout(tiny):
    return tiny[1].layout()


# ---------------------------------------------------------------- layout

def test_sdxl_layout_matches_published_checkpoint(sdxl_layout, fixture_layout):
    for section in ("image_proj_model", "ip_adapter"):
        ours, theirs = sdxl_layout[section], fixture_layout[section]
        assert set(ours) == set(theirs), section
        wrong = {k: (ours[k], theirs[k]) for k in theirs if list(ours[k]) != list(theirs[k])}
        assert not wrong, wrong
        assert sum(math.prod(s) for s in ours.values()) == fixture_layout["param_counts"][section]
    assert sdxl_layout["unet_attn_processor_order"] == fixture_layout["unet_attn_processor_order"]
    assert sdxl_layout["checkpoint_top_level_keys"] == fixture_layout["checkpoint_top_level_keys"]
    assert check_checkpoint(_shaped_state(fixture_layout), sdxl_layout) == []
    assert adapter_mod.sdxl_layout() == sdxl_layout  # what the CLI checks against


def test_expected_layout_from_config_equals_adapter_layout(tiny, tiny_layout):
    computed = expected_layout(TINY_UNET_CONFIG, TINY_CLIP_DIM, rank=8)
    assert computed == tiny_layout


# ---------------------------------------------------------------- round trip

def _save_bin(state, path):
    torch.save(state, path)
    return path


def test_round_trip_bin_and_safetensors(tiny, tmp_path):
    unet, adapter = tiny
    state = adapter.state_dict_for_checkpoint()
    assert set(state) == {"image_proj_model", "ip_adapter"}
    assert "0.to_q_lora.down.weight" in state["ip_adapter"]
    bin_path = _save_bin(state, tmp_path / "mask.bin")
    st_path = tmp_path / "mask.safetensors"
    convert_checkpoint(bin_path, st_path)
    from safetensors import safe_open

    with safe_open(str(st_path), "pt") as handle:
        keys = set(handle.keys())
    assert "image_proj_model.pos_embed" in keys and "ip_adapter.1.to_k_ip.weight" in keys

    inputs = unet_inputs(batch=2, seed=7)
    feats = character_inputs(2, 2, seed=7)
    adapter.install(unet)
    try:
        tokens = adapter.image_tokens(*feats)
        reference = run_unet(unet, inputs, adapter.cross_attention_kwargs(tokens, 0.8, 0.8))
    finally:
        adapter.uninstall(unet)

    for path in (bin_path, st_path):
        fresh = tiny_adapter(unet, seed=99)  # other random weights
        assert not torch.equal(fresh.image_tokens(*feats), tokens)
        fresh.load_checkpoint(path)
        fresh.install(unet)
        try:
            with torch.no_grad():
                got_tokens = fresh.image_tokens(*feats)
            assert torch.equal(got_tokens, tokens)
            got = run_unet(unet, inputs, fresh.cross_attention_kwargs(got_tokens, 0.8, 0.8))
            assert torch.equal(got, reference)
        finally:
            fresh.uninstall(unet)


def test_load_onto_meta_adapter_assigns_in_target_dtype(tiny, tmp_path):
    unet, adapter = tiny
    path = _save_bin(adapter.state_dict_for_checkpoint(), tmp_path / "mask.bin")
    with torch.device("meta"):
        lazy = StoryMakerAdapter.for_unet(unet, clip_dim=TINY_CLIP_DIM, rank=8)
    lazy.load_checkpoint(path, dtype=torch.bfloat16)
    params = list(lazy.parameters())
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 and not p.requires_grad for p in params)
    expected = adapter.state_dict_for_checkpoint()["image_proj_model"]["pos_embed"].to(torch.bfloat16)
    assert torch.equal(lazy.image_proj.pos_embed, expected)

    unet_half = tiny_unet().to(torch.float16)
    built = StoryMakerAdapter.from_checkpoint(path, unet_half, clip_dim=TINY_CLIP_DIM, rank=8)
    assert {p.dtype for p in built.parameters()} == {torch.float16}
    assert torch.equal(built.image_proj.pos_embed, adapter.image_proj.pos_embed.detach().half())


def test_load_copies_into_existing_half_params(tiny, tmp_path):
    unet, adapter = tiny
    path = _save_bin(adapter.state_dict_for_checkpoint(), tmp_path / "mask.bin")
    half = tiny_adapter(unet, seed=5).to(torch.float16)
    before = half.image_proj.pos_embed
    half.load_checkpoint(path)
    assert half.image_proj.pos_embed is before and before.dtype == torch.float16
    assert torch.equal(before, adapter.image_proj.pos_embed.detach().half())


def test_checkpoint_is_unpickled_once(tiny, tmp_path, monkeypatch):
    unet, adapter = tiny
    path = _save_bin(adapter.state_dict_for_checkpoint(), tmp_path / "mask.bin")
    calls = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    tiny_adapter(unet, seed=4).load_checkpoint(path)
    assert len(calls) == 1 and calls[0]["weights_only"] is True and calls[0]["mmap"] is True


# ---------------------------------------------------------------- strict check messages

def test_strict_check_lists_every_problem_in_one_error(tiny, tmp_path):
    unet, adapter = tiny
    state = adapter.state_dict_for_checkpoint()
    del state["image_proj_model"]["pos_embed"]
    del state["ip_adapter"]["3.to_v_ip.weight"]
    state["ip_adapter"]["99.to_q_lora.down.weight"] = torch.zeros(8, 32)
    state["image_proj_model"]["proj_out.weight"] = torch.zeros(3, 3)
    fresh = tiny_adapter(unet, seed=2)
    snapshot = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        fresh.load_checkpoint(state)
    message = str(info.value)
    assert "2 missing, 1 unexpected, 1 wrong shape" in message
    assert "missing key image_proj_model.pos_embed (expected shape [3, 20, 64])" in message
    assert "missing key ip_adapter.3.to_v_ip.weight" in message
    assert "unexpected key ip_adapter.99.to_q_lora.down.weight (shape [8, 32])" in message
    assert "wrong shape for image_proj_model.proj_out.weight: checkpoint [3, 3], expected [64, 64]" in message
    assert "mask.bin" in message  # says what to use
    # nothing was half-loaded
    assert all(torch.equal(v, snapshot[k]) for k, v in fresh.state_dict().items())


def test_error_listing_is_capped_with_counts(tiny):
    _, adapter = tiny
    state = adapter.state_dict_for_checkpoint()
    state["ip_adapter"] = {}
    with pytest.raises(CheckpointError) as info:
        tiny_adapter(tiny[0], seed=2).load_checkpoint(state)
    message = str(info.value)
    total = len(adapter.layout()["ip_adapter"])
    assert f"{total} missing" in message
    assert f"... and {total - checkpoint_mod.MAX_LISTED_PROBLEMS} more" in message
    assert message.count("  - ") == checkpoint_mod.MAX_LISTED_PROBLEMS


def test_non_strict_skips_missing_but_not_wrong_shapes(tiny):
    unet, adapter = tiny
    state = adapter.state_dict_for_checkpoint()
    del state["image_proj_model"]["bg_embed"]
    fresh = tiny_adapter(unet, seed=2)
    kept = fresh.image_proj.bg_embed.detach().clone()
    fresh.load_checkpoint(state, strict=False)
    assert torch.equal(fresh.image_proj.bg_embed, kept)
    assert torch.equal(fresh.image_proj.pos_embed, state["image_proj_model"]["pos_embed"])
    state["image_proj_model"]["pos_embed"] = torch.zeros(2, 20, 64)
    with pytest.raises(CheckpointError, match="wrong shape"):
        fresh.load_checkpoint(state, strict=False)


def test_missing_top_level_section_is_reported(tiny_layout):
    problems = check_checkpoint({"image_proj_model": {}, "extra": {}}, tiny_layout)
    assert "unexpected top-level entry 'extra'" in problems
    assert any(p.startswith("missing top-level entry 'ip_adapter'") for p in problems)


# ---------------------------------------------------------------- files that are not checkpoints

class _Evil:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _malicious_files(tmp_path):
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.bin"
    torch.save({"image_proj_model": {"pos_embed": _Evil(marker)}, "ip_adapter": {}}, zipped)
    legacy = tmp_path / "evil_legacy.pt"
    torch.save({"image_proj_model": _Evil(marker)}, legacy, _use_new_zipfile_serialization=False)
    raw = tmp_path / "evil_raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    return marker, (zipped, legacy, raw)


def test_pickles_with_code_are_refused_without_running(tmp_path):
    marker, files = _malicious_files(tmp_path)
    for path in files:
        with pytest.raises(CheckpointError, match="not a StoryMaker adapter checkpoint"):
            load_checkpoint_state(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n" * 10, b"PK\x03\x04garbage" * 5,
                                     b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage"])
def test_garbage_files_are_not_checkpoints(tmp_path, content):
    path = tmp_path / "mask.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a StoryMaker adapter checkpoint"):
        load_checkpoint_state(path)


def test_wrong_top_level_and_missing_file(tmp_path):
    path = tmp_path / "other.bin"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="top-level keys \\['state_dict'\\]"):
        load_checkpoint_state(path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="list"):
        load_checkpoint_state(path)
    with pytest.raises(CheckpointError, match="RED-AIGC/StoryMaker"):
        load_checkpoint_state(tmp_path / "absent.bin")


def test_flat_torch_checkpoint_is_accepted(tiny, tmp_path):
    _, adapter = tiny
    state = adapter.state_dict_for_checkpoint()
    flat = {f"{s}.{k}": v for s, sec in state.items() for k, v in sec.items()}
    torch.save(flat, tmp_path / "flat.pt")
    loaded = load_checkpoint_state(tmp_path / "flat.pt")
    assert check_checkpoint(loaded, adapter.layout()) == []


# ---------------------------------------------------------------- CLI

def _shaped_state(layout):
    """A checkpoint with the layout's keys and shapes, made of stride-0 views of one element
    (the file is a few hundred KB; nothing large is allocated)."""
    one = torch.zeros(1, dtype=torch.float16)
    return {
        section: {k: one.expand(*shape) if shape else one.reshape(()) for k, shape in layout[section].items()}
        for section in ("image_proj_model", "ip_adapter")
    }


def test_cli_check_accepts_a_checkpoint_with_the_sdxl_layout(fixture_layout, tmp_path, capsys):
    path = tmp_path / "mask.bin"
    torch.save(_shaped_state(fixture_layout), path)
    assert path.stat().st_size < 2_000_000
    assert cli_main(["adapter", "check", str(path)]) == 0
    out = capsys.readouterr().out.strip()
    total = sum(fixture_layout["param_counts"].values())
    assert out.count("\n") == 0
    assert f"1373 keys, {total:,} parameters, 140 attention processors (float16)" in out


def test_cli_check_lists_every_problem(fixture_layout, tmp_path, capsys):
    state = _shaped_state(fixture_layout)
    removed = [k for k in list(state["ip_adapter"]) if k.startswith("7.")]
    for key in removed:
        del state["ip_adapter"][key]
    state["image_proj_model"]["pos_embed"] = torch.zeros(2, 20, 2048)
    path = tmp_path / "mask.bin"
    torch.save(state, path)
    assert cli_main(["adapter", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{len(removed)} missing, 1 wrong shape" in err
    assert all(f"missing key ip_adapter.{k}" in err for k in removed)  # every one, no cap
    assert "more" not in err
    assert "Traceback" not in err


def test_cli_check_tiny_with_unet_config_and_convert(tiny, tmp_path, capsys):
    _, adapter = tiny
    config = tmp_path / "unet" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(dict(TINY_UNET_CONFIG, _class_name="UNet2DConditionModel")))
    src = tmp_path / "tiny.bin"
    torch.save(adapter.state_dict_for_checkpoint(), src)
    # default (SDXL) layout: every key is wrong
    assert cli_main(["adapter", "check", str(src)]) == 2
    capsys.readouterr()
    # rank 8 LoRA does not match the rank-128 layout either -> listed as wrong shapes
    assert cli_main(["adapter", "check", str(src), "--unet-config", str(tmp_path), "--clip-dim", "32"]) == 2
    assert "wrong shape for ip_adapter.0.to_q_lora.down.weight" in capsys.readouterr().err

    full_rank = tiny_adapter(tiny[0], seed=1, rank=128)
    torch.save(full_rank.state_dict_for_checkpoint(), src)
    assert cli_main(["adapter", "check", str(src), "--unet-config", str(config), "--clip-dim", "32"]) == 0
    assert capsys.readouterr().out.startswith(f"OK {src}")

    out = tmp_path / "tiny.safetensors"
    assert cli_main(["adapter", "convert", str(src), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    reloaded = load_checkpoint_state(out)
    original = full_rank.state_dict_for_checkpoint()
    for section in original:
        assert all(torch.equal(reloaded[section][k], v) for k, v in original[section].items())
    assert cli_main(["adapter", "convert", str(src), str(tmp_path / "x.bin")]) == 2


def test_cli_check_refuses_malicious_and_garbage_files(tmp_path, capsys):
    marker, files = _malicious_files(tmp_path)
    for path in files:
        assert cli_main(["adapter", "check", str(path)]) == 2
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a model\n")
    assert cli_main(["adapter", "check", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert "never run" in err and "Traceback" not in err
    assert not marker.exists()


def test_cli_entry_point_in_a_subprocess(tmp_path):
    marker, files = _malicious_files(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "storymaker", "adapter", "check", str(files[0])],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not marker.exists()
