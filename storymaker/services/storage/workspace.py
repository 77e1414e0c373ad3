"""A workspace: a folder holding project folders side by side (the studio's per-browser folder, or
any folder of projects) and a small pointer file naming the project opened last. Listing, renaming,
duplicating and deleting whole projects, read without loading any model."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...errors import InvalidInputError, ProjectError
from ...fsutil import atomic_directory, atomic_write_text, remove_directory
from .folder import LOCK_FILE, PROJECT_FILE, read_manifest_file
from .project import Project

log = logging.getLogger(__name__)

LAST_OPENED_FILE = "last-opened"


@dataclass(frozen=True)
class ProjectInfo:
    """What a project list shows: folder, title, last change, counts (read without loading models)."""

    path: Path
    title: str
    modified: str
    characters: int
    renders: int

    @property
    def name(self) -> str:
        return self.path.name


def project_info(path: str | Path) -> ProjectInfo:
    """The :class:`ProjectInfo` of one project folder (ProjectError if it is not a project)."""
    path = Path(path)
    manifest = read_manifest_file(path / PROJECT_FILE)
    characters = path / "characters"
    count = sum(1 for c in characters.iterdir() if not c.name.startswith(".") and (c / "character.json").is_file()) \
        if characters.is_dir() else 0
    panels = path / "panels"
    renders = sum(1 for _ in panels.glob("*/*.json")) if panels.is_dir() else 0
    return ProjectInfo(path=path, title=str(manifest.get("title") or ""), modified=str(manifest.get("modified") or ""),
                       characters=count, renders=renders)


def list_projects(workspace: str | Path) -> list[ProjectInfo]:
    """The projects directly inside ``workspace``, most recently changed first; folders that are
    not projects (or are half-written, hidden) are skipped."""
    root = Path(workspace)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        if entry.name.startswith(".") or not entry.is_dir() or not Project.is_project(entry):
            continue
        try:
            found.append(project_info(entry))
        except ProjectError as err:
            log.warning("skipping %s: %s", entry, err)
    found.sort(key=lambda info: (info.modified, info.name), reverse=True)
    return found


def rename_project(path: str | Path, title: str) -> Project:
    """Give the project a new title (its folder keeps its name); an empty title is refused."""
    clean = " ".join(str(title or "").split())
    if not clean:
        raise InvalidInputError("Give the project a title (it cannot be empty).")
    project = Project.open(path)
    project.set_title(clean)
    return project


def duplicate_project(src: str | Path, dest: str | Path, title: str | None = None) -> Project:
    """Copy a whole project (characters, script, every render) into the new folder ``dest``; the
    copy is titled ``title`` or "<title> (copy)". Nothing is left behind if the copy fails."""
    source = Project.open(src)
    dest = Path(dest)
    if dest.exists():
        raise ProjectError(f"{dest} already exists: choose a new folder for the copy.")
    new_title = " ".join(str(title or "").split()) or f"{source.title or 'Untitled story'} (copy)"
    try:
        with atomic_directory(dest) as tmp:
            shutil.copytree(source.path, tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(LOCK_FILE, ".*.tmp", ".*.old"))
    except OSError as err:
        raise ProjectError(f"Cannot copy the project into {dest}: {err.strerror or err}") from None
    copy_ = Project.open(dest)
    copy_.set_title(new_title)
    return copy_


def delete_project(path: str | Path) -> None:
    """Remove a project folder: it disappears at once (renamed aside), then its files are removed."""
    path = Path(path)
    if not Project.is_project(path):
        raise ProjectError(f"{path} is not a project: nothing was deleted.")
    try:
        remove_directory(path)
    except OSError as err:
        raise ProjectError(f"Cannot delete {path.name} ({err.strerror or err}): check the folder is writable.") from None
    log.info("deleted project %s", path)


def last_opened(workspace: str | Path) -> str | None:
    """The folder name of the project opened last in ``workspace`` (None if unknown or gone)."""
    pointer = Path(workspace) / LAST_OPENED_FILE
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not name or "/" in name or name.startswith(".") or not Project.is_project(Path(workspace) / name):
        return None
    return name


def set_last_opened(workspace: str | Path, name: str) -> None:
    atomic_write_text(Path(workspace) / LAST_OPENED_FILE, name + "\n")
