"""The story script (``SPEC-script.md``): parse, check and format text; the YAML/JSON form.

Public API::

    parse_script(text, characters=None, *, poses=None) -> Story          # ScriptError with all issues
    parse_script_with_warnings(text, characters=None, *, poses=None) -> tuple[Story, tuple[ScriptIssue, ...]]
    check(text, characters=None, *, poses=None) -> ScriptReport        # never raises (live validation)
    panel_warnings(panel, *, poses=None) -> tuple[str, ...]
    format_script(story) -> str                                         # parse(format(s)) == s
    prompt_for_model(panel, story, nouns) -> str
    negative_for_model(panel, story, default="") -> str
    story_from_data(data, characters=None, *, poses=None) -> Story      # StoryDataError with JSON paths
    story_to_data(story) -> dict
    load_story(path, characters=None, *, poses=None) -> Story           # .txt/.story, .yaml/.yml, .json
    save_story(story, path) -> Path

``characters`` are the registered names (``None``: do not check registration, keep names as
written). ``poses`` tells how many people a named pose has: a callable returning ``int | None``
(None = unknown pose) or a mapping name -> count (which also gives "did you mean" suggestions).

Format details beyond the spec (the escape rules):
- dialogue text is everything between the first and the last double quote of the line, so quotes
  inside need no escaping; it cannot contain a line break;
- ``[Name]: "text"`` is also dialogue (needed when a name equals an attribute key, e.g. "Pose");
- a line ``---`` ends the header early (needed when the first panel's prompt looks like ``key: value``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Union

from ..errors import InvalidInputError, ScriptIssue
from .story import Panel, Story

PoseLookup = Union[Callable[[str], "int | None"], Mapping[str, int]]

MAX_CHARACTERS = 3


@dataclass(frozen=True)
class ScriptReport:
    """What :func:`check` found: ``story`` is None when there are errors."""

    errors: tuple[ScriptIssue, ...] = ()
    warnings: tuple[ScriptIssue, ...] = ()
    story: Story | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class StoryDataError(InvalidInputError):
    """A YAML/JSON story does not match the schema; ``problems`` are ``(json_path, message)``."""

    def __init__(self, problems: Iterable[tuple[str, str]], source: str = ""):
        self.problems = tuple(problems)
        where = f" in {source}" if source else ""
        count = len(self.problems)
        head = f"The story data{where} has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"{p}: {m}" for p, m in self.problems)]))


def parse_script(text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None) -> Story:
    raise NotImplementedError


def parse_script_with_warnings(
    text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None
) -> tuple[Story, tuple[ScriptIssue, ...]]:
    raise NotImplementedError


def check(text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None) -> ScriptReport:
    raise NotImplementedError


def panel_warnings(panel: Panel, *, poses: PoseLookup | None = None) -> tuple[str, ...]:
    raise NotImplementedError


def format_script(story: Story) -> str:
    raise NotImplementedError


def prompt_for_model(panel: Panel, story: Story, nouns: Mapping[str, str]) -> str:
    raise NotImplementedError


def negative_for_model(panel: Panel, story: Story, default: str = "") -> str:
    raise NotImplementedError


def story_from_data(data: Mapping, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None) -> Story:
    raise NotImplementedError


def story_to_data(story: Story) -> dict:
    raise NotImplementedError


def load_story(path, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None) -> Story:
    raise NotImplementedError


def save_story(story: Story, path):
    raise NotImplementedError
