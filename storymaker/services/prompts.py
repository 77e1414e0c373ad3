"""Prompt encoding for SDXL: prompts longer than CLIP's 77 tokens and ``(word:1.3)`` weighting.

The weighting syntax is the one SDXL users know from other tools (``docs/prompts.md``):

- ``(text:1.3)`` multiplies the weight of ``text`` by 1.3; ``(text)`` by 1.1; ``[text]`` by 1/1.1;
  brackets nest and multiply;
- ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal brackets and a literal backslash.

In a panel prompt, ``[Name]`` binds a character and is replaced by the character's noun before the
text reaches this module, so ``[text]`` de-emphasis can only be written in style templates, ``style:``
free text and negative prompts; a panel prompt writes ``(text:0.9)``.

Encoding is compel's (``compel.EmbeddingsProvider``, one per SDXL text encoder): the token ids are cut
into 77-token chunks (each with its own start and end token), each chunk is encoded on its own and
the chunks' embeddings are concatenated; weights scale each token's embedding away from the empty
prompt's (and fade down-weighted ones towards the prompt without them). The pooled embedding is text
encoder 2's for the prompt's first 77 tokens, the syntax removed. Compel has no parser for this
syntax (its own is ``(text)1.3`` and ``text++``), so :func:`parse_weights` turns it into compel's
(text, weight) fragments.

A prompt of at most 77 tokens without weighting gives embeddings bit-identical to diffusers'
``StableDiffusionXLPipeline.encode_prompt`` (tested), so renders from before reproduce.
"""

from __future__ import annotations

import re
from typing import Any

EMPHASIS = 1.1  # "(text)" multiplies by this, "[text]" divides by it

_TOKENS_RE = re.compile(
    r"""
    \\[()\[\]\\]                                   # an escaped bracket or backslash
    | \( | \[                                      # an opening bracket
    | :\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)          # ":1.3)" closes a weighted group
    | \) | \]                                      # a closing bracket
    | [^\\()\[\]:]+ | [\\:]                        # plain text
    """,
    re.X,
)
# Tokenizer warning about sequences longer than the model (we cut them into chunks ourselves).
_LONG_WARNING = "sequence-length-is-longer-than-the-specified-maximum"


def parse_weights(text: str) -> list[tuple[str, float]]:
    """``text`` as ``(fragment, weight)`` pairs, neighbours of equal weight merged.

    Text without the syntax is one fragment of weight 1.0 that equals ``text``. An unbalanced
    bracket is weighted to the end of the text (an opening one) or kept as a character (a closing one).
    """
    pieces: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKENS_RE.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            scale(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            scale(round_open.pop(), EMPHASIS)
        elif token == "]" and square_open:
            scale(square_open.pop(), 1 / EMPHASIS)
        else:
            pieces.append([token, 1.0])
    for start in round_open:
        scale(start, EMPHASIS)
    for start in square_open:
        scale(start, 1 / EMPHASIS)
    merged: list[tuple[str, float]] = []
    for fragment, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + fragment, weight)
        else:
            merged.append((fragment, weight))
    return merged or [("", 1.0)]


class PromptEncoder:
    """Encodes prompts for one SDXL pipeline (its two tokenizers and text encoders) with compel."""

    def __init__(self, pipe: Any):
        from compel import EmbeddingsProvider, ReturnedEmbeddingsType

        self.pipe = pipe
        self.providers = []
        for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            if tokenizer is None or encoder is None:
                continue  # SDXL refiner-style pipelines have only text encoder 2
            tokenizer.deprecation_warnings[_LONG_WARNING] = True  # we chunk long prompts: nothing is cut
            self.providers.append(EmbeddingsProvider(
                tokenizer=tokenizer,
                text_encoder=encoder,
                truncate=False,
                returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                dtype_for_device_getter=lambda device, encoder=encoder: encoder.dtype,
            ))

    @property
    def device(self) -> Any:
        return getattr(self.pipe, "_execution_device", None) or self.pipe.device

    def encode(self, text: str) -> tuple[Any, Any]:
        """``(prompt_embeds, pooled_prompt_embeds)``: shapes ``(1, 77 * chunks, 2048)``, ``(1, 1280)``
        for real SDXL (the tiny test model is narrower)."""
        import torch

        fragments = parse_weights(text)
        texts = [[f for f, _ in fragments]]
        weights = [[w for _, w in fragments]]
        device = self.device
        dtype = self.pipe.text_encoder_2.dtype
        with torch.no_grad():
            embeds = torch.cat(
                [p.get_embeddings_for_weighted_prompt_fragments(texts, weights, device=device) for p in self.providers],
                dim=-1,
            )
            # Text encoder 2's pooled output; compel always cuts this one at 77 tokens: the first chunk.
            pooled = self.providers[-1].get_pooled_embeddings(["".join(texts[0])], device=device)
        return embeds.to(dtype=dtype, device=device), pooled.to(dtype=dtype, device=device)

    def empty_chunk(self) -> Any:
        """The embedding of one empty 77-token chunk (start, end and padding tokens): what compel pads with."""
        import torch

        with torch.no_grad():
            return torch.cat([p.empty_z.to(self.device) for p in self.providers], dim=-1)

    def same_length(self, first: Any, second: Any) -> tuple[Any, Any]:
        """Two prompt embeddings padded to the same number of tokens (a long prompt and a short negative,
        say: classifier-free guidance stacks them). The shorter one is padded with empty chunks, or with
        zeros when it is all zeros (the zero embedding SDXL uses for an empty negative prompt)."""
        import torch

        length = max(first.shape[1], second.shape[1])

        def pad(embeds: Any) -> Any:
            missing = length - embeds.shape[1]
            if missing == 0:
                return embeds
            if not embeds.any():
                filler = embeds.new_zeros((embeds.shape[0], missing, embeds.shape[2]))
            else:
                chunk = self.empty_chunk().to(dtype=embeds.dtype, device=embeds.device)
                filler = chunk.repeat(embeds.shape[0], -(-missing // chunk.shape[1]), 1)[:, :missing]
            return torch.cat([embeds, filler], dim=1)

        return pad(first), pad(second)
