"""What the text and the data forms of a story share: limits, names, ``[Name]`` markers, poses, values.

Internal to :mod:`storymaker.domain.script`; the public names are re-exported there.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from typing import Any, Callable, Iterable, Mapping, Union

PoseLookup = Union[Callable[[str], "int | None"], Mapping[str, int]]
OutfitLookup = Mapping[str, Iterable[str]]  # registered character name -> the names of its outfits

MAX_CHARACTERS = 3
TRAINED_CHARACTERS = 2
HEADER_KEYS = ("title", "style", "negative", "size", "seed", "steps", "guidance")
PANEL_KEYS = ("pose", "caption", "seed", "size", "outfit", "steps", "guidance", "negative", "style")
MAX_SEED = 2**32 - 1
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_SIDE = 8192
HEADER_END = "---"

KEY_RE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)[ \t]*:")
_SIZE_RE = re.compile(r"(\d+)\s*[xX\u00d7]\s*(\d+)")
_INT_RE = re.compile(r"[+-]?\d+")  # a sign is read, so "-5" is out of range, not "not a number"
SMART_QUOTES = "\u201c\u201d\u201e\u00ab\u00bb"


# --------------------------------------------------------------------------------------------
# Names, markers, poses: shared by the text and the data forms
# --------------------------------------------------------------------------------------------
def normalize_name(name: str) -> str:
    """The key names are matched by: case-folded, surrounding spaces removed, inner runs collapsed."""
    return " ".join(name.split()).casefold()


def quote_list(items: Iterable[str], left: str = "", right: str = "") -> str:
    return ", ".join(f"{left}{i}{right}" for i in items)


class Names:
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
        best = self.suggest(name)
        if best is not None:
            return None, f"{shown} is not a registered character; did you mean {f'[{best}]' if brackets else best}?"
        return None, (
            f"{shown} is not a registered character; registered: "
            f"{quote_list(self.canonical.values())} (register it first or fix the spelling)"
        )

    def suggest(self, written: str) -> str | None:
        """The registered name closest to an unregistered ``written`` one (a likely misspelling)."""
        close = difflib.get_close_matches(normalize_name(written), list(self.canonical), n=1, cutoff=0.6)
        return self.canonical[close[0]] if close else None


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


def bind(prompt: str, names: Names) -> tuple[tuple[str, ...], list[tuple[int, str, bool]]]:
    """Characters in slot order and ``(offset, message, is_warning)`` problems of one prompt."""
    markers, bracket_problems = scan_markers(prompt)
    problems: list[tuple[int, str, bool]] = [(o, m, False) for o, m in bracket_problems]
    bound: dict[str, str] = {}
    # Everyone the prompt names, unregistered names included (a misspelt one as the name it is
    # closest to): registering [Nobody] must not turn a panel that was "fine" into one too many.
    named: dict[str, str] = {}
    extra_at: int | None = None
    for inner, offset in markers:
        name, error = names.resolve(inner)
        if error:
            problems.append((offset, error, False))
            if not inner.strip():
                continue
            likely = names.suggest(inner)
            key, shown = normalize_name(likely or inner), likely or inner.strip()
        else:
            key, shown = normalize_name(name), name
            bound.setdefault(key, name)
        if key not in named:
            named[key] = shown
            if len(named) == MAX_CHARACTERS + 1:
                extra_at = offset
    chars = tuple(bound.values())
    if len(named) > MAX_CHARACTERS:
        problems.append((extra_at or 0, (
            f"{len(named)} characters in one panel ({quote_list(named.values(), '[', ']')}); the model has "
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


def pose_problem(poses: PoseLookup | None, pose: str, chars: tuple[str, ...] | None) -> str | None:
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
               f"({quote_list(chars, '[', ']')})" if chars else "no [Name] characters")
        return (f"pose {pose!r} has {people} but the panel has {has}; choose a pose with "
                f"{len(chars)} {'person' if len(chars) == 1 else 'people'} or change the characters")
    return None


def resolve_in_panel(written: str, chars: tuple[str, ...], names: Names) -> tuple[str | None, str | None]:
    """A name used by an outfit: registered (if checked) and present in the panel."""
    name, error = names.resolve(written, brackets=False)
    if error:
        return None, error
    for c in chars:
        if normalize_name(c) == normalize_name(name):
            return c, None
    present = f"it has {quote_list(chars, '[', ']')}" if chars else "it has no [Name] characters"
    return None, f"outfit for {name}, who is not in this panel ({present}); add [{name}] to the prompt or remove the outfit"


def outfit_problem(outfits: OutfitLookup | None, name: str, outfit: str) -> str | None:
    """Why ``name`` cannot wear ``outfit`` (None if it can, or if ``outfits`` is None: not checked).
    ``outfits`` maps each registered character to the names of its outfits; matching ignores case
    and surrounding spaces, as the render's does."""
    if outfits is None:
        return None
    have: list[str] = []
    for who, names in outfits.items():
        if normalize_name(who) == normalize_name(name):
            have = [str(n) for n in names]
            break
    key = outfit.strip().casefold()
    if any(n.strip().casefold() == key for n in have):
        return None
    add = (f"add it in the Characters tab (Outfits) or with `python -m storymaker characters outfit "
           f"{shlex.quote(name)} {shlex.quote(outfit.strip())} IMAGE`")
    if not have:
        return f"{name} has no outfit called {outfit.strip()!r} (no outfits yet): {add}, or remove the outfit"
    folded = {n.casefold(): n for n in have}
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    hint = f"did you mean {folded[close[0]]!r}? " if close else ""
    return f"{name} has no outfit called {outfit.strip()!r}; {hint}{name}'s outfits: {quote_list(have)} ({add})"


def slot_order(outfits: list[tuple[str, str]], chars: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Outfits are a mapping: keep them in character-slot order so that every form agrees."""
    slots = {normalize_name(c): i for i, c in enumerate(chars)}
    return tuple(sorted(outfits, key=lambda item: slots.get(normalize_name(item[0]), len(slots))))


def single_line(value: str) -> bool:
    return "\n" not in value and "\r" not in value


# --------------------------------------------------------------------------------------------
# Values: size, whole numbers, numbers
# --------------------------------------------------------------------------------------------
def parse_size(value: str, max_side: int | None = None) -> tuple[tuple[int, int] | None, str | None]:
    """``(w, h)`` or an error. ``max_side``: the largest side the app renders (the settings'
    ``max_panel_side``, passed in as a number), so that the check refuses what the render would."""
    m = _SIZE_RE.fullmatch(value.strip())
    if not m:
        return None, f"size {value!r} is not WIDTHxHEIGHT; write e.g. size: 960x1280"
    w, h = int(m.group(1)), int(m.group(2))
    if w <= 0 or h <= 0 or w % 8 or h % 8:
        return None, f"size {w}x{h}: width and height must be positive multiples of 8 (e.g. {max(8, w // 8 * 8)}x{max(8, h // 8 * 8)})"
    if w > MAX_SIDE or h > MAX_SIDE:
        return None, f"size {w}x{h} is too large: at most {MAX_SIDE} pixels a side"
    if max_side is not None and (w > max_side or h > max_side):
        scale = max_side / max(w, h)
        smaller = f"{max(8, int(w * scale) // 8 * 8)}x{max(8, int(h * scale) // 8 * 8)}"
        return None, (f"size {w}x{h} is above the largest panel side this app renders ({max_side} pixels): "
                      f"use a smaller size (e.g. {smaller}), or raise STORYMAKER_MAX_PANEL_SIDE if the GPU has "
                      "the memory")
    return (w, h), None


def parse_value(key: str, value: str, *, max_side: int | None = None) -> tuple[Any, str | None]:
    """A header or panel value (size, seed, steps, guidance): ``(parsed, None)`` or ``(None, error)``."""
    if key == "size":
        return parse_size(value, max_side)
    return VALUE_PARSERS[key](value)


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
STORY_SEEDS = -1  # a seed box's or --seed's "no seed given": each panel keeps the story's seed


def seed_option(value: Any, what: str = "Seed") -> int | None:
    """A seed typed in the Render tab's box or given as ``--seed``: the script's rule (a whole
    number from 0 to :data:`MAX_SEED`), or -1 / empty for the story's own seeds (None).
    Anything else is refused (:class:`InvalidInputError` with the range), never wrapped."""
    from ...errors import InvalidInputError

    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a number box may give 5.0
    text = str(value).strip()
    use = f"use 0 to {MAX_SEED}, or {STORY_SEEDS} for the story's seeds."
    if isinstance(value, bool) or not _INT_RE.fullmatch(text):
        raise InvalidInputError(f"{what} {text} is not a whole number: {use}")
    seed = int(text)
    if seed == STORY_SEEDS:
        return None
    if not 0 <= seed <= MAX_SEED:
        raise InvalidInputError(f"{what} {seed} is out of range: {use}")
    return seed

VALUE_PARSERS: dict[str, Callable[[str], tuple[Any, str | None]]] = {
    "size": parse_size,
    "seed": lambda v: _parse_int("seed", v, 0, MAX_SEED),
    "steps": lambda v: _parse_int("steps", v, 1, MAX_STEPS),
    "guidance": lambda v: _parse_float("guidance", v, 0.0, MAX_GUIDANCE),
}
