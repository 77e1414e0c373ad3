"""What a :class:`~storymaker.models.pipeline.StoryMakerPipeline` call takes, before any compute.

The limits and defaults of a call (``MAX_CHARACTERS``, ``FACE_ID_DIM``, ``DEFAULT_LORA_SCALE``) and
:class:`StoryMakerInputsMixin`, mixed into the pipeline: ``check_inputs`` (every inconsistent input
raises :class:`ConditioningError` before any computation), the CLIP feature shape the loaded image
encoder gives, and the conversion of a panel's characters (image tokens, through the adapter's
projection) and pose (the ControlNet's image) into tensors. The denoising call is in ``pipeline.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from ..errors import ConditioningError
from .conditioning import CharacterConditioning

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

MAX_CHARACTERS = 3
FACE_ID_DIM = 512
#: The authors' demo's LoRA scale (``lora_scale`` default of a call and of fusion).
DEFAULT_LORA_SCALE = 0.8


class StoryMakerInputsMixin:
    """Input checks and input tensors of :class:`~storymaker.models.pipeline.StoryMakerPipeline`
    (uses its ``adapter``, ``image_encoder``, ``controlnet`` and ``control_image_processor``)."""

    def expected_clip_shape(self) -> tuple[int | None, int]:
        """(tokens, hidden) of the CLIP features the loaded image encoder produces.

        Without an image encoder only the hidden size (the adapter's) is known."""
        clip_dim = int(self.adapter.image_proj.clip_dim)
        if self.image_encoder is None:
            return None, clip_dim
        config = self.image_encoder.config
        tokens = (int(config.image_size) // int(config.patch_size)) ** 2 + 1
        return tokens, int(config.hidden_size)

    def check_inputs(
        self,
        prompt=None,
        negative_prompt=None,
        characters: Sequence[CharacterConditioning] = (),
        outfits: Sequence[torch.Tensor | None] | None = None,
        pose_image: "Image.Image | None" = None,
        width: int | None = None,
        height: int | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
        num_inference_steps: int = 25,
    ) -> None:
        """Raise :class:`ConditioningError` for any inconsistent input, before any computation."""
        width = width or self.default_sample_size * self.vae_scale_factor
        height = height or self.default_sample_size * self.vae_scale_factor
        if width <= 0 or height <= 0 or width % 8 or height % 8:
            raise ConditioningError(
                f"Panel size {width}x{height} is not usable: width and height must be positive multiples of 8."
            )
        if num_inference_steps is None or int(num_inference_steps) < 1:
            raise ConditioningError(f"num_inference_steps must be at least 1; got {num_inference_steps}.")
        characters = list(characters or ())
        if len(characters) > MAX_CHARACTERS:
            raise ConditioningError(
                f"{len(characters)} characters in one panel, but StoryMaker supports at most {MAX_CHARACTERS}: "
                "split the panel or remove characters."
            )
        tokens, hidden = self.expected_clip_shape()
        expect = f"({tokens if tokens is not None else 'tokens'}, {hidden})"
        for i, character in enumerate(characters):
            if not isinstance(character, CharacterConditioning):
                raise ConditioningError(
                    f"characters[{i}] is a {type(character).__name__}, not a CharacterConditioning."
                )
            if tuple(character.face_id.shape) != (FACE_ID_DIM,):
                raise ConditioningError(
                    f"characters[{i}].face_id has shape {tuple(character.face_id.shape)}; expected ({FACE_ID_DIM},) "
                    "(insightface normed_embedding). Re-register the character."
                )
            for name in ("clip_character", "clip_face"):
                self._check_clip(getattr(character, name), f"characters[{i}].{name}", tokens, hidden, expect)
        if outfits is not None:
            outfits = list(outfits)
            if len(outfits) != len(characters):
                raise ConditioningError(
                    f"outfits has {len(outfits)} entries for {len(characters)} characters: give one entry per "
                    "character (None keeps that character's own clothes)."
                )
            for i, outfit in enumerate(outfits):
                if outfit is not None:
                    self._check_clip(outfit, f"outfits[{i}]", tokens, hidden, expect)
        if pose_image is not None:
            if self.controlnet is None:
                raise ConditioningError(
                    "A pose was given but no pose ControlNet is loaded: load the pipeline with_controlnet=True "
                    "(STORYMAKER_CONTROLNET_POSE names it) or render without a pose."
                )
            size = tuple(getattr(pose_image, "size", ()))
            if size != (width, height):
                raise ConditioningError(
                    f"The pose image is {size[0]}x{size[1]} but the panel is {width}x{height}: "
                    "draw the pose at the panel size."
                    if len(size) == 2
                    else f"pose_image must be a PIL image of the panel size {width}x{height}."
                )
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ConditioningError(
                    f"callback_on_step_end_tensor_inputs {unknown} are not available; "
                    f"choose from {self._callback_tensor_inputs}."
                )
        if prompt is None and prompt_embeds is None:
            raise ConditioningError("Give a prompt (or prompt_embeds with pooled_prompt_embeds).")
        if prompt is not None and prompt_embeds is not None:
            raise ConditioningError("Give either prompt or prompt_embeds, not both.")
        if prompt_embeds is not None and pooled_prompt_embeds is None:
            raise ConditioningError("prompt_embeds needs pooled_prompt_embeds too (both come from encode_prompt).")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ConditioningError("Give either negative_prompt or negative_prompt_embeds, not both.")
        if negative_prompt_embeds is not None and negative_pooled_prompt_embeds is None:
            raise ConditioningError(
                "negative_prompt_embeds needs negative_pooled_prompt_embeds too (both come from encode_prompt)."
            )
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape != negative_prompt_embeds.shape:
                raise ConditioningError(
                    f"prompt_embeds {tuple(prompt_embeds.shape)} and negative_prompt_embeds "
                    f"{tuple(negative_prompt_embeds.shape)} must have the same shape."
                )

    @staticmethod
    def _check_clip(value, label: str, tokens: int | None, hidden: int, expect: str) -> None:
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != 2 or shape[1] != hidden or (tokens is not None and shape[0] != tokens):
            raise ConditioningError(
                f"{label} has shape {shape}; the loaded image encoder gives {expect}. "
                "The features were made by another image encoder: re-register the character."
            )

    # ------------------------------------------------------------------ image tokens
    def encode_characters(
        self,
        characters: Sequence[CharacterConditioning],
        outfits: Sequence[torch.Tensor | None] | None = None,
        *,
        device: torch.device | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) image tokens, each (1, 20*(N+1), D).

        The outfit of character i replaces only that character's ``clip_character``. The
        unconditional tokens are the same projection of all-zero inputs (background included).
        """
        characters = list(characters)
        if outfits is not None:
            characters = [c if o is None else c.with_outfit(o) for c, o in zip(characters, outfits)]
        proj = self.adapter.image_proj
        param = next(proj.parameters())
        device = device or param.device
        dtype = param.dtype
        tokens_n, hidden = self.expected_clip_shape()
        if characters:
            face_id = torch.stack([c.face_id for c in characters])[None]
            clip_character = torch.stack([c.clip_character for c in characters])[None]
            clip_face = torch.stack([c.clip_face for c in characters])[None]
        else:
            face_id = torch.zeros(1, 0, FACE_ID_DIM)
            clip_character = torch.zeros(1, 0, tokens_n or 1, hidden)
            clip_face = torch.zeros(1, 0, tokens_n or 1, hidden)
        face_id, clip_character, clip_face = (t.to(device=device, dtype=dtype) for t in (face_id, clip_character, clip_face))
        cond = self.adapter.image_tokens(face_id, clip_character, clip_face, device=device)
        uncond = self.adapter.image_tokens(
            torch.zeros_like(face_id), torch.zeros_like(clip_character), torch.zeros_like(clip_face), device=device
        )
        return cond, uncond

    def prepare_pose_image(self, pose_image, width: int, height: int, batch_size: int, device, dtype, do_cfg: bool):
        """The pose image as the ControlNet takes it: (B or 2B, 3, H, W) in 0..1."""
        image = self.control_image_processor.preprocess(pose_image, height=height, width=width).to(dtype=torch.float32)
        image = image.repeat_interleave(batch_size, dim=0).to(device=device, dtype=dtype)
        if do_cfg:
            image = torch.cat([image] * 2)
        return image
