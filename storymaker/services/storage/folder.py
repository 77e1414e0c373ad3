"""A project folder and its ``project.json``: file names, the manifest's format, reading it, and
changing it under the project's file lock (read-modify-write, written atomically).

:class:`ProjectFolder` is the base of :class:`~storymaker.services.storage.Project`; the panel
versions (:mod:`.versions`) build on it.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from ...errors import InvalidInputError, ProjectError
from ...fsutil import atomic_write_json

try:  # POSIX file locks; elsewhere one process per project is assumed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FORMAT_VERSION = 2  # 2: renders under panels/<panel id>, the panels' record in project.json
PROJECT_FILE = "project.json"
SCRIPT_FILE = "story.txt"
LOCK_FILE = ".lock"
SUBDIRS = ("characters", "poses", "panels", "exports")


def now() -> str:
    """The current UTC time as stored in project files."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_json(value: Any, what: str) -> Any:
    """A JSON-clean deep copy of ``value`` (InvalidInputError if it cannot be stored as JSON)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{what} must be JSON data (dicts, lists, strings, numbers): {err}") from None


def check_manifest(data: Any, where: Path) -> dict:
    """``data`` if it is a project.json this version can read (ProjectError saying why not)."""
    if not isinstance(data, dict) or not isinstance(data.get("format_version"), int):
        raise ProjectError(
            f"{where} is damaged (no format_version); restore it from a project .zip or create a new project."
        )
    version = data["format_version"]
    if version > FORMAT_VERSION:
        raise ProjectError(
            f"{where.parent} was saved by a newer StoryMaker Studio (project format {version}; this "
            f"version reads up to {FORMAT_VERSION}): upgrade StoryMaker Studio to open it."
        )
    if version < 1:
        raise ProjectError(f"{where} has an invalid format_version {version}; it is not a StoryMaker project.")
    return data


def read_manifest_file(path: Path) -> dict:
    """The checked content of the project.json at ``path`` (ProjectError if missing or damaged)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(
            f"{path.parent} is not a StoryMaker project (no {PROJECT_FILE}); create a project there "
            "or choose another folder."
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProjectError(f"Cannot read {path}: {err}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ProjectError(
            f"{path} is damaged ({err.msg} at line {err.lineno}); restore it from a project .zip."
        ) from None
    return check_manifest(data, path)


class ProjectFolder:
    """The folder of a project, its sub-folders and its project.json (not checked on creation)."""

    def __init__(self, path: str | Path):
        """Use :meth:`Project.open` or :meth:`Project.create`; this does not check the folder."""
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProjectFolder) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    @staticmethod
    def is_project(path: str | Path) -> bool:
        """Whether ``path`` holds a ``project.json`` (not checked further)."""
        return (Path(path) / PROJECT_FILE).is_file()

    # -- folders -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / PROJECT_FILE

    @property
    def script_path(self) -> Path:
        return self.path / SCRIPT_FILE

    @property
    def characters_dir(self) -> Path:
        return self.path / "characters"

    @property
    def poses_dir(self) -> Path:
        return self.path / "poses"

    @property
    def panels_dir(self) -> Path:
        return self.path / "panels"

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

    # -- project.json ----------------------------------------------------------------------------
    def manifest(self) -> dict:
        """A copy of project.json."""
        return read_manifest_file(self.manifest_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        with open(self.path / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _update(self, change: Callable[[dict], None]) -> dict:
        """Read project.json, apply ``change``, write it back atomically (under the lock)."""
        with self._locked():
            data = self.manifest()
            change(data)
            self._save_manifest(data)
            return data

    def _save_manifest(self, data: dict) -> None:
        """Write project.json (the caller holds the lock)."""
        data["modified"] = now()
        atomic_write_json(self.manifest_path, data)
