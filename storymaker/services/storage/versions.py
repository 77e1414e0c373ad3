"""Panel identity and panel versions: which panel of the script is which, and every render of it.

A panel is addressed by its id (str, from :meth:`PanelVersions.panel_ids`) or by its position
(int, 0-based) in the script as last matched (``panel_ids``, ``Project.write_script``). Renders live
in ``panels/<id>/<version>.png + .json``; a panel migrated from format 1 (:mod:`.migration`) also
lists the old ``panels/NNN/`` folders that hold its earlier renders ("folders": such a folder may
hold renders of several panels). Each version's JSON names its panel; the panel's entry also keeps
the wordings its renders were made for (``"rendered"``, which rule 4 of the matching compares with),
refreshed whenever a version is added or deleted here.

A version is committed by its ``.json`` file, written after its ``.png``: a crash in between leaves
an orphan PNG that is never listed (``Project.remove_stale_files`` removes it later).
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...domain.panel_identity import KnownPanel, match_panels, normalize_prompt, same_prompt
from ...errors import InvalidInputError, ProjectError
from ...fsutil import atomic_write_bytes, atomic_write_json
from .folder import ProjectFolder, now, to_json

log = logging.getLogger(__name__)

PNG_META_KEY = "storymaker"  # PNG text chunk holding the version's JSON metadata
_VERSION_RE = re.compile(r"(\d{4,})-([0-9a-f]{6})")
_PANEL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def version_number(version_id: str) -> int:
    """The running number of a version id (``0007-a1b2c3`` -> 7; 0 for anything else)."""
    m = _VERSION_RE.fullmatch(version_id)
    return int(m.group(1)) if m else 0


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
        return version_number(self.id)

    def load_image(self):
        """The PNG as a PIL image (loaded into memory)."""
        from PIL import Image

        with Image.open(self.image_path) as img:
            img.load()
            return img.copy()


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


def read_record(meta_path: Path) -> dict | None:
    """A version's JSON record, or None (logged) if it cannot be read."""
    try:
        record = json.loads(meta_path.read_text(encoding="utf-8"))
        str(record["id"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("skipping unreadable panel version %s: %s", meta_path, err)
        return None
    return record if isinstance(record, dict) else None


def load_version(meta_path: Path, record: Mapping[str, Any] | None = None) -> PanelVersion | None:
    """The version whose JSON is ``meta_path`` (``record``: its content if already read), or None
    (logged) if the record is unreadable or its image is missing."""
    record = record if record is not None else read_record(meta_path)
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


def _png_bytes(image, record: Mapping[str, Any]) -> bytes:
    """``image`` as PNG bytes carrying ``record`` in its ``storymaker`` text chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PNG_META_KEY, json.dumps(record, ensure_ascii=False, sort_keys=True), zip=True)
    info.add_text("Software", "StoryMaker Studio")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


class PanelVersions(ProjectFolder):
    """The panels a project remembers (in project.json) and their versions (in ``panels/``)."""

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

    def panel_dir(self, panel: str | int) -> Path:
        """The folder holding the renders of ``panel`` (ProjectError if the project does not know it)."""
        entry = self._entry(self.manifest(), panel)
        if entry is None:
            raise ProjectError(_unknown_panel(panel))
        return self._folder(entry)

    def known_panels(self) -> list[KnownPanel]:
        """Every panel the project remembers: the script's (as last matched) in order, then those
        that left it (see :mod:`storymaker.domain.panel_identity`), with the wordings their renders
        were made for."""
        return [self._known(e) for e in self._entries(self.manifest())]

    def _known(self, entry: Mapping[str, Any]) -> KnownPanel:
        """The panel of a ``"panels"`` entry, with its rendered wordings (:meth:`_wordings`)."""
        return KnownPanel(entry["id"], entry.get("prompt"), entry.get("position"), self._wordings(entry))

    def _wordings(self, entry: Mapping[str, Any]) -> tuple[str, ...]:
        """The wordings the panel's renders were made for, distinct, oldest first.

        The versions' own records say it; the entry keeps their summary (``"rendered"``, refreshed
        by :meth:`_record_wordings` whenever the project adds or deletes a version) so that matching
        a script, which happens at every save of the editor, reads no render. An entry without it
        (a project saved before it was kept, a migrated one, a panel without renders) reads its
        versions; :meth:`panel_ids` then keeps the result."""
        recorded = entry.get("rendered")
        if isinstance(recorded, list) and recorded and all(isinstance(p, str) and p for p in recorded):
            return tuple(recorded)
        return _distinct_prompts(self._versions_in(entry))

    def _record_wordings(self, data: dict, panel_id: str) -> None:
        """Refresh the ``"rendered"`` summary of one panel from its versions, and save ``data`` if it
        changed (the caller holds the lock; ``data`` is the manifest it read under it)."""
        entries = self._entries(data)
        for entry in entries:
            if entry["id"] != panel_id:
                continue
            wordings = list(_distinct_prompts(self._versions_in(entry)))
            if entry.get("rendered", []) == wordings:
                return
            if wordings:
                entry["rendered"] = wordings
            else:
                entry.pop("rendered", None)
            data["panels"] = entries
            self._save_manifest(data)
            return

    def panel_ids(self, prompts: Sequence[str]) -> list[str]:
        """The stable id of each panel of a script (its prompts, in order), matched against the
        panels the project remembers by the rules of :mod:`storymaker.domain.panel_identity`; the
        project remembers the result. Panels that left the script without a render are forgotten."""
        prompts = [str(p) for p in prompts]
        with self._locked():
            data = self.manifest()
            before = self._entries(data)
            matching = match_panels([self._known(e) for e in before], prompts)
            by_id = {e["id"]: e for e in before}
            after = []
            for panel in matching.panels:
                old = by_id.get(panel.id, {})
                entry = {"id": panel.id, "prompt": panel.prompt, "position": panel.position}
                if old.get("folders"):
                    entry["folders"] = old["folders"]
                if panel.rendered:
                    entry["rendered"] = list(panel.rendered)
                if panel.position is None and old.get("position") is not None and not self._has_versions(entry):
                    continue  # it just left the script and has no render: nothing to remember
                after.append(entry)
            if after != before:
                data["panels"] = after
                self._save_manifest(data)
        return list(matching.ids)

    def _sync_script(self, text: str) -> None:
        """Match the panels of a saved script (when it parses) so that edits are followed one by one."""
        from ...domain.script import check

        story = check(text).story
        if story is not None:
            self.panel_ids([p.prompt for p in story.panels])

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

        if not isinstance(image, Image.Image):
            raise InvalidInputError(f"add_version needs a PIL image, got {type(image).__name__}.")
        if isinstance(panel, str):
            _panel_id(panel)
        else:
            _index(panel)
        clean_meta = to_json(dict(meta), "Panel metadata")
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
            taken = [version_number(f.stem) for d in self._folders(entry) if d.is_dir()
                     for f in d.iterdir() if f.suffix in (".json", ".png")]
            number = max(taken, default=0) + 1
            vid = f"{number:04d}-{secrets.token_hex(3)}"
            created = now()
            record = {
                "id": vid,
                "panel_id": pid,
                "panel_index": index,
                "seed": seed,
                "created": created,
                "image": f"{vid}.png",
                "meta": clean_meta,
            }
            if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "I", "1"):
                image = image.convert("RGB")
            png = folder / f"{vid}.png"
            atomic_write_bytes(png, _png_bytes(image, record))
            atomic_write_json(png.with_suffix(".json"), record)  # commits the version
            self._record_wordings(data, pid)
        log.info("panel %s: saved version %s (seed %s)", pid, vid, seed)
        return PanelVersion(id=vid, panel_index=index, image_path=png, seed=seed, meta=clean_meta,
                            created=created, panel_id=pid)

    def update_version_meta(self, panel: str | int, version_id: str, changes: Mapping[str, Any]) -> PanelVersion:
        """Merge ``changes`` into a version's metadata (e.g. its consistency scores), in its JSON and
        in its PNG's ``storymaker`` text chunk; the pixels, the id and the selection are unchanged.

        The PNG is rewritten first and the JSON last (the JSON commits, as in :meth:`add_version`).
        """
        clean = to_json(dict(changes), "Panel metadata")
        with self._locked():
            pid, version = self._find(panel, version_id)
            try:
                record = json.loads(version.meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ProjectError(f"Cannot read {version.meta_path}: {err}") from None
            meta = dict(record.get("meta") or {})
            meta.update(clean)
            record["meta"] = meta
            atomic_write_bytes(version.image_path, _png_bytes(version.load_image(), record))
            atomic_write_json(version.meta_path, record)
            if "source_prompt" in clean:
                self._record_wordings(self.manifest(), pid)
        return PanelVersion(id=version.id, panel_index=version.panel_index, image_path=version.image_path,
                            seed=version.seed, meta=meta, created=version.created, panel_id=pid)

    def _versions_in(self, entry: Mapping[str, Any]) -> list[PanelVersion]:
        found = []
        for folder in self._folders(entry):
            if not folder.is_dir():
                continue
            for meta_path in folder.glob("*.json"):
                if meta_path.name.startswith("."):
                    continue
                version = load_version(meta_path)
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
        with self._locked():
            version.meta_path.unlink(missing_ok=True)
            version.image_path.unlink(missing_ok=True)
            self._record_wordings(self.manifest(), pid)
        log.info("panel %s: deleted version %s", pid, version.id)

    def panel_indices(self) -> list[int]:
        """Positions (in the script as last matched) of the panels that have at least one version."""
        return sorted(e["position"] for e in self._entries(self.manifest())
                      if e.get("position") is not None and self._versions_in(e))


def _distinct_prompts(versions: Sequence[PanelVersion]) -> tuple[str, ...]:
    """The prompts the versions were made for, one per wording (:func:`normalize_prompt`), in order."""
    out: dict[str, str] = {}
    for version in versions:
        if version.prompt is not None:
            out.setdefault(normalize_prompt(version.prompt), version.prompt)
    return tuple(out.values())


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
