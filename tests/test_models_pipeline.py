"""StoryMakerPipeline on tiny random components (CPU, 2 steps at 64x64)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from net_guard import no_network, refuse_model_loads  # noqa: F401  (no_network: a fixture)
from storymaker.errors import CheckpointError, ConditioningError
from storymaker.models.attention import IMAGE_TOKENS_KWARG, IP_SCALE_KWARG, LORA_SCALE_KWARG
from storymaker.models.pipeline import StoryMakerPipeline
from storymaker.models.tiny import (
    TINY_CLIP_HIDDEN,
    TINY_CLIP_TOKENS,
    tiny_adapter,
    tiny_components,
    tiny_conditioning,
    tiny_pipeline,
)

SIZE = 64
STEPS = 2



def _quiet(pipe: StoryMakerPipeline) -> StoryMakerPipeline:
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe() -> StoryMakerPipeline:
    return _quiet(tiny_pipeline(with_controlnet=True))


@pytest.fixture(scope="module")
def pipe_no_controlnet() -> StoryMakerPipeline:
    return _quiet(tiny_pipeline(with_controlnet=False))


def render(pipe, characters=(), seed: int = 0, **kwargs) -> np.ndarray:
    kwargs.setdefault("prompt", "a knight and a dragon")
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("width", SIZE)
    kwargs.setdefault("height", SIZE)
    out = pipe(characters=list(characters), generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs)
    return out.images


def pose_image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


@contextlib.contextmanager
def record_calls(module: torch.nn.Module):
    """Record the kwargs of every forward call of ``module``."""
    calls: list[dict] = []

    def hook(_module, args, kwargs):
        calls.append({"args": args, **kwargs})

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def differ(a: np.ndarray, b: np.ndarray, threshold: float = 1e-4) -> bool:
    return float(np.abs(a - b).max()) > threshold


# ------------------------------------------------------------------------------------ rendering
@pytest.mark.parametrize("guidance", [1.0, 7.5])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_characters_with_and_without_pose(pipe, count, guidance):
    characters = tiny_conditioning(count, seed=count)
    with record_calls(pipe.unet) as unet_calls, record_calls(pipe.controlnet) as cn_calls:
        plain = render(pipe, characters, guidance_scale=guidance)
    assert plain.shape == (1, SIZE, SIZE, 3) and np.isfinite(plain).all()
    assert len(unet_calls) == STEPS and not cn_calls  # no pose: the ControlNet does not run
    batch = 2 if guidance > 1 else 1  # guidance <= 1: only the conditional branch
    assert all(call["args"][0].shape[0] == batch for call in unet_calls)
    tokens = unet_calls[0]["cross_attention_kwargs"][IMAGE_TOKENS_KWARG]
    assert tokens.shape == (batch, 20 * (count + 1), 64)

    with record_calls(pipe.unet) as unet_calls, record_calls(pipe.controlnet) as cn_calls:
        posed = render(pipe, characters, guidance_scale=guidance, pose_image=pose_image())
    assert posed.shape == (1, SIZE, SIZE, 3) and np.isfinite(posed).all()
    assert len(cn_calls) == STEPS and len(unet_calls) == STEPS
    assert unet_calls[0]["down_block_additional_residuals"] is not None
    assert differ(plain, posed)


def test_image_tokens_are_conditional_and_zero_unconditional(pipe):
    characters = tiny_conditioning(2, seed=5)
    with record_calls(pipe.unet) as calls:
        render(pipe, characters, guidance_scale=7.5, ip_adapter_scale=0.6, lora_scale=0.3)
    kwargs = calls[0]["cross_attention_kwargs"]
    assert kwargs[IP_SCALE_KWARG] == 0.6 and kwargs[LORA_SCALE_KWARG] == 0.3
    tokens = kwargs[IMAGE_TOKENS_KWARG]
    cond, uncond = pipe.adapter.image_tokens_for(characters)
    torch.testing.assert_close(tokens[1:], cond)
    torch.testing.assert_close(tokens[:1], uncond)
    zeros = torch.zeros(1, 2, TINY_CLIP_TOKENS, TINY_CLIP_HIDDEN)
    torch.testing.assert_close(tokens[:1], pipe.adapter.image_tokens(torch.zeros(1, 2, 512), zeros, zeros))


def test_same_seed_same_image_and_characters_matter(pipe):
    one = tiny_conditioning(1, seed=1)
    other = tiny_conditioning(1, seed=2)
    a = render(pipe, one, seed=3)
    b = render(pipe, one, seed=3)
    np.testing.assert_array_equal(a, b)
    assert differ(a, render(pipe, other, seed=3))
    assert differ(a, render(pipe, one, seed=4))


def test_outfit_replaces_only_that_characters_body(pipe):
    characters = tiny_conditioning(2, seed=7)
    outfit = torch.randn(TINY_CLIP_TOKENS, TINY_CLIP_HIDDEN, generator=torch.Generator().manual_seed(9))
    with record_calls(pipe.unet) as base_calls:
        base = render(pipe, characters, guidance_scale=1.0)
    with record_calls(pipe.unet) as outfit_calls:
        dressed = render(pipe, characters, guidance_scale=1.0, outfits=[outfit, None])
    before = base_calls[0]["cross_attention_kwargs"][IMAGE_TOKENS_KWARG]
    after = outfit_calls[0]["cross_attention_kwargs"][IMAGE_TOKENS_KWARG]
    torch.testing.assert_close(after[:, :20], before[:, :20])  # background
    assert not torch.allclose(after[:, 20:40], before[:, 20:40])  # character 0 wears the outfit
    torch.testing.assert_close(after[:, 40:60], before[:, 40:60])  # character 1 keeps its own body
    expected, _ = pipe.adapter.image_tokens_for([characters[0].with_outfit(outfit), characters[1]])
    torch.testing.assert_close(after, expected)
    assert differ(base, dressed)
    # The outfit belongs to its slot: on character 1 it changes only character 1's tokens.
    with record_calls(pipe.unet) as calls:
        render(pipe, characters, guidance_scale=1.0, outfits=[None, outfit])
    swapped = calls[0]["cross_attention_kwargs"][IMAGE_TOKENS_KWARG]
    torch.testing.assert_close(swapped[:, :40], before[:, :40])
    assert not torch.allclose(swapped[:, 40:60], before[:, 40:60])


def test_prompt_embeddings_can_be_reused(pipe):
    characters = tiny_conditioning(1, seed=11)
    from_text = render(pipe, characters, prompt="a castle", negative_prompt="blurry")
    pe, npe, ppe, nppe = pipe.encode_prompt("a castle", negative_prompt="blurry", device=torch.device("cpu"))
    from_embeds = render(
        pipe,
        characters,
        prompt=None,
        prompt_embeds=pe,
        negative_prompt_embeds=npe,
        pooled_prompt_embeds=ppe,
        negative_pooled_prompt_embeds=nppe,
    )
    np.testing.assert_allclose(from_text, from_embeds, atol=1e-6)


# ------------------------------------------------------------------------------------ equivalence
@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_zero_scales_equal_plain_sdxl(guidance):
    from diffusers import StableDiffusionXLPipeline

    components = tiny_components(seed=0)
    plain_parts = {k: copy.deepcopy(components[k]) for k in ("vae", "text_encoder", "text_encoder_2", "unet", "scheduler")}
    plain_parts.update(tokenizer=components["tokenizer"], tokenizer_2=components["tokenizer_2"])
    plain = _quiet(StableDiffusionXLPipeline(**plain_parts, add_watermarker=False))
    ours = _quiet(StoryMakerPipeline(**components))
    expected = plain(
        "a knight",
        num_inference_steps=STEPS,
        width=SIZE,
        height=SIZE,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(1),
        output_type="np",
    ).images
    got = render(
        ours, tiny_conditioning(2), seed=1, prompt="a knight", guidance_scale=guidance, ip_adapter_scale=0.0, lora_scale=0.0
    )
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # ...and the adapter does change the image at its usual scales.
    assert differ(got, render(ours, tiny_conditioning(2), seed=1, prompt="a knight", guidance_scale=guidance))


def test_empty_negative_prompt_gives_sdxls_zero_embedding():
    """The render path precomputes prompt embeddings (services.pipelines._PipelineEntry.embed): an
    empty negative prompt must give what diffusers' SDXL pipeline uses without one (zeros,
    force_zeros_for_empty_prompt), not the encoding of ""."""
    from diffusers import StableDiffusionXLPipeline

    from storymaker.services.pipelines import _PipelineEntry

    components = tiny_components(seed=0)
    plain_parts = {k: copy.deepcopy(components[k]) for k in ("vae", "text_encoder", "text_encoder_2", "unet", "scheduler")}
    plain_parts.update(tokenizer=components["tokenizer"], tokenizer_2=components["tokenizer_2"])
    plain = _quiet(StableDiffusionXLPipeline(**plain_parts, add_watermarker=False))
    _, sdxl_negative, _, sdxl_negative_pooled = plain.encode_prompt(
        "a knight", device=torch.device("cpu"), do_classifier_free_guidance=True, negative_prompt=None
    )
    ours = _quiet(StoryMakerPipeline(**components))
    entry = _PipelineEntry(ours)
    for empty in ("", "  "):
        negative, negative_pooled = entry.embed(empty, negative=True)
        assert torch.equal(negative, sdxl_negative) and torch.equal(negative_pooled, sdxl_negative_pooled)
    assert not torch.any(sdxl_negative) and not torch.any(sdxl_negative_pooled)
    # A real negative prompt, and an empty positive one, are encoded as diffusers encodes them.
    _, blurry, _, blurry_pooled = plain.encode_prompt(
        "a knight", device=torch.device("cpu"), do_classifier_free_guidance=True, negative_prompt="blurry"
    )
    got, got_pooled = entry.embed("blurry", negative=True)
    torch.testing.assert_close(got, blurry, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_pooled, blurry_pooled, rtol=0, atol=1e-6)
    assert torch.any(entry.embed("")[0])

    # End to end at zero adapter scales: the same image as plain SDXL given no negative prompt.
    prompt_embeds, pooled = entry.embed("a knight")
    negative, negative_pooled = entry.embed("", negative=True)
    expected = plain("a knight", num_inference_steps=STEPS, width=SIZE, height=SIZE, guidance_scale=7.5,
                     generator=torch.Generator().manual_seed(1), output_type="np").images
    got_image = render(ours, tiny_conditioning(1), seed=1, prompt=None, prompt_embeds=prompt_embeds,
                       pooled_prompt_embeds=pooled, negative_prompt_embeds=negative,
                       negative_pooled_prompt_embeds=negative_pooled, ip_adapter_scale=0.0, lora_scale=0.0)
    np.testing.assert_allclose(got_image, expected, atol=1e-4)


def test_fused_equals_unfused_and_calls_never_refuse():
    pipe = _quiet(tiny_pipeline(seed=1))
    characters = tiny_conditioning(2, seed=1)
    unfused = {s: render(pipe, characters, lora_scale=s) for s in (0.8, 0.5)}
    assert differ(unfused[0.8], unfused[0.5])
    weights_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}

    pipe.enable_storymaker_lora_fusion(0.8)
    assert pipe.adapter.fused_scale == 0.8 and pipe.storymaker_lora_fusion
    fused_weights = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    np.testing.assert_allclose(render(pipe, characters, lora_scale=0.8), unfused[0.8], atol=1e-4)
    # Another scale while fused: the processors add the difference; the weights are not touched.
    np.testing.assert_allclose(render(pipe, characters, lora_scale=0.5), unfused[0.5], atol=1e-4)
    assert pipe.adapter.fused_scale == 0.8
    assert all(torch.equal(v, fused_weights[k]) for k, v in pipe.unet.state_dict().items())
    np.testing.assert_allclose(render(pipe, characters, lora_scale=0.8), unfused[0.8], atol=1e-4)

    pipe.disable_storymaker_lora_fusion()
    assert pipe.adapter.fused_scale is None and not pipe.storymaker_lora_fusion
    assert all(torch.equal(v, weights_before[k]) for k, v in pipe.unet.state_dict().items())
    np.testing.assert_array_equal(render(pipe, characters, lora_scale=0.8), unfused[0.8])


def test_checkpoint_round_trip_gives_identical_images(tmp_path):
    source = _quiet(tiny_pipeline(seed=2))
    characters = tiny_conditioning(2, seed=2)
    expected = render(source, characters)
    path = tmp_path / "mask.bin"
    torch.save(source.adapter.state_dict_for_checkpoint(), path)

    components = tiny_components(seed=2, with_adapter=False)
    components["adapter"] = tiny_adapter(components["unet"], seed=99)  # other random weights...
    target = _quiet(StoryMakerPipeline(**components))
    assert differ(render(target, characters), expected)
    target.adapter.load_checkpoint(path)  # ...replaced by the saved ones
    np.testing.assert_array_equal(render(target, characters), expected)


def test_per_call_settings_do_not_leak(pipe):
    characters = tiny_conditioning(2, seed=3)
    first = render(pipe, characters, ip_adapter_scale=0.8, lora_scale=0.8, guidance_scale=7.5)
    outfit = torch.randn(TINY_CLIP_TOKENS, TINY_CLIP_HIDDEN)
    render(
        pipe,
        tiny_conditioning(3, seed=4),
        ip_adapter_scale=0.1,
        lora_scale=0.2,
        guidance_scale=1.0,
        outfits=[outfit, None, outfit],
        pose_image=pose_image(1),
        controlnet_conditioning_scale=1.5,
        negative_prompt="ugly",
    )
    np.testing.assert_array_equal(render(pipe, characters, ip_adapter_scale=0.8, lora_scale=0.8, guidance_scale=7.5), first)
    assert pipe.adapter.fused_scale is None and pipe.adapter.is_installed(pipe.unet)


# ------------------------------------------------------------------------------------ input checks
def _bad(n=1, **changes):
    characters = tiny_conditioning(n)
    if changes:
        characters[0] = dataclasses.replace(characters[0], **changes)
    return characters


BAD_INPUTS = {
    "four characters": dict(characters=tiny_conditioning(4)),
    "face_id shape": dict(characters=_bad(face_id=torch.zeros(511))),
    "face_id batched": dict(characters=_bad(face_id=torch.zeros(1, 512))),
    "clip tokens": dict(characters=_bad(clip_character=torch.zeros(256, TINY_CLIP_HIDDEN))),
    "clip width": dict(characters=_bad(clip_face=torch.zeros(TINY_CLIP_TOKENS, 1280))),
    "outfits length": dict(characters=tiny_conditioning(2), outfits=[None]),
    "outfit shape": dict(characters=tiny_conditioning(1), outfits=[torch.zeros(TINY_CLIP_TOKENS, 8)]),
    "pose size": dict(characters=tiny_conditioning(1), pose_image=Image.new("RGB", (64, 72))),
    "width not multiple of 8": dict(width=60),
    "height not multiple of 8": dict(height=70, pose_image=Image.new("RGB", (64, 70))),
    "no prompt": dict(prompt=None),
    "steps": dict(num_inference_steps=0),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_check_inputs_raise_before_any_compute(pipe, case):
    kwargs = dict(BAD_INPUTS[case])
    with record_calls(pipe.unet) as unet_calls, record_calls(pipe.text_encoder) as text_calls, record_calls(
        pipe.adapter.image_proj
    ) as proj_calls:
        with pytest.raises(ConditioningError):
            render(pipe, kwargs.pop("characters", ()), **kwargs)
    assert not unet_calls and not text_calls and not proj_calls


def test_pose_without_controlnet_is_refused_before_compute(pipe_no_controlnet):
    with record_calls(pipe_no_controlnet.unet) as calls:
        with pytest.raises(ConditioningError, match="ControlNet"):
            render(pipe_no_controlnet, tiny_conditioning(1), pose_image=pose_image())
    assert not calls


def test_error_messages_say_what_to_do(pipe):
    with pytest.raises(ConditioningError, match="at most 3"):
        render(pipe, tiny_conditioning(4))
    with pytest.raises(ConditioningError, match=r"64x72 .* panel is 64x64"):
        render(pipe, tiny_conditioning(1), pose_image=Image.new("RGB", (64, 72)))
    with pytest.raises(ConditioningError, match="re-register"):
        render(pipe, _bad(clip_character=torch.zeros(256, TINY_CLIP_HIDDEN)))


def test_adapter_for_another_unet_is_refused():
    components = tiny_components(seed=0, with_adapter=False)
    from storymaker.models.tiny import tiny_unet
    from diffusers import UNet2DConditionModel

    other = UNet2DConditionModel(**{**tiny_unet().config, "transformer_layers_per_block": (1, 1)})
    components["adapter"] = tiny_adapter(other)
    with pytest.raises(CheckpointError):
        StoryMakerPipeline(**components)


# ------------------------------------------------------------------------------------ interrupt
def test_callback_interrupt_stops_after_current_step(pipe):
    seen = []

    def stop_at_first(p, step, timestep, tensors):
        seen.append((step, tuple(tensors)))
        return {"interrupt": True} if step == 0 else {}

    with record_calls(pipe.unet) as calls:
        out = pipe(
            "a knight",
            characters=tiny_conditioning(1),
            num_inference_steps=4,
            width=SIZE,
            height=SIZE,
            guidance_scale=1.0,
            callback_on_step_end=stop_at_first,
            output_type="np",
        )
    assert len(calls) == 1 and seen == [(0, ("latents",))]
    assert out.interrupted and out.steps_done == 1 and out.images.shape == (1, SIZE, SIZE, 3)

    def cancel_at_second(p, step, timestep, tensors):
        if step == 1:
            p.cancel()
        return None

    with record_calls(pipe.unet) as calls:
        out = pipe("a knight", num_inference_steps=4, width=SIZE, height=SIZE, callback_on_step_end=cancel_at_second)
    assert len(calls) == 2 and out.interrupted and pipe.interrupt
    assert isinstance(out.images[0], Image.Image)

    # The next call is not affected by the previous interrupt.
    with record_calls(pipe.unet) as calls:
        out = pipe("a knight", num_inference_steps=3, width=SIZE, height=SIZE, output_type="latent")
    assert len(calls) == 3 and not out.interrupted and out.steps_done == 3
    assert out.images.shape == (1, 4, SIZE // 2, SIZE // 2)


def test_callback_can_replace_latents(pipe):
    def zero(p, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])}

    a = render(pipe, tiny_conditioning(1), seed=1, callback_on_step_end=zero)
    b = render(pipe, tiny_conditioning(1), seed=2, callback_on_step_end=zero)
    np.testing.assert_allclose(a, b, atol=1e-6)  # the seed's noise was replaced at every step


# ------------------------------------------------------------------------------------ other LoRAs
def _save_tiny_sdxl_lora(directory) -> None:
    """A random rank-4 SDXL LoRA on every attention projection, saved as diffusers saves LoRAs
    (``pytorch_lora_weights.safetensors``)."""
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from storymaker.models.tiny import tiny_unet

    unet = tiny_unet(seed=5)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    StableDiffusionXLPipeline.save_lora_weights(
        directory, unet_lora_layers=get_peft_model_state_dict(unet), safe_serialization=True
    )


def test_sdxl_lora_loads_and_composes_with_the_adapter(tmp_path):
    _save_tiny_sdxl_lora(tmp_path)
    assert (tmp_path / "pytorch_lora_weights.safetensors").is_file()
    pipe = _quiet(tiny_pipeline(seed=3))
    characters = tiny_conditioning(2, seed=3)
    before = render(pipe, characters)

    pipe.load_lora_weights(tmp_path, adapter_name="style")
    assert pipe.adapter.is_installed(pipe.unet)  # the StoryMaker processors survive peft's injection
    styled = render(pipe, characters)
    assert differ(before, styled)  # the LoRA changes the image
    # The adapter still works on top of it: characters and the ip scale still matter.
    assert differ(styled, render(pipe, characters, ip_adapter_scale=0.0))
    assert differ(styled, render(pipe, tiny_conditioning(2, seed=4)))
    pipe.set_adapters(["style"], adapter_weights=[0.0])
    np.testing.assert_allclose(render(pipe, characters), before, atol=1e-5)
    pipe.set_adapters(["style"], adapter_weights=[1.0])
    # StoryMaker LoRA fusion works on peft-wrapped layers too.
    pipe.enable_storymaker_lora_fusion(0.8)
    np.testing.assert_allclose(render(pipe, characters), styled, atol=1e-4)
    pipe.disable_storymaker_lora_fusion()
    pipe.unload_lora_weights()
    np.testing.assert_allclose(render(pipe, characters), before, atol=1e-5)


# ------------------------------------------------------------------------------------ misc
def test_gpu_out_of_memory_becomes_a_user_error(pipe, monkeypatch):
    from storymaker.errors import GPUOutOfMemoryError

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(pipe, "render", oom)
    with pytest.raises(GPUOutOfMemoryError, match="STORYMAKER_CPU_OFFLOAD=1"):
        pipe("a knight")


def test_tiny_builds_are_fast(no_network, monkeypatch):
    """What keeps the tiny builds fast: built in memory (no weights read, no network) and tiny
    (about 4 million parameters in all; the real SDXL UNet alone has 2.6 billion)."""
    loaded = refuse_model_loads(monkeypatch)
    components = tiny_components(seed=1, with_controlnet=True)
    StoryMakerPipeline(**components)
    assert loaded == []
    no_network.check()
    sizes = {name: sum(p.numel() for p in module.parameters())
             for name, module in components.items() if isinstance(module, torch.nn.Module)}
    assert set(sizes) == {"vae", "text_encoder", "text_encoder_2", "unet", "image_encoder", "adapter", "controlnet"}
    assert max(sizes.values()) < 2_000_000 and sum(sizes.values()) < 5_000_000, sizes
    assert tiny_conditioning(3)[2].clip_face.shape == (TINY_CLIP_TOKENS, TINY_CLIP_HIDDEN)
    tokenizer = components["tokenizer"]
    ids = tokenizer("a knight", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77 and ids[0] == tokenizer.bos_token_id


def test_fp16_vae_is_upcast_around_decode_and_restored():
    pipe = _quiet(tiny_pipeline(seed=4))
    latents = torch.randn(1, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(0))
    reference = pipe.decode_latents(latents)
    pipe.vae.to(torch.float16)
    assert pipe.vae.config.force_upcast
    seen = []
    handle = pipe.vae.decoder.register_forward_pre_hook(lambda module, args: seen.append(module.conv_in.weight.dtype))
    try:
        decoded = pipe.decode_latents(latents.half())
    finally:
        handle.remove()
    assert seen == [torch.float32]  # decoded in float32...
    assert pipe.vae.dtype == torch.float16  # ...and the shared VAE is back in float16
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, reference, atol=2e-2, rtol=0)  # only the fp16 round trip of weights differs


def test_runtime_options_on_cpu():
    pipe = _quiet(tiny_pipeline(seed=5))
    pipe.apply_runtime_options(device="cpu", cpu_offload=True, vae_slicing=True, vae_tiling=True, fuse_lora=True,
                               lora_scale=0.6)
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    assert pipe.adapter.fused_scale == 0.6 and pipe.storymaker_lora_fusion
    assert pipe.device.type == "cpu"  # CPU offload needs an accelerator: on the CPU it just stays there
    assert render(pipe, tiny_conditioning(1), lora_scale=0.6).shape == (1, SIZE, SIZE, 3)
    # Fused to serve: no copy of the unfused weights is kept, so unfusing is refused and changes nothing.
    fused = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    for change in (pipe.disable_storymaker_lora_fusion, lambda: pipe.enable_storymaker_lora_fusion(0.9)):
        with pytest.raises(CheckpointError, match="reload the pipeline"):
            change()
        assert pipe.adapter.fused_scale == 0.6
        assert all(torch.equal(v, fused[k]) for k, v in pipe.unet.state_dict().items())
