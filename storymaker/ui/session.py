"""Per-browser workspaces: a folder of projects for each browser.

Each browser gets a random 128-bit id, kept in the browser (``gr.BrowserState``) so that a reload
finds the same folder ``<sessions_dir>/<id>/`` again; nobody can guess another browser's id, so
nobody sees another browser's characters, photos or panels. The folder holds that browser's
projects side by side (``project``, ``project-<8 hex>``) and names the one opened last
(:func:`storymaker.services.storage.last_opened`).

Each browser tab shows one project of the workspace: it names it with a *view*, ``<id>/<project>``,
kept in the page (not in the browser's shared storage), so two tabs of one browser can work on two
projects at once, and opening a project in one tab never moves the other tab's edits into it. Every
method here takes either a view or a bare id; a bare id means the project opened last.

Workspaces not touched for ``max_age_hours`` are removed; ``max_age_hours=0`` keeps them for ever
(the local app). Nothing here is a module global: the :class:`SessionManager` is owned by the app
built by :func:`storymaker.ui.build_app`.
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
from ..services import storage

logger = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_PROJECT_NAME = re.compile(r"^project(-[0-9a-f]{8})?$")
DEFAULT_PROJECT = "project"
DELETED_ELSEWHERE = "This tab's project was deleted (in another tab or window): open one of your projects"


@dataclass(frozen=True)
class SessionManager:
    """Creates, finds and cleans up the workspace folders under ``root``."""

    root: Path
    max_age_hours: float = 24.0  # 0: never expire

    def new_session(self) -> str:
        """A fresh random session id with an (empty) folder; old folders are cleaned first."""
        self.cleanup()
        sid = secrets.token_hex(16)
        self.folder(sid).mkdir(parents=True, exist_ok=False)
        return sid

    def resume(self, sid: object) -> str:
        """``sid`` when it names a live workspace (a reload), else a new session."""
        if isinstance(sid, str) and _SESSION_ID.match(sid) and self.folder(sid).is_dir():
            self._alive(sid)
            return sid
        return self.new_session()

    def folder(self, sid: str) -> Path:
        """The folder of session ``sid`` (a bare id or a view; validated: no path tricks)."""
        return Path(self.root) / split_view(sid)[0]

    def view(self, sid: str, project: Path | str | None = None) -> str:
        """The view of ``project`` (a project folder or folder name of this session; default: the
        project opened last) for one browser tab: what its handlers receive instead of the id."""
        session = split_view(sid)[0]
        name = Path(project).name if project is not None else self.project_dir(session).name
        return f"{session}/{name}"

    # -- projects of a session ----------------------------------------------------------------

    def shows_deleted_project(self, sid: str) -> bool:
        """Whether ``sid`` is a view of a project that is not there any more (deleted in another tab)."""
        name = split_view(sid)[1]
        return name is not None and not storage.Project.is_project(self._alive(sid) / name)

    def project_dir(self, sid: str) -> Path:
        """The project folder of a view; for a bare id the one opened last, else the most recently
        changed, else ``project`` (may not exist yet). Using it keeps the session alive.

        A view whose project was deleted (in another tab) raises a ProjectError that says what to do."""
        folder = self._alive(sid)
        name = split_view(sid)[1]
        if name is not None:
            if self.shows_deleted_project(sid):
                raise ProjectError(DELETED_ELSEWHERE + " in the Project tab, or reload the page.")
            return folder / name
        name = storage.last_opened(folder)
        if name is None or not _PROJECT_NAME.match(name):
            projects = [p for p in storage.list_projects(folder) if _PROJECT_NAME.match(p.name)]
            name = projects[0].name if projects else DEFAULT_PROJECT
        return folder / name

    def projects(self, sid: str) -> list[storage.ProjectInfo]:
        """The session's projects, most recently changed first."""
        return [p for p in storage.list_projects(self._alive(sid)) if _PROJECT_NAME.match(p.name)]

    def project_path(self, sid: str, name: str) -> Path:
        """The folder of the session's project ``name`` (validated; ProjectError if absent)."""
        folder = self._alive(sid)
        if not isinstance(name, str) or not _PROJECT_NAME.match(name) or not storage.Project.is_project(folder / name):
            raise ProjectError("That project does not exist any more: choose one in the list.")
        return folder / name

    def next_project_dir(self, sid: str) -> Path:
        """A fresh, absent folder for a new, copied or imported project of session ``sid``; make
        it current with :meth:`switch_project` once it is filled."""
        return self._alive(sid) / f"project-{secrets.token_hex(4)}"

    def switch_project(self, sid: str, new_dir: Path) -> str:
        """Open ``new_dir`` (a project folder of this session): it becomes the one opened last (what
        a reload shows); returns the view of it for the tab that opened it. The previous project
        stays where it is: switching never deletes anything."""
        folder = self._alive(sid)
        new_dir = Path(new_dir)
        if new_dir.parent != folder or not _PROJECT_NAME.match(new_dir.name):
            raise ProjectError("Internal error: that project folder is not in this session.")
        storage.set_last_opened(folder, new_dir.name)
        return self.view(sid, new_dir)

    def delete_project(self, sid: str, name: str) -> str:
        """Delete one project of the session; if it was the one opened last, the most recently
        changed of the others becomes so. Returns what the tab shows next: its view ``sid`` unless
        that was the deleted project, else the bare id (the project opened last)."""
        path = self.project_path(sid, name)
        storage.delete_project(path)
        folder = self.folder(sid)
        if storage.last_opened(folder) is None:
            rest = self.projects(sid)
            if rest:
                storage.set_last_opened(folder, rest[0].name)
            else:
                (folder / storage.LAST_OPENED_FILE).unlink(missing_ok=True)
        session, shown = split_view(sid)
        # A tab that shows another project keeps it; else it follows the one opened last.
        return sid if shown is not None and shown != name else session

    def downloads_dir(self, sid: str) -> Path:
        """Where the session's downloadable files (zips, exports) are written."""
        path = self._alive(sid) / "downloads"
        path.mkdir(exist_ok=True)
        return path

    def trash_dir(self, sid: str) -> Path:
        """Where a deleted item waits for "Undo" (one per kind, replaced by the next deletion)."""
        path = self._alive(sid) / "trash"
        path.mkdir(exist_ok=True)
        return path

    def _alive(self, sid: str) -> Path:
        folder = self.folder(sid)
        if not folder.is_dir():
            raise ProjectError(
                "This session's projects were removed (sessions expire after "
                f"{self.max_age_hours:g} hours without use): reload the page to start a new one."
            )
        now = time.time()
        os.utime(folder, (now, now))
        return folder

    def cleanup(self, now: float | None = None) -> list[str]:
        """Remove session folders older than ``max_age_hours`` (none when it is 0); return the
        removed ids."""
        root = Path(self.root)
        if not root.is_dir() or not self.max_age_hours or self.max_age_hours <= 0:
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


def split_view(view: object) -> tuple[str, str | None]:
    """``(session id, project folder name or None)`` of a view ``<id>/<project>`` or a bare id;
    ProjectError (reload the page) for anything else."""
    sid, sep, name = view.partition("/") if isinstance(view, str) else ("", "", "")
    if not _SESSION_ID.match(sid) or (sep and not _PROJECT_NAME.match(name)):
        raise ProjectError("This browser session is not valid any more: reload the page.")
    return sid, name or None
