"""Prompt encoding: long prompts in 77-token chunks, (word:1.3) weighting, no change for short prompts.

The tiny text encoders have the real CLIP architecture; the tiny tokenizer makes one token per
character, so a prompt of n characters without spaces is n tokens (plus the start and end tokens).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

from storymaker.models.tiny import tiny_pipeline, tiny_tokenizer
from storymaker.services.prompts import EMPHASIS, PromptEncoder, parse_weights

LONG = "a lighthouse keeper climbs the spiral stairs at dusk, " * 3  # 162 characters: 3 chunks


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def encoder(pipe):
    return PromptEncoder(pipe)


def diffusers_encode(pipe, text):
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=text, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=False)
    return embeds, pooled


# ---------------------------------------------------------------------------------- the syntax
@pytest.mark.parametrize(
    "text, fragments",
    [
        ("a cat on a mat, 12:30", [("a cat on a mat, 12:30", 1.0)]),
        ("", [("", 1.0)]),
        ("a (red:1.3) ball", [("a ", 1.0), ("red", 1.3), (" ball", 1.0)]),
        ("a (red) ball", [("a ", 1.0), ("red", EMPHASIS), (" ball", 1.0)]),
        ("a [red] ball", [("a ", 1.0), ("red", 1 / EMPHASIS), (" ball", 1.0)]),
        ("((red))", [("red", EMPHASIS * EMPHASIS)]),
        ("(big (red:2) ball:0.5)", [("big ", 0.5), ("red", 1.0), (" ball", 0.5)]),
        ("( red : 0.8 )", [(" red ", 0.8)]),
        (r"a \(literal\) \[x\] \\", [(r"a (literal) [x] \ ".rstrip(" "), 1.0)]),
        ("a (red ball", [("a ", 1.0), ("red ball", EMPHASIS)]),  # unclosed: weighted to the end
        ("a red) ball:1.2)", [("a red) ball:1.2)", 1.0)]),  # closing without opening: kept as text
    ],
)
def test_parse_weights(text, fragments):
    got = parse_weights(text)
    assert [f for f, _ in got] == [f for f, _ in fragments]
    assert [w for _, w in got] == pytest.approx([w for _, w in fragments])


def test_the_fragments_hold_the_text_without_the_syntax():
    def plain(text):
        return "".join(fragment for fragment, _ in parse_weights(text))

    assert plain("a (red:1.3) [shiny] ball, 12:30") == "a red shiny ball, 12:30"
    assert plain("no syntax here: none") == "no syntax here: none"


# ---------------------------------------------------------------------------------- no regression
@pytest.mark.parametrize("text", ["a cat on a mat", "", "x" * 75, "close-up, ink: dramatic light!"])
def test_short_prompts_are_bit_identical_to_diffusers(pipe, encoder, text):
    embeds, pooled = encoder.encode(text)
    expected, expected_pooled = diffusers_encode(pipe, text)
    assert embeds.shape == expected.shape == (1, 77, 64)
    assert torch.equal(embeds, expected) and torch.equal(pooled, expected_pooled)


def test_bit_identical_in_half_precision_and_with_sdxl_second_tokenizer_padding():
    """The real SDXL's second tokenizer pads with "!" rather than the end token; and GPUs run fp16."""
    pipe = tiny_pipeline().to(dtype=torch.float16)
    pipe.tokenizer_2.pad_token = "!"
    for text in ("a cat on a mat", "x" * 75):
        embeds, pooled = PromptEncoder(pipe).encode(text)
        expected, expected_pooled = diffusers_encode(pipe, text)
        assert embeds.dtype == expected.dtype == torch.float16
        assert torch.equal(embeds, expected) and torch.equal(pooled, expected_pooled)


# ---------------------------------------------------------------------------------- long prompts
def _warnings(caplog) -> str:
    text = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    caplog.clear()
    return text


def test_the_tail_of_a_long_prompt_changes_the_embedding(pipe, encoder, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)  # its warnings, to caplog
    changed_tail = LONG[:100] + "a small boat rows through the storm towards the rocks and the light"
    assert len(changed_tail) > 150
    caplog.set_level("WARNING")
    a, pooled_a = encoder.encode(LONG)
    b, pooled_b = encoder.encode(changed_tail)
    assert a.shape == b.shape == (1, 3 * 77, 64)
    assert not torch.equal(a, b)
    said = _warnings(caplog)  # nothing is cut, so nothing is said
    assert "truncated" not in said and "longer than the specified maximum" not in said
    # Before: diffusers cut both at 77 tokens; the tail made no difference (and it warned).
    old_a, old_pooled = diffusers_encode(pipe, LONG)
    old_b, _ = diffusers_encode(pipe, changed_tail)
    assert torch.equal(old_a, old_b)
    assert "truncated" in _warnings(caplog)
    # The pooled embedding is the first chunk's: what diffusers computed for the cut prompt.
    assert torch.equal(pooled_a, old_pooled) and torch.equal(pooled_b, old_pooled)


def test_a_long_prompt_does_not_make_the_tokenizer_warn(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)
    caplog.set_level("WARNING")
    tiny_tokenizer()("x" * 100)  # the warning a tokenizer gives once for a long text...
    assert "longer than the specified maximum" in _warnings(caplog)
    PromptEncoder(tiny_pipeline()).encode(LONG)  # ...never comes from the encoder, which chunks it
    assert "longer than the specified maximum" not in _warnings(caplog)


def test_each_chunk_is_encoded_on_its_own_with_start_and_end_tokens(encoder):
    first_chunk, _ = encoder.encode("x" * 75)
    long, _ = encoder.encode("x" * 75 + " " + "y" * 60)
    assert long.shape[1] == 2 * 77
    torch.testing.assert_close(long[:, :77], first_chunk)


def test_a_long_prompt_and_a_short_negative_are_padded_to_the_same_length(encoder):
    embeds, _ = encoder.encode(LONG)
    negative, _ = encoder.encode("blurry")
    padded_embeds, padded_negative = encoder.same_length(embeds, negative)
    assert padded_embeds is embeds and padded_negative.shape == embeds.shape
    assert torch.equal(padded_negative[:, :77], negative)
    empty = encoder.empty_chunk()
    assert torch.equal(padded_negative[:, 77:154], empty) and torch.equal(padded_negative[:, 154:], empty)
    # SDXL's zero embedding for an empty negative prompt stays all zeros.
    _, zeros = encoder.same_length(embeds, torch.zeros_like(negative))
    assert zeros.shape == embeds.shape and not zeros.any()


# ---------------------------------------------------------------------------------- weighting
def _red_positions(encoder):
    ids = encoder.providers[0].tokenizer("a red ball")["input_ids"]
    red = encoder.providers[0].tokenizer("red", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(ids)) if ids[i:i + len(red)] == red)
    return slice(start, start + len(red))


def test_emphasis_moves_the_word_away_from_the_empty_prompt(encoder):
    plain, _ = encoder.encode("a red ball")
    strong, _ = encoder.encode("a (red:1.5) ball")
    red = _red_positions(encoder)
    empty = encoder.empty_chunk()
    delta = (strong - plain)[:, red]
    direction = (plain - empty)[:, red]
    # Only the weighted word moves, along its own direction from the empty prompt, by half of it.
    torch.testing.assert_close(delta, 0.5 * direction, rtol=1e-4, atol=1e-5)
    outside = torch.ones(plain.shape[1], dtype=torch.bool)
    outside[red] = False
    assert torch.equal(strong[:, outside], plain[:, outside])
    # "(red)" is a smaller step the same way.
    mild, _ = encoder.encode("a (red) ball")
    torch.testing.assert_close((mild - plain)[:, red], (EMPHASIS - 1) * direction, rtol=1e-4, atol=1e-5)


def test_de_emphasis_fades_the_word_more_the_lower_the_weight(encoder):
    plain, _ = encoder.encode("a red ball")
    distances = [
        (encoder.encode(text)[0] - plain).norm().item()
        for text in ("a [red] ball", "a (red:0.5) ball", "a (red:0.1) ball")
    ]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_the_pooled_embedding_reads_the_text_without_the_syntax(encoder):
    _, weighted = encoder.encode("a (red:1.5) ball")
    _, plain = encoder.encode("a red ball")
    assert torch.equal(weighted, plain)


def test_the_weighting_table_in_docs_prompts_md_is_what_the_parser_does():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "prompts.md").read_text(encoding="utf-8")
    table = doc.split("## Weighting", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \| weight ([\d./]+)", table, flags=re.M)
    assert len(rows) == 5
    for written, weight in rows:
        numerator, _, denominator = weight.partition("/")
        expected = float(numerator) / float(denominator or 1)
        (fragment, got), = parse_weights(written)
        assert fragment in ("lantern", "fog") and got == pytest.approx(expected)


def test_the_pipeline_entry_caches_by_final_text_and_pads_a_long_negative(pipe, encoder):
    from storymaker.services.pipelines import _PipelineEntry

    entry = _PipelineEntry(pipe)
    prompt, negative, pooled, negative_pooled = entry.embed_pair("a (red:1.5) ball", "(blurry:1.2), " + LONG)
    assert negative.shape == (1, 3 * 77, 64) and prompt.shape == negative.shape  # the negative: same rules
    assert torch.equal(prompt[:, :77], encoder.encode("a (red:1.5) ball")[0])
    assert torch.equal(prompt[:, 77:154], encoder.empty_chunk())
    assert entry.encode_calls == 2
    entry.embed_pair("a (red:1.5) ball", "(blurry:1.2), " + LONG)
    assert entry.encode_calls == 2  # the same final texts: no encoding
    entry.embed("a (red:1.6) ball")
    assert entry.encode_calls == 3
