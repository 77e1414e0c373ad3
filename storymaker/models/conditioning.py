"""Precomputed per-character conditioning, as the pipeline takes it (``SPEC-model.md``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CharacterConditioning:
    """What one character contributes to a panel.

    - ``face_id``: insightface ``normed_embedding``, shape (512,).
    - ``clip_character``: penultimate CLIP hidden states of the body crop on white, (tokens, hidden);
      (257, 1280) for CLIP ViT-H/14.
    - ``clip_face``: the same for the aligned face crop.
    Depends only on the photo: computed once per character and cached by the registry.
    """

    face_id: torch.Tensor
    clip_character: torch.Tensor
    clip_face: torch.Tensor

    def with_outfit(self, clip_outfit: torch.Tensor) -> "CharacterConditioning":
        """This character wearing an outfit: the outfit's CLIP features replace the body crop's."""
        return CharacterConditioning(self.face_id, clip_outfit, self.clip_face)
