"""The example project: redistributable photos and the example story shipped in ``examples/``.

``examples/example.json`` names the story file and the characters (name, description, photo file,
credit). Only photos that may be redistributed live there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProjectError

MANIFEST = "example.json"


@dataclass(frozen=True)
class ExampleCharacter:
    name: str
    description: str
    photo: Path
    credit: str = ""


@dataclass(frozen=True)
class Example:
    title: str
    script: str
    characters: tuple[ExampleCharacter, ...]


def load_example(folder: Path) -> Example:
    """Read ``<folder>/example.json``; ProjectError naming what is missing."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        raise ProjectError(f"The example project is not installed ({manifest} is missing): "
                           "reinstall StoryMaker Studio from its repository.")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        story_file = Path(folder) / data["story"]
        characters = tuple(
            ExampleCharacter(c["name"], c.get("description", ""), Path(folder) / c["photo"], c.get("credit", ""))
            for c in data["characters"]
        )
    except (ValueError, KeyError, TypeError) as err:
        raise ProjectError(f"{manifest} is not a valid example manifest ({err}): restore it from the repository.") from None
    missing = [str(p) for p in (story_file, *(c.photo for c in characters)) if not p.is_file()]
    if missing:
        raise ProjectError("The example project is incomplete, missing: " + ", ".join(missing)
                           + ". Restore examples/ from the repository.")
    script = story_file.read_text(encoding="utf-8")
    title = data.get("title") or story_file.stem.replace("-", " ").title()
    return Example(title=title, script=script, characters=characters)
