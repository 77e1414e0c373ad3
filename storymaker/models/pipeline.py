"""StoryMakerPipeline: SDXL + the StoryMaker adapter + an optional OpenPose ControlNet.

Built on diffusers' :class:`StableDiffusionXLPipeline` (prompt encoding, latents, SDXL time ids,
VAE decode with upcast, LoRA loading, CPU offload) with our own denoising loop:

- the characters' image tokens go to the adapter's attention processors through the UNet's
  ``cross_attention_kwargs`` (never through shared state), separately from the text tokens;
- classifier-free guidance is used only when ``guidance_scale > 1`` (no crash at <= 1);
- the ControlNet runs only for a panel that has a pose image; the same loaded components serve
  panels with and without a pose;
- every per-call value is an argument and a call never changes the shared weights: StoryMaker's
  LoRA is fused (if at all) once, at load, and a call at another ``lora_scale`` adds only the
  difference through the attention processors' LoRA branch. So in float16/bfloat16 the UNet weights
  stay bit-identical whatever scales visitors of a shared app choose, and the same seed and
  settings give the same latents (``tests/test_precision.py``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from diffusers import StableDiffusionXLPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.stable_diffusion_xl.pipeline_output import StableDiffusionXLPipelineOutput

from ..errors import ConditioningError, GPUOutOfMemoryError
from .attention import IMAGE_TOKENS_KWARG, IP_CACHE_KWARG, IP_SCALE_KWARG, LORA_SCALE_KWARG
from .conditioning import CharacterConditioning

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from ..config import Settings

logger = logging.getLogger(__name__)

MAX_CHARACTERS = 3
FACE_ID_DIM = 512
#: The authors' demo's LoRA scale (``lora_scale`` default of a call and of fusion).
DEFAULT_LORA_SCALE = 0.8


@contextlib.contextmanager
def quiet_dtype_casts():
    """Silence diffusers' "modules that should be kept in float32: []" warning, which its
    ``ModelMixin.to(dtype)`` logs on every cast even when no module needs float32 (as for the SDXL
    VAE's upcast around each decode)."""
    from diffusers.utils import logging as diffusers_logging

    modeling_logger = diffusers_logging.get_logger("diffusers.models.modeling_utils")
    level = modeling_logger.level
    modeling_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        modeling_logger.setLevel(level)


@dataclass
class StoryMakerPipelineOutput(StableDiffusionXLPipelineOutput):
    """``images`` as diffusers returns them, plus whether the run was interrupted and after how
    many denoising steps."""

    interrupted: bool = False
    steps_done: int = 0


def _resolve_fast_lora(settings: "Settings", **kwargs):
    from .weights import resolve_fast_lora

    return resolve_fast_lora(settings, **kwargs)


class StoryMakerPipeline(StableDiffusionXLPipeline):
    """SDXL with StoryMaker's character conditioning and an optional pose ControlNet.

    Components are explicit arguments and are loaded once; ``adapter`` is installed on ``unet``
    (its attention processors) here. ``image_encoder`` is the CLIP vision model that produced the
    characters' features (the one the character registry uses); it fixes the expected
    ``(tokens, hidden)`` of the conditioning.
    """

    model_cpu_offload_seq = "text_encoder->text_encoder_2->image_encoder->controlnet->unet->vae"
    # The image projection runs outside the UNet's forward, so it stays on the execution device.
    _exclude_from_cpu_offload = ["adapter"]
    _optional_components = [
        "tokenizer",
        "tokenizer_2",
        "text_encoder",
        "text_encoder_2",
        "image_encoder",
        "feature_extractor",
        "controlnet",
    ]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "add_text_embeds", "add_time_ids", "image_tokens"]

    def __init__(
        self,
        vae,
        text_encoder,
        text_encoder_2,
        tokenizer,
        tokenizer_2,
        unet,
        scheduler,
        adapter,
        image_encoder=None,
        controlnet=None,
        feature_extractor=None,
        force_zeros_for_empty_prompt: bool = True,
    ):
        super().__init__(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
            add_watermarker=False,
        )
        if adapter is None:
            raise ConditioningError(
                "StoryMakerPipeline needs a StoryMakerAdapter: build one with StoryMakerAdapter.for_unet(unet, ...) "
                "and load the checkpoint, or use StoryMakerPipeline.from_settings(...)."
            )
        self.register_modules(adapter=adapter, controlnet=controlnet)
        adapter.install(unet)
        self.control_image_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False
        )
        self._interrupt = False
        self._steps_done = 0
        # Where the Fast preset's LoRA comes from (storymaker/models/fast.py); None: no Fast preset.
        self.fast_lora_source = None

    # ------------------------------------------------------------------ construction from settings
    @classmethod
    def from_settings(
        cls,
        settings: "Settings",
        *,
        with_controlnet: bool | None = None,
        download: bool | None = None,
        progress: Callable[[str], None] | None = None,
        image_encoder: Any | None = None,
    ) -> "StoryMakerPipeline":
        """Load every component that ``settings`` names (hub ids or local paths) and build the pipeline.

        ``with_controlnet``: None loads the pose ControlNet when ``settings.controlnet_pose`` is set.
        ``download``: None downloads missing weights unless the hub is offline (``HF_HUB_OFFLINE=1``).
        Missing weights raise :class:`WeightsNotFoundError` naming each model and how to provide it.
        ``image_encoder``: a CLIP vision model already in memory, used instead of loading a second copy.
        """
        from .weights import load_extra_loras, load_pipeline_components

        components, options = load_pipeline_components(
            settings, with_controlnet=with_controlnet, download=download, progress=progress,
            image_encoder=image_encoder,
        )
        pipe = cls(**components)
        load_extra_loras(pipe, settings)
        pipe.apply_runtime_options(**options)
        # The Fast preset's LoRA is resolved on the first Fast render (a missing file fails only that).
        pipe.fast_lora_source = lambda: _resolve_fast_lora(settings, download=download, progress=progress)
        return pipe

    def apply_runtime_options(
        self,
        *,
        device: str | torch.device = "cpu",
        cpu_offload: bool = False,
        memory_mode: str | None = None,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
        fuse_lora: bool = False,
        lora_scale: float = DEFAULT_LORA_SCALE,
    ) -> "StoryMakerPipeline":
        """Place the pipeline (the one placement policy, storymaker/models/placement.py), set diffusers'
        memory options and fuse StoryMaker's LoRA at ``lora_scale`` (once, here: calls never re-fuse;
        no copy of the unfused weights is kept, so unfusing it means reloading).

        ``memory_mode`` ("auto", "resident", "balanced", "offload"); None: "offload" when
        ``cpu_offload`` is set, else "resident"."""
        from types import SimpleNamespace

        from .placement import apply_placement, resolve_memory_mode

        device = torch.device(device)
        if memory_mode is None:
            memory_mode = "offload" if cpu_offload else "resident"
        mode = resolve_memory_mode(SimpleNamespace(memory_mode=memory_mode, cpu_offload=cpu_offload), device)
        apply_placement(self, device, mode)
        if vae_slicing:
            self.vae.enable_slicing()
        if vae_tiling:
            self.vae.enable_tiling()
        if fuse_lora:
            # Loaded to serve: calls never unfuse, so no copy of the unfused weights is kept.
            self.enable_storymaker_lora_fusion(lora_scale, keep_original=False)
        return self

    # ------------------------------------------------------------------ LoRA fusion
    @property
    def storymaker_lora_fusion(self) -> bool:
        """Whether StoryMaker's LoRA is fused into the UNet's attention weights."""
        return self.adapter.fused_scale is not None

    def enable_storymaker_lora_fusion(self, lora_scale: float = DEFAULT_LORA_SCALE, *,
                                      keep_original: bool = True) -> None:
        """Fuse the LoRA at ``lora_scale`` (faster steps): do it once, when loading (the settings'
        scale). Calls at any other scale stay exact (the processors add the difference) and never
        touch the weights. ``keep_original`` keeps a CPU copy of the unfused weights (1.8 GiB for
        SDXL in float16) so that unfusing, or fusing again at another scale, restores them exactly;
        without it those raise :class:`CheckpointError` (reload instead)."""
        if self.adapter.fused_scale != float(lora_scale):
            logger.info("fusing the StoryMaker LoRA at scale %s", lora_scale)
        self.adapter.fuse_lora(self.unet, float(lora_scale), keep_original=keep_original)

    def disable_storymaker_lora_fusion(self) -> None:
        """Restore the UNet weights as they were before fusing (bit for bit); every call then runs
        the LoRA branches at its own scale."""
        self.adapter.unfuse_lora(self.unet)

    # ------------------------------------------------------------------ cancel / properties
    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def cancel(self) -> None:
        """Stop the running call after its current step (it returns what it has, ``interrupted=True``)."""
        self._interrupt = True

    @property
    def steps_done(self) -> int:
        return self._steps_done

    @property
    def _execution_device(self) -> torch.device:
        """Where the denoising runs: the placement's accelerator when the placement policy placed the
        pipeline (some components then wait in CPU memory), else diffusers' answer."""
        placement = getattr(self, "_storymaker_placement", None)
        if placement is not None:
            return placement.device
        return super()._execution_device

    # ------------------------------------------------------------------ inputs
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

    # ------------------------------------------------------------------ decode
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE decode (float32 around the decode when the fp16 VAE needs it), image in -1..1."""
        vae = self.vae
        needs_upcasting = vae.dtype == torch.float16 and vae.config.force_upcast
        if needs_upcasting:  # float16 -> float32 -> float16 is exact: the weights come back unchanged
            with quiet_dtype_casts():
                vae.to(dtype=torch.float32)
        try:
            latents = latents.to(next(iter(vae.post_quant_conv.parameters())).dtype)
            mean = getattr(vae.config, "latents_mean", None)
            std = getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
                std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
                latents = latents * std / vae.config.scaling_factor + mean
            else:
                latents = latents / vae.config.scaling_factor
            return vae.decode(latents, return_dict=False)[0]
        finally:
            if needs_upcasting:
                with quiet_dtype_casts():
                    vae.to(dtype=torch.float16)

    # ------------------------------------------------------------------ call
    def __call__(self, *args, fast: bool = False, **kwargs):
        """Render one panel: see :meth:`render` (same arguments). ``fast=True`` renders with the
        Fast preset's LoRA and scheduler (:mod:`.fast`; give ``num_inference_steps=4`` and
        ``guidance_scale=1``); the pipeline is exactly as before once the call returns."""
        try:
            if fast:
                from .fast import fast_mode

                with fast_mode(self):
                    return self.render(*args, **kwargs)
            return self.render(*args, **kwargs)
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise GPUOutOfMemoryError(
                "The GPU ran out of memory while rendering: render a smaller panel, or set "
                "STORYMAKER_CPU_OFFLOAD=1 (slower, much less GPU memory) and STORYMAKER_VAE_TILING=1."
            ) from None

    @torch.no_grad()
    def render(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        characters: Sequence[CharacterConditioning] = (),
        outfits: Sequence[torch.Tensor | None] | None = None,
        pose_image: "Image.Image | None" = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        ip_adapter_scale: float = 0.8,
        lora_scale: float = DEFAULT_LORA_SCALE,
        controlnet_conditioning_scale: float = 0.7,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        callback_on_step_end: Callable[..., dict[str, Any] | None] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Render one panel. See the module docstring; parameter names are diffusers'.

        ``callback_on_step_end(pipe, step, timestep, tensors) -> dict | None`` runs after each step;
        it may return replaced tensors, ``{"interrupt": True}``, or call ``pipe.cancel()``; the
        run then stops after the current step and decodes what it has.
        """
        height = height or self.default_sample_size * self.vae_scale_factor
        width = width or self.default_sample_size * self.vae_scale_factor
        characters = list(characters or ())
        self.check_inputs(
            prompt,
            negative_prompt,
            characters,
            outfits,
            pose_image,
            width,
            height,
            prompt_embeds,
            negative_prompt_embeds,
            pooled_prompt_embeds,
            negative_pooled_prompt_embeds,
            callback_on_step_end_tensor_inputs,
            num_inference_steps,
        )
        self._guidance_scale = guidance_scale
        self._guidance_rescale = 0.0
        self._clip_skip = None
        self._cross_attention_kwargs = None
        self._denoising_end = None
        self._interrupt = False
        self._steps_done = 0

        if isinstance(prompt, str):
            batch_size = 1
        elif isinstance(prompt, list):
            batch_size = len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        device = self._execution_device
        # Computed from the argument, not from state on the (shared) pipeline.
        do_cfg = guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None

        # 1. Text.
        prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds = self.encode_prompt(
            prompt=prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=do_cfg,
            negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            pooled_prompt_embeds=pooled_prompt_embeds,
            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds,
        )

        # 2. Characters -> image tokens (unconditional rows first, as the UNet batch is ordered).
        cond_tokens, uncond_tokens = self.encode_characters(characters, outfits, device=device)
        unet_dtype = self.unet.dtype
        cond_tokens = cond_tokens.to(unet_dtype).expand(batch_size, -1, -1)
        image_tokens = (
            torch.cat([uncond_tokens.to(unet_dtype).expand(batch_size, -1, -1), cond_tokens]) if do_cfg else cond_tokens
        )

        # 3. Timesteps and latents.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(
            batch_size,
            self.unet.config.in_channels,
            height,
            width,
            prompt_embeds.dtype,
            device,
            generator,
            latents,
        )
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, 0.0)

        # 4. SDXL added conditioning.
        add_text_embeds = pooled_prompt_embeds
        projection_dim = (
            int(pooled_prompt_embeds.shape[-1])
            if self.text_encoder_2 is None
            else self.text_encoder_2.config.projection_dim
        )
        add_time_ids = self._get_add_time_ids(
            (height, width), (0, 0), (height, width), dtype=prompt_embeds.dtype, text_encoder_projection_dim=projection_dim
        )
        if do_cfg:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
            add_text_embeds = torch.cat([negative_pooled_prompt_embeds, add_text_embeds])
            add_time_ids = torch.cat([add_time_ids, add_time_ids])
        prompt_embeds = prompt_embeds.to(device)
        add_text_embeds = add_text_embeds.to(device)
        add_time_ids = add_time_ids.to(device).repeat(batch_size, 1)

        # 5. Pose.
        control_image = None
        if pose_image is not None:
            control_image = self.prepare_pose_image(
                pose_image, width, height, batch_size, device, self.controlnet.dtype, do_cfg
            )

        # 6. Denoise.
        self._num_timesteps = len(timesteps)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)
        # The image tokens are fixed for this call: each layer projects them to keys/values once.
        ip_cache: dict = {}
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                latent_model_input = torch.cat([latents] * 2) if do_cfg else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                added_cond_kwargs = {"text_embeds": add_text_embeds, "time_ids": add_time_ids}
                cross_attention_kwargs = {
                    IMAGE_TOKENS_KWARG: image_tokens,
                    IP_SCALE_KWARG: float(ip_adapter_scale),
                    LORA_SCALE_KWARG: float(lora_scale),
                    IP_CACHE_KWARG: ip_cache,
                }
                down_residuals = mid_residual = None
                fraction = i / len(timesteps)
                if control_image is not None and control_guidance_start <= fraction < control_guidance_end:
                    down_residuals, mid_residual = self.controlnet(
                        latent_model_input,
                        t,
                        encoder_hidden_states=prompt_embeds,
                        controlnet_cond=control_image,
                        conditioning_scale=float(controlnet_conditioning_scale),
                        guess_mode=False,
                        added_cond_kwargs=added_cond_kwargs,
                        return_dict=False,
                    )
                noise_pred = self.unet(
                    latent_model_input,
                    t,
                    encoder_hidden_states=prompt_embeds,
                    cross_attention_kwargs=cross_attention_kwargs,
                    added_cond_kwargs=added_cond_kwargs,
                    down_block_additional_residuals=down_residuals,
                    mid_block_additional_residual=mid_residual,
                    return_dict=False,
                )[0]
                if do_cfg:
                    noise_uncond, noise_text = noise_pred.chunk(2)
                    noise_pred = noise_uncond + guidance_scale * (noise_text - noise_uncond)
                latents_dtype = latents.dtype
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                if latents.dtype != latents_dtype:
                    latents = latents.to(latents_dtype)
                self._steps_done = i + 1

                if callback_on_step_end is not None:
                    local = {
                        "latents": latents,
                        "prompt_embeds": prompt_embeds,
                        "add_text_embeds": add_text_embeds,
                        "add_time_ids": add_time_ids,
                        "image_tokens": image_tokens,
                    }
                    outputs = callback_on_step_end(
                        self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs}
                    ) or {}
                    latents = outputs.pop("latents", latents)
                    prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)
                    add_text_embeds = outputs.pop("add_text_embeds", add_text_embeds)
                    add_time_ids = outputs.pop("add_time_ids", add_time_ids)
                    image_tokens = outputs.pop("image_tokens", image_tokens)
                    if outputs.pop("interrupt", False):
                        self._interrupt = True
                progress_bar.update()
                if self._interrupt:
                    logger.info("interrupted after step %d of %d", i + 1, len(timesteps))
                    break

        # 7. Decode.
        if output_type == "latent":
            images = latents
        else:
            images = self.image_processor.postprocess(self.decode_latents(latents), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return StoryMakerPipelineOutput(images=images, interrupted=self._interrupt, steps_done=self._steps_done)
