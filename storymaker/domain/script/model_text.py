"""The text sent to the model for a panel: ``[Name]`` markers replaced, the style applied."""

from __future__ import annotations

import re
from typing import Mapping

from ..story import Panel, Story
from .rules import normalize_name

_MARKER_RE = re.compile(r"\[([^\[\]]*)\]")


def prompt_for_model(panel: Panel, story: Story, nouns: Mapping[str, str]) -> str:
    """The panel prompt with each ``[Name]`` replaced by its noun ("a person" if none), plus the style."""
    by_key = {normalize_name(k): v.strip() for k, v in nouns.items() if v and v.strip()}

    def noun(m: re.Match) -> str:
        return by_key.get(normalize_name(m.group(1)), "a person")

    text = " ".join(_MARKER_RE.sub(noun, panel.prompt).split())
    style = story.style.strip()
    return f"{text}, {style}" if style else text


def negative_for_model(panel: Panel, story: Story, default: str = "") -> str:
    """The story's negative prompt (or ``default`` if it has none) joined with the panel's."""
    parts = [story.negative.strip() or default.strip(), (panel.negative or "").strip()]
    return ", ".join(p for p in parts if p)
