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

This module holds the pipeline's components, cancel, the decode and the denoising call; its input
checks and input tensors are in ``pipeline_inputs.py``, its loading, placement and LoRA fusion in
``pipeline_setup.py`` (both mixed into :class:`StoryMakerPipeline`).
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
from .pipeline_inputs import DEFAULT_LORA_SCALE, StoryMakerInputsMixin
from .pipeline_setup import StoryMakerSetupMixin

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

logger = logging.getLogger(__name__)


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


class StoryMakerPipeline(StoryMakerInputsMixin, StoryMakerSetupMixin, StableDiffusionXLPipeline):
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
