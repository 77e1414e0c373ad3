"""The placement policy (issue 11): where each component is during a render, per memory mode.

No GPU here: the "accelerator" is a stand-in. Every move goes through Placement.move and its mover
(``module.to``), which the test wraps to record; placement.location says where each component is,
recorded from hooks while the UNet, the ControlNet, the VAE and each encoder run.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from storymaker.config import Settings
from storymaker.errors import ConfigError
from storymaker.models.placement import (
    ACCELERATOR,
    HOST,
    ON_DEMAND_COMPONENTS,
    RESIDENT_COMPONENTS,
    Placement,
    apply_placement,
    resolve_memory_mode,
)
from storymaker.models.tiny import tiny_conditioning, tiny_pipeline


def _render(pipe, seed=1):
    pose = Image.new("RGB", (64, 64), (30, 30, 30))
    return pipe("a keeper on a cliff", characters=tiny_conditioning(2), pose_image=pose, width=64, height=64,
                num_inference_steps=2, generator=torch.Generator().manual_seed(seed), output_type="pt").images


def _watch(pipe, placement, names):
    """Snapshots of placement.location taken whenever one of ``names`` runs forward."""
    seen: dict[str, list[dict[str, str]]] = {name: [] for name in names}
    hooks = []
    for name in names:
        module = getattr(pipe, name) if name != "vae" else pipe.vae.decoder

        def snap(mod, args, kwargs, name=name):
            seen[name].append(dict(placement.location))

        hooks.append(module.register_forward_pre_hook(snap, with_kwargs=True))
    return seen, hooks


def test_balanced_mode_encoders_visit_the_accelerator_only_while_they_run():
    pipe = tiny_pipeline(with_controlnet=True)
    pipe.set_progress_bar_config(disable=True)
    reference = _render(pipe)  # everything in one place

    moved = []

    def mover(module, device):  # the wrapped .to(): records, then moves (CPU stands in for the GPU)
        moved.append((type(module).__name__, str(device)))
        return module.to(device)

    placement = apply_placement(pipe, "cpu", "balanced", mover=mover)
    assert placement is pipe._storymaker_placement
    assert {n: placement.location[n] for n in RESIDENT_COMPONENTS} == dict.fromkeys(RESIDENT_COMPONENTS, ACCELERATOR)
    assert {n: placement.location[n] for n in ON_DEMAND_COMPONENTS} == dict.fromkeys(ON_DEMAND_COMPONENTS, HOST)

    seen, hooks = _watch(pipe, placement, ["unet", "controlnet", "vae", "text_encoder", "text_encoder_2", "image_encoder"])
    placement.moves.clear()
    out = _render(pipe)
    from storymaker.perception.clip import ClipImageEncoder

    features = ClipImageEncoder(pipe.image_encoder, name="tiny").encode([Image.new("RGB", (224, 224), (200, 10, 10))])
    for hook in hooks:
        hook.remove()

    assert torch.equal(out, reference)  # placement changes where, never what
    assert features.shape[-1] == pipe.image_encoder.config.hidden_size
    # While the denoiser and the decoder run, the encoders are off the accelerator.
    for name in ("unet", "controlnet", "vae"):
        assert seen[name], name
        for snapshot in seen[name]:
            assert all(snapshot[e] == HOST for e in ON_DEMAND_COMPONENTS), (name, snapshot)
            assert all(snapshot[r] == ACCELERATOR for r in RESIDENT_COMPONENTS), (name, snapshot)
    # Each encoder is on the accelerator while it runs (and only it).
    for name in ON_DEMAND_COMPONENTS:
        assert seen[name], name
        for snapshot in seen[name]:
            assert snapshot[name] == ACCELERATOR
            assert all(snapshot[o] == HOST for o in ON_DEMAND_COMPONENTS if o != name)
    # Afterwards all are back on the host; every visit was a pair of moves, in order.
    assert all(placement.location[n] == HOST for n in ON_DEMAND_COMPONENTS)
    for name in ON_DEMAND_COMPONENTS:
        visits = [where for who, where in placement.moves if who == name]
        assert visits and visits == [ACCELERATOR, HOST] * (len(visits) // 2)
    assert not any(who in RESIDENT_COMPONENTS for who, _ in placement.moves)  # residents never moved
    assert ("CLIPTextModel", "cpu") in moved and ("CLIPVisionModelWithProjection", "cpu") in moved


def test_leaving_the_accelerator_is_a_pointer_change_not_a_copy():
    pipe = tiny_pipeline()
    placement = Placement("cpu", "balanced").apply(pipe)
    kept = {k: p.data_ptr() for k, p in pipe.text_encoder.named_parameters()}
    placement.move("text_encoder", pipe.text_encoder, ACCELERATOR)
    placement.move("text_encoder", pipe.text_encoder, HOST)
    assert {k: p.data_ptr() for k, p in pipe.text_encoder.named_parameters()} == kept


def test_resident_mode_moves_everything_once_and_adds_no_hooks():
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    placement = apply_placement(pipe, "cpu", "resident")
    assert set(placement.location.values()) == {ACCELERATOR}
    before = len(placement.moves)
    _render_plain = pipe("x", width=64, height=64, num_inference_steps=1, output_type="latent").images
    assert _render_plain.shape[0] == 1 and len(placement.moves) == before
    # A new placement replaces the old one's hooks.
    balanced = apply_placement(pipe, "cpu", "balanced")
    resident = apply_placement(pipe, "cpu", "resident")
    assert resident is pipe._storymaker_placement and balanced._hooks == []


def test_apply_runtime_options_uses_the_policy():
    pipe = tiny_pipeline()
    pipe.apply_runtime_options(device="cpu", memory_mode="balanced")
    assert pipe._storymaker_placement.mode == "balanced"
    pipe.apply_runtime_options(device="cpu", memory_mode="auto")
    assert pipe._storymaker_placement.mode == "resident"  # auto on the CPU


def test_resolve_memory_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    settings = Settings(data_dir=tmp_path)
    assert resolve_memory_mode(settings, "cuda") == "balanced"
    assert resolve_memory_mode(settings, "cpu") == "resident"
    assert resolve_memory_mode(settings.replace(cpu_offload=True), "cuda") == "offload"
    assert resolve_memory_mode(settings.replace(memory_mode="resident"), "cuda") == "resident"
    from types import SimpleNamespace

    zero_gpu_on = SimpleNamespace(memory_mode="auto", cpu_offload=False, zero_gpu="on")  # the app's ZeroGPU setting
    assert resolve_memory_mode(zero_gpu_on, "cuda") == "resident"
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert resolve_memory_mode(settings, "cuda") == "resident"
    with pytest.raises(ConfigError, match="memory mode"):
        Placement("cpu", "everywhere")


def test_balanced_mode_decodes_a_float16_vae_in_bfloat16_without_drift():
    """The SDXL VAE overflows in float16 and decodes in float32 (3.3 GiB of activations at 1024x1024,
    the largest allocation of a panel: benchmarks/memory_estimate.py). Balanced keeps it in bfloat16
    (float32's range, half the memory); resident keeps it as loaded. The placement rounds the VAE's
    weights once; renders never change them, and the image stays close to the float32 decode."""
    resident = tiny_pipeline(with_controlnet=True, dtype=torch.float16)
    resident.set_progress_bar_config(disable=True)
    assert resident.vae.config.force_upcast
    assert apply_placement(resident, "cpu", "resident").vae_dtype is None
    assert resident.vae.dtype == torch.float16
    reference = _render(resident).float()

    balanced = tiny_pipeline(with_controlnet=True, dtype=torch.float16)
    balanced.set_progress_bar_config(disable=True)
    placement = apply_placement(balanced, "cpu", "balanced")
    assert placement.vae_dtype == torch.bfloat16 and balanced.vae.dtype == torch.bfloat16
    assert balanced.unet.dtype == torch.float16  # only the VAE changes
    vae_before = {k: v.clone() for k, v in balanced.vae.state_dict().items()}
    unet_before = {k: v.clone() for k, v in balanced.unet.state_dict().items()}
    first, second = _render(balanced).float(), _render(balanced).float()
    assert torch.equal(first, second)  # the same seed gives the same image
    assert all(torch.equal(v, vae_before[k]) for k, v in balanced.vae.state_dict().items())
    assert all(torch.equal(v, unet_before[k]) for k, v in balanced.unet.state_dict().items())
    assert torch.isfinite(first).all()
    difference = float((first - reference).abs().max())  # images in 0..1
    assert 0 < difference < 0.02, difference  # measured 0.0079 (two grey levels of 255)


def test_a_float32_vae_or_resident_mode_keeps_the_vae_as_loaded():
    pipe = tiny_pipeline()  # float32: decodes in float32 without an upcast
    assert apply_placement(pipe, "cpu", "balanced").vae_dtype is None and pipe.vae.dtype == torch.float32
    from storymaker.models.placement import bfloat16_is_native

    assert bfloat16_is_native(torch.device("cpu")) and not bfloat16_is_native(torch.device("mps"))


def test_offload_mode_brings_in_one_block_at_a_time():
    """Offload: every component waits on the host; the UNet and the ControlNet visit the accelerator a
    block at a time (the adapter's processors inside them), so the peak holds one block's weights,
    not a whole model's. The image is bit-identical to resident's."""
    pipe = tiny_pipeline(with_controlnet=True)
    pipe.set_progress_bar_config(disable=True)
    reference = _render(pipe)
    placement = apply_placement(pipe, "cpu", "offload")
    units = [n for n in placement.location if n.startswith(("unet.down_blocks.", "unet.up_blocks.", "unet.mid_block",
                                                            "controlnet.down_blocks.", "controlnet.mid_block"))]
    assert len(units) == len(pipe.unet.down_blocks) + len(pipe.unet.up_blocks) + 1 + len(pipe.controlnet.down_blocks) + 1
    on_demand = units + list(ON_DEMAND_COMPONENTS) + ["vae.decoder", "adapter.image_proj"]
    assert all(placement.location[n] == HOST for n in on_demand)
    assert placement.location["unet.conv_in"] == ACCELERATOR and placement.location["controlnet.conv_in"] == ACCELERATOR

    seen = []
    hooks = [block.register_forward_pre_hook(lambda *_: seen.append(dict(placement.location)))
             for block in list(pipe.unet.down_blocks) + list(pipe.unet.up_blocks) + list(pipe.controlnet.down_blocks)]
    placement.moves.clear()
    out = _render(pipe)
    for hook in hooks:
        hook.remove()

    assert torch.equal(out, reference)
    assert seen
    for snapshot in seen:  # while a block runs, it is the only block there
        assert sum(snapshot[n] == ACCELERATOR for n in units) == 1, snapshot
        assert all(snapshot[n] == HOST for n in ON_DEMAND_COMPONENTS)
    assert all(placement.location[n] == HOST for n in on_demand)  # all back afterwards
    for name in units + ["vae.decoder", "adapter.image_proj"]:
        visits = [where for who, where in placement.moves if who == name]
        assert visits and visits == [ACCELERATOR, HOST] * (len(visits) // 2), name
    # The processors of the adapter are inside the UNet's blocks: they travel with them.
    processor_params = {id(p) for p in pipe.adapter.ip_adapter.parameters()}
    in_blocks = {id(p) for b in list(pipe.unet.down_blocks) + [pipe.unet.mid_block] + list(pipe.unet.up_blocks)
                 for p in b.parameters()}
    assert processor_params and processor_params <= in_blocks


def _hooks_on(pipe) -> int:
    """Forward (pre-)hooks on every module of the pipeline's components."""
    modules = [m for name in RESIDENT_COMPONENTS + ON_DEMAND_COMPONENTS
               if isinstance(getattr(pipe, name, None), torch.nn.Module) for m in getattr(pipe, name).modules()]
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in modules)


@pytest.mark.parametrize("other", ["balanced", "offload"])
def test_switching_modes_restores_what_the_previous_placement_changed(other):
    """Balanced and offload keep a float16 VAE in bfloat16 (bf16 is native on the CPU); a later resident
    placement of the same pipeline (benchmarks/gpu_check.py switches modes in one process) must give the
    VAE back bit for bit, drop the earlier placement's hooks and host copies, and render exactly as a
    fresh resident pipeline does."""
    import gc
    import weakref

    pipe = tiny_pipeline(with_controlnet=True, dtype=torch.float16)
    pipe.set_progress_bar_config(disable=True)
    vae_loaded = {k: v.clone() for k, v in pipe.vae.state_dict().items()}
    apply_placement(pipe, "cpu", "resident")
    first = _render(pipe)
    hooks_loaded = _hooks_on(pipe)  # after a render: transformers adds its own on the first forward

    placement = apply_placement(pipe, "cpu", other)
    assert pipe.vae.dtype == torch.bfloat16 and _hooks_on(pipe) > hooks_loaded
    middle = _render(pipe)
    assert torch.isfinite(middle.float()).all()
    gone = weakref.ref(placement)
    del placement

    apply_placement(pipe, "cpu", "resident")
    assert pipe.vae.dtype == torch.float16
    vae_now = pipe.vae.state_dict()
    assert vae_now.keys() == vae_loaded.keys()
    assert all(vae_now[k].dtype == v.dtype and torch.equal(vae_now[k], v) for k, v in vae_loaded.items())
    assert _hooks_on(pipe) == hooks_loaded  # the earlier placement's hooks are gone
    gc.collect()
    assert gone() is None  # nothing (hooks, host copies) keeps the earlier placement alive
    again = _render(pipe)
    assert torch.equal(again, first)

    fresh = tiny_pipeline(with_controlnet=True, dtype=torch.float16)
    fresh.set_progress_bar_config(disable=True)
    apply_placement(fresh, "cpu", "resident")
    assert torch.equal(_render(fresh), first)


def test_removing_a_placement_gives_the_vae_back():
    """benchmarks/gpu_check.py removes each placement before the next: remove restores the VAE too."""
    pipe = tiny_pipeline(dtype=torch.float16)
    loaded = {k: v.clone() for k, v in pipe.vae.state_dict().items()}
    placement = apply_placement(pipe, "cpu", "offload")
    assert pipe.vae.dtype == torch.bfloat16
    placement.remove(pipe)
    assert pipe.vae.dtype == torch.float16 and _hooks_on(pipe) == 0
    assert all(torch.equal(pipe.vae.state_dict()[k], v) for k, v in loaded.items())
    placement.remove(pipe)  # a second remove changes nothing
    assert all(torch.equal(pipe.vae.state_dict()[k], v) for k, v in loaded.items())
