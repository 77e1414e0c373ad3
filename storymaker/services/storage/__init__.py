"""Projects on disk: one folder per story, every file written atomically.

Layout (``storymaker.services.storage`` owns the project-level files and hands every writer its
sub-folder)::

    <project>/project.json      format_version, title, created, comic settings, the panels it
                                knows (id, prompt, position) and each one's selected version
    <project>/story.txt         the script
    <project>/script-history/   earlier texts of the script, kept when another tab's save or a
                                replacement would lose them (ScriptHistory)
    <project>/characters/<id>/  CharacterRegistry (storymaker.services.characters)
    <project>/poses/<name>.json the project's saved poses (PoseLibrary)
    <project>/panels/<panel id>/<version>.png + .json   every render of one panel
    <project>/exports/          PNG/PDF exports

A panel version is committed by its ``.json`` file, written after its ``.png``: a crash in between
leaves an orphan PNG that is never listed. ``project.json`` is read-modified-written under a file
lock, so two sessions of the same project do not lose each other's changes.

Renders belong to panels, not to positions: the script has no ids, so each panel's id comes from
matching the script's prompts against the panels the project remembers
(:mod:`storymaker.domain.panel_identity`, rules there and in ``docs/projects.md``). Format 1
projects (renders under ``panels/NNN``, by position) are migrated when opened, losing no version.

The modules, each readable in one sitting:

- :mod:`.folder`     the project folder, project.json's format, the file lock (``ProjectFolder``)
- :mod:`.versions`   panel identity and panel versions (``PanelVersion``, ``PanelRender``)
- :mod:`.project`    ``Project``: create, open, title, comic settings
- :mod:`.script_history`  the script and its kept earlier texts (``ScriptVersion``)
- :mod:`.migration`  project format 1 -> 2
- :mod:`.archive`    ``export_zip`` / ``import_zip``
- :mod:`.workspace`  a folder of projects: list, rename, duplicate, delete, the one opened last

Everything a caller needs is imported from here.
"""

from __future__ import annotations

from .archive import DEFAULT_MAX_IMPORT_FILES, export_zip, import_zip
from .folder import FORMAT_VERSION, LOCK_FILE, PROJECT_FILE, SCRIPT_FILE, SUBDIRS
from .project import STALE_AFTER_S, Project
from .script_history import ScriptVersion
from .versions import PNG_META_KEY, PanelRender, PanelVersion
from .workspace import (
    LAST_OPENED_FILE,
    ProjectInfo,
    delete_project,
    duplicate_project,
    last_opened,
    list_projects,
    project_info,
    rename_project,
    set_last_opened,
)

__all__ = [
    "DEFAULT_MAX_IMPORT_FILES",
    "FORMAT_VERSION",
    "LAST_OPENED_FILE",
    "LOCK_FILE",
    "PNG_META_KEY",
    "PROJECT_FILE",
    "SCRIPT_FILE",
    "STALE_AFTER_S",
    "SUBDIRS",
    "PanelRender",
    "PanelVersion",
    "Project",
    "ProjectInfo",
    "ScriptVersion",
    "delete_project",
    "duplicate_project",
    "export_zip",
    "import_zip",
    "last_opened",
    "list_projects",
    "project_info",
    "rename_project",
    "set_last_opened",
]
