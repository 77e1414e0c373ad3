"""Projects on disk: one folder per story, every file written atomically.

Layout (``storymaker.services.storage`` owns the project-level files and hands every writer its
sub-folder)::

    <project>/project.json      format_version, title, created, comic settings, selected versions
    <project>/story.txt         the script
    <project>/characters/<id>/  CharacterRegistry (storymaker.services.characters)
    <project>/poses/<name>.json the project's saved poses (PoseLibrary)
    <project>/panels/<NNN>/<version>.png + .json   every render of panel NNN
    <project>/exports/          PNG/PDF exports

A panel version is committed by its ``.json`` file, written after its ``.png``: a crash in between
leaves an orphan PNG that is never listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ProjectError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PROJECT_FILE = "project.json"
SCRIPT_FILE = "story.txt"
PNG_META_KEY = "storymaker"  # PNG text chunk holding the version's JSON metadata
DEFAULT_MAX_IMPORT_BYTES = 2 * 1024**3
DEFAULT_MAX_IMPORT_FILES = 20_000


@dataclass(frozen=True)
class PanelVersion:
    """One render of one panel: ``image_path`` is the PNG, ``meta`` the JSON written beside it."""

    id: str
    panel_index: int
    image_path: Path
    seed: int | None
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    created: str = ""

    @property
    def meta_path(self) -> Path:
        return self.image_path.with_suffix(".json")


class Project:
    """A project folder. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: str | Path):
        """Use :meth:`open` or :meth:`create`; this does not check the folder."""
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, title: str = "") -> "Project":
        """Create a new project folder (absent or empty); ProjectError if it is already used."""
        raise NotImplementedError

    @classmethod
    def open(cls, path: str | Path) -> "Project":
        """Open an existing project; ProjectError if it is not one or was written by a newer version."""
        raise NotImplementedError

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

    def panel_dir(self, panel_index: int) -> Path:
        """``panels/<NNN>`` for a 0-based panel index."""
        return self.panels_dir / f"{int(panel_index):03d}"

    # -- project.json ----------------------------------------------------------------------------
    @property
    def title(self) -> str:
        raise NotImplementedError

    def set_title(self, title: str) -> None:
        raise NotImplementedError

    def comic_settings(self) -> dict:
        """The comic settings dict (content defined by the comic/export service); ``{}`` if unset."""
        raise NotImplementedError

    def set_comic_settings(self, settings: Mapping[str, Any]) -> None:
        """Store the comic settings (must be JSON-serialisable)."""
        raise NotImplementedError

    # -- script --------------------------------------------------------------------------------
    def read_script(self) -> str:
        raise NotImplementedError

    def write_script(self, text: str) -> None:
        raise NotImplementedError

    # -- panel versions --------------------------------------------------------------------------
    def add_version(self, panel_index: int, image, meta: Mapping[str, Any]) -> PanelVersion:
        """Save a render (PIL image + JSON-serialisable meta; ``meta["seed"]`` becomes ``seed``)."""
        raise NotImplementedError

    def versions(self, panel_index: int) -> list[PanelVersion]:
        """Every saved version of a panel, oldest first."""
        raise NotImplementedError

    def select(self, panel_index: int, version_id: str) -> PanelVersion:
        """Make ``version_id`` the panel's selected version (ProjectError if unknown)."""
        raise NotImplementedError

    def selected(self, panel_index: int) -> PanelVersion | None:
        """The selected version; the newest if none was selected (or it was deleted); None if none."""
        raise NotImplementedError

    def delete_version(self, panel_index: int, version_id: str) -> None:
        raise NotImplementedError


def export_zip(project: Project, dest: str | Path) -> Path:
    """Write the project as one .zip (``dest`` a .zip path or a folder); returns the zip path."""
    raise NotImplementedError


def import_zip(
    zip_path: str | Path,
    dest_dir: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_IMPORT_BYTES,
    max_files: int = DEFAULT_MAX_IMPORT_FILES,
) -> Project:
    """Unpack a project archive into the new project folder ``dest_dir`` (absent or empty).

    Refuses (ProjectError, nothing written) entries outside the project (``..``, absolute paths,
    symlinks), archives over ``max_bytes`` uncompressed or ``max_files`` entries, and zips that
    are not StoryMaker projects.
    """
    raise NotImplementedError
