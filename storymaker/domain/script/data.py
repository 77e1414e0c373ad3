"""The YAML/JSON form of a story (one JSON Schema, the script's rules) and story files by extension."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from ...errors import InvalidInputError
from ..story import Dialogue, Panel, Story
from .formatter import format_script
from .parser import parse_script
from .rules import (
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    Names,
    OutfitLookup,
    PoseLookup,
    bind,
    outfit_problem,
    parse_size,
    pose_problem,
    resolve_in_panel,
    single_line,
    slot_order,
)

SCRIPT_SUFFIXES = (".txt", ".story")
YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)


class StoryDataError(InvalidInputError):
    """A YAML/JSON story does not match the schema; ``problems`` are ``(json_path, message)``."""

    def __init__(self, problems: Iterable[tuple[str, str]], source: str = ""):
        self.problems = tuple(problems)
        where = f" in {source}" if source else ""
        count = len(self.problems)
        head = f"The story data{where} has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"{p}: {m}" for p, m in self.problems)]))


_SIZE_SCHEMA = {
    "type": "array",
    "description": "[width, height] in pixels, multiples of 8",
    "items": {"type": "integer", "minimum": 8, "maximum": MAX_SIDE, "multipleOf": 8},
    "minItems": 2,
    "maxItems": 2,
}
_TEXT = {"type": "string"}

STORY_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://storymaker.studio/schemas/story-1.json",
    "title": "StoryMaker Studio story",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "title": _TEXT,
        "style": _TEXT,
        "negative": _TEXT,
        "size": _SIZE_SCHEMA,
        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
        "steps": {"type": "integer", "minimum": 1, "maximum": MAX_STEPS},
        "guidance": {"type": "number", "minimum": 0, "maximum": MAX_GUIDANCE},
        "panels": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "minLength": 1},
                    "pose": {"type": "string", "minLength": 1},
                    "caption": {"type": "string", "minLength": 1},
                    "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                    "size": _SIZE_SCHEMA,
                    "outfits": {
                        "type": "object",
                        "description": "character name -> outfit name",
                        "additionalProperties": {"type": "string", "minLength": 1},
                    },
                    "steps": {"type": "integer", "minimum": 1, "maximum": MAX_STEPS},
                    "guidance": {"type": "number", "minimum": 0, "maximum": MAX_GUIDANCE},
                    "negative": {"type": "string", "minLength": 1},
                    "style": {"type": "string", "minLength": 1},
                    "dialogue": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["speaker", "text"],
                            "properties": {
                                "speaker": {"type": "string", "minLength": 1},
                                "text": {"type": "string", "minLength": 1},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def story_from_data(
    data: Any, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None, source: str = "",
    outfits: OutfitLookup | None = None, max_side: int | None = None,
) -> Story:
    """Build a Story from YAML/JSON data validated against :data:`STORY_SCHEMA`.

    The script's rules apply too ([Name] binding and registration, character limit, pose fit,
    outfits of characters in the panel and registered for them, sizes up to ``max_side``, one-line
    texts). StoryDataError lists every problem with its JSON path (``$.panels[2].prompt``).
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(STORY_SCHEMA)
    schema_errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if schema_errors:
        raise StoryDataError([(_json_path(e.absolute_path), e.message) for e in schema_errors], source)
    names = Names(characters)
    problems: list[tuple[str, str]] = []

    def text(path: str, value: str | None, *, strip: bool = True, hashed: bool = False) -> str | None:
        if value is None:
            return None
        if not single_line(value):
            problems.append((path, "must be one line (no line breaks)"))
        if strip:
            value = value.strip()
            if hashed and value.startswith("#"):
                problems.append((path, "cannot start with '#' (that starts a comment in the script)"))
        return value

    header = {k: text(f"$.{k}", data.get(k, "")) for k in ("title", "style", "negative")}
    for key in ("seed", "steps"):
        header[key] = data.get(key)
    if data.get("guidance") is not None:
        header["guidance"] = float(data["guidance"])
    def size(path: str, value: list | None) -> tuple[int, int] | None:
        if value is None:
            return None
        error = parse_size(f"{value[0]}x{value[1]}", max_side)[1]
        if error:
            problems.append((path, error))
        return tuple(value)

    if data.get("size") is not None:
        header["size"] = size("$.size", data["size"])
    panels = []
    for i, raw in enumerate(data.get("panels", [])):
        at = f"$.panels[{i}]"
        prompt = text(f"{at}.prompt", raw["prompt"], hashed=True)
        if not prompt:
            problems.append((f"{at}.prompt", "is empty; describe the panel"))
        chars, bind_problems = bind(prompt, names)
        problems.extend((f"{at}.prompt", m) for _, m, warning in bind_problems if not warning)
        bind_failed = any(not w for _, _, w in bind_problems)
        pose = text(f"{at}.pose", raw.get("pose"))
        if pose is not None:
            error = pose_problem(poses, pose, None if bind_failed else chars)
            if error:
                problems.append((f"{at}.pose", error))
        worn = []
        for who, what in raw.get("outfits", {}).items():
            path = f"{at}.outfits.{who}"
            if bind_failed:
                name, error = names.resolve(who, brackets=False)
            else:
                name, error = resolve_in_panel(who, chars, names)
            if error:
                problems.append((path, error))
                continue
            if any(c in who for c in ",=") or "," in what or not what.strip():
                problems.append((path, "outfit names cannot contain ',' (nor '=' in character names)"))
                continue
            error = outfit_problem(outfits, name, what)
            if error:
                problems.append((path, error))
                continue
            worn.append((name, what.strip()))
        worn = slot_order(worn, chars)
        dialogue = []
        for j, line in enumerate(raw.get("dialogue", [])):
            path = f"{at}.dialogue[{j}]"
            speaker, error = names.resolve(line["speaker"], brackets=False)
            if error:
                problems.append((f"{path}.speaker", error))
                continue
            if "[" in speaker or "]" in speaker:
                problems.append((f"{path}.speaker", "a name cannot contain '[' or ']'"))
                continue
            words = text(f"{path}.text", line["text"], strip=False)
            if not words.strip():
                problems.append((f"{path}.text", "is empty; write the words or remove the line"))
                continue
            dialogue.append(Dialogue(speaker=speaker, text=words))
        panels.append(Panel(
            prompt=prompt,
            characters=chars,
            pose=pose,
            caption=text(f"{at}.caption", raw.get("caption")),
            seed=raw.get("seed"),
            size=size(f"{at}.size", raw.get("size")),
            outfits=tuple(worn),
            steps=raw.get("steps"),
            guidance=float(raw["guidance"]) if raw.get("guidance") is not None else None,
            negative=text(f"{at}.negative", raw.get("negative")),
            style=text(f"{at}.style", raw.get("style")),
            dialogue=tuple(dialogue),
        ))
    if problems:
        raise StoryDataError(problems, source)
    return Story(panels=tuple(panels), **header)


def story_to_data(story: Story) -> dict:
    """The story as plain data matching :data:`STORY_SCHEMA` (absent values left out)."""
    data: dict[str, Any] = {}
    for key in ("title", "style", "negative"):
        if getattr(story, key):
            data[key] = getattr(story, key)
    if story.size is not None:
        data["size"] = [int(story.size[0]), int(story.size[1])]
    for key in ("seed", "steps", "guidance"):
        if getattr(story, key) is not None:
            data[key] = getattr(story, key)
    panels = []
    for panel in story.panels:
        item: dict[str, Any] = {"prompt": panel.prompt}
        for key in ("pose", "caption", "seed"):
            if getattr(panel, key) is not None:
                item[key] = getattr(panel, key)
        if panel.size is not None:
            item["size"] = [int(panel.size[0]), int(panel.size[1])]
        if panel.outfits:
            item["outfits"] = {who: what for who, what in panel.outfits}
        for key in ("steps", "guidance", "negative", "style"):
            if getattr(panel, key) is not None:
                item[key] = getattr(panel, key)
        if panel.dialogue:
            item["dialogue"] = [{"speaker": d.speaker, "text": d.text} for d in panel.dialogue]
        panels.append(item)
    data["panels"] = panels
    return data


def _story_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in SCRIPT_SUFFIXES:
        return "script"
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in JSON_SUFFIXES:
        return "json"
    known = ", ".join(SCRIPT_SUFFIXES + YAML_SUFFIXES + JSON_SUFFIXES)
    raise InvalidInputError(f"{path}: unknown story file type {suffix or '(none)'!r}; use one of {known}")


def load_story(
    path: str | Path, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None,
    outfits: OutfitLookup | None = None, max_side: int | None = None,
) -> Story:
    """Read a story from a script (.txt/.story), YAML (.yaml/.yml) or JSON (.json) file, with the
    same checks in every form (``outfits``, ``max_side``: see :func:`parse_script`)."""
    path = Path(path)
    kind = _story_kind(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such story file; check the path") from None
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise InvalidInputError(f"{path}: cannot read it ({err.strerror})") from None
    if kind == "script":
        return parse_script(raw, characters, poses=poses, outfits=outfits, max_side=max_side)
    if kind == "json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as err:
            raise StoryDataError([(f"line {err.lineno}, column {err.colno}", f"not valid JSON: {err.msg}")], str(path)) from None
    else:
        import yaml

        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "$"
            problem = getattr(err, "problem", None) or str(err)
            raise StoryDataError([(where, f"not valid YAML: {problem}")], str(path)) from None
    return story_from_data(data, characters, poses=poses, source=str(path), outfits=outfits, max_side=max_side)


def save_story(story: Story, path: str | Path) -> Path:
    """Write a story atomically in the form its extension names; returns the path."""
    from ...fsutil import atomic_write_text

    path = Path(path)
    kind = _story_kind(path)
    text = {"script": format_script, "json": story_to_json, "yaml": story_to_yaml}[kind](story)
    return atomic_write_text(path, text)


def story_to_json(story: Story) -> str:
    """The story as JSON text (schema :data:`STORY_SCHEMA`)."""
    return json.dumps(story_to_data(story), indent=2, ensure_ascii=False) + "\n"


def story_to_yaml(story: Story) -> str:
    """The story as YAML text (schema :data:`STORY_SCHEMA`)."""
    import yaml

    data = story_to_data(story)
    # PyYAML writes U+0085 (NEL) raw in unicode mode and reads it back as a line break: escape then.
    readable = "\x85" not in json.dumps(data, ensure_ascii=False)
    return yaml.safe_dump(data, allow_unicode=readable, sort_keys=False, width=100)
