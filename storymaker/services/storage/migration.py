"""Project format 1 -> 2: renders lived under ``panels/NNN`` (the panel's position when rendered).

A folder could hold renders of several prompts (the script changed between renders) and one
prompt's renders could be spread over several folders (panels moved). So versions are grouped by
the prompt they were rendered for, across folders; each group becomes a panel with a
deterministic id (from the prompt), written into its versions' JSON; renders that did not record
their prompt form one panel per folder. The group of a folder's selected (else newest) version is
the panel at position NNN; the others are panels that left the script, and matching the script then
gives each group back to the panel with its prompt. No file moves; a crash leaves format 1, and the
next open does the same again (``Project.open`` runs this under the project's lock).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ...domain.panel_identity import normalize_prompt
from ...fsutil import atomic_write_json
from .folder import FORMAT_VERSION
from .versions import load_version, read_record


def migrate_format_1(data: dict, panels_dir: Path) -> None:
    """Turn the format-1 manifest ``data`` into format 2 in place (its panels and selection), and
    write each version's panel id into its JSON. The caller writes ``data`` back."""
    old_selected = data.get("selected") or {}
    groups: dict[Any, dict] = {}  # prompt key -> {"id", "prompt", "folders", "position"}
    selected: dict[str, str] = {}
    folders = sorted((d for d in panels_dir.iterdir() if d.is_dir() and d.name.isdigit()),
                     key=lambda d: int(d.name)) if panels_dir.is_dir() else []
    for folder in folders:
        position = int(folder.name)
        loaded = []
        for meta_path in folder.glob("*.json"):
            record = None if meta_path.name.startswith(".") else read_record(meta_path)
            version = load_version(meta_path, record) if record is not None else None
            if version is not None:
                loaded.append((version, record, meta_path))
        if not loaded:
            continue
        loaded.sort(key=lambda item: (item[0].number, item[0].created, item[0].id))
        chosen = old_selected.get(str(position))
        main = next((v for v, _, _ in loaded if v.id == chosen), loaded[-1][0])
        for version, record, meta_path in loaded:
            key = None if version.prompt is None else normalize_prompt(version.prompt)
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
    data["panels"] = sorted(groups.values(), key=lambda g: (g["position"] is None, g["position"] or 0))
    data["selected"] = selected
    data["format_version"] = FORMAT_VERSION
