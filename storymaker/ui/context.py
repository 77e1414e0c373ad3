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
from .session import SessionManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CancelFlags:
    """One ``threading.Event`` per session id, owned by the app (not a module global)."""

    _events: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fresh(self, sid: str) -> threading.Event:
        """A cleared event for a new render of session ``sid``."""
        with self._lock:
            event = self._events.setdefault(sid, threading.Event())
            event.clear()
            return event

    def cancel(self, sid: str) -> bool:
        """Ask the running render of ``sid`` to stop; False if none is known."""
        with self._lock:
            event = self._events.get(sid)
        if event is None:
            return False
        event.set()
        return True


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

    def pose_estimator(self):
        """The app's pose estimator (OpenPose from the settings unless the app was given one)."""
        with self._shared_lock:
            if "pose_estimator" not in self._shared:
                if self.pose_estimator_factory is not None:
                    estimator = self.pose_estimator_factory()
                else:
                    from ..perception.pose import OpenposeEstimator

                    estimator = OpenposeEstimator.from_settings(self.settings)
                self._shared["pose_estimator"] = estimator
            return self._shared["pose_estimator"]

    # -- per-session objects (rebuilt from the folder on every call: cheap, and never shared) --

    def project(self, sid: str):
        """The session's project, created on first use."""
        return self.services.open_project(self.sessions.project_dir(sid), create=True, title="Untitled story")

    def registry(self, sid: str):
        """The session's :class:`CharacterRegistry`."""
        return self.services.character_registry(self.project(sid))

    def poses(self, sid: str):
        """The session's :class:`PoseLibrary` (presets + the project's poses)."""
        return self.services.pose_library(self.project(sid))

    def script_inputs(self, sid: str) -> tuple[str, list[str], dict[str, int]]:
        """(script text, registered character names, pose name -> people count) of the session."""
        project = self.project(sid)
        names = [c.name for c in self.services.character_registry(project).list()]
        poses = {p.name: p.num_people for p in self.services.pose_library(project).list()}
        return project.read_script(), names, poses

    def story(self, sid: str, *, strict: bool = True):
        """The session's saved script parsed against its characters and poses.

        ``strict``: raise :class:`ScriptError` on problems; otherwise return the story, or None
        when the script has errors.
        """
        from ..domain.script import check, parse_script

        text, names, poses = self.script_inputs(sid)
        if strict:
            if not text.strip():
                from ..errors import InvalidInputError

                raise InvalidInputError("The story is empty: write a script in the Story tab first.")
            return parse_script(text, names, poses=poses)
        return check(text, names, poses=poses).story

    def engine(self, sid: str, **overrides):
        """A render engine over the session's project, with per-request settings ``overrides``
        (the shared backend and its loaded pipeline are never modified)."""
        from ..services.render import RenderEngine

        project = self.project(sid)
        return RenderEngine(
            self.services.backend,
            self.settings.replace(**overrides) if overrides else self.settings,
            project=project,
            registry=self.services.character_registry(project),
            poses=self.services.pose_library(project),
        )
