"""The services container the app and the CLI get (InvokeAI style: interfaces + implementations).

``build_services(settings)`` picks the render backend ("auto": StoryMaker when CUDA and the weights
are there, else draft with a reason the UI shows), the perception components (real insightface /
rembg / CLIP / OpenPose; the labelled tiny stand-ins for the ``tiny`` backend, and for ``draft`` when
the registration weights are missing), the GPU worker that owns the accelerator
(:mod:`storymaker.services.gpu`), and hands out per-project objects: the character registry, the
pose library and the render engine. It is the one wiring of perception, for the app and the CLI
alike. In ZeroGPU mode the pipeline and the encoders are loaded here, at start-up. Tests inject
fakes or tiny real components through the keyword arguments.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import Settings
from ..errors import ConfigError
from .backends import DiffusionBackend, DraftBackend, RenderBackend
from .gpu import GpuWorker
from .pipelines import PIPELINES, PipelineCache
from .render import RenderEngine

logger = logging.getLogger(__name__)

TINY_LABEL = "TINY MODEL"


@dataclass(frozen=True)
class Perception:
    """Face analysis, person segmentation and the CLIP image encoder used to register characters,
    and the pose estimator that extracts poses from photos.

    The first three are zero-argument factories called on first use (the real models load
    lazily); ``pose_estimator(settings, **options)`` makes the estimator. ``label`` says what they
    are when they are not the real models (shown with their results).
    """

    face_analyzer: Callable[[], Any]
    segmenter: Callable[[], Any]
    image_encoder: Callable[[], Any]
    label: str = ""
    pose_estimator: Callable[..., Any] | None = None


@dataclass(frozen=True)
class BackendChoice:
    """The backend in use and, when it is not the real model, why and how to enable it."""

    name: str
    reason: str = ""


# ----------------------------------------------------------------------------------------------
# Backend choice


def missing_weights(settings: Settings) -> list[str]:
    """The model weights "storymaker" needs that are not on this machine (no network access)."""
    from ..models.weights import weights_status

    return [st.spec.describe() for st in weights_status(settings) if st.spec.required and not st.present]


PERCEPTION_KEYS = ("face_model", "segmentation_model", "image_encoder")


def missing_perception(settings: Settings) -> list[str]:
    """The character-registration models (face, segmentation, CLIP) not on this machine."""
    from ..models.weights import weights_status

    return [
        st.spec.describe()
        for st in weights_status(settings, with_controlnet=False, perception=True)
        if st.spec.key in PERCEPTION_KEYS and not st.present
    ]


def choose_backend(settings: Settings, requested: str | None = None) -> BackendChoice:
    """Resolve "auto" (and report why the real model is not used)."""
    name = requested or settings.backend
    if name != "auto":
        if name == "draft":
            return BackendChoice("draft", "Draft mode: panels are storyboard sketches, not renders.")
        if name == "tiny":
            return BackendChoice(
                "tiny",
                "Tiny model: random weights for tests and smoke runs; images are meaningless "
                "(marked TINY MODEL).",
            )
        return BackendChoice(name)
    reasons = []
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        reasons.append("no CUDA GPU is available")
    missing = missing_weights(settings)
    if missing:
        reasons.append("model weights are missing: " + ", ".join(missing))
    if not reasons:
        return BackendChoice("storymaker")
    return BackendChoice(
        "draft",
        "Draft mode (storyboard sketches) because " + " and ".join(reasons) + ". Rendering with "
        "StoryMaker needs a CUDA GPU and the model weights: `python -m storymaker doctor` lists what is "
        "missing and how to provide each model (`python -m storymaker download` fetches the hub models); "
        "then restart with STORYMAKER_BACKEND=auto or storymaker.",
    )


def _storymaker_backend(settings: Settings, cache: PipelineCache) -> DiffusionBackend:
    def load():
        from ..models.pipeline import StoryMakerPipeline
        from ..models.weights import hub_offline, weights_status

        with_controlnet = None  # as the settings say
        if settings.controlnet_pose and hub_offline() and any(
            st.spec.key == "controlnet_pose" and not st.present
            for st in weights_status(settings, perception=False)
        ):
            # The ControlNet is optional: without it, panels without a pose still render and a
            # panel with a pose fails with a message naming STORYMAKER_CONTROLNET_POSE.
            logger.warning("pose ControlNet %s is not on this machine: loading without it", settings.controlnet_pose)
            with_controlnet = False
        from ..perception.clip import loaded_shared_encoder, shared_image_encoder

        # The image encoder registration loaded (if any) becomes the pipeline's: never a second copy;
        # from now on registration uses the pipeline's.
        pipe = StoryMakerPipeline.from_settings(
            settings, with_controlnet=with_controlnet, image_encoder=loaded_shared_encoder(settings)
        )
        shared_image_encoder(settings, model=pipe.image_encoder)
        return pipe

    return DiffusionBackend(
        "storymaker",
        settings,
        load,
        cache=cache,
        model_ids={
            "base_model": settings.base_model,
            "adapter": f"{settings.adapter_model}/{settings.adapter_filename}",
            "image_encoder": settings.image_encoder,
            "controlnet_pose": settings.controlnet_pose,
            "extra_loras": settings.extra_loras,
        },
    )


def tiny_backend(settings: Settings, cache: PipelineCache = PIPELINES) -> DiffusionBackend:
    """The real pipeline code on tiny random weights (with a pose ControlNet), labelled."""

    def load():
        from ..models.tiny import tiny_pipeline, with_tiny_fast_lora

        return with_tiny_fast_lora(tiny_pipeline(with_controlnet=True))

    return DiffusionBackend(
        "tiny",
        settings,
        load,
        cache=cache,
        label=TINY_LABEL,
        model_ids={"base_model": "tiny-random-sdxl", "adapter": "tiny-random-storymaker",
                   "image_encoder": "tiny-random-clip", "controlnet_pose": "tiny-random-controlnet"},
    )


def make_backend(name: str, settings: Settings, cache: PipelineCache = PIPELINES) -> RenderBackend:
    if name == "draft":
        return DraftBackend(settings)
    if name == "tiny":
        return tiny_backend(settings, cache)
    if name == "storymaker":
        return _storymaker_backend(settings, cache)
    raise ConfigError(f"Unknown backend {name!r}: use storymaker, draft, tiny or auto.")


# ----------------------------------------------------------------------------------------------
# Perception


def tiny_perception(backend: DiffusionBackend | None = None) -> Perception:
    """The labelled stand-ins: deterministic face analysis and segmentation, and the tiny CLIP
    encoder (the tiny pipeline's own instance when it is loaded: the same seeded weights)."""
    from ..perception import standins

    def encoder():
        from ..perception.clip import TINY_ENCODER_NAME, ClipImageEncoder, tiny_clip_encoder

        if backend is not None and backend.loaded:
            return ClipImageEncoder(backend.entry().pipeline.image_encoder, name=TINY_ENCODER_NAME)
        return tiny_clip_encoder()

    return Perception(
        face_analyzer=standins.StandInFaceAnalyzer,
        segmenter=standins.StandInSegmenter,
        image_encoder=encoder,
        label="tiny stand-ins (not real face analysis or segmentation)",
        pose_estimator=_openpose(None),
    )


def _openpose(settings: Settings | None) -> Callable[..., Any]:
    """OpenPose from ``settings`` (the services' settings when None); no stand-in exists for it."""

    def make(services_settings: Settings, **kwargs):
        from ..perception.pose import OpenposeEstimator

        return OpenposeEstimator.from_settings(settings or services_settings, **kwargs)

    return make


def real_perception(settings: Settings, backend: DiffusionBackend | None = None) -> Perception:
    """insightface, rembg, the CLIP image encoder and OpenPose named in the settings (loaded on
    first use).

    The image encoder loads alone (never the whole pipeline); when the ``storymaker`` pipeline is
    loaded, registration uses the pipeline's own instance, and a pipeline loaded later takes the
    one registration loaded: the weights are in memory once."""
    from ..perception.clip import shared_image_encoder
    from ..perception.face import shared_face_analyzer
    from ..perception.segment import shared_segmenter

    def encoder():
        if backend is not None and backend.loaded:
            return shared_image_encoder(settings, model=backend.entry().pipeline.image_encoder)
        return shared_image_encoder(settings)

    return Perception(
        face_analyzer=lambda: shared_face_analyzer(settings),
        segmenter=lambda: shared_segmenter(settings),
        image_encoder=encoder,
        pose_estimator=_openpose(settings),
    )


# ----------------------------------------------------------------------------------------------
# The container


@dataclass
class Services:
    """What the app and the CLI share: settings, the backend, perception, per-project services."""

    settings: Settings
    backend: RenderBackend
    choice: BackendChoice
    perception: Perception
    worker: GpuWorker | None = None  # default: a worker over the settings (ZeroGPU from the env)
    max_registries: int = 64  # projects whose registry (and conditioning cache) stays in memory
    _registries: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _components: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.worker is None:
            self.worker = GpuWorker(self.settings)
        p, w = self.perception, self.worker
        # One instance of each component for every project, its model calls through the worker.
        self._components.update(
            face=w.guarded_factory(p.face_analyzer),
            segment=w.guarded_factory(p.segmenter),
            encode=w.guarded_factory(p.image_encoder),
        )

    def startup(self) -> None:
        """Load the pipeline and the encoders now (ZeroGPU mode: at start-up, never in a call)."""
        c = self._components
        self.worker.startup(self.backend, [c["face"], c["segment"], c["encode"]])

    def pose_estimator(self, **options):
        """The pose estimator (OpenPose unless the perception says otherwise), its model calls
        through the GPU worker; ``options`` (e.g. ``detect_resolution``) go to its constructor."""
        factory = self.perception.pose_estimator or _openpose(None)
        return self.worker.guard(factory(self.settings, **options))

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def backend_reason(self) -> str:
        """The banner text: why rendering is not the real model, and how to enable it ("" if it is)."""
        return self.choice.reason

    # -- projects ------------------------------------------------------------------------------

    @property
    def storage(self):
        from . import storage

        return storage

    @property
    def export(self):
        from . import export

        return export

    def open_project(self, path: str | Path, *, create: bool = True, title: str = ""):
        """Open the project at ``path`` (created when absent and ``create``)."""
        from .storage import PROJECT_FILE, Project

        path = Path(path)
        if (path / PROJECT_FILE).exists() or not create:
            return Project.open(path)
        return Project.create(path, title=title)

    def character_registry(self, project):
        """The CharacterRegistry of ``project`` (a Project, or a project folder that may not exist
        yet): one instance per project folder, so that its conditioning cache survives across
        renders. Its components are the services' shared ones (model calls through the worker)."""
        from .characters import CharacterRegistry

        if isinstance(project, (str, Path)):
            folder = Path(project).expanduser()
            characters_dir = folder / "characters"
        else:
            folder, characters_dir = Path(project.path), project.characters_dir
        key = folder.resolve()
        with self._lock:
            registry = self._registries.get(key)
            if registry is not None:
                self._registries.move_to_end(key)
            else:
                c = self._components
                registry = CharacterRegistry(
                    characters_dir, face_analyzer=c["face"], segmenter=c["segment"], image_encoder=c["encode"]
                )
                self._registries[key] = registry
                while len(self._registries) > self.max_registries:
                    self._registries.popitem(last=False)
            return registry

    def pose_library(self, project=None):
        """Presets plus the project's saved poses (presets only without a project)."""
        from .poses import PoseLibrary

        return PoseLibrary(project.poses_dir if project is not None else None)

    def engine(self, project=None) -> RenderEngine:
        """A render engine over ``project`` (versions kept there) with the shared backend."""
        return RenderEngine(
            self.backend,
            self.settings,
            project=project,
            registry=self.character_registry(project) if project is not None else None,
            poses=self.pose_library(project),
        )


def build_services(
    settings: Settings,
    *,
    backend: str | RenderBackend | None = None,
    perception: Perception | None = None,
    pipeline_cache: PipelineCache = PIPELINES,
    download: bool = False,
    zero_gpu: bool | None = None,
) -> Services:
    """Build the container. ``backend``: a name (default ``settings.backend``) or a ready backend
    (tests); ``perception``: replaces the perception components; ``download``: fetch missing
    weights first (needs network); ``zero_gpu``: ZeroGPU mode (default: ``settings.zero_gpu``,
    "auto" = on when ``SPACES_ZERO_GPU`` is set), which loads the pipeline and the encoders now."""
    worker = GpuWorker(settings, zero_gpu=zero_gpu)
    if worker.zero_gpu and settings.cpu_offload:
        logger.warning("ZeroGPU mode: CPU offload is off (ZeroGPU attaches the GPU only during GPU calls)")
        settings = settings.replace(cpu_offload=False)
        worker.settings = settings
    if download:
        from ..models.weights import download_all

        download_all(settings, progress=logger.info)
    if backend is None or isinstance(backend, str):
        choice = choose_backend(settings, backend)
        chosen = make_backend(choice.name, settings, pipeline_cache)
    else:
        chosen = backend
        choice = BackendChoice(chosen.name)
    if perception is None:
        diffusion = chosen if isinstance(chosen, DiffusionBackend) else None
        if chosen.name == "tiny":
            perception = tiny_perception(diffusion)
        elif chosen.name == "draft" and missing_perception(settings):
            # Drafts need only the photos; characters registered with the stand-ins are
            # re-encoded by the registry once the real models are configured.
            logger.info("draft backend: face/segmentation/CLIP weights missing, using the labelled stand-ins")
            perception = tiny_perception()
        else:
            perception = real_perception(settings, diffusion if chosen.name == "storymaker" else None)
    if choice.reason:
        logger.info("%s", choice.reason)
    services = Services(settings=settings, backend=chosen, choice=choice, perception=perception, worker=worker)
    if worker.zero_gpu:
        services.startup()
    return services
