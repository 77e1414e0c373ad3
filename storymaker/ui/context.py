"""What every tab gets: the shared services, the settings, the session folders, cancel flags.

The loaded pipeline and the render engine are shared by everybody (``services``); everything that
belongs to one person is reached through their session id: the project folder and the registries
built over it. Nothing per-user is kept in module globals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from .session import SessionManager

logger = logging.getLogger(__name__)


class CancelEvent:
    """A ``threading.Event``-like cancel flag kept in a small file, so that every process sees it:
    on ZeroGPU the render runs in a forked worker process, the Cancel button in the app's."""

    def __init__(self, path: Path, token: str):
        self.path = path
        self.token = token

    def is_set(self) -> bool:
        token, state = _read_flag(self.path)
        return token == self.token and state in (CANCELLED, CANCELLED_QUEUED)

    def set(self) -> None:
        _write_flag(self.path, self.token, CANCELLED)

    def clear(self) -> None:
        _write_flag(self.path, self.token, RUNNING)


ARMED, RUNNING, CANCELLED, CANCELLED_QUEUED = "armed", "running", "cancelled", "cancelled-queued"


def _read_flag(path: Path) -> tuple[str, str]:
    try:
        token, _, state = path.read_text(encoding="utf-8").partition(" ")
    except OSError:
        return "", ""
    return token, state.strip()


def _write_flag(path: Path, token: str, state: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(f"{token} {state}", encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class CancelFlags:
    """The cancel flag of each session's render, owned by the app (not a module global), kept in a
    small file (``<root>/<sid>/.cancel``: root is the sessions folder) so that a render in another
    process sees it.

    A render button first *arms* a flag (at the click, outside the queue), then the render takes it
    when it leaves the queue (:meth:`fresh`): a Cancel pressed while the render waits in the queue
    is kept, and the render stops before its first panel.
    """

    root: Path | None = None  # default: a private temporary folder
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tmp: dict = field(default_factory=dict)

    def _path(self, sid: str) -> Path:
        root = self.root
        if root is None:
            with self._lock:
                if "root" not in self._tmp:
                    self._tmp["root"] = Path(tempfile.mkdtemp(prefix="storymaker-cancel-"))
                root = self._tmp["root"]
        # One flag per project a tab shows (``<id>/<project>``): a render in another tab of the same
        # browser, on another project, neither takes nor cancels this one.
        session, _, project = str(sid).partition("/")
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", session)[:128] or "_"
        name = ".cancel-" + re.sub(r"[^A-Za-z0-9_-]", "_", project)[:64] if project else ".cancel"
        return Path(root) / safe / name  # in the session's folder: removed with it

    def arm(self, sid: str) -> CancelEvent:
        """A new, clear flag for the render of ``sid`` that is about to be queued. An expired
        session's folder is not brought back (the render then says the session expired)."""
        event = CancelEvent(self._path(sid), uuid.uuid4().hex)
        with self._lock:
            if self.root is None or event.path.parent.is_dir():
                _write_flag(event.path, event.token, ARMED)
        return event

    def fresh(self, sid: str) -> CancelEvent:
        """The flag of the render of ``sid`` that starts now: the armed one (set if Cancel was
        pressed while it waited in the queue), else a new clear one (a call that was not armed)."""
        path = self._path(sid)
        with self._lock:
            token, state = _read_flag(path)
            if state == CANCELLED_QUEUED:
                _write_flag(path, token, CANCELLED)  # taken: a later render starts clear
                return CancelEvent(path, token)
            if state != ARMED:
                token = uuid.uuid4().hex
            _write_flag(path, token, RUNNING)
            return CancelEvent(path, token)

    def cancel(self, sid: str) -> bool:
        """Ask the render of ``sid`` (queued or running) to stop; False if none is known."""
        path = self._path(sid)
        with self._lock:
            token, state = _read_flag(path)
            if state == ARMED:
                _write_flag(path, token, CANCELLED_QUEUED)
            elif state == RUNNING:
                _write_flag(path, token, CANCELLED)
            else:
                return state in (CANCELLED, CANCELLED_QUEUED)
            return True

    @contextlib.contextmanager
    def busy(self, sid: str):
        """Mark the render of ``sid`` as running while the block runs (:meth:`is_busy` sees it from
        any process, e.g. after a page reload): a small file beside the flag holding this
        process's id, removed at the end."""
        marker = self._busy_path(sid)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()), encoding="utf-8")
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)

    def is_busy(self, sid: str) -> bool:
        """Whether a render of ``sid`` is running now (a marker of :meth:`busy` whose process is
        alive: one left by a process that died does not count)."""
        try:
            pid = int(self._busy_path(sid).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return False
        if pid == os.getpid() or os.name == "nt":  # on Windows os.kill would end the process
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, another user's
        return True

    def _busy_path(self, sid: str) -> Path:
        path = self._path(sid)
        return path.with_name(path.name + ".running")


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

    def script_inputs(self, sid: str) -> tuple[str, list[str], dict[str, int]]:
        """(script text, registered character names, pose name -> people count) of the session."""
        project = self.project(sid)
        checks = self.script_checks(sid, project)
        return project.read_script(), checks["characters"], checks["poses"]

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
