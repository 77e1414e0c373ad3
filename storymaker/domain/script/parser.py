"""The script's line parser: text -> Story, with every error and warning located (``SPEC-script.md``)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterable

from ...errors import InvalidInputError, ScriptError, ScriptIssue
from ..story import Dialogue, Panel, Story
from ..styles import StyleLibrary
from .rules import (
    HEADER_END,
    HEADER_KEYS,
    KEY_RE,
    PANEL_KEYS,
    SMART_QUOTES,
    VALUE_PARSERS,
    Names,
    OutfitLookup,
    PoseLookup,
    bind,
    normalize_name,
    outfit_problem,
    parse_value,
    pose_problem,
    resolve_in_panel,
    single_line,
    slot_order,
)

_WORD_RE = re.compile(r"[^\W\d_][\w-]*")  # a word: a letter, then letters, digits, '_' or '-'


def _quoted(value: str) -> bool:
    """Whether a value opens a quotation (straight or curly): dialogue rather than an attribute."""
    return bool(value) and value[0] in '"' + SMART_QUOTES


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


class _Parser:
    def __init__(self, text: str, characters: Iterable[str] | None, poses: PoseLookup | None,
                 outfits: OutfitLookup | None = None, max_side: int | None = None):
        if text.startswith("\ufeff"):
            text = text[1:]
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.names = Names(characters)
        self.poses = poses
        self.outfits = outfits
        self.max_side = max_side
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
            if lead and self._under_panel(body):
                if self.panel is None:
                    self._issue(lineno, 1, (
                        "indented line before the first panel: header lines (title:, style:, ...) start "
                        "at the beginning of the line; panel attributes go under a panel's prompt line"
                    ))
                else:
                    self._panel_line(lineno, lead, body)
                continue
            # Any other line, indented or not, is a header line or starts a panel.
            if in_header:
                if body == HEADER_END:
                    in_header = False
                    continue
                m = KEY_RE.match(body)
                if m:  # never indented here: an indented `key: value` is under a panel
                    self._header_line(lineno, m, body)
                    continue
                in_header = False
            self._start_panel(lineno, lead, body)
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
        if key in VALUE_PARSERS:
            if not value:
                self._issue(lineno, vcol, f"{key} has no value; write a value or remove the line")
                return
            parsed, error = parse_value(key, value, max_side=self.max_side)
            if error:
                self._issue(lineno, vcol, error)
                return
            self.header[key] = parsed
        else:
            self.header[key] = value
            if key == "style":
                self._style_hint(lineno, vcol, value)

    # panels
    def _under_panel(self, body: str) -> bool:
        """Whether an indented line belongs to the panel above: ``key: value`` (a word, a colon) or
        dialogue (``Name: "text"``, ``[Name]: "text"``). Any other indented line starts a panel, so
        that the indent an editor keeps after Enter does not turn a prompt into an error."""
        if body.startswith("["):
            close = body.find("]")
            return close > 0 and body[close + 1:].lstrip().startswith(":")
        head, colon, value = body.partition(":")
        head = head.strip()
        if not colon or not head or "[" in head or "]" in head:
            return False
        if _WORD_RE.fullmatch(head) or _quoted(value.strip()):
            return True
        return self.names.check and self.names.resolve(head, brackets=False)[0] is not None  # unquoted speech

    def _start_panel(self, lineno: int, lead: int, body: str) -> None:
        self._finish_panel()
        chars, problems = bind(body, self.names)
        for offset, message, warning in problems:
            self._issue(lineno, lead + offset + 1, message, warning=warning)
        m = KEY_RE.match(body)
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
        """An indented line that :meth:`_under_panel` gave to the panel above."""
        p = self.panel
        assert p is not None
        if body.startswith("["):  # [Name]: "text"
            close = body.find("]")
            rest = body[close + 1:].lstrip()[1:]
            value_at = len(body) - len(rest.lstrip())
            self._dialogue(lineno, lead, body[1:close], body[value_at:], lead + value_at + 1, brackets=True)
            return
        colon = body.find(":")
        key_written = body[:colon].strip()
        key = key_written.lower()
        after = body[colon + 1:]
        value = after.strip()
        vcol = lead + colon + 1 + (len(after) - len(after.lstrip())) + 1
        if key in PANEL_KEYS:
            self._attribute(lineno, lead, key, value, vcol)
            return
        if _quoted(value):
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
        if key in VALUE_PARSERS:
            parsed, error = parse_value(key, value, max_side=self.max_side)
            if error:
                self._issue(lineno, vcol, error)
            else:
                p[key] = parsed
        elif key == "outfit":
            self._outfits(lineno, value, vcol)
        elif key == "pose":
            # With a broken [Name] the character count is unknown: only check that the pose exists.
            error = pose_problem(self.poses, value, None if p["bind_failed"] else p["characters"])
            if error:
                self._issue(lineno, vcol, error)
            p["pose"] = value
        else:  # caption, negative, style
            p[key] = value
            if key == "style":
                self._style_hint(lineno, vcol, value)

    def _style_hint(self, lineno: int, col: int, value: str) -> None:
        hint = StyleLibrary.builtin().suggest(value)
        if hint:
            self._issue(lineno, col, (
                f"style {value!r} is not a style name, so it is added to the prompts as free text; {hint}"
            ), warning=True)

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
                name, error = resolve_in_panel(who, p["characters"], self.names)
            if error:
                self._issue(lineno, col, error)
                continue
            if not what:
                self._issue(lineno, col, f"outfit for {name} has no outfit name; write {name}=<outfit>")
                continue
            if any(normalize_name(n) == normalize_name(name) for n, _ in result):
                self._issue(lineno, col, f"{name} has two outfits in this panel; keep one")
                continue
            error = outfit_problem(self.outfits, name, what)
            if error:  # the render would refuse it (whatever the backend: draft refuses it too)
                self._issue(lineno, col + (len(item.strip()) - len(what)), error)
                continue
            result.append((name, what))
        p["outfits"] = slot_order(result, p["characters"])

    def _dialogue(self, lineno: int, lead: int, who: str, value: str, vcol: int, *, brackets: bool) -> None:
        p = self.panel
        ok = True
        speaker, error = self.names.resolve(who, brackets=brackets)
        if error:
            if brackets or self.names.check:
                self._issue(lineno, lead + 1, error)
            ok = False
        if value[:1] in SMART_QUOTES or value[-1:] in SMART_QUOTES:
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
    text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None,
    outfits: OutfitLookup | None = None, max_side: int | None = None,
) -> tuple[Story, tuple[ScriptIssue, ...]]:
    """Parse a script; return the story and its warnings. ScriptError lists every error.

    ``outfits`` (registered name -> its outfit names) and ``max_side`` (the largest panel side the
    app renders) are checked when given, so that what parses is what the render accepts."""
    parser = _Parser(text, characters, poses, outfits, max_side)
    story = parser.run()
    if parser.errors:
        raise ScriptError(parser.errors)
    return story, tuple(parser.warnings)


def parse_script(text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None,
                 outfits: OutfitLookup | None = None, max_side: int | None = None) -> Story:
    """Parse a script (``SPEC-script.md``). ScriptError lists every error with line and column."""
    return parse_script_with_warnings(text, characters, poses=poses, outfits=outfits, max_side=max_side)[0]


def check(text: str, characters: Iterable[str] | None = None, *, poses: PoseLookup | None = None,
          outfits: OutfitLookup | None = None, max_side: int | None = None) -> ScriptReport:
    """Validate a script without raising (for live validation in the editor); the same checks as
    :func:`parse_script`."""
    parser = _Parser(text, characters, poses, outfits, max_side)
    story = parser.run()
    return ScriptReport(
        errors=tuple(parser.errors),
        warnings=tuple(parser.warnings),
        story=None if parser.errors else story,
    )


def with_header_value(text: str, key: str, value: str) -> str:
    """``text`` with its header's ``key: value`` line set (the editor's style menu): replaced where it
    is, else added after the last header line; every other line, comments included, is kept."""
    if key not in HEADER_KEYS:
        raise InvalidInputError(f"{key!r} is not a header key; known: {', '.join(HEADER_KEYS)}")
    if not single_line(value) or not value.strip():
        raise InvalidInputError(f"{key} must be one line of text, not {value!r}")
    lines = text.split("\n")
    insert_at = 0
    for index, raw in enumerate(lines):
        body = raw.strip()
        if not body or body.startswith("#"):
            continue
        match = KEY_RE.match(body)
        if raw[:1].isspace() or body == HEADER_END or not match:
            break  # the header ends here
        if match.group(1).lower() == key:
            lines[index] = f"{key}: {value.strip()}"
            return "\n".join(lines)
        insert_at = index + 1
    lines.insert(insert_at, f"{key}: {value.strip()}")
    return "\n".join(lines)


def panel_warnings(panel: Panel, *, poses: PoseLookup | None = None) -> tuple[str, ...]:
    """Problems of one panel object (character count, pose fit) as messages, without raising."""
    out: list[str] = []
    _, problems = bind(panel.prompt, Names(None))
    out.extend(message for _, message, _ in problems)
    if panel.pose is not None:
        error = pose_problem(poses, panel.pose, panel.characters)
        if error:
            out.append(error)
    return tuple(out)
