"""Render engine: story panels -> images, through one backend interface.

Backends:

- ``storymaker``: the real :class:`~storymaker.models.pipeline.StoryMakerPipeline` (SDXL + adapter +
  optional pose ControlNet) loaded from the configured weights;
- ``tiny``: the same pipeline code on tiny random weights (tests, smoke runs); every image it makes
  carries a "TINY MODEL" mark and ``"backend": "tiny"`` in its metadata;
- ``draft``: a storyboard sketch drawn at once on the CPU (:mod:`storymaker.services.draft`).

The engine resolves each panel (prompt, negative, size, steps, seed, characters, pose), asks the
backend for an image, and keeps every render as a version in the project. Pipelines live in a
process-wide cache keyed by the model settings (one per configuration, loaded once); prompt
embeddings are cached per pipeline by text; character conditioning comes from the registry's cache.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Protocol, Sequence

from PIL import Image, ImageDraw

from ..config import Settings
from ..domain.story import Panel, Story
from ..errors import (
    GPUOutOfMemoryError,
    InvalidInputError,
    PoseError,
    RenderCancelled,
    RenderError,
    StoryMakerError,
)

logger = logging.getLogger(__name__)

#: ``progress(panel_index, panel_count, step, steps)``: ``panel_index`` counts the panels of this
#: run from 0; ``step`` goes 1..``steps`` (0 when a panel starts).
ProgressCallback = Callable[[int, int, int, int], None]

SEED_LIMIT = 2**32
DEFAULT_STORY_SEED = 0

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_CANCELLED = "cancelled"


# ----------------------------------------------------------------------------------------------
# Seeds


def derive_seed(story_seed: int, index: int) -> int:
    """The seed of panel ``index`` (0-based) of a story whose base seed is ``story_seed``.

    Stable across processes and platforms: sha256 of ``"<story_seed>:<index>"``, first 4 bytes.
    """
    digest = hashlib.sha256(f"{int(story_seed)}:{int(index)}".encode("ascii")).digest()
    return int.from_bytes(digest[:4], "big")


def random_seed() -> int:
    """A fresh random seed (for "re-roll")."""
    return secrets.randbelow(SEED_LIMIT)


# ----------------------------------------------------------------------------------------------
# Jobs and results


@dataclass(frozen=True)
class CharacterSlot:
    """A character bound to a panel slot (slot order = order in the tuple)."""

    name: str
    noun: str = "a person"
    outfit: str | None = None


@dataclass(frozen=True)
class PanelJob:
    """Everything needed to render one panel; ``index`` is the panel's 0-based story position."""

    index: int
    prompt: str  # the text sent to the model ([Name] replaced, style appended)
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    source_prompt: str = ""  # the prompt as written in the script
    characters: tuple[CharacterSlot, ...] = ()
    pose: Any = None  # storymaker.domain.poses.Pose or None
    caption: str | None = None
    ip_adapter_scale: float = 0.8
    lora_scale: float = 0.8
    controlnet_conditioning_scale: float = 0.7
    seed_source: str = "derived"  # "explicit" (script/argument), "derived" or "reroll"

    def settings_record(self) -> dict[str, Any]:
        """The settings recorded with a version (JSON-ready)."""
        return {
            "panel_index": self.index,
            "prompt": self.prompt,
            "source_prompt": self.source_prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "seed": self.seed,
            "seed_source": self.seed_source,
            "characters": [
                {"name": c.name, "noun": c.noun, "outfit": c.outfit} for c in self.characters
            ],
            "pose": getattr(self.pose, "name", None),
            "caption": self.caption,
            "ip_adapter_scale": self.ip_adapter_scale,
            "lora_scale": self.lora_scale,
            "controlnet_conditioning_scale": self.controlnet_conditioning_scale if self.pose else None,
        }


@dataclass(frozen=True)
class PanelResult:
    """The outcome of one panel: ``status`` is "ok", "error" or "cancelled"."""

    index: int
    status: str
    seed: int | None = None
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    version: str | None = None
    error: str | None = None
    seconds: float = 0.0
    metadata: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@dataclass(frozen=True)
class RenderReport:
    """The outcome of a run: one result per requested panel, in order."""

    results: tuple[PanelResult, ...]
    backend: str
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.cancelled and all(r.ok for r in self.results)

    @property
    def finished(self) -> tuple[PanelResult, ...]:
        return tuple(r for r in self.results if r.ok)

    @property
    def failed(self) -> tuple[PanelResult, ...]:
        return tuple(r for r in self.results if r.status == STATUS_ERROR)

    def summary(self) -> str:
        """One paragraph for a user: what rendered, what failed and why (each reason once)."""
        done = len(self.finished)
        parts = [f"{done} of {len(self.results)} panel{'s' if len(self.results) != 1 else ''} rendered"]
        if self.cancelled:
            parts.append("cancelled (finished panels are kept)")
        text = ", ".join(parts) + "."
        reasons: dict[str, list[int]] = {}
        for r in self.failed:
            reasons.setdefault(r.error or "unknown error", []).append(r.index + 1)
        for reason, numbers in reasons.items():
            label = "Panel" if len(numbers) == 1 else "Panels"
            text += f" {label} {', '.join(map(str, numbers))}: {reason}"
        return text


# ----------------------------------------------------------------------------------------------
# Backends


class RenderBackend(Protocol):
    """What the engine needs from a backend."""

    name: str  # "storymaker", "tiny", "draft"
    label: str  # mark drawn on images ("TINY MODEL", "DRAFT") or ""

    def model_ids(self) -> dict[str, str]:
        """Model identifiers recorded with every version."""

    def prepare(self) -> None:
        """Load what every panel needs (once); a StoryMakerError here fails the whole run."""

    def render(
        self,
        job: PanelJob,
        *,
        registry: Any,
        on_step: Callable[[int, int], None],
        cancel: threading.Event | None,
    ) -> Image.Image:
        """Render one panel. Raises :class:`RenderCancelled` when ``cancel`` was set."""


class _PipelineEntry:
    """A loaded pipeline, the lock that serialises calls on it, and its prompt-embedding cache."""

    def __init__(self, pipeline: Any, max_prompts: int = 256):
        self.pipeline = pipeline
        self.lock = threading.RLock()
        self.embeddings: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self.max_prompts = max_prompts
        self.encode_calls = 0

    def embed(self, text: str) -> tuple[Any, Any]:
        """``(prompt_embeds, pooled_prompt_embeds)`` for ``text``, computed once (call under lock)."""
        hit = self.embeddings.get(text)
        if hit is not None:
            self.embeddings.move_to_end(text)
            return hit
        import torch

        pipe = self.pipeline
        with torch.no_grad():
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt=text,
                device=getattr(pipe, "_execution_device", None),
                num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
        self.encode_calls += 1
        self.embeddings[text] = (embeds, pooled)
        while len(self.embeddings) > self.max_prompts:
            self.embeddings.popitem(last=False)
        return embeds, pooled


class PipelineCache:
    """Process-wide, thread-safe: one pipeline per model configuration, loaded once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _PipelineEntry] = {}
        self.loads: Counter = Counter()

    def entry(self, key: Hashable, loader: Callable[[], Any]) -> _PipelineEntry:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                started = time.perf_counter()
                pipeline = loader()
                found = _PipelineEntry(pipeline)
                self._entries[key] = found
                self.loads[key] += 1
                logger.info("loaded pipeline %s in %.1f s", key, time.perf_counter() - started)
            return found

    def get(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        return self.entry(key, loader).pipeline

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def clear(self) -> None:
        """Drop every pipeline (tests; freeing memory)."""
        with self._lock:
            self._entries.clear()
            self.loads.clear()


#: The process-wide pipeline cache.
PIPELINES = PipelineCache()


def pipeline_key(settings: Settings, backend: str) -> tuple:
    """The cache key of a model configuration (what changes the loaded weights or their placement)."""
    if backend == "tiny":
        return ("tiny",)
    return (
        backend,
        settings.base_model,
        settings.adapter_model,
        settings.adapter_filename,
        settings.image_encoder,
        settings.controlnet_pose,
        settings.extra_loras,
        settings.device,
        settings.dtype,
        settings.cpu_offload,
        settings.vae_slicing,
        settings.vae_tiling,
        settings.fuse_lora,
    )


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def oom_message(job: PanelJob) -> str:
    return (
        f"The GPU ran out of memory rendering a {job.width}x{job.height} panel with "
        f"{len(job.characters)} character(s). Try a smaller size (e.g. 768x1024), set "
        "STORYMAKER_CPU_OFFLOAD=1 to keep idle parts of the model in CPU memory, or use fewer "
        "characters in the panel; close other programs using the GPU. Other panels are kept."
    )


LABEL_COLOUR = (255, 230, 0)


def stamp_label(image: Image.Image, label: str) -> Image.Image:
    """A copy of ``image`` with ``label`` on a yellow band across its middle, so that the mark
    survives any crop a comic layout makes (tiny-model output is noise: nothing is hidden)."""
    from .draft import load_font

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(6, out.width // (len(label) + 2))
    font = load_font(size)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    pad = max(1, size // 4)
    band_h = bottom - top + 2 * pad
    y0 = (out.height - band_h) // 2
    draw.rectangle((0, y0, out.width - 1, y0 + band_h), fill=LABEL_COLOUR)
    draw.text(((out.width - (right - left)) // 2 - left, y0 + pad - top), label, fill=(0, 0, 0), font=font)
    return out


class DiffusionBackend:
    """The StoryMaker pipeline (real weights or tiny random ones) behind :class:`RenderBackend`."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        loader: Callable[[], Any],
        *,
        key: Hashable | None = None,
        cache: PipelineCache = PIPELINES,
        label: str = "",
        model_ids: dict[str, str] | None = None,
    ):
        self.name = name
        self.settings = settings
        self.label = label
        self._loader = self._quiet(loader)
        self._key = key if key is not None else pipeline_key(settings, name)
        self._cache = cache
        self._model_ids = dict(model_ids or {})

    @staticmethod
    def _quiet(loader: Callable[[], Any]) -> Callable[[], Any]:
        """The loader, with diffusers' own progress bar off (the engine reports progress)."""

        def load():
            pipeline = loader()
            if hasattr(pipeline, "set_progress_bar_config"):
                pipeline.set_progress_bar_config(disable=True)
            return pipeline

        return load

    @property
    def key(self) -> Hashable:
        return self._key

    @property
    def loaded(self) -> bool:
        """Whether this backend's pipeline is in the cache already."""
        return self._key in self._cache

    def entry(self) -> _PipelineEntry:
        return self._cache.entry(self._key, self._loader)

    def model_ids(self) -> dict[str, str]:
        return dict(self._model_ids)

    def prepare(self) -> None:
        """Load the pipeline now (once per process and configuration)."""
        import torch

        try:
            self.entry()
        except torch.OutOfMemoryError:
            _free_cuda_memory()
            raise GPUOutOfMemoryError(
                "The GPU ran out of memory loading the model. Set STORYMAKER_CPU_OFFLOAD=1 (keeps idle "
                "parts in CPU memory), use STORYMAKER_DTYPE=float16, or free the GPU from other programs."
            ) from None

    def render(
        self,
        job: PanelJob,
        *,
        registry: Any,
        on_step: Callable[[int, int], None],
        cancel: threading.Event | None,
    ) -> Image.Image:
        import torch

        def step_end(pipe, step: int, timestep, tensors: dict) -> dict:
            on_step(step + 1, job.steps)
            if cancel is not None and cancel.is_set():
                return {"interrupt": True}  # the pipeline stops after this step
            return {}

        on_step(0, job.steps)
        try:
            entry = self.entry()  # loads the pipeline on first use (an OOM here is handled too)
            characters = [_conditioning(registry, slot) for slot in job.characters]
            pose_image = _pose_image(job)
            with entry.lock:
                if cancel is not None and cancel.is_set():
                    raise RenderCancelled("Render cancelled before this panel started.")
                prompt_embeds, pooled = entry.embed(job.prompt)
                negative_embeds, negative_pooled = entry.embed(job.negative_prompt)
                generator = torch.Generator(device="cpu").manual_seed(job.seed)
                output = entry.pipeline(
                    characters=characters,
                    pose_image=pose_image,
                    prompt_embeds=prompt_embeds,
                    negative_prompt_embeds=negative_embeds,
                    pooled_prompt_embeds=pooled,
                    negative_pooled_prompt_embeds=negative_pooled,
                    width=job.width,
                    height=job.height,
                    num_inference_steps=job.steps,
                    guidance_scale=job.guidance_scale,
                    ip_adapter_scale=job.ip_adapter_scale,
                    lora_scale=job.lora_scale,
                    controlnet_conditioning_scale=job.controlnet_conditioning_scale,
                    generator=generator,
                    callback_on_step_end=step_end,
                )
        except (torch.OutOfMemoryError, GPUOutOfMemoryError) as err:
            # The pipeline turns an OOM into GPUOutOfMemoryError itself; either way the panel's own
            # advice (its size, its characters) replaces the message and the CUDA cache is freed.
            logger.warning("out of memory on panel %d: %s", job.index + 1, err)
            _free_cuda_memory()
            raise GPUOutOfMemoryError(oom_message(job)) from None
        if getattr(output, "interrupted", False) or (cancel is not None and cancel.is_set()):
            raise RenderCancelled("Render cancelled during this panel; it was not kept.")
        images = getattr(output, "images", output)
        image = images[0]
        if not isinstance(image, Image.Image):
            raise RenderError("The pipeline returned no image; report this as a bug.")
        if self.label:
            image = stamp_label(image, self.label)
        return image


def _conditioning(registry: Any, slot: CharacterSlot):
    if registry is None:
        raise RenderError(
            f"Panel uses [{slot.name}] but no character registry is open: register characters in a "
            "project (python -m storymaker characters add) and render that project."
        )
    return registry.conditioning(slot.name, outfit=slot.outfit)


def _pose_image(job: PanelJob) -> Image.Image | None:
    if job.pose is None:
        return None
    from ..perception.pose import render_pose

    return render_pose(job.pose, job.width, job.height)


class DraftBackend:
    """Storyboard sketches drawn with PIL on the CPU: no model, no torch."""

    name = "draft"
    label = "DRAFT"

    def __init__(self, settings: Settings | None = None):
        self.settings = settings

    def model_ids(self) -> dict[str, str]:
        return {"renderer": "storymaker-draft-sketch"}

    def prepare(self) -> None:
        return None

    def render(
        self,
        job: PanelJob,
        *,
        registry: Any,
        on_step: Callable[[int, int], None],
        cancel: threading.Event | None,
    ) -> Image.Image:
        from .draft import draw_draft

        if cancel is not None and cancel.is_set():
            raise RenderCancelled("Render cancelled before this panel started.")
        on_step(0, 1)
        thumbnails = {slot.name: _thumbnail(registry, slot.name) for slot in job.characters}
        image = draw_draft(job, thumbnails)
        on_step(1, 1)
        return image


def _thumbnail(registry: Any, name: str) -> Image.Image | None:
    """The character's aligned face crop (else its photo) for a draft; None without a registry."""
    if registry is None:
        return None
    for which in ("face", "photo"):
        try:
            return registry.image(name, which).convert("RGB")
        except OSError:
            logger.debug("no %s image for %s", which, name)
    return None


# ----------------------------------------------------------------------------------------------
# The engine


class RenderEngine:
    """Renders a story's panels with one backend and keeps every render as a project version.

    ``project`` (storymaker.services.storage.Project) keeps versions; ``registry``
    (CharacterRegistry) gives character records and conditioning; ``poses`` (PoseLibrary) resolves
    pose names. Each may be None for a run that needs none of them (e.g. no characters, no poses,
    results not kept).
    """

    def __init__(
        self,
        backend: RenderBackend,
        settings: Settings,
        *,
        project: Any = None,
        registry: Any = None,
        poses: Any = None,
    ):
        self.backend = backend
        self.settings = settings
        self.project = project
        self.registry = registry
        self.poses = poses
        self._lock = threading.Lock()

    # -- planning ------------------------------------------------------------------------------

    def job(
        self,
        story: Story,
        index: int,
        *,
        seed: int | None = None,
        story_seed: int | None = None,
        seed_source: str | None = None,
    ) -> PanelJob:
        """Resolve panel ``index`` (0-based) of ``story`` into a :class:`PanelJob`."""
        if not 0 <= index < len(story.panels):
            raise InvalidInputError(
                f"Panel {index + 1} does not exist: the story has {len(story.panels)} panel(s)."
            )
        panel = story.panels[index]
        s = self.settings
        width, height = panel.size or story.size or (s.width, s.height)
        if width % 8 or height % 8 or width <= 0 or height <= 0:
            raise InvalidInputError(
                f"Panel {index + 1}: size {width}x{height} is not usable; use positive multiples of 8."
            )
        if seed is not None:
            panel_seed, source = int(seed) % SEED_LIMIT, seed_source or "explicit"
        elif panel.seed is not None:
            panel_seed, source = int(panel.seed) % SEED_LIMIT, "explicit"
        else:
            base = story_seed if story_seed is not None else story.seed
            base = DEFAULT_STORY_SEED if base is None else base
            panel_seed, source = derive_seed(base, index), "derived"
        slots = tuple(self._slot(panel, name) for name in panel.characters)
        pose = self._pose(panel, index)
        nouns = {name: slot.noun for name, slot in zip(panel.characters, slots)}
        return PanelJob(
            index=index,
            prompt=self._model_prompt(story, panel, nouns),
            negative_prompt=self._negative(story, panel),
            width=int(width),
            height=int(height),
            steps=int(panel.steps or story.steps or s.steps),
            guidance_scale=float(
                panel.guidance if panel.guidance is not None
                else story.guidance if story.guidance is not None
                else s.guidance_scale
            ),
            seed=panel_seed,
            source_prompt=panel.prompt,
            characters=slots,
            pose=pose,
            caption=panel.caption,
            ip_adapter_scale=s.ip_adapter_scale,
            lora_scale=s.lora_scale,
            controlnet_conditioning_scale=s.controlnet_conditioning_scale,
            seed_source=source,
        )

    def _character(self, name: str):
        if self.registry is None:
            return None
        return self.registry.get(name)

    def _slot(self, panel: Panel, name: str) -> CharacterSlot:
        record = self._character(name)
        outfit = next((o for who, o in panel.outfits if who.casefold() == name.casefold()), None)
        noun = record.prompt_noun if record is not None else "a person"
        return CharacterSlot(name=record.name if record is not None else name, noun=noun, outfit=outfit)

    def _pose(self, panel: Panel, index: int):
        if not panel.pose:
            return None
        if self.poses is None:
            raise PoseError(
                f"Panel {index + 1} asks for pose {panel.pose!r} but no pose library is available."
            )
        from ..domain.poses import check_pose_for_panel

        pose = self.poses.get(panel.pose)
        check_pose_for_panel(pose, len(panel.characters), panel.characters)
        return pose

    @staticmethod
    def _model_prompt(story: Story, panel: Panel, nouns: dict[str, str]) -> str:
        """[Name] -> the character's noun, style appended (``domain.script.prompt_for_model``)."""
        from ..domain import script

        return script.prompt_for_model(panel, story, nouns)

    def _negative(self, story: Story, panel: Panel) -> str:
        """The settings' default negative prompt joined with the story's and the panel's
        (``domain.script.negative_for_model``); repeated terms are kept once."""
        from ..domain import script

        joined = ", ".join(
            part for part in (self.settings.negative_prompt.strip(), script.negative_for_model(panel, story, ""))
            if part
        )
        terms, seen = [], set()
        for term in (t.strip() for t in joined.split(",")):
            if term and term.casefold() not in seen:
                seen.add(term.casefold())
                terms.append(term)
        return ", ".join(terms)

    # -- rendering -----------------------------------------------------------------------------

    def render_story(
        self,
        story: Story,
        *,
        panels: Sequence[int] | None = None,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        keep: bool = True,
    ) -> RenderReport:
        """Render ``panels`` (0-based indices; all by default). ``seed`` replaces the story seed."""
        indices = list(range(len(story.panels))) if panels is None else list(panels)
        return self._run(
            story,
            [(i, None, None) for i in indices],
            story_seed=seed,
            progress=progress,
            cancel=cancel,
            keep=keep,
        )

    def render_panel(
        self,
        story: Story,
        index: int,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        keep: bool = True,
    ) -> PanelResult:
        """Render one panel (0-based); ``seed`` overrides its derived or scripted seed."""
        report = self._run(
            story, [(index, seed, None)], story_seed=None, progress=progress, cancel=cancel, keep=keep
        )
        return report.results[0]

    def reroll(
        self,
        story: Story,
        index: int,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        keep: bool = True,
    ) -> PanelResult:
        """Render panel ``index`` again with a new random seed (kept as a new version)."""
        report = self._run(
            story,
            [(index, random_seed(), "reroll")],
            story_seed=None,
            progress=progress,
            cancel=cancel,
            keep=keep,
        )
        return report.results[0]

    def _run(
        self,
        story: Story,
        items: Iterable[tuple[int, int | None, str | None]],
        *,
        story_seed: int | None,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        keep: bool,
    ) -> RenderReport:
        items = list(items)
        count = len(items)
        results: list[PanelResult] = []
        cancelled = False
        with self._lock:
            try:
                prepare = getattr(self.backend, "prepare", None)
                if prepare is not None and items:
                    prepare()
            except StoryMakerError as err:
                logger.warning("backend %s unavailable: %s", self.backend.name, err)
                failed = tuple(PanelResult(index, STATUS_ERROR, error=str(err)) for index, _, _ in items)
                return RenderReport(failed, backend=self.backend.name)
            for position, (index, seed, source) in enumerate(items):
                if cancelled or (cancel is not None and cancel.is_set()):
                    cancelled = True
                    results.append(PanelResult(index, STATUS_CANCELLED, error="Cancelled before it started."))
                    continue
                result = self._render_one(
                    story, index, position, count,
                    seed=seed, seed_source=source, story_seed=story_seed,
                    progress=progress, cancel=cancel, keep=keep,
                )
                results.append(result)
                if result.status == STATUS_CANCELLED:
                    cancelled = True
        return RenderReport(tuple(results), backend=self.backend.name, cancelled=cancelled)

    def _render_one(
        self,
        story: Story,
        index: int,
        position: int,
        count: int,
        *,
        seed: int | None,
        seed_source: str | None,
        story_seed: int | None,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        keep: bool,
    ) -> PanelResult:
        started = time.perf_counter()
        job: PanelJob | None = None

        def on_step(step: int, steps: int) -> None:
            if progress is not None:
                progress(position, count, step, steps)

        try:
            job = self.job(story, index, seed=seed, story_seed=story_seed, seed_source=seed_source)
            image = self.backend.render(job, registry=self.registry, on_step=on_step, cancel=cancel)
            metadata = self._metadata(job)
            version = self._keep(index, image, metadata) if keep else None
        except RenderCancelled as err:
            logger.info("panel %d cancelled", index + 1)
            return PanelResult(index, STATUS_CANCELLED, seed=job.seed if job else None, error=str(err),
                               seconds=time.perf_counter() - started)
        except StoryMakerError as err:
            logger.warning("panel %d failed: %s", index + 1, err)
            return PanelResult(index, STATUS_ERROR, seed=job.seed if job else None, error=str(err),
                               seconds=time.perf_counter() - started)
        except Exception as err:  # noqa: BLE001 - one panel's bug must not lose the others
            logger.exception("panel %d failed unexpectedly", index + 1)
            return PanelResult(
                index, STATUS_ERROR, seed=job.seed if job else None,
                error=f"Unexpected {type(err).__name__}: {err}. The other panels are kept; "
                "run with -v for the traceback and report it as a bug.",
                seconds=time.perf_counter() - started,
            )
        elapsed = time.perf_counter() - started
        logger.info("panel %d rendered in %.2f s (seed %d, backend %s)",
                    index + 1, elapsed, job.seed, self.backend.name)
        return PanelResult(index, STATUS_OK, seed=job.seed, image=image, version=version,
                           seconds=elapsed, metadata=metadata)

    def _metadata(self, job: PanelJob) -> dict[str, Any]:
        record = job.settings_record()
        record.update(
            backend=self.backend.name,
            label=self.backend.label,
            model_ids=self.backend.model_ids(),
            rendered_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        return record

    def _keep(self, index: int, image: Image.Image, metadata: dict[str, Any]) -> str | None:
        if self.project is None:
            return None
        version = self.project.add_version(index, image, metadata)
        name = getattr(version, "id", version)
        self.project.select(index, name)
        return name
