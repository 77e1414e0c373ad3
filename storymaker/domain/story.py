"""The Story model: what a script (``SPEC-script.md``) means, independent of its text form."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Dialogue:
    """A speech bubble: ``speaker`` is a registered character's name."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Panel:
    """One panel. ``prompt`` keeps ``[Name]`` markers as written; ``characters`` are the bound
    names in slot order (first appearance)."""

    prompt: str
    characters: tuple[str, ...] = ()
    pose: str | None = None
    caption: str | None = None
    seed: int | None = None
    size: tuple[int, int] | None = None  # (width, height)
    outfits: tuple[tuple[str, str], ...] = ()  # (character name, outfit name)
    steps: int | None = None
    guidance: float | None = None
    negative: str | None = None
    style: str | None = None  # replaces the story's style: a library style name or free text
    dialogue: tuple[Dialogue, ...] = ()
    line: int = field(default=0, compare=False)  # 1-based line in the script, 0 if unknown


@dataclass(frozen=True)
class Story:
    """A story; ``style`` is a style library name (``assets/styles``) or free text added to prompts."""

    title: str = ""
    style: str = ""
    negative: str = ""
    size: tuple[int, int] | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    panels: tuple[Panel, ...] = ()
