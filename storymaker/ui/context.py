"""What every tab gets: the shared services, the settings, the session folders, cancel flags.

The loaded pipeline and the render engine are shared by everybody (``services``); everything that
belongs to one person is reached through their session id: the project folder and the registries
built over it. Nothing per-user is kept in module globals.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from .cancel import CancelFlags
from .session import SessionManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudioContext:
    services: Any
    settings: Settings
    sessions: SessionManager
    cancels: CancelFlags = field(default_factory=CancelFlags)
    # The pose estimator for "extract a pose from a photo": shared, loaded on first use.
    pose_estimator_factory: Any = None
    _shared: dict = field(default_factory=dict, repr=False)
    _shared_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def worker(self):
        """The services' GPU worker (one per process; a plain one over the settings for a fake
        services object without one)."""
        worker = getattr(self.services, "worker", None)
        if worker is None:
            with self._shared_lock:
                if "worker" not in self._shared:
                    from ..services.gpu import GpuWorker

                    self._shared["worker"] = GpuWorker(self.settings)
                worker = self._shared["worker"]
        return worker

    def pose_estimator(self):
        """The app's pose estimator (the services' unless the app was given a factory), its model
        calls through the GPU worker."""
        with self._shared_lock:
            if "pose_estimator" not in self._shared:
                if self.pose_estimator_factory is not None:
                    estimator = self.pose_estimator_factory()
                elif hasattr(self.services, "pose_estimator"):
                    estimator = self.services.pose_estimator()
                else:
                    from ..perception.pose import OpenposeEstimator

                    estimator = OpenposeEstimator.from_settings(self.settings)
                self._shared["pose_estimator"] = estimator
        return self.worker.guard(self._shared["pose_estimator"])

    # -- per-session objects (rebuilt from the folder on every call: cheap, and never shared) --

    def project(self, sid: str):
        """The project of a tab's view (see :mod:`.session`); for a bare session id the one opened
        last, created on first use."""
        return self.services.open_project(self.sessions.project_dir(sid), create=True, title="Untitled story")

    def open_view(self, sid: str) -> str:
        """The view a tab keeps: ``sid`` itself when it names a project, else the view of the
        project opened last (created for a new workspace)."""
        return self.sessions.view(sid, self.project(sid).path)

    def registry(self, sid: str):
        """The session's :class:`CharacterRegistry`."""
        return self.services.character_registry(self.project(sid))

    def poses(self, sid: str):
        """The session's :class:`PoseLibrary` (presets + the project's poses)."""
        return self.services.pose_library(self.project(sid))

    def script_checks(self, sid: str, project=None) -> dict[str, Any]:
        """What the script checker needs besides the text, as plain data, for
        ``check(text, **ctx.script_checks(sid))``: the registered names, pose name -> people count,
        each character's outfit names and the largest panel side the app renders, so that the
        Story tab refuses what the render would (whatever the backend)."""
        project = project if project is not None else self.project(sid)
        characters = self.services.character_registry(project).list()
        return {
            "characters": [c.name for c in characters],
            "poses": {p.name: p.num_people for p in self.services.pose_library(project).list()},
            "outfits": {c.name: [o.name for o in c.outfits] for c in characters},
            "max_side": self.settings.max_panel_side,
        }

    def story(self, sid: str, *, strict: bool = True):
        """The session's saved script parsed against its characters and poses.

        ``strict``: raise :class:`ScriptError` on problems; otherwise return the story, or None
        when the script has errors.
        """
        from ..domain.script import check, parse_script

        project = self.project(sid)
        text, checks = project.read_script(), self.script_checks(sid, project)
        if strict:
            if not text.strip():
                from ..errors import InvalidInputError

                raise InvalidInputError("The story is empty: write a script in the Story tab first.")
            # Sizes above the configured maximum and outfits a character does not have fail here,
            # before any work, with the Story tab's messages.
            return parse_script(text, **checks)
        return check(text, **checks).story

    def engine(self, sid: str, **overrides):
        """A render engine over the session's project, with per-request settings ``overrides``
        (the shared backend and its loaded pipeline are never modified)."""
        from ..config import check_panel_size
        from ..services.render import RenderEngine

        if "width" in overrides or "height" in overrides:
            # The Render tab's size, refused above the configured maximum as the script's is.
            check_panel_size(int(overrides.get("width", self.settings.width)),
                             int(overrides.get("height", self.settings.height)), self.settings)
        project = self.project(sid)
        return RenderEngine(
            self.services.backend,
            self.settings.replace(**overrides) if overrides else self.settings,
            project=project,
            registry=self.services.character_registry(project),
            poses=self.services.pose_library(project),
        )
