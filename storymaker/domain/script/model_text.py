"""The text sent to the model for a panel: ``[Name]`` markers replaced, the style applied.

A panel's style is its own ``style:`` if it has one, else the story's. A value that names a style
of the library (``assets/styles``) puts the panel's text into the style's template and adds the
style's negative prompt; any other value is free text added at the end of the prompt.
"""

from __future__ import annotations

import re
from typing import Mapping

from ..story import Panel, Story
from ..styles import Style, StyleLibrary
from .rules import normalize_name

_MARKER_RE = re.compile(r"\[([^\[\]]*)\]")


def style_for_panel(panel: Panel, story: Story, styles: StyleLibrary | None = None) -> tuple[Style | None, str]:
    """``(library style or None, the style as written)`` for a panel: its own, else the story's."""
    written = (panel.style if panel.style is not None else story.style).strip()
    if not written:
        return None, ""
    return (styles or StyleLibrary.builtin()).find(written), written


def prompt_for_model(
    panel: Panel, story: Story, nouns: Mapping[str, str], styles: StyleLibrary | None = None
) -> str:
    """The panel prompt with each ``[Name]`` replaced by its noun ("a person" if none), in the
    style's template (a library style) or followed by the style text (free text)."""
    by_key = {normalize_name(k): v.strip() for k, v in nouns.items() if v and v.strip()}

    def noun(m: re.Match) -> str:
        return by_key.get(normalize_name(m.group(1)), "a person")

    text = " ".join(_MARKER_RE.sub(noun, panel.prompt).split())
    style, written = style_for_panel(panel, story, styles)
    if style is not None:
        return style.apply(text)
    return f"{text}, {written}" if written else text


def negative_for_model(panel: Panel, story: Story, default: str = "", styles: StyleLibrary | None = None) -> str:
    """The story's negative prompt (or ``default`` if it has none), the library style's, the panel's."""
    style, _ = style_for_panel(panel, story, styles)
    parts = [story.negative.strip() or default.strip(), style.negative if style else "", (panel.negative or "").strip()]
    return ", ".join(p for p in parts if p)
