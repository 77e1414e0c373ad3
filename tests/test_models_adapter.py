"""StoryMaker image projection, attention processors and LoRA fusion on tiny real-architecture models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models_helpers import (
    TINY_CLIP_DIM,
    character_inputs,
    randomize_,
    run_unet,
    tiny_adapter,
    tiny_unet,
    unet_inputs,
)
from storymaker.errors import ConditioningError
from storymaker.models.attention import StoryMakerIPAttnProcessor, StoryMakerLoRAAttnProcessor, attention_dims
from storymaker.models.projection import PerceiverAttention, StoryMakerImageProjection


@pytest.fixture(scope="module")
def projection():
    torch.manual_seed(0)
    proj = StoryMakerImageProjection(cross_attention_dim=64, clip_dim=TINY_CLIP_DIM).eval()
    randomize_(proj, seed=3)
    return proj


@pytest.fixture(scope="module")
def unet_and_adapter():
    unet = tiny_unet()
    adapter = tiny_adapter(unet)
    return unet, adapter


# ---------------------------------------------------------------- projection

@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_projection_token_count_and_background_first(projection, count):
    face_id, clip_char, clip_face = character_inputs(2, count)
    with torch.no_grad():
        tokens = projection(face_id, clip_char, clip_face)
    assert tokens.shape == (2, 20 * (count + 1), 64)
    assert torch.equal(tokens[:, :20], projection.bg_embed.expand(2, -1, -1))
    assert torch.isfinite(tokens).all()


def test_projection_rejects_four_characters(projection):
    with pytest.raises(ConditioningError, match="at most 3"):
        projection(*character_inputs(1, 4))


def test_projection_rejects_wrong_feature_width(projection):
    face_id, clip_char, clip_face = character_inputs(1, 1, clip_dim=TINY_CLIP_DIM + 1)
    with pytest.raises(ConditioningError, match="clip_character"):
        projection(face_id, clip_char, clip_face)


def test_projection_characters_are_independent_and_positioned(projection):
    """Character i's tokens depend only on its own inputs and its slot (pos_embed[i])."""
    face_id, clip_char, clip_face = character_inputs(1, 2, seed=5)
    with torch.no_grad():
        both = projection(face_id, clip_char, clip_face)
        first = projection(face_id[:, :1], clip_char[:, :1], clip_face[:, :1])
        swapped = projection(face_id.flip(1), clip_char.flip(1), clip_face.flip(1))
    torch.testing.assert_close(both[:, :40], first, rtol=1e-5, atol=1e-5)
    # the same character in slot 1 instead of slot 0 gets other tokens (position embedding)
    assert not torch.allclose(swapped[:, 40:60], both[:, 20:40], atol=1e-4)


def test_projection_matches_spec_formula(projection):
    """Recompute one character's tokens from the formulas of SPEC-model.md."""
    face_id, clip_char, clip_face = character_inputs(1, 1, seed=9)
    p = projection
    with torch.no_grad():
        x = p.norm(p.proj[2](F.gelu(p.proj[0](face_id[0]))).reshape(1, 4, 64))

        def perceive(module, latents, features):
            features = module.proj_in(features)
            for attn, ff in module.layers:
                latents = attn(features, latents) + latents
                latents = ff(latents) + latents
            return module.norm_out(module.proj_out(latents))

        face_tokens = x + perceive(p.perceiver_resampler, x, clip_face[0])
        clip_tokens = perceive(p.resample, p.resample.latents, clip_char[0])
        tokens = torch.cat([face_tokens, clip_tokens], dim=1) + p.pos_embed[0]
        out = p.norm_out(p.proj_out(tokens)) + tokens
        expected = torch.cat([p.bg_embed, out], dim=1)
        torch.testing.assert_close(p(face_id, clip_char, clip_face), expected, rtol=1e-5, atol=1e-5)


def test_perceiver_attention_is_attention_over_features_and_latents():
    """(q*s)@(k*s)^T with s = dim_head^-1/4 is softmax(q k^T / sqrt(dim_head)) over concat(features, latents)."""
    torch.manual_seed(0)
    attn = PerceiverAttention(dim=32, dim_head=8, heads=4).eval()
    randomize_(attn, seed=1, std=0.3)
    features, latents = torch.randn(2, 11, 32), torch.randn(2, 5, 32)
    with torch.no_grad():
        f, l = attn.norm1(features), attn.norm2(latents)
        q = attn.to_q(l).view(2, 5, 4, 8).transpose(1, 2)
        k, v = attn.to_kv(torch.cat([f, l], dim=1)).chunk(2, dim=-1)
        k, v = (t.view(2, 16, 4, 8).transpose(1, 2) for t in (k, v))
        ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 32)
        torch.testing.assert_close(attn(features, latents), attn.to_out(ref), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- processors on one Attention

def _attention(**kwargs):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(**kwargs).eval()
    attn.set_processor(AttnProcessor2_0())
    return attn


def _processor(attn, cross_dim=None, seed=2):
    if cross_dim is None:
        proc = StoryMakerLoRAAttnProcessor(attention_dims(attn), rank=4)
    else:
        proc = StoryMakerIPAttnProcessor(attention_dims(attn), cross_dim, rank=4)
    randomize_(proc, seed=seed, std=0.2)
    return proc.eval()


@pytest.mark.parametrize("variant", ["plain", "group_norm_residual_4d", "spatial_norm", "norm_cross_mask"])
def test_processors_at_zero_scales_equal_diffusers_default(variant):
    """With lora_scale 0 and ip_scale 0 the processors compute exactly diffusers' AttnProcessor2_0,
    including group_norm, spatial_norm, residual_connection, rescale_output_factor, 4D input,
    norm_cross and a text attention mask."""
    gen = torch.Generator().manual_seed(1)
    temb = context = mask = None
    cross_dim = None
    if variant == "plain":
        attn = _attention(query_dim=32, heads=2, dim_head=16)
        hidden = torch.randn(2, 9, 32, generator=gen)
    elif variant == "group_norm_residual_4d":
        attn = _attention(query_dim=32, heads=2, dim_head=16, norm_num_groups=8,
                          residual_connection=True, rescale_output_factor=2.0)
        hidden = torch.randn(2, 32, 3, 4, generator=gen)
    elif variant == "spatial_norm":
        attn = _attention(query_dim=32, heads=2, dim_head=16, spatial_norm_dim=4,
                          residual_connection=True)
        hidden = torch.randn(2, 32, 4, 4, generator=gen)
        temb = torch.randn(2, 4, 2, 2, generator=gen)
    else:
        cross_dim = 24
        attn = _attention(query_dim=32, heads=2, dim_head=16, cross_attention_dim=cross_dim,
                          cross_attention_norm="layer_norm")
        hidden = torch.randn(2, 9, 32, generator=gen)
        context = torch.randn(2, 5, cross_dim, generator=gen)
        mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    randomize_(attn, seed=4, std=0.2)
    with torch.no_grad():
        ref = attn(hidden, encoder_hidden_states=context, attention_mask=mask, temb=temb)
        attn.set_processor(_processor(attn, cross_dim))
        tokens = torch.randn(2, 6, cross_dim, generator=gen) if cross_dim else None
        ours = attn(hidden, encoder_hidden_states=context, attention_mask=mask, temb=temb,
                    storymaker_image_tokens=tokens, storymaker_ip_scale=0.0, storymaker_lora_scale=0.0)
        torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
        lora = attn(hidden, encoder_hidden_states=context, attention_mask=mask, temb=temb,
                    storymaker_lora_scale=0.7)
    assert not torch.allclose(lora, ref, atol=1e-4), "the LoRA branch must change the output"


def test_ip_processor_computes_text_plus_scaled_image_attention():
    """hidden = out(attn(q_lora, k_lora(text), v_lora(text)) + s * attn(q_lora, k_ip(img), v_ip(img))) + out_lora."""
    attn = _attention(query_dim=32, heads=2, dim_head=16, cross_attention_dim=24)
    randomize_(attn, seed=4, std=0.2)
    proc = _processor(attn, cross_dim=24)
    attn.set_processor(proc)
    gen = torch.Generator().manual_seed(3)
    hidden, text, image = (torch.randn(2, n, d, generator=gen) for n, d in ((9, 32), (5, 24), (40, 24)))
    ls, ips = 0.6, 0.8

    def heads(t):
        return t.view(2, -1, 2, 16).transpose(1, 2)

    with torch.no_grad():
        q = attn.to_q(hidden) + ls * proc.to_q_lora(hidden)
        k = attn.to_k(text) + ls * proc.to_k_lora(text)
        v = attn.to_v(text) + ls * proc.to_v_lora(text)
        text_out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        img_out = F.scaled_dot_product_attention(heads(q), heads(proc.to_k_ip(image)), heads(proc.to_v_ip(image)))
        mixed = (text_out + ips * img_out).transpose(1, 2).reshape(2, 9, 32)
        expected = attn.to_out[0](mixed) + ls * proc.to_out_lora(mixed)
        got = attn(hidden, encoder_hidden_states=text, storymaker_image_tokens=image,
                   storymaker_ip_scale=ips, storymaker_lora_scale=ls)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        # one row of image tokens is broadcast over the batch
        got_one = attn(hidden, encoder_hidden_states=text, storymaker_image_tokens=image[:1].expand(2, -1, -1),
                       storymaker_ip_scale=ips, storymaker_lora_scale=ls)
        torch.testing.assert_close(
            attn(hidden, encoder_hidden_states=text, storymaker_image_tokens=image[:1],
                 storymaker_ip_scale=ips, storymaker_lora_scale=ls), got_one)
        with pytest.raises(ConditioningError, match="batch"):
            attn(hidden, encoder_hidden_states=text, storymaker_image_tokens=torch.randn(3, 4, 24))


# ---------------------------------------------------------------- processors in a tiny SDXL UNet

def test_unet_at_zero_scales_equals_default_processors(unet_and_adapter):
    unet, adapter = unet_and_adapter
    from diffusers.models.attention_processor import AttnProcessor2_0

    inputs = unet_inputs(batch=2)
    unet.set_attn_processor(AttnProcessor2_0())
    reference = run_unet(unet, inputs)
    adapter.install(unet)
    try:
        assert adapter.is_installed(unet)
        kinds = [type(p).__name__ for p in unet.attn_processors.values()]
        assert kinds == [
            "StoryMakerLoRAAttnProcessor" if n.endswith("attn1.processor") else "StoryMakerIPAttnProcessor"
            for n in unet.attn_processors
        ]
        tokens = adapter.image_tokens(*character_inputs(2, 2))
        for kwargs in (adapter.cross_attention_kwargs(tokens, 0.0, 0.0),
                       adapter.cross_attention_kwargs(None, 0.8, 0.0)):
            torch.testing.assert_close(run_unet(unet, inputs, kwargs), reference, rtol=1e-5, atol=1e-5)
        with_ip = run_unet(unet, inputs, adapter.cross_attention_kwargs(tokens, 0.8, 0.0))
        with_lora = run_unet(unet, inputs, adapter.cross_attention_kwargs(None, 0.0, 0.8))
        assert not torch.allclose(with_ip, reference, atol=1e-4)
        assert not torch.allclose(with_lora, reference, atol=1e-4)
    finally:
        adapter.uninstall(unet)
    torch.testing.assert_close(run_unet(unet, inputs), reference)


def test_fuse_and_unfuse_lora(unet_and_adapter):
    unet, adapter = unet_and_adapter
    adapter.install(unet)
    try:
        inputs = unet_inputs(batch=2, seed=4)
        tokens = adapter.image_tokens(*character_inputs(2, 1, seed=2))
        before = {k: v.clone() for k, v in unet.state_dict().items() if ".processor." not in k}
        unfused = run_unet(unet, inputs, adapter.cross_attention_kwargs(tokens, 0.8, 0.8))
        unfused_half = run_unet(unet, inputs, adapter.cross_attention_kwargs(tokens, 0.8, 0.5))

        adapter.fuse_lora(unet, 0.8)
        assert adapter.fused_scale == 0.8
        changed = [k for k, v in unet.state_dict().items() if k in before and not torch.equal(v, before[k])]
        assert changed and all(k.endswith(("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"))
                               for k in changed)
        fused = run_unet(unet, inputs, adapter.cross_attention_kwargs(tokens, 0.8, 0.8))
        torch.testing.assert_close(fused, unfused, rtol=0, atol=1e-5)
        # another per-call scale on fused weights adds only the difference
        torch.testing.assert_close(run_unet(unet, inputs, adapter.cross_attention_kwargs(tokens, 0.8, 0.5)),
                                   unfused_half, rtol=0, atol=1e-5)

        fused_weights = {k: v.clone() for k, v in unet.state_dict().items() if k in before}
        adapter.fuse_lora(unet, 0.8)  # again at the same scale: nothing changes
        assert all(torch.equal(v, fused_weights[k]) for k, v in unet.state_dict().items() if k in before)

        adapter.fuse_lora(unet, 0.5)  # re-fuse at a new scale = exact unfuse + fuse
        assert adapter.fused_scale == 0.5
        torch.testing.assert_close(run_unet(unet, inputs, adapter.cross_attention_kwargs(tokens, 0.8, 0.5)),
                                   unfused_half, rtol=0, atol=1e-5)

        adapter.unfuse_lora(unet)
        assert adapter.fused_scale is None
        after = unet.state_dict()
        for key, value in before.items():  # restored bit for bit, not by subtraction
            assert torch.equal(after[key], value), key
        torch.testing.assert_close(run_unet(unet, inputs, adapter.cross_attention_kwargs(tokens, 0.8, 0.8)),
                                   unfused, rtol=0, atol=1e-5)
    finally:
        adapter.uninstall(unet)


def test_install_refuses_a_different_unet(unet_and_adapter):
    from diffusers import UNet2DConditionModel

    from models_helpers import TINY_UNET_CONFIG
    from storymaker.errors import CheckpointError

    _, adapter = unet_and_adapter
    config = dict(TINY_UNET_CONFIG, transformer_layers_per_block=(1, 1))
    with torch.device("meta"):
        other = UNet2DConditionModel(**config)
    with pytest.raises(CheckpointError, match="for_unet"):
        adapter.install(other)


def test_fuse_requires_install():
    from storymaker.errors import CheckpointError

    unet = tiny_unet()
    adapter = tiny_adapter(unet)
    with pytest.raises(CheckpointError, match="install"):
        adapter.fuse_lora(unet, 0.8)


def test_image_tokens_for_characters(unet_and_adapter):
    _, adapter = unet_and_adapter
    face_id, clip_char, clip_face = character_inputs(1, 2, seed=8)

    class Character:  # duck-typed CharacterConditioning
        def __init__(self, i):
            self.face_id, self.clip_character, self.clip_face = face_id[0, i], clip_char[0, i], clip_face[0, i]

    with torch.no_grad():
        cond, uncond = adapter.image_tokens_for([Character(0), Character(1)])
        torch.testing.assert_close(cond, adapter.image_tokens(face_id, clip_char, clip_face))
        torch.testing.assert_close(uncond, adapter.image_tokens(torch.zeros_like(face_id),
                                                                torch.zeros_like(clip_char),
                                                                torch.zeros_like(clip_face)))
        assert cond.shape == uncond.shape == (1, 60, 64)
        empty, _ = adapter.image_tokens_for([])
        assert empty.shape == (1, 20, 64)
    with pytest.raises(ConditioningError):
        adapter.image_tokens_for([Character(0)] * 4)


def test_image_key_value_cache_is_exact_and_projects_once_per_call(unet_and_adapter):
    """The image tokens are fixed within a call: with a per-call cache every cross-attention layer
    runs to_k_ip/to_v_ip once, and later steps give exactly what an uncached step gives."""
    from storymaker.models.attention import IP_CACHE_KWARG

    unet, adapter = unet_and_adapter
    inputs = unet_inputs(batch=2)
    tokens = adapter.image_tokens(*character_inputs(2, 2))
    calls = []
    hooks = [p.to_k_ip.register_forward_hook(lambda *_: calls.append(1))
             for p in adapter.ip_adapter if isinstance(p, StoryMakerIPAttnProcessor)]
    adapter.install(unet)
    try:
        plain = adapter.cross_attention_kwargs(tokens, 0.8, 0.8)
        reference = run_unet(unet, inputs, plain)
        uncached_calls = len(calls)
        assert uncached_calls == len(hooks)

        cached = {**plain, IP_CACHE_KWARG: {}}
        for _ in range(3):  # three "steps" of one call
            torch.testing.assert_close(run_unet(unet, inputs, cached), reference, rtol=0, atol=0)
        assert len(calls) == 2 * uncached_calls  # the first cached step projected, the others reused

        other = adapter.image_tokens(*character_inputs(2, 1, seed=5))  # new tokens: not served stale
        fresh = run_unet(unet, inputs, adapter.cross_attention_kwargs(other, 0.8, 0.8))
        torch.testing.assert_close(run_unet(unet, inputs, {**cached, "storymaker_image_tokens": other}), fresh)
    finally:
        adapter.uninstall(unet)
        for hook in hooks:
            hook.remove()
