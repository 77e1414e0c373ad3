"""The :class:`Project`: create and open a project folder, clean up after interrupted saves, the
title and the comic settings. Its panels and their versions are :mod:`.versions`, its script
:mod:`.script_history`."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from ...errors import ProjectError
from ...fsutil import atomic_directory, atomic_write_json, atomic_write_text
from .folder import FORMAT_VERSION, PROJECT_FILE, SCRIPT_FILE, SUBDIRS, now, read_manifest_file, to_json
from .migration import migrate_format_1
from .script_history import ScriptHistory
from .versions import PanelVersions

log = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0  # leftovers of interrupted saves older than this are removed on open


class Project(PanelVersions, ScriptHistory):
    """A project folder. Create with :meth:`create`, open with :meth:`open`. Its script and the
    earlier texts kept of it are :mod:`.script_history`."""

    @classmethod
    def create(cls, path: str | Path, title: str = "") -> "Project":
        """Create a new project folder (absent or empty); ProjectError if it is already used."""
        path = Path(path)
        if cls.is_project(path):
            raise ProjectError(f"{path} is already a project: open it instead, or choose a new folder.")
        if path.exists() and not path.is_dir():
            raise ProjectError(f"{path} is a file, not a folder: choose a new folder for the project.")
        if path.is_dir() and any(path.iterdir()):
            raise ProjectError(f"{path} is not empty: choose a new or empty folder for the project.")
        title = " ".join(str(title).split())
        created = now()
        manifest = {
            "format_version": FORMAT_VERSION,
            "title": title,
            "created": created,
            "modified": created,
            "comic": {},
            "panels": [],
            "selected": {},
        }
        try:
            with atomic_directory(path, replace=path.is_dir()) as tmp:
                for sub in SUBDIRS:
                    (tmp / sub).mkdir()
                atomic_write_text(tmp / SCRIPT_FILE, "")
                atomic_write_json(tmp / PROJECT_FILE, manifest)
        except OSError as err:
            raise ProjectError(f"Cannot create the project at {path}: {err.strerror or err}") from None
        log.info("created project %s", path)
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> "Project":
        """Open an existing project; ProjectError if it is not one or was written by a newer version."""
        path = Path(path)
        if not path.is_dir():
            raise ProjectError(f"{path} does not exist or is not a folder: check the path or create a project.")
        manifest = read_manifest_file(path / PROJECT_FILE)
        project = cls(path)
        for sub in SUBDIRS:  # folders may be missing in hand-made or older projects
            (path / sub).mkdir(exist_ok=True)
        project.remove_stale_files()
        if manifest["format_version"] < FORMAT_VERSION:
            project._migrate()
        return project

    def remove_stale_files(self, max_age_s: float = STALE_AFTER_S) -> list[Path]:
        """Delete what interrupted saves left behind, once older than ``max_age_s``.

        That is hidden ``.*.tmp`` files (atomic writes that never got renamed) in the project folder
        and the panel folders, and panel PNGs whose JSON was never written. Younger files may belong
        to a save in progress and are kept. Returns what was removed.
        """
        cutoff = time.time() - max_age_s
        removed: list[Path] = []
        folders = [self.path]
        if self.panels_dir.is_dir():
            folders += [d for d in self.panels_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
        for folder in folders:
            for item in folder.iterdir():
                stale_tmp = item.name.startswith(".") and item.name.endswith(".tmp")
                orphan = (folder != self.path and item.suffix == ".png"
                          and not item.with_suffix(".json").exists())
                if not (stale_tmp or orphan) or not item.is_file():
                    continue
                try:
                    if item.stat().st_mtime < cutoff:
                        item.unlink()
                        removed.append(item)
                except OSError as err:  # raced with another cleaner or a permission problem
                    log.debug("could not remove %s: %s", item, err)
        if removed:
            log.info("removed %d leftover file(s) of interrupted saves in %s", len(removed), self.path)
        return removed

    def _migrate(self) -> None:
        """Bring a format-1 project to the current format (:mod:`.migration`), then match its script."""
        with self._locked():
            data = self.manifest()
            if data["format_version"] >= FORMAT_VERSION:
                return
            migrate_format_1(data, self.panels_dir)
            self._save_manifest(data)
        log.info("migrated %s to project format %d (%d panels with renders)", self.path, FORMAT_VERSION,
                 len(data["panels"]))
        self._sync_script(self.read_script())

    # -- title and comic settings ----------------------------------------------------------------
    @property
    def title(self) -> str:
        return str(self.manifest().get("title", ""))

    def set_title(self, title: str) -> None:
        clean = " ".join(str(title).split())
        self._update(lambda m: m.__setitem__("title", clean))

    def comic_settings(self) -> dict:
        """The comic settings dict (content defined by the comic/export service); ``{}`` if unset."""
        return copy.deepcopy(self.manifest().get("comic") or {})

    def set_comic_settings(self, settings: Mapping[str, Any]) -> None:
        """Store the comic settings (must be JSON-serialisable)."""
        value = to_json(dict(settings), "Comic settings")
        self._update(lambda m: m.__setitem__("comic", value))
