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
    story_to_json(story) -> str / story_to_yaml(story) -> str

``characters`` are the registered names (``None``: do not check registration, keep names as
written). ``poses`` tells how many people a named pose has: a callable returning ``int | None``
(None = unknown pose) or a mapping name -> count (which also gives "did you mean" suggestions).

Format details beyond the spec (the escape rules):
- dialogue text is everything between the first and the last double quote of the line, so quotes
  inside need no escaping; it cannot contain a line break;
- ``[Name]: "text"`` is also dialogue (needed when a name equals an attribute key, e.g. "Pose",
  or contains a colon);
- a line ``---`` ends the header early (needed when the first panel's prompt looks like ``key: value``);
- a prompt, caption or other value cannot start with ``#`` when it starts a line (that is a comment).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

from ..errors import InvalidInputError, ScriptError, ScriptIssue
from .story import Dialogue, Panel, Story

PoseLookup = Union[Callable[[str], "int | None"], Mapping[str, int]]

MAX_CHARACTERS = 3
TRAINED_CHARACTERS = 2
HEADER_KEYS = ("title", "style", "negative", "size", "seed", "steps", "guidance")
PANEL_KEYS = ("pose", "caption", "seed", "size", "outfit", "steps", "guidance", "negative")
MAX_SEED = 2**32 - 1
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_SIDE = 8192
HEADER_END = "---"
SCRIPT_SUFFIXES = (".txt", ".story")
YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)

_KEY_RE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)[ \t]*:")
_SIZE_RE = re.compile(r"(\d+)\s*[xX\u00d7]\s*(\d+)")
_INT_RE = re.compile(r"[+]?\d+")
_SMART_QUOTES = "\u201c\u201d\u201e\u00ab\u00bb"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Names, markers, poses: shared by the text and the data forms
# --------------------------------------------------------------------------------------------
def normalize_name(name: str) -> str:
    """The key names are matched by: case-folded, surrounding spaces removed, inner runs collapsed."""
    return " ".join(name.split()).casefold()


def _quote_list(items: Iterable[str], left: str = "", right: str = "") -> str:
    return ", ".join(f"{left}{i}{right}" for i in items)


class _Names:
    """Resolves names against the registered characters (or accepts any name if there are none)."""

    def __init__(self, characters: Iterable[str] | None):
        self.check = characters is not None
        self.canonical: dict[str, str] = {}
        if characters is not None:
            for name in characters:
                self.canonical.setdefault(normalize_name(name), name)

    def resolve(self, written: str, *, brackets: bool = True) -> tuple[str | None, str | None]:
        """``(name to store, None)`` or ``(None, error message)``."""
        name = written.strip()
        shown = f"[{name}]" if brackets else name
        if not name:
            return None, "empty [] : write a character name inside the brackets, e.g. [Mara]"
        if not self.check:
            return name, None
        hit = self.canonical.get(normalize_name(name))
        if hit is not None:
            return hit, None
        if not self.canonical:
            return None, (
                f"{shown} is not a registered character; no characters are registered yet: "
                "register one (Characters tab or `python -m storymaker characters add`) first"
            )
        close = difflib.get_close_matches(normalize_name(name), list(self.canonical), n=1, cutoff=0.6)
        if close:
            best = self.canonical[close[0]]
            return None, f"{shown} is not a registered character; did you mean {f'[{best}]' if brackets else best}?"
        return None, (
            f"{shown} is not a registered character; registered: "
            f"{_quote_list(self.canonical.values())} (register it first or fix the spelling)"
        )


def scan_markers(prompt: str) -> tuple[list[tuple[str, int]], list[tuple[int, str]]]:
    """``[Name]`` markers in a prompt as ``(inner text, offset of '[')`` plus bracket problems."""
    markers: list[tuple[str, int]] = []
    problems: list[tuple[int, str]] = []
    i = 0
    while i < len(prompt):
        ch = prompt[i]
        if ch == "]":
            problems.append((i, "']' without a matching '[': character names are written [Name]"))
            i += 1
        elif ch == "[":
            close = prompt.find("]", i + 1)
            nested = prompt.find("[", i + 1)
            if close < 0:
                problems.append((i, "'[' is never closed: write the character as [Name]"))
                break
            if 0 <= nested < close:
                problems.append((i, "'[' is never closed before the next '[': write the character as [Name]"))
                i = nested
                continue
            markers.append((prompt[i + 1:close], i))
            i = close + 1
        else:
            i += 1
    return markers, problems


def _bind(prompt: str, names: _Names) -> tuple[tuple[str, ...], list[tuple[int, str, bool]]]:
    """Characters in slot order and ``(offset, message, is_warning)`` problems of one prompt."""
    markers, bracket_problems = scan_markers(prompt)
    problems: list[tuple[int, str, bool]] = [(o, m, False) for o, m in bracket_problems]
    bound: dict[str, str] = {}
    extra_at: int | None = None
    for inner, offset in markers:
        name, error = names.resolve(inner)
        if error:
            problems.append((offset, error, False))
            continue
        key = normalize_name(name)
        if key not in bound:
            bound[key] = name
            if len(bound) == MAX_CHARACTERS + 1:
                extra_at = offset
    chars = tuple(bound.values())
    if len(chars) > MAX_CHARACTERS:
        problems.append((extra_at or 0, (
            f"{len(chars)} characters in one panel ({_quote_list(chars, '[', ']')}); the model has "
            f"{MAX_CHARACTERS} character slots: split the panel or leave someone out"
        ), False))
    elif len(chars) == MAX_CHARACTERS:
        problems.append((0, (
            f"{MAX_CHARACTERS} characters in one panel: allowed, but the model was trained on 1-"
            f"{TRAINED_CHARACTERS}, so likeness may be weaker; consider splitting the panel"
        ), True))
    return chars, problems


def _pose_count(poses: PoseLookup, name: str) -> int | None:
    if isinstance(poses, Mapping):
        if name in poses:
            return int(poses[name])
        key = name.casefold()
        for other, count in poses.items():
            if other.casefold() == key:
                return int(count)
        return None
    count = poses(name)
    return None if count is None else int(count)


def _pose_problem(poses: PoseLookup | None, pose: str, chars: tuple[str, ...] | None) -> str | None:
    if poses is None:
        return None
    count = _pose_count(poses, pose)
    if count is None:
        hint = "choose one from the pose library or save it in the project first"
        if isinstance(poses, Mapping):
            close = difflib.get_close_matches(pose, [str(k) for k in poses], n=1, cutoff=0.6)
            if close:
                hint = f"did you mean {close[0]!r}?"
        return f"unknown pose {pose!r}; {hint}"
    if chars is not None and count != len(chars):
        people = f"{count} {'person' if count == 1 else 'people'}"
        has = (f"{len(chars)} character{'s' if len(chars) != 1 else ''} "
               f"({_quote_list(chars, '[', ']')})" if chars else "no [Name] characters")
        return (f"pose {pose!r} has {people} but the panel has {has}; choose a pose with "
                f"{len(chars)} {'person' if len(chars) == 1 else 'people'} or change the characters")
    return None


def _resolve_in_panel(written: str, chars: tuple[str, ...], names: _Names) -> tuple[str | None, str | None]:
    """A name used by an outfit: registered (if checked) and present in the panel."""
    name, error = names.resolve(written, brackets=False)
    if error:
        return None, error
    for c in chars:
        if normalize_name(c) == normalize_name(name):
            return c, None
    present = f"it has {_quote_list(chars, '[', ']')}" if chars else "it has no [Name] characters"
    return None, f"outfit for {name}, who is not in this panel ({present}); add [{name}] to the prompt or remove the outfit"


def _slot_order(outfits: list[tuple[str, str]], chars: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Outfits are a mapping: keep them in character-slot order so that every form agrees."""
    slots = {normalize_name(c): i for i, c in enumerate(chars)}
    return tuple(sorted(outfits, key=lambda item: slots.get(normalize_name(item[0]), len(slots))))


def _single_line(value: str) -> bool:
    return "\n" not in value and "\r" not in value


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
def _parse_size(value: str) -> tuple[tuple[int, int] | None, str | None]:
    m = _SIZE_RE.fullmatch(value.strip())
    if not m:
        return None, f"size {value!r} is not WIDTHxHEIGHT; write e.g. size: 960x1280"
    w, h = int(m.group(1)), int(m.group(2))
    if w <= 0 or h <= 0 or w % 8 or h % 8:
        return None, f"size {w}x{h}: width and height must be positive multiples of 8 (e.g. {max(8, w // 8 * 8)}x{max(8, h // 8 * 8)})"
    if w > MAX_SIDE or h > MAX_SIDE:
        return None, f"size {w}x{h} is too large: at most {MAX_SIDE} pixels a side"
    return (w, h), None


def _parse_int(key: str, value: str, low: int, high: int) -> tuple[int | None, str | None]:
    v = value.strip()
    if not _INT_RE.fullmatch(v):
        return None, f"{key} {value!r} is not a whole number; write e.g. {key}: {_EXAMPLES[key]}"
    n = int(v)
    if not low <= n <= high:
        return None, f"{key} {n} is out of range: use {low} to {high}"
    return n, None


def _parse_float(key: str, value: str, low: float, high: float) -> tuple[float | None, str | None]:
    try:
        x = float(value.strip())
    except ValueError:
        return None, f"{key} {value!r} is not a number; write e.g. {key}: 7.5"
    if not math.isfinite(x) or not low <= x <= high:
        return None, f"{key} {value.strip()} is out of range: use {low:g} to {high:g}"
    return x, None


_EXAMPLES = {"seed": 1234, "steps": 25}

_VALUE_PARSERS: dict[str, Callable[[str], tuple[Any, str | None]]] = {
    "size": _parse_size,
    "seed": lambda v: _parse_int("seed", v, 0, MAX_SEED),
    "steps": lambda v: _parse_int("steps", v, 1, MAX_STEPS),
    "guidance": lambda v: _parse_float("guidance", v, 0.0, MAX_GUIDANCE),
}


class _Parser:
    def __init__(self, text: str, characters: Iterable[str] | None, poses: PoseLookup | None):
        if text.startswith("\ufeff"):
            text = text[1:]
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.names = _Names(characters)
        self.poses = poses
        self.errors: list[ScriptIssue] = []
        self.warnings: list[ScriptIssue] = []
        self.header: dict[str, Any] = {}
        self.header_lines: dict[str, int] = {}
        self.panels: list[Panel] = []
        self.panel: dict[str, Any] | None = None

    # issue helpers
    def _issue(self, lineno: int, col: int, message: str, *, warning: bool = False) -> None:
        raw = self.lines[lineno - 1]
        issue = ScriptIssue(lineno, max(1, col), message, raw.strip())
        (self.warnings if warning else self.errors).append(issue)

    def run(self) -> Story:
        in_header = True
        for lineno, raw in enumerate(self.lines, start=1):
            line = raw.rstrip()
            body = line.lstrip()
            if not body or body.startswith("#"):
                continue
            lead = len(line) - len(body)
            if lead == 0:
                if in_header:
                    if body == HEADER_END:
                        in_header = False
                        continue
                    m = _KEY_RE.match(body)
                    if m:
                        self._header_line(lineno, m, body)
                        continue
                    in_header = False
                self._start_panel(lineno, body)
            elif self.panel is None:
                self._issue(lineno, 1, (
                    "indented line before the first panel: header lines (title:, style:, ...) start "
                    "at the beginning of the line; panel attributes go under a panel's prompt line"
                ))
            else:
                self._panel_line(lineno, lead, body)
        self._finish_panel()
        return Story(panels=tuple(self.panels), **self.header)

    # header
    def _header_line(self, lineno: int, m: re.Match, body: str) -> None:
        key = m.group(1).lower()
        value = body[m.end():].strip()
        vcol = m.end() + (len(body[m.end():]) - len(body[m.end():].lstrip())) + 1
        if key not in HEADER_KEYS:
            if key in PANEL_KEYS:
                msg = f"{key!r} is a panel attribute: indent it under a panel's prompt line"
            else:
                close = difflib.get_close_matches(key, HEADER_KEYS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                msg = (f"unknown header key {m.group(1)!r}; {hint}known keys: {', '.join(HEADER_KEYS)}. "
                       f"If this line is the first panel's prompt, put a line {HEADER_END} above it")
            self._issue(lineno, 1, msg)
            return
        if key in self.header_lines:
            self._issue(lineno, 1, f"{key} is set twice (first on line {self.header_lines[key]}); keep one")
            return
        self.header_lines[key] = lineno
        if key in _VALUE_PARSERS:
            if not value:
                self._issue(lineno, vcol, f"{key} has no value; write a value or remove the line")
                return
            parsed, error = _VALUE_PARSERS[key](value)
            if error:
                self._issue(lineno, vcol, error)
                return
            self.header[key] = parsed
        else:
            self.header[key] = value

    # panels
    def _start_panel(self, lineno: int, body: str) -> None:
        self._finish_panel()
        chars, problems = _bind(body, self.names)
        for offset, message, warning in problems:
            self._issue(lineno, offset + 1, message, warning=warning)
        m = _KEY_RE.match(body)
        if m and m.group(1).lower() in PANEL_KEYS + HEADER_KEYS:
            self._issue(lineno, 1, (
                f"this unindented line starts a new panel with the prompt {body!r}; to set the panel's "
                f"{m.group(1).lower()}, indent the line"
            ), warning=True)
        self.panel = {"prompt": body, "characters": chars, "line": lineno, "seen": {},
                      "dialogue": [], "outfits": (),
                      "bind_failed": any(not warning for _, _, warning in problems)}

    def _finish_panel(self) -> None:
        p = self.panel
        if p is None:
            return
        self.panel = None
        del p["seen"], p["bind_failed"]
        p["dialogue"] = tuple(p["dialogue"])
        self.panels.append(Panel(**p))

    def _panel_line(self, lineno: int, lead: int, body: str) -> None:
        p = self.panel
        assert p is not None
        if body.startswith("["):
            close = body.find("]")
            rest = body[close + 1:].lstrip() if close > 0 else ""
            if close > 0 and rest.startswith(":"):
                value_at = len(body) - len(rest[1:].lstrip())
                self._dialogue(lineno, lead, body[1:close], body[value_at:], lead + value_at + 1, brackets=True)
                return
            self._issue(lineno, lead + 1, (
                "a line under a panel must be 'key: value' or dialogue 'Name: \"text\"'; "
                "to start a new panel, write the prompt at the beginning of the line"
            ))
            return
        colon = body.find(":")
        if colon <= 0:
            self._issue(lineno, lead + 1, (
                "a line under a panel must be 'key: value' or dialogue 'Name: \"text\"'; "
                "to start a new panel, write the prompt at the beginning of the line (no indent)"
            ))
            return
        key_written = body[:colon].strip()
        key = key_written.lower()
        after = body[colon + 1:]
        value = after.strip()
        vcol = lead + colon + 1 + (len(after) - len(after.lstrip())) + 1
        if key in PANEL_KEYS:
            self._attribute(lineno, lead, key, value, vcol)
            return
        if value[:1] == '"' or value[:1] in _SMART_QUOTES:
            self._dialogue(lineno, lead, key_written, value, vcol, brackets=False)
            return
        close = difflib.get_close_matches(key, PANEL_KEYS, n=1)
        speaker, _ = self.names.resolve(key_written, brackets=False)
        looks_like_speech = speaker is not None if self.names.check else not close
        if looks_like_speech:
            msg = f"dialogue must be in double quotes: {key_written}: \"{value}\""
        else:
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = (f"unknown panel attribute {key_written!r}; {hint}known: {', '.join(PANEL_KEYS)}; "
                   f"dialogue is written Name: \"text\"")
        self._issue(lineno, lead + 1, msg)

    def _attribute(self, lineno: int, lead: int, key: str, value: str, vcol: int) -> None:
        p = self.panel
        seen = p["seen"]
        if key in seen:
            self._issue(lineno, lead + 1, f"{key} is set twice for this panel (first on line {seen[key]}); keep one")
            return
        seen[key] = lineno
        if not value:
            self._issue(lineno, vcol, f"{key} has no value; write a value or remove the line")
            return
        if key in _VALUE_PARSERS:
            parsed, error = _VALUE_PARSERS[key](value)
            if error:
                self._issue(lineno, vcol, error)
            else:
                p[key] = parsed
        elif key == "outfit":
            self._outfits(lineno, value, vcol)
        elif key == "pose":
            # With a broken [Name] the character count is unknown: only check that the pose exists.
            error = _pose_problem(self.poses, value, None if p["bind_failed"] else p["characters"])
            if error:
                self._issue(lineno, vcol, error)
            p["pose"] = value
        else:  # caption, negative
            p[key] = value

    def _outfits(self, lineno: int, value: str, vcol: int) -> None:
        p = self.panel
        result: list[tuple[str, str]] = []
        pos = 0
        for item in value.split(","):
            col = vcol + pos + (len(item) - len(item.lstrip()))
            pos += len(item) + 1
            if "=" not in item:
                self._issue(lineno, col, f"outfit {item.strip()!r} is not Name=outfit; write e.g. outfit: Theo=raincoat")
                continue
            who, _, what = item.partition("=")
            what = what.strip()
            if p["bind_failed"]:
                name, error = self.names.resolve(who, brackets=False)
            else:
                name, error = _resolve_in_panel(who, p["characters"], self.names)
            if error:
                self._issue(lineno, col, error)
                continue
            if not what:
                self._issue(lineno, col, f"outfit for {name} has no outfit name; write {name}=<outfit>")
                continue
            if any(normalize_name(n) == normalize_name(name) for n, _ in result):
                self._issue(lineno, col, f"{name} has two outfits in this panel; keep one")
                continue
            result.append((name, what))
        p["outfits"] = _slot_order(result, p["characters"])

    def _dialogue(self, lineno: int, lead: int, who: str, value: str, vcol: int, *, brackets: bool) -> None:
        p = self.panel
        ok = True
        speaker, error = self.names.resolve(who, brackets=brackets)
        if error:
            if brackets or self.names.check:
                self._issue(lineno, lead + 1, error)
            ok = False
        if value[:1] in _SMART_QUOTES or value[-1:] in _SMART_QUOTES:
            self._issue(lineno, vcol, "dialogue uses curly quotes; write it in straight double quotes: Name: \"text\"")
            return
        if len(value) < 2 or not value.endswith('"'):
            self._issue(lineno, vcol + len(value), "dialogue has no closing double quote; end the line with \"")
            return
        text = value[1:-1]
        if not text.strip():
            self._issue(lineno, vcol, "dialogue is empty; write the words between the quotes or remove the line")
            return
        if ok:
            p["dialogue"].append(Dialogue(speaker=speaker, text=text))


def parse_script_with_warnings(
    text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None
) -> tuple[Story, tuple[ScriptIssue, ...]]:
    """Parse a script; return the story and its warnings. ScriptError lists every error."""
    parser = _Parser(text, characters, poses)
    story = parser.run()
    if parser.errors:
        raise ScriptError(parser.errors)
    return story, tuple(parser.warnings)


def parse_script(text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None) -> Story:
    """Parse a script (``SPEC-script.md``). ScriptError lists every error with line and column."""
    return parse_script_with_warnings(text, characters, poses=poses)[0]


def check(text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None) -> ScriptReport:
    """Validate a script without raising (for live validation in the editor)."""
    parser = _Parser(text, characters, poses)
    story = parser.run()
    return ScriptReport(
        errors=tuple(parser.errors),
        warnings=tuple(parser.warnings),
        story=None if parser.errors else story,
    )


def panel_warnings(panel: Panel, *, poses: PoseLookup | None = None) -> tuple[str, ...]:
    """Problems of one panel object (character count, pose fit) as messages, without raising."""
    out: list[str] = []
    _, problems = _bind(panel.prompt, _Names(None))
    out.extend(message for _, message, _ in problems)
    if panel.pose is not None:
        error = _pose_problem(poses, panel.pose, panel.characters)
        if error:
            out.append(error)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------
def _fmt_float(x: float) -> str:
    return repr(float(x))


def _fmt_value(where: str, key: str, value: Any) -> str:
    if key == "size":
        w, h = value
        text = f"{int(w)}x{int(h)}"
        _, error = _parse_size(text)
    elif key in ("seed", "steps"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{where}: {key} must be a whole number, not {value!r}")
        text = str(value)
        _, error = _VALUE_PARSERS[key](text)
    elif key == "guidance":
        text = _fmt_float(value)
        _, error = _VALUE_PARSERS[key](text)
    else:
        text = str(value)
        error = None
        if text != text.strip() or not _single_line(text):
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
    if story.panels and _KEY_RE.match(story.panels[0].prompt) or (story.panels and story.panels[0].prompt == HEADER_END):
        out.append(HEADER_END)
    for number, panel in enumerate(story.panels, start=1):
        where = f"panel {number}"
        prompt = panel.prompt
        if not prompt or prompt != prompt.strip() or not _single_line(prompt) or prompt.startswith("#"):
            raise InvalidInputError(f"{where}: the prompt {prompt!r} must be one line of text, not starting with # or a space")
        chars, problems = _bind(prompt, _Names(None))
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
            if key in ("caption", "negative", "pose") and value == "":
                raise InvalidInputError(f"{where}: {key} is empty; use None for no {key}")
            out.append(f"  {key}: {_fmt_value(where, key, value)}")
        for line in panel.dialogue:
            name = line.speaker
            if not name or name != name.strip() or "[" in name or "]" in name or not _single_line(name):
                raise InvalidInputError(f"{where}: speaker {name!r} cannot be written")
            if not line.text.strip() or not _single_line(line.text):
                raise InvalidInputError(f"{where}: dialogue {line.text!r} must be one non-empty line")
            out.append(f'  {_dialogue_speaker(name)}: "{line.text}"')
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Text for the model
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# YAML / JSON form: one schema
# --------------------------------------------------------------------------------------------
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
    data: Any, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None, source: str = ""
) -> Story:
    """Build a Story from YAML/JSON data validated against :data:`STORY_SCHEMA`.

    The script's rules apply too ([Name] binding and registration, character limit, pose fit,
    outfits of characters in the panel, one-line texts). StoryDataError lists every problem with
    its JSON path (``$.panels[2].prompt``).
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(STORY_SCHEMA)
    schema_errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if schema_errors:
        raise StoryDataError([(_json_path(e.absolute_path), e.message) for e in schema_errors], source)
    names = _Names(characters)
    problems: list[tuple[str, str]] = []

    def text(path: str, value: str | None, *, strip: bool = True, hashed: bool = False) -> str | None:
        if value is None:
            return None
        if not _single_line(value):
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
    if data.get("size") is not None:
        header["size"] = tuple(data["size"])
    panels = []
    for i, raw in enumerate(data.get("panels", [])):
        at = f"$.panels[{i}]"
        prompt = text(f"{at}.prompt", raw["prompt"], hashed=True)
        if not prompt:
            problems.append((f"{at}.prompt", "is empty; describe the panel"))
        chars, bind_problems = _bind(prompt, names)
        problems.extend((f"{at}.prompt", m) for _, m, warning in bind_problems if not warning)
        bind_failed = any(not w for _, _, w in bind_problems)
        pose = text(f"{at}.pose", raw.get("pose"))
        if pose is not None:
            error = _pose_problem(poses, pose, None if bind_failed else chars)
            if error:
                problems.append((f"{at}.pose", error))
        outfits = []
        for who, what in raw.get("outfits", {}).items():
            path = f"{at}.outfits.{who}"
            if bind_failed:
                name, error = names.resolve(who, brackets=False)
            else:
                name, error = _resolve_in_panel(who, chars, names)
            if error:
                problems.append((path, error))
                continue
            if any(c in who for c in ",=") or "," in what or not what.strip():
                problems.append((path, "outfit names cannot contain ',' (nor '=' in character names)"))
                continue
            outfits.append((name, what.strip()))
        outfits = _slot_order(outfits, chars)
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
            size=tuple(raw["size"]) if raw.get("size") is not None else None,
            outfits=tuple(outfits),
            steps=raw.get("steps"),
            guidance=float(raw["guidance"]) if raw.get("guidance") is not None else None,
            negative=text(f"{at}.negative", raw.get("negative")),
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
        for key in ("steps", "guidance", "negative"):
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
    path: str | Path, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None
) -> Story:
    """Read a story from a script (.txt/.story), YAML (.yaml/.yml) or JSON (.json) file."""
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
        return parse_script(raw, characters, poses=poses)
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
    return story_from_data(data, characters, poses=poses, source=str(path))


def save_story(story: Story, path: str | Path) -> Path:
    """Write a story atomically in the form its extension names; returns the path."""
    from ..fsutil import atomic_write_text

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
