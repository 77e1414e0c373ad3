"""Projects on disk: one folder per story, every file written atomically.

Layout (``storymaker.services.storage`` owns the project-level files and hands every writer its
sub-folder)::

    <project>/project.json      format_version, title, created, comic settings, the panels it
                                knows (id, prompt, position) and each one's selected version
    <project>/story.txt         the script
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
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import re
import secrets
import stat
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..domain.panel_identity import KnownPanel, match_panels, normalize_prompt, same_prompt
from ..errors import InvalidInputError, ProjectError
from ..fsutil import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_writer

try:  # POSIX file locks; elsewhere one process per project is assumed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: renders under panels/<panel id>, the panels' record in project.json
PROJECT_FILE = "project.json"
SCRIPT_FILE = "story.txt"
LOCK_FILE = ".lock"
SUBDIRS = ("characters", "poses", "panels", "exports")
PNG_META_KEY = "storymaker"  # PNG text chunk holding the version's JSON metadata
DEFAULT_MAX_IMPORT_FILES = 20_000
STALE_AFTER_S = 3600.0  # leftovers of interrupted saves older than this are removed on open
_VERSION_RE = re.compile(r"(\d{4,})-([0-9a-f]{6})")
_PANEL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_CHUNK = 1 << 20
# What reading a damaged or exotic archive member raises.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _to_json(value: Any, what: str) -> Any:
    """A JSON-clean deep copy of ``value`` (InvalidInputError if it cannot be stored as JSON)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{what} must be JSON data (dicts, lists, strings, numbers): {err}") from None


@dataclass(frozen=True)
class PanelVersion:
    """One render of one panel: ``image_path`` is the PNG, ``meta`` the JSON written beside it;
    ``panel_id`` the panel it belongs to, ``panel_index`` that panel's position when rendered."""

    id: str
    panel_index: int
    image_path: Path
    seed: int | None
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    created: str = ""
    panel_id: str = ""

    @property
    def prompt(self) -> str | None:
        """The prompt as written in the script when it was rendered (None if not recorded)."""
        value = self.meta.get("source_prompt")
        return value if isinstance(value, str) and value else None

    @property
    def meta_path(self) -> Path:
        return self.image_path.with_suffix(".json")

    @property
    def number(self) -> int:
        m = _VERSION_RE.fullmatch(self.id)
        return int(m.group(1)) if m else 0

    def load_image(self):
        """The PNG as a PIL image (loaded into memory)."""
        from PIL import Image

        with Image.open(self.image_path) as img:
            img.load()
            return img.copy()


def _check_manifest(data: Any, where: Path) -> dict:
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


def _read_manifest_file(path: Path) -> dict:
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
    return _check_manifest(data, path)


class Project:
    """A project folder. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: str | Path):
        """Use :meth:`open` or :meth:`create`; this does not check the folder."""
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Project) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    @staticmethod
    def is_project(path: str | Path) -> bool:
        """Whether ``path`` holds a ``project.json`` (not checked further)."""
        return (Path(path) / PROJECT_FILE).is_file()

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
        now = _now()
        manifest = {
            "format_version": FORMAT_VERSION,
            "title": title,
            "created": now,
            "modified": now,
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
        manifest = _read_manifest_file(path / PROJECT_FILE)
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
        return _read_manifest_file(self.manifest_path)

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
            data["modified"] = _now()
            atomic_write_json(self.manifest_path, data)
            return data

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
        value = _to_json(dict(settings), "Comic settings")
        self._update(lambda m: m.__setitem__("comic", value))

    # -- script --------------------------------------------------------------------------------
    def read_script(self) -> str:
        """The script text ('' for a new project)."""
        try:
            return self.script_path.read_bytes().decode("utf-8")  # verbatim: keep the user's line ends
        except FileNotFoundError:
            return ""
        except (OSError, UnicodeDecodeError) as err:
            raise ProjectError(f"Cannot read {self.script_path}: {err}") from None

    def write_script(self, text: str) -> None:
        """Save the script (atomically); any text, valid or not, is kept. A script that parses also
        updates which panel is which (:meth:`panel_ids`), so edits are followed as they are made."""
        atomic_write_text(self.script_path, str(text))
        self._sync_script(str(text))

    # -- panel versions --------------------------------------------------------------------------
    # A panel is addressed by its id (str, from panel_ids) or by its position (int, 0-based) in the
    # script as last matched (panel_ids, write_script). Renders live in panels/<id>/; a panel migrated
    # from format 1 also lists the old panels/NNN/ folders that hold its earlier renders ("folders":
    # such a folder may hold renders of several panels). Each version's JSON names its panel.

    def _entries(self, data: Mapping[str, Any]) -> list[dict]:
        return [dict(e) for e in data.get("panels") or [] if isinstance(e, dict) and e.get("id")]

    def _entry(self, data: Mapping[str, Any], panel: str | int) -> dict | None:
        """The record of ``panel`` (an id, or a position in the script as last matched), or None."""
        entries = self._entries(data)
        if isinstance(panel, str):
            key = _panel_id(panel)
            return next((e for e in entries if e["id"] == key), None)
        position = _index(panel)
        return next((e for e in entries if e.get("position") == position), None)

    def _folder(self, entry: Mapping[str, Any]) -> Path:
        """Where new renders of the panel go."""
        return self.panels_dir / str(entry["id"])

    def _folders(self, entry: Mapping[str, Any]) -> list[Path]:
        """Every folder that may hold renders of the panel."""
        return [self._folder(entry)] + [self.panels_dir / str(f) for f in entry.get("folders") or []]

    def _save_manifest(self, data: dict) -> None:
        """Write project.json (the caller holds the lock)."""
        data["modified"] = _now()
        atomic_write_json(self.manifest_path, data)

    def panel_dir(self, panel: str | int) -> Path:
        """The folder holding the renders of ``panel`` (ProjectError if the project does not know it)."""
        entry = self._entry(self.manifest(), panel)
        if entry is None:
            raise ProjectError(_unknown_panel(panel))
        return self._folder(entry)

    def known_panels(self) -> list[KnownPanel]:
        """Every panel the project remembers: the script's (as last matched) in order, then those
        that left it (see :mod:`storymaker.domain.panel_identity`)."""
        return [KnownPanel(e["id"], e.get("prompt"), e.get("position")) for e in self._entries(self.manifest())]

    def panel_ids(self, prompts: Sequence[str]) -> list[str]:
        """The stable id of each panel of a script (its prompts, in order), matched against the
        panels the project remembers by the rules of :mod:`storymaker.domain.panel_identity`; the
        project remembers the result. Panels that left the script without a render are forgotten."""
        prompts = [str(p) for p in prompts]
        with self._locked():
            data = self.manifest()
            before = self._entries(data)
            matching = match_panels([KnownPanel(e["id"], e.get("prompt"), e.get("position")) for e in before],
                                    prompts)
            by_id = {e["id"]: e for e in before}
            after = []
            for panel in matching.panels:
                old = by_id.get(panel.id, {})
                entry = {"id": panel.id, "prompt": panel.prompt, "position": panel.position}
                if old.get("folders"):
                    entry["folders"] = old["folders"]
                if panel.position is None and old.get("position") is not None and not self._has_versions(entry):
                    continue  # it just left the script and has no render: nothing to remember
                after.append(entry)
            if after != before:
                data["panels"] = after
                self._save_manifest(data)
        return list(matching.ids)

    def _has_versions(self, entry: Mapping[str, Any]) -> bool:
        if entry.get("folders"):
            return bool(self._versions_in(entry))
        folder = self._folder(entry)
        return folder.is_dir() and any(not p.name.startswith(".") for p in folder.glob("*.json"))

    def panel_renders(self, prompts: Sequence[str]) -> list[PanelRender]:
        """For each panel of a script (its prompts, in order): its id, its renders and the selected
        one, found by the panel's identity (:meth:`panel_ids`), never by its position."""
        ids = self.panel_ids(prompts)
        data = self.manifest()
        chosen = data.get("selected") or {}
        out = []
        for position, (pid, prompt) in enumerate(zip(ids, prompts)):
            entry = self._entry(data, pid) or {"id": pid}
            versions = tuple(self._versions_in(entry))
            selected = next((v for v in versions if v.id == chosen.get(pid)), versions[-1] if versions else None)
            out.append(PanelRender(position, pid, str(prompt), versions, selected))
        return out

    def add_version(self, panel: str | int, image, meta: Mapping[str, Any]) -> PanelVersion:
        """Save a render of ``panel`` (PIL image + JSON-serialisable meta; ``meta["seed"]`` becomes
        ``seed``, ``meta["source_prompt"]`` the prompt it was made for).

        The PNG carries the same JSON in its ``storymaker`` text chunk. A panel id the project does
        not know (its panel left the script while it rendered) is remembered as a panel that left.
        """
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        if not isinstance(image, Image.Image):
            raise InvalidInputError(f"add_version needs a PIL image, got {type(image).__name__}.")
        if isinstance(panel, str):
            _panel_id(panel)
        else:
            _index(panel)
        clean_meta = _to_json(dict(meta), "Panel metadata")
        seed = clean_meta.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidInputError(f"Panel metadata 'seed' must be a whole number, not {seed!r}.")
        with self._locked():
            data = self.manifest()
            entry = self._entry(data, panel)
            if entry is None:
                if not isinstance(panel, str):
                    raise ProjectError(_unknown_panel(panel))
                prompt = clean_meta.get("source_prompt")
                entry = {"id": panel, "prompt": prompt if isinstance(prompt, str) and prompt else None,
                         "position": None}
                data["panels"] = self._entries(data) + [entry]
                self._save_manifest(data)
            pid = entry["id"]
            index = entry.get("position")
            if index is None:
                index = clean_meta.get("panel_index") if isinstance(clean_meta.get("panel_index"), int) else -1
            folder = self._folder(entry)
            folder.mkdir(parents=True, exist_ok=True)
            # numbers grow across all the panel's folders, so that they order its versions
            taken = [self._number(f.stem) for d in self._folders(entry) if d.is_dir()
                     for f in d.iterdir() if f.suffix in (".json", ".png")]
            number = max(taken, default=0) + 1
            vid = f"{number:04d}-{secrets.token_hex(3)}"
            created = _now()
            record = {
                "id": vid,
                "panel_id": pid,
                "panel_index": index,
                "seed": seed,
                "created": created,
                "image": f"{vid}.png",
                "meta": clean_meta,
            }
            text = json.dumps(record, ensure_ascii=False, sort_keys=True)
            info = PngInfo()
            info.add_text(PNG_META_KEY, text, zip=True)
            info.add_text("Software", "StoryMaker Studio")
            if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "I", "1"):
                image = image.convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", pnginfo=info)
            png = folder / f"{vid}.png"
            atomic_write_bytes(png, buffer.getvalue())
            atomic_write_json(png.with_suffix(".json"), record)  # commits the version
        log.info("panel %s: saved version %s (seed %s)", pid, vid, seed)
        return PanelVersion(id=vid, panel_index=index, image_path=png, seed=seed, meta=clean_meta,
                            created=created, panel_id=pid)

    def update_version_meta(self, panel: str | int, version_id: str, changes: Mapping[str, Any]) -> PanelVersion:
        """Merge ``changes`` into a version's metadata (e.g. its consistency scores), in its JSON and
        in its PNG's ``storymaker`` text chunk; the pixels, the id and the selection are unchanged.

        The PNG is rewritten first and the JSON last (the JSON commits, as in :meth:`add_version`).
        """
        from PIL.PngImagePlugin import PngInfo

        clean = _to_json(dict(changes), "Panel metadata")
        with self._locked():
            pid, version = self._find(panel, version_id)
            try:
                record = json.loads(version.meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ProjectError(f"Cannot read {version.meta_path}: {err}") from None
            meta = dict(record.get("meta") or {})
            meta.update(clean)
            record["meta"] = meta
            info = PngInfo()
            info.add_text(PNG_META_KEY, json.dumps(record, ensure_ascii=False, sort_keys=True), zip=True)
            info.add_text("Software", "StoryMaker Studio")
            image = version.load_image()
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", pnginfo=info)
            atomic_write_bytes(version.image_path, buffer.getvalue())
            atomic_write_json(version.meta_path, record)
        return PanelVersion(id=version.id, panel_index=version.panel_index, image_path=version.image_path,
                            seed=version.seed, meta=meta, created=version.created, panel_id=pid)

    @staticmethod
    def _number(stem: str) -> int:
        m = _VERSION_RE.fullmatch(stem)
        return int(m.group(1)) if m else 0

    def _read_record(self, meta_path: Path) -> dict | None:
        try:
            record = json.loads(meta_path.read_text(encoding="utf-8"))
            str(record["id"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("skipping unreadable panel version %s: %s", meta_path, err)
            return None
        return record if isinstance(record, dict) else None

    def _load_version(self, meta_path: Path, record: Mapping[str, Any] | None = None) -> PanelVersion | None:
        record = record if record is not None else self._read_record(meta_path)
        if record is None:
            return None
        try:
            vid = str(record["id"])
            image = meta_path.with_name(str(record.get("image") or f"{vid}.png"))
            index = int(record.get("panel_index", -1))
        except (ValueError, KeyError, TypeError) as err:
            log.warning("skipping unreadable panel version %s: %s", meta_path, err)
            return None
        if image.parent != meta_path.parent or not image.is_file():
            log.warning("skipping panel version %s: its image is missing", meta_path)
            return None
        return PanelVersion(
            id=vid,
            panel_index=index,
            image_path=image,
            seed=record.get("seed"),
            meta=record.get("meta") or {},
            created=str(record.get("created", "")),
            panel_id=str(record.get("panel_id") or meta_path.parent.name),
        )

    def _versions_in(self, entry: Mapping[str, Any]) -> list[PanelVersion]:
        found = []
        for folder in self._folders(entry):
            if not folder.is_dir():
                continue
            for meta_path in folder.glob("*.json"):
                if meta_path.name.startswith("."):
                    continue
                version = self._load_version(meta_path)
                if version is not None and version.panel_id == entry["id"]:
                    found.append(version)
        # by time: a migrated panel's versions come from several folders, each numbered on its own
        return sorted(found, key=lambda v: (v.created, v.number, v.id))

    def versions(self, panel: str | int) -> list[PanelVersion]:
        """Every saved version of a panel (an id, or a position in the script as last matched),
        oldest first; [] for a panel without renders or that the project does not know."""
        entry = self._entry(self.manifest(), panel)
        return [] if entry is None else self._versions_in(entry)

    def _find(self, panel: str | int, version_id: str) -> tuple[str, PanelVersion]:
        entry = self._entry(self.manifest(), panel)
        for version in self._versions_in(entry) if entry is not None else []:
            if version.id == version_id:
                return entry["id"], version
        raise ProjectError(
            f"{_panel_name(panel)} has no version {version_id!r}; render it or pick one of its versions.")

    def select(self, panel: str | int, version_id: str) -> PanelVersion:
        """Make ``version_id`` the panel's selected version (ProjectError if unknown)."""
        pid, version = self._find(panel, version_id)
        self._update(lambda m: m.setdefault("selected", {}).__setitem__(pid, version.id))
        return version

    def selected(self, panel: str | int) -> PanelVersion | None:
        """The selected version; the newest if none was selected (or it was deleted); None if none."""
        data = self.manifest()
        entry = self._entry(data, panel)
        versions = self._versions_in(entry) if entry is not None else []
        if not versions:
            return None
        chosen = (data.get("selected") or {}).get(entry["id"])
        return next((v for v in versions if v.id == chosen), versions[-1])

    def delete_version(self, panel: str | int, version_id: str) -> None:
        """Remove a version (its JSON first, so a crash never leaves a listed version without image)."""
        pid, version = self._find(panel, version_id)

        def unselect(m: dict) -> None:
            sel = m.setdefault("selected", {})
            if sel.get(pid) == version.id:
                del sel[pid]

        self._update(unselect)
        version.meta_path.unlink(missing_ok=True)
        version.image_path.unlink(missing_ok=True)
        log.info("panel %s: deleted version %s", pid, version.id)

    def panel_indices(self) -> list[int]:
        """Positions (in the script as last matched) of the panels that have at least one version."""
        return sorted(e["position"] for e in self._entries(self.manifest())
                      if e.get("position") is not None and self._versions_in(e))

    def _sync_script(self, text: str) -> None:
        """Match the panels of a saved script (when it parses) so that edits are followed one by one."""
        from ..domain.script import check

        story = check(text).story
        if story is not None:
            self.panel_ids([p.prompt for p in story.panels])

    def _migrate(self) -> None:
        """Format 1 -> 2: versions lived under ``panels/NNN`` (the panel's position when rendered).

        A folder could hold renders of several prompts (the script changed between renders) and one
        prompt's renders could be spread over several folders (panels moved). So versions are
        grouped by the prompt they were rendered for, across folders; each group becomes a panel
        with a deterministic id (from the prompt), written into its versions' JSON; renders that
        did not record their prompt form one panel per folder. The group of a folder's selected
        (else newest) version is the panel at position NNN; the others are panels that left the
        script, and matching the script then gives each group back to the panel with its prompt.
        No file moves; a crash leaves format 1, and the next open does the same again.
        """
        with self._locked():
            data = self.manifest()
            if data["format_version"] >= FORMAT_VERSION:
                return
            old_selected = data.get("selected") or {}
            groups: dict[Any, dict] = {}  # prompt key -> {"id", "prompt", "folders", "position"}
            selected: dict[str, str] = {}
            folders = sorted((d for d in self.panels_dir.iterdir() if d.is_dir() and d.name.isdigit()),
                             key=lambda d: int(d.name)) if self.panels_dir.is_dir() else []
            for folder in folders:
                position = int(folder.name)
                loaded = []
                for meta_path in folder.glob("*.json"):
                    record = None if meta_path.name.startswith(".") else self._read_record(meta_path)
                    version = self._load_version(meta_path, record) if record is not None else None
                    if version is not None:
                        loaded.append((version, record, meta_path))
                if not loaded:
                    continue
                loaded.sort(key=lambda item: (item[0].number, item[0].created, item[0].id))
                chosen = old_selected.get(str(position))
                main = next((v for v, _, _ in loaded if v.id == chosen), loaded[-1][0])
                for version, record, meta_path in loaded:
                    key = _prompt_key(version.prompt)
                    if key is None:
                        key, pid = ("unknown", position), f"m{position:03d}-unknown"
                    else:
                        pid = "m-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]
                    group = groups.setdefault(key, {"id": pid, "prompt": None, "folders": [], "position": None})
                    group["prompt"] = version.prompt  # the newest wording
                    if folder.name not in group["folders"]:
                        group["folders"].append(folder.name)
                    if record.get("panel_id") != pid:
                        atomic_write_json(meta_path, {**record, "panel_id": pid})
                    if version.id == main.id and group["position"] is None:
                        group["position"] = position
                        if version.id == chosen:
                            selected[pid] = chosen
            entries = sorted(groups.values(), key=lambda g: (g["position"] is None, g["position"] or 0))
            data["panels"] = entries
            data["selected"] = selected
            data["format_version"] = FORMAT_VERSION
            self._save_manifest(data)
        log.info("migrated %s to project format %d (%d panels with renders)", self.path, FORMAT_VERSION,
                 len(entries))
        self._sync_script(self.read_script())


@dataclass(frozen=True)
class PanelRender:
    """What the project holds for one panel of a script: its id, its renders and the selected one."""

    position: int  # 0-based, in the script
    panel_id: str
    prompt: str  # the panel's prompt now
    versions: tuple[PanelVersion, ...]
    selected: PanelVersion | None

    @property
    def changed(self) -> bool:
        """"Script changed since render": the selected render was made for other wording."""
        return self.selected is not None and not same_prompt(self.selected.prompt, self.prompt)

    @property
    def number(self) -> int:
        """The selected version's 1-based number among the panel's versions (0: none)."""
        ids = [v.id for v in self.versions]
        return ids.index(self.selected.id) + 1 if self.selected is not None else 0


def _prompt_key(prompt: str | None) -> str | None:
    return None if prompt is None else normalize_prompt(prompt)


def _panel_id(panel_id: str) -> str:
    if not _PANEL_ID_RE.fullmatch(panel_id):
        raise InvalidInputError(f"{panel_id!r} is not a panel id (letters, digits, '-' and '_', from panel_ids).")
    return panel_id


def _panel_name(panel: str | int) -> str:
    return f"Panel {panel + 1}" if isinstance(panel, int) and not isinstance(panel, bool) else f"Panel {panel}"


def _unknown_panel(panel: str | int) -> str:
    if isinstance(panel, str):
        return f"The project has no panel {panel!r}: match the script's panels first (Project.panel_ids)."
    return (f"Panel {panel + 1} is not in the script as last saved: save the script (or match its "
            "panels with Project.panel_ids) first.")


def _index(panel_index: int) -> int:
    if isinstance(panel_index, bool) or not isinstance(panel_index, int) or panel_index < 0:
        raise InvalidInputError(f"A panel index is a whole number from 0, not {panel_index!r}.")
    return panel_index


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in text.strip().lower())
    return "-".join(part for part in keep.split("-") if part)[:48]


# -- archives ------------------------------------------------------------------------------------
_STORED = (".png", ".jpg", ".jpeg", ".webp", ".safetensors", ".zip", ".pdf")


def export_zip(project: Project, dest: str | Path, *, include_exports: bool = False) -> Path:
    """Write the project as one .zip (``dest`` a .zip path or a folder); returns the zip path.

    Entries are relative to the project folder (``project.json`` at the top). Hidden files
    (temporary files, the lock) and symlinks are left out, and ``exports/`` unless asked for.
    """
    project = Project.open(project.path)
    dest = Path(dest)
    if dest.is_dir() or dest.suffix.lower() != ".zip":
        dest = dest / f"{_slug(project.title) or _slug(project.path.name) or 'story'}.zip"
    root = project.path.resolve()
    skip = dest.resolve()
    files: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and not (Path(dirpath) / d).is_symlink()
            and not (rel_dir == Path(".") and d == "exports" and not include_exports)
        )
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if name.startswith(".") or full.is_symlink() or full.resolve() == skip:
                continue
            files.append((full, (rel_dir / name).as_posix()))
    try:
        with atomic_writer(dest) as handle, zipfile.ZipFile(handle, "w") as zf:
            for full, arcname in files:
                kind = zipfile.ZIP_STORED if full.suffix.lower() in _STORED else zipfile.ZIP_DEFLATED
                zf.write(full, arcname, compress_type=kind)
    except OSError as err:
        raise ProjectError(f"Cannot write {dest}: {err.strerror or err}") from None
    log.info("exported %s to %s (%d files)", project.path, dest, len(files))
    return dest


def _refuse(zip_path: Path, why: str) -> ProjectError:
    return ProjectError(f"{zip_path.name} cannot be imported: {why}. Nothing was written.")


def _entry_path(zip_path: Path, name: str) -> PurePosixPath:
    """The relative path an archive entry names; ProjectError if it leaves the project."""
    clean = name.replace("\\", "/")
    if "\x00" in clean or clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise _refuse(zip_path, f"entry {name!r} is an absolute path")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _refuse(zip_path, f"entry {name!r} points outside the project folder")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def import_zip(
    zip_path: str | Path,
    dest_dir: str | Path,
    *,
    max_bytes: int | None = None,
    max_files: int = DEFAULT_MAX_IMPORT_FILES,
) -> Project:
    """Unpack a project archive into the new project folder ``dest_dir`` (absent or empty).

    Refuses (ProjectError, nothing written) entries outside the project (``..``, absolute paths,
    symlinks, devices), encrypted entries, archives over ``max_bytes`` uncompressed (default:
    ``Settings.max_project_mb``) or ``max_files`` entries, and zips that are not StoryMaker projects
    (no ``project.json`` at the top or in a single top folder, or a newer project format).
    """
    zip_path = Path(zip_path)
    dest = Path(dest_dir)
    if max_bytes is None:
        from ..config import Settings

        max_bytes = int(Settings.from_env().max_project_mb) * 1024 * 1024
    if not zip_path.is_file():
        raise ProjectError(f"{zip_path} does not exist: choose a project .zip.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ProjectError(f"{dest} is not an empty folder: import the project into a new folder.")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise _refuse(zip_path, f"it is not a zip archive ({err})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise _refuse(zip_path, f"it has {len(infos)} entries (the limit is {max_files})")
        entries: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        seen: set[str] = set()
        total = 0
        for info in infos:
            rel = _entry_path(zip_path, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse(zip_path, f"entry {info.filename!r} is a symbolic link")
            if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and stat.S_IFMT(mode):
                raise _refuse(zip_path, f"entry {info.filename!r} is not a regular file")
            if info.flag_bits & 0x1:
                raise _refuse(zip_path, f"entry {info.filename!r} is encrypted")
            key = rel.as_posix().casefold()
            if key in seen and not info.is_dir():
                raise _refuse(zip_path, f"entry {info.filename!r} appears twice")
            seen.add(key)
            total += info.file_size
            entries.append((info, rel))
        if total > max_bytes:
            raise _refuse(zip_path, f"it unpacks to {total / 2**20:.1f} MiB (the limit is {max_bytes / 2**20:.1f} MiB)")
        files = [(i, r) for i, r in entries if not i.is_dir() and r != PurePosixPath(".")]
        names = {r.as_posix() for _, r in files}
        prefix: PurePosixPath | None = None
        if PROJECT_FILE in names:
            prefix = PurePosixPath(".")
        else:
            tops = {r.parts[0] for _, r in files}
            if len(tops) == 1:
                top = next(iter(tops))
                if f"{top}/{PROJECT_FILE}" in names:
                    prefix = PurePosixPath(top)
        if prefix is None:
            raise _refuse(zip_path, f"it is not a StoryMaker project (no {PROJECT_FILE} at its top)")
        manifest_info = next(i for i, r in files if r == prefix / PROJECT_FILE)
        if manifest_info.file_size > 16 * 2**20:
            raise _refuse(zip_path, f"its {PROJECT_FILE} is implausibly large")
        try:
            manifest = json.loads(zf.read(manifest_info).decode("utf-8"))
        except (ValueError, *_ZIP_ERRORS) as err:
            raise _refuse(zip_path, f"its {PROJECT_FILE} is damaged ({err})") from None
        try:
            _check_manifest(manifest, Path(PROJECT_FILE))
        except ProjectError as err:
            raise _refuse(zip_path, str(err).rstrip(".")) from None
        try:
            with atomic_directory(dest, replace=dest.is_dir()) as tmp:
                written = 0
                for info, rel in files:
                    inner = rel.relative_to(prefix) if prefix != PurePosixPath(".") else rel
                    target = tmp.joinpath(*inner.parts)
                    if not target.resolve().is_relative_to(tmp.resolve()):
                        raise _refuse(zip_path, f"entry {info.filename!r} points outside the project folder")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    size = 0
                    with zf.open(info) as src, open(target, "wb") as out:
                        while chunk := src.read(_CHUNK):
                            size += len(chunk)
                            written += len(chunk)
                            if size > info.file_size or written > max_bytes:
                                raise _refuse(zip_path, f"entry {info.filename!r} unpacks to more than it declares")
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
        except _ZIP_ERRORS as err:
            raise _refuse(zip_path, f"it is damaged ({err})") from None
        except OSError as err:
            raise ProjectError(f"Cannot unpack {zip_path.name} into {dest}: {err.strerror or err}") from None
    log.info("imported %s into %s (%d files)", zip_path, dest, len(files))
    return Project.open(dest)


# ---------------------------------------------------------------- project-level operations
# A "workspace" is a folder holding project folders side by side (the studio's per-browser folder,
# or any folder of projects) and a small pointer file naming the project opened last.

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
    manifest = _read_manifest_file(path / PROJECT_FILE)
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
    import shutil

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
    import shutil
    import tempfile

    path = Path(path)
    if not Project.is_project(path):
        raise ProjectError(f"{path} is not a project: nothing was deleted.")
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".deleted", dir=path.parent))
    trash.rmdir()
    try:
        path.rename(trash)
    except OSError as err:
        raise ProjectError(f"Cannot delete {path.name} ({err.strerror or err}): check the folder is writable.") from None
    shutil.rmtree(trash, ignore_errors=True)
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
