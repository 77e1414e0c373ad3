"""Projects as one .zip: export a project folder, and import an archive into a new folder with
every check a file from elsewhere needs (paths that leave the project, links and devices, encrypted
or damaged entries, size and entry-count limits, not a project, a newer project format).
Nothing is written unless the whole archive unpacks."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ...errors import ProjectError
from ...fsutil import atomic_directory, atomic_writer
from .folder import PROJECT_FILE, check_manifest
from .project import Project

log = logging.getLogger(__name__)

DEFAULT_MAX_IMPORT_FILES = 20_000
_CHUNK = 1 << 20
# What reading a damaged or exotic archive member raises.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
# Already compressed: stored as they are.
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
        from ...config import Settings

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
            check_manifest(manifest, Path(PROJECT_FILE))
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


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in text.strip().lower())
    return "-".join(part for part in keep.split("-") if part)[:48]
