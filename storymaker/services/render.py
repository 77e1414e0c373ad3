"""Render engine: story panels -> images, through one backend interface.

The engine resolves each panel (prompt, negative, size, steps, seed, characters, pose), asks the
backend (:mod:`storymaker.services.backends`) for an image, and keeps every render as a version in
the project, under the panel's identity (``Project.panel_ids``: matched from the story's prompts when
the run starts), never under its position, so a script edited during a run cannot put a render under
another panel. Pipelines live in a process-wide cache (:mod:`storymaker.services.pipelines`); the plain
job data is :mod:`storymaker.services.jobs`; character conditioning comes from the registry's cache.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Iterable, Sequence

from PIL import Image

from ..config import Settings
from ..domain.heads import recorded
from ..domain.story import Panel, Story
from ..errors import InvalidInputError, PoseError, RenderCancelled, StoryMakerError
from .backends import RenderBackend
from .jobs import (
    DEFAULT_STORY_SEED,
    SEED_LIMIT,
    STATUS_CANCELLED,
    STATUS_ERROR,
    STATUS_OK,
    CharacterSlot,
    PanelJob,
    PanelResult,
    ProgressCallback,
    RenderReport,
    derive_seed,
    random_seed,
)

logger = logging.getLogger(__name__)


class RenderEngine:
    """Renders a story's panels with one backend and keeps every render as a project version.

    ``project`` (storymaker.services.storage.Project) keeps versions; ``registry``
    (CharacterRegistry) gives character records and conditioning; ``poses`` (PoseLibrary) resolves
    pose names. Each may be None for a run that needs none of them (e.g. no characters, no poses,
    results not kept). ``scorer`` (:mod:`storymaker.services.scores`) scores every render before it
    is kept; "auto" builds the backend's scorer from the registry (none for drafts), None scores
    nothing. ``best_of`` (default ``settings.best_of``) renders that many seeds per panel, keeps
    them all and selects the best-scoring one.
    """

    def __init__(
        self,
        backend: RenderBackend,
        settings: Settings,
        *,
        project: Any = None,
        registry: Any = None,
        poses: Any = None,
        scorer: Any = "auto",
    ):
        self.backend = backend
        self.settings = settings
        self.project = project
        self.registry = registry
        self.poses = poses
        self._scorer = scorer
        self._lock = threading.Lock()

    @property
    def scorer(self):
        """The scorer of this engine's renders (built on first use; None: renders are not scored)."""
        if isinstance(self._scorer, str) and self._scorer == "auto":
            from .scores import make_scorer

            self._scorer = make_scorer(self.backend.name, self.settings, self.registry)
        return self._scorer

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
        resolved = panel_settings(story, panel, s)
        width, height = resolved["width"], resolved["height"]
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
            seed=panel_seed,
            source_prompt=panel.prompt,
            characters=slots,
            pose=pose,
            caption=panel.caption,
            ip_adapter_scale=s.ip_adapter_scale,
            lora_scale=s.lora_scale,
            controlnet_conditioning_scale=s.controlnet_conditioning_scale,
            seed_source=source,
            style=self._style_name(story, panel),
            **resolved,
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

    @staticmethod
    def _style_name(story: Story, panel: Panel) -> str | None:
        """The library style the panel is drawn in (None for free text or no style): kept in its record."""
        from ..domain import script

        style, _ = script.style_for_panel(panel, story)
        return style.name if style else None

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
        best_of: int | None = None,
        only_missing: bool = False,
    ) -> RenderReport:
        """Render ``panels`` (0-based indices; all by default). ``seed`` replaces the story seed;
        ``best_of`` seeds per panel (default ``settings.best_of``), the best-scoring one selected.
        ``only_missing``: render only those of them with no render of their current wording
        (:meth:`missing_panels`); the others are the report's ``skipped``."""
        indices = list(range(len(story.panels))) if panels is None else list(panels)
        skipped: tuple[int, ...] = ()
        if only_missing:
            missing = set(self.missing_panels(story, indices))
            skipped = tuple(i for i in indices if i not in missing)
            indices = [i for i in indices if i in missing]
        report = self._run(
            story,
            [(i, None, None) for i in indices],
            story_seed=seed,
            progress=progress,
            cancel=cancel,
            keep=keep,
            best_of=best_of,
        )
        return dataclasses.replace(report, skipped=skipped) if skipped else report

    def missing_panels(self, story: Story, panels: Sequence[int] | None = None) -> list[int]:
        """The panels of ``story`` (0-based; among ``panels``, all by default) that have no render
        of their current wording in this engine's project (:func:`missing_panels`)."""
        return missing_panels(self.project, story, panels)

    def render_panel(
        self,
        story: Story,
        index: int,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        keep: bool = True,
        best_of: int | None = None,
    ) -> PanelResult:
        """Render one panel (0-based); ``seed`` overrides its derived or scripted seed."""
        report = self._run(
            story, [(index, seed, None)], story_seed=None, progress=progress, cancel=cancel, keep=keep,
            best_of=best_of,
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
        best_of: int | None = None,
    ) -> PanelResult:
        """Render panel ``index`` again with a new random seed (kept as a new version); with
        ``best_of`` N, N new seeds and the best-scoring one selected."""
        report = self._run(
            story,
            [(index, random_seed(), "reroll")],
            story_seed=None,
            progress=progress,
            cancel=cancel,
            keep=keep,
            best_of=best_of,
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
        best_of: int | None = None,
    ) -> RenderReport:
        items = list(items)
        rounds = max(1, int(self.settings.best_of if best_of is None else best_of))
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
            panel_ids = self.panel_ids(story, keep)
            for position, (index, seed, source) in enumerate(items):
                if cancelled or (cancel is not None and cancel.is_set()):
                    cancelled = True
                    results.append(PanelResult(index, STATUS_CANCELLED, error="Cancelled before it started."))
                    continue
                result = self._render_best_of(
                    story, index, position, count, rounds,
                    seed=seed, seed_source=source, story_seed=story_seed,
                    progress=progress, cancel=cancel, keep=keep,
                    panel_id=panel_ids[index] if 0 <= index < len(panel_ids) else None,
                )
                results.append(result)
                if result.status == STATUS_CANCELLED:
                    cancelled = True
        return RenderReport(tuple(results), backend=self.backend.name, cancelled=cancelled)

    def _render_best_of(
        self,
        story: Story,
        index: int,
        position: int,
        count: int,
        rounds: int,
        *,
        seed: int | None,
        seed_source: str | None,
        story_seed: int | None,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        keep: bool,
        panel_id: str | None = None,
    ) -> PanelResult:
        """Render a panel ``rounds`` times: the first with its own seed, the others with seeds
        derived from it; every render is kept; the best-scoring one is selected and returned.
        A failed or cancelled round ends the rounds; the best finished one is still selected."""
        if rounds <= 1:
            return self._render_one(story, index, position, count, seed=seed, seed_source=seed_source,
                                    story_seed=story_seed, progress=progress, cancel=cancel, keep=keep,
                                    panel_id=panel_id)
        from .scores import pick_best, scores_from_meta

        finished: list[PanelResult] = []
        last: PanelResult | None = None
        base_seed: int | None = None
        for k in range(rounds):
            if k and cancel is not None and cancel.is_set():
                break

            def sub_progress(p: int, c: int, step: int, steps: int, k: int = k) -> None:
                if progress is not None:
                    progress(p, c, k * steps + step, rounds * steps)

            last = self._render_one(
                story, index, position, count,
                seed=seed if k == 0 else derive_seed(base_seed, k),  # type: ignore[arg-type]
                seed_source=seed_source if k == 0 else "best-of",
                story_seed=story_seed, progress=sub_progress, cancel=cancel, keep=keep, panel_id=panel_id,
                extra_meta={"best_of": {"n": rounds, "round": k + 1}},
            )
            if not last.ok:
                break
            if k == 0:
                base_seed = last.seed
            finished.append(last)
        if not finished:
            return last  # type: ignore[return-value]
        best = pick_best([(r, scores_from_meta(r.metadata)) for r in finished])
        if keep and self.project is not None and best.version is not None and panel_id is not None:
            self.project.select(panel_id, best.version)
        logger.info("panel %d: best of %d is seed %s (version %s)", index + 1, len(finished), best.seed, best.version)
        return best

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
        panel_id: str | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> PanelResult:
        started = time.perf_counter()
        job: PanelJob | None = None

        def on_step(step: int, steps: int) -> None:
            if progress is not None:
                progress(position, count, step, steps)

        try:
            job = self.job(story, index, seed=seed, story_seed=story_seed, seed_source=seed_source)
            image = self.backend.render(job, registry=self.registry, on_step=on_step, cancel=cancel)
            metadata = self._record(job, image, extra_meta)
            version = self._keep(panel_id, image, metadata) if keep else None
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

    def _scores(self, job: PanelJob, image: Image.Image) -> dict[str, Any]:
        """``{"scores": ...}`` for the version's metadata, or {} (no scorer, or scoring failed)."""
        from .scores import score_render_safely

        scores = score_render_safely(self.scorer, job, image)
        return {} if scores is None else {"scores": scores}

    def _record(self, job: PanelJob, image: Image.Image, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """The version's metadata: the job's settings, what the backend measured (head boxes,
        domain/heads.py), ``extra_meta`` and the consistency scores."""
        metadata = self._metadata(job)
        metadata.update(recorded(image))
        metadata.update(extra_meta or {})
        metadata.update(self._scores(job, image))
        return metadata

    def keep(self, job: PanelJob, image: Image.Image, *, panel_id: str | None, seconds: float = 0.0) -> PanelResult:
        """Keep an image rendered elsewhere for ``job`` (planned with :meth:`job`, e.g. rendered on
        a Ray worker) under ``panel_id`` (from :meth:`panel_ids`): the same metadata and the same
        atomic version write as a local render."""
        metadata = self._record(job, image)
        version = self._keep(panel_id, image, metadata)
        return PanelResult(job.index, STATUS_OK, seed=job.seed, image=image, version=version,
                           seconds=seconds, metadata=metadata)

    def _metadata(self, job: PanelJob) -> dict[str, Any]:
        record = job.settings_record()
        record.update(
            backend=self.backend.name,
            label=self.backend.label,
            model_ids=self.backend.model_ids(),
            rendered_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        return record

    def panel_ids(self, story: Story, keep: bool = True) -> list[str]:
        """The identity of each panel of ``story`` in the project ([] when nothing is kept)."""
        if not keep or self.project is None:
            return []
        return list(self.project.panel_ids([panel.prompt for panel in story.panels]))

    def _keep(self, panel_id: str | None, image: Image.Image, metadata: dict[str, Any]) -> str | None:
        if self.project is None or panel_id is None:
            return None
        version = self.project.add_version(panel_id, image, metadata)
        name = getattr(version, "id", version)
        self.project.select(panel_id, name)
        return name


def missing_panels(project: Any, story: Story, panels: Sequence[int] | None = None) -> list[int]:
    """The panels of ``story`` (0-based; among ``panels``, all by default) that ``project`` holds
    no render of their current wording for: no render at all, or a chosen render made for other
    words (the Render tab's "script changed since render"). Without a project every panel is
    missing; a number that is not a panel stays in (rendering it says it does not exist). The
    render engine and the ZeroGPU duration estimate (``storymaker.ui.gpu``) both use this."""
    chosen = list(range(len(story.panels)) if panels is None else panels)
    if project is None:
        return chosen
    renders = project.panel_renders([panel.prompt for panel in story.panels])
    return [i for i in chosen
            if not 0 <= i < len(renders) or renders[i].selected is None or renders[i].changed]


def panel_settings(story: Story, panel: Panel, settings: Settings) -> dict[str, Any]:
    """The size, steps and guidance ``panel`` renders with, as :class:`PanelJob` fields: the panel's
    own, else the story's, else ``settings``'; the Fast preset (``settings.quality``) replaces the
    steps and guidance. The engine's jobs and the ZeroGPU duration estimate
    (:func:`storymaker.services.gpu.story_work`) both come from here."""
    width, height = panel.size or story.size or (settings.width, settings.height)
    resolved: dict[str, Any] = {
        "width": int(width),
        "height": int(height),
        "steps": int(panel.steps or story.steps or settings.steps),
        "guidance_scale": float(
            panel.guidance if panel.guidance is not None
            else story.guidance if story.guidance is not None
            else settings.guidance_scale
        ),
    }
    resolved.update(_fast_preset(settings))
    return resolved


def _fast_preset(settings: Settings) -> dict:
    """The Fast preset replaces every panel's steps and guidance: its LoRA was distilled for
    ``fast_steps`` steps without guidance (storymaker/models/fast.py)."""
    if settings.quality != "fast":
        return {}
    return {"quality": "fast", "steps": int(settings.fast_steps), "guidance_scale": 1.0}
