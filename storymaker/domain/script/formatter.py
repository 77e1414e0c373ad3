"""Story -> script text: panel lines unindented, attributes and dialogue indented by two spaces."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidInputError
from ..story import Story
from .rules import (
    HEADER_END,
    HEADER_KEYS,
    KEY_RE,
    PANEL_KEYS,
    VALUE_PARSERS,
    Names,
    bind,
    normalize_name,
    parse_size,
    single_line,
)

def _fmt_float(x: float) -> str:
    return repr(float(x))


def _fmt_value(where: str, key: str, value: Any) -> str:
    if key == "size":
        w, h = value
        text = f"{int(w)}x{int(h)}"
        _, error = parse_size(text)
    elif key in ("seed", "steps"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{where}: {key} must be a whole number, not {value!r}")
        text = str(value)
        _, error = VALUE_PARSERS[key](text)
    elif key == "guidance":
        text = _fmt_float(value)
        _, error = VALUE_PARSERS[key](text)
    else:
        text = str(value)
        error = None
        if text != text.strip() or not single_line(text):
            error = f"{key} {text!r} cannot be written on one line (no line breaks, no surrounding spaces)"
    if error:
        raise InvalidInputError(f"{where}: {error}")
    return text


def _dialogue_speaker(name: str) -> str:
    plain_ok = (
        ":" not in name and not name.startswith(("#", "[", '"')) and normalize_name(name) not in PANEL_KEYS
    )
    return name if plain_ok else f"[{name}]"


def format_script(story: Story) -> str:
    """Write a story as script text; ``parse_script(format_script(s)) == s``.

    Raises InvalidInputError for a story that the text form cannot hold (a line break in a
    prompt, characters that do not match the prompt's [Name] markers, ...).
    """
    out: list[str] = []
    for key in HEADER_KEYS:
        value = getattr(story, key)
        if value is None or value == "":
            continue
        out.append(f"{key}: {_fmt_value('header', key, value)}")
    if story.panels and KEY_RE.match(story.panels[0].prompt) or (story.panels and story.panels[0].prompt == HEADER_END):
        out.append(HEADER_END)
    for number, panel in enumerate(story.panels, start=1):
        where = f"panel {number}"
        prompt = panel.prompt
        if not prompt or prompt != prompt.strip() or not single_line(prompt) or prompt.startswith("#"):
            raise InvalidInputError(f"{where}: the prompt {prompt!r} must be one line of text, not starting with # or a space")
        chars, problems = bind(prompt, Names(None))
        errors = [m for _, m, w in problems if not w]
        if errors:
            raise InvalidInputError(f"{where}: {errors[0]}")
        if [normalize_name(c) for c in chars] != [normalize_name(c) for c in panel.characters]:
            raise InvalidInputError(
                f"{where}: characters {list(panel.characters)} do not match the [Name] markers of its prompt {prompt!r}"
            )
        if out:
            out.append("")
        out.append(prompt)
        for key in PANEL_KEYS:
            if key == "outfit":
                if panel.outfits:
                    items = []
                    for who, what in panel.outfits:
                        if any(c in who for c in ",=") or any(c in what for c in ",") or not what.strip() or what != what.strip():
                            raise InvalidInputError(f"{where}: outfit {who}={what} cannot be written (no ',' or '=' in names, no ',' in outfits)")
                        items.append(f"{who}={what}")
                    out.append(f"  outfit: {', '.join(items)}")
                continue
            value = getattr(panel, key)
            if value is None:
                continue
            if key in ("caption", "negative", "pose", "style") and value == "":
                raise InvalidInputError(f"{where}: {key} is empty; use None for no {key}")
            out.append(f"  {key}: {_fmt_value(where, key, value)}")
        for line in panel.dialogue:
            name = line.speaker
            if not name or name != name.strip() or "[" in name or "]" in name or not single_line(name):
                raise InvalidInputError(f"{where}: speaker {name!r} cannot be written")
            if not line.text.strip() or not single_line(line.text):
                raise InvalidInputError(f"{where}: dialogue {line.text!r} must be one non-empty line")
            out.append(f'  {_dialogue_speaker(name)}: "{line.text}"')
    return "\n".join(out) + "\n"
