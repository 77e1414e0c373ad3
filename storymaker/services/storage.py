"""Projects on disk: one folder per story, every file written atomically.

Layout (``storymaker.services.storage`` owns the project-level files and hands every writer its
sub-folder)::

    <project>/project.json      format_version, title, created, comic settings, selected versions
    <project>/story.txt         the script
    <project>/characters/<id>/  CharacterRegistry (storymaker.services.characters)
    <project>/poses/<name>.json the project's saved poses (PoseLibrary)
    <project>/panels/<NNN>/<version>.png + .json   every render of panel NNN (0-based index)
    <project>/exports/          PNG/PDF exports

A panel version is committed by its ``.json`` file, written after its ``.png``: a crash in between
leaves an orphan PNG that is never listed. ``project.json`` is read-modified-written under a file
lock, so two sessions of the same project do not lose each other's changes.
"""

from __future__ import annotations

import contextlib
import copy
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
from typing import Any, Callable, Iterator, Mapping

from ..errors import InvalidInputError, ProjectError
from ..fsutil import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_writer

try:  # POSIX file locks; elsewhere one process per project is assumed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PROJECT_FILE = "project.json"
SCRIPT_FILE = "story.txt"
LOCK_FILE = ".lock"
SUBDIRS = ("characters", "poses", "panels", "exports")
PNG_META_KEY = "storymaker"  # PNG text chunk holding the version's JSON metadata
DEFAULT_MAX_IMPORT_FILES = 20_000
STALE_AFTER_S = 3600.0  # leftovers of interrupted saves older than this are removed on open
_VERSION_RE = re.compile(r"(\d{4,})-([0-9a-f]{6})")
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
        _read_manifest_file(path / PROJECT_FILE)
        project = cls(path)
        for sub in SUBDIRS:  # folders may be missing in hand-made or older projects
            (path / sub).mkdir(exist_ok=True)
        project.remove_stale_files()
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
            folders += [d for d in self.panels_dir.iterdir() if d.is_dir() and d.name.isdigit()]
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

    def panel_dir(self, panel_index: int) -> Path:
        """``panels/<NNN>`` for a 0-based panel index."""
        return self.panels_dir / f"{_index(panel_index):03d}"

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
        """Save the script (atomically); any text, valid or not, is kept."""
        atomic_write_text(self.script_path, str(text))

    # -- panel versions --------------------------------------------------------------------------
    def add_version(self, panel_index: int, image, meta: Mapping[str, Any]) -> PanelVersion:
        """Save a render (PIL image + JSON-serialisable meta; ``meta["seed"]`` becomes ``seed``).

        The PNG carries the same JSON in its ``storymaker`` text chunk.
        """
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        index = _index(panel_index)
        if not isinstance(image, Image.Image):
            raise InvalidInputError(f"add_version needs a PIL image, got {type(image).__name__}.")
        clean_meta = _to_json(dict(meta), "Panel metadata")
        seed = clean_meta.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidInputError(f"Panel metadata 'seed' must be a whole number, not {seed!r}.")
        folder = self.panel_dir(index)
        folder.mkdir(parents=True, exist_ok=True)
        with self._locked():
            existing = self.versions(index)
            number = max((v.number for v in existing), default=0) + 1
            vid = f"{number:04d}-{secrets.token_hex(3)}"
            created = _now()
            record = {
                "id": vid,
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
        log.info("panel %d: saved version %s (seed %s)", index, vid, seed)
        return PanelVersion(id=vid, panel_index=index, image_path=png, seed=seed, meta=clean_meta, created=created)

    def _load_version(self, meta_path: Path) -> PanelVersion | None:
        try:
            record = json.loads(meta_path.read_text(encoding="utf-8"))
            vid = str(record["id"])
            image = meta_path.with_name(str(record.get("image") or f"{vid}.png"))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("skipping unreadable panel version %s: %s", meta_path, err)
            return None
        if image.parent != meta_path.parent or not image.is_file():
            log.warning("skipping panel version %s: its image is missing", meta_path)
            return None
        return PanelVersion(
            id=vid,
            panel_index=int(record.get("panel_index", -1)),
            image_path=image,
            seed=record.get("seed"),
            meta=record.get("meta") or {},
            created=str(record.get("created", "")),
        )

    def versions(self, panel_index: int) -> list[PanelVersion]:
        """Every saved version of a panel, oldest first."""
        folder = self.panel_dir(panel_index)
        if not folder.is_dir():
            return []
        found = []
        for meta_path in folder.glob("*.json"):
            if meta_path.name.startswith("."):
                continue
            version = self._load_version(meta_path)
            if version is not None:
                found.append(version)
        return sorted(found, key=lambda v: (v.number, v.created, v.id))

    def _find(self, panel_index: int, version_id: str) -> PanelVersion:
        for version in self.versions(panel_index):
            if version.id == version_id:
                return version
        raise ProjectError(
            f"Panel {_index(panel_index) + 1} has no version {version_id!r}; render it or pick one of its versions."
        )

    def select(self, panel_index: int, version_id: str) -> PanelVersion:
        """Make ``version_id`` the panel's selected version (ProjectError if unknown)."""
        version = self._find(panel_index, version_id)
        key = str(_index(panel_index))
        self._update(lambda m: m.setdefault("selected", {}).__setitem__(key, version.id))
        return version

    def selected(self, panel_index: int) -> PanelVersion | None:
        """The selected version; the newest if none was selected (or it was deleted); None if none."""
        versions = self.versions(panel_index)
        if not versions:
            return None
        chosen = (self.manifest().get("selected") or {}).get(str(_index(panel_index)))
        for version in versions:
            if version.id == chosen:
                return version
        return versions[-1]

    def delete_version(self, panel_index: int, version_id: str) -> None:
        """Remove a version (its JSON first, so a crash never leaves a listed version without image)."""
        version = self._find(panel_index, version_id)
        key = str(_index(panel_index))

        def unselect(m: dict) -> None:
            sel = m.setdefault("selected", {})
            if sel.get(key) == version.id:
                del sel[key]

        self._update(unselect)
        version.meta_path.unlink(missing_ok=True)
        version.image_path.unlink(missing_ok=True)
        log.info("panel %s: deleted version %s", key, version.id)

    def panel_indices(self) -> list[int]:
        """Indices of the panels that have at least one saved version."""
        out = []
        if self.panels_dir.is_dir():
            for child in self.panels_dir.iterdir():
                if child.is_dir() and child.name.isdigit() and self.versions(int(child.name)):
                    out.append(int(child.name))
        return sorted(out)


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
