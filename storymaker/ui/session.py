"""Per-browser-session project folders.

Each browser session gets a random id (kept server-side in ``gr.State``) and its own project folder
``<sessions_dir>/<id>/``; nobody sees another session's characters, photos or panels. Folders not
touched for ``Settings.session_max_age_hours`` are removed. Nothing here is a module global: the
:class:`SessionManager` is owned by the app built by :func:`storymaker.ui.build_app`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProjectError
from ..fsutil import atomic_write_text

logger = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_PROJECT_NAME = re.compile(r"^project(-[0-9a-f]{8})?$")
CURRENT_FILE = "current"
DEFAULT_PROJECT = "project"


@dataclass(frozen=True)
class SessionManager:
    """Creates, finds and cleans up the session folders under ``root``."""

    root: Path
    max_age_hours: float = 24.0

    def new_session(self) -> str:
        """A fresh random session id with an (empty) folder; old folders are cleaned first."""
        self.cleanup()
        sid = secrets.token_hex(16)
        self.folder(sid).mkdir(parents=True, exist_ok=False)
        return sid

    def folder(self, sid: str) -> Path:
        """The folder of session ``sid`` (validated: no path tricks)."""
        if not isinstance(sid, str) or not _SESSION_ID.match(sid):
            raise ProjectError("This browser session is not valid any more: reload the page.")
        return Path(self.root) / sid

    def project_dir(self, sid: str) -> Path:
        """The session's current project folder (may not exist yet); touching the session folder
        keeps it alive."""
        folder = self._alive(sid)
        pointer = folder / CURRENT_FILE
        name = pointer.read_text(encoding="utf-8").strip() if pointer.exists() else DEFAULT_PROJECT
        if not _PROJECT_NAME.match(name):
            name = DEFAULT_PROJECT
        return folder / name

    def next_project_dir(self, sid: str) -> Path:
        """A fresh, absent folder for a new or imported project of session ``sid``; make it
        current with :meth:`switch_project` once it is filled."""
        return self._alive(sid) / f"project-{secrets.token_hex(4)}"

    def switch_project(self, sid: str, new_dir: Path) -> Path:
        """Make ``new_dir`` (made by :meth:`next_project_dir`) the session's project; the previous
        project folder is removed. A new folder name each time keeps per-path caches honest."""
        folder = self._alive(sid)
        new_dir = Path(new_dir)
        if new_dir.parent != folder or not _PROJECT_NAME.match(new_dir.name):
            raise ProjectError("Internal error: that project folder is not in this session.")
        old = self.project_dir(sid)
        atomic_write_text(folder / CURRENT_FILE, new_dir.name + "\n")
        if old != new_dir and old.exists():
            shutil.rmtree(old, ignore_errors=True)
        return new_dir

    def downloads_dir(self, sid: str) -> Path:
        """Where the session's downloadable files (zips, exports) are written."""
        path = self._alive(sid) / "downloads"
        path.mkdir(exist_ok=True)
        return path

    def _alive(self, sid: str) -> Path:
        folder = self.folder(sid)
        if not folder.is_dir():
            raise ProjectError(
                "This session's project was removed (sessions expire after "
                f"{self.max_age_hours:g} hours without use): reload the page to start a new one."
            )
        now = time.time()
        os.utime(folder, (now, now))
        return folder

    def cleanup(self, now: float | None = None) -> list[str]:
        """Remove session folders older than ``max_age_hours``; return the removed ids."""
        root = Path(self.root)
        if not root.is_dir():
            return []
        now = time.time() if now is None else now
        limit = self.max_age_hours * 3600.0
        removed: list[str] = []
        for entry in root.iterdir():
            if not (entry.is_dir() and _SESSION_ID.match(entry.name)):
                continue
            try:
                age = now - entry.stat().st_mtime
            except FileNotFoundError:
                continue
            if age > limit:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        if removed:
            logger.info("removed %d expired session folder(s)", len(removed))
        return removed
