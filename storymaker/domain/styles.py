"""The style library: named comic and storyboard styles, each a prompt template and a negative prompt.

The shipped library is ``assets/styles/styles.yaml`` (its header says how to write one). A story's
``style:`` (or a panel's) is a style name, matched by :func:`style_key`, or free text::

    library = StyleLibrary.builtin()
    library.find("Manga")            # Style(name="manga", ...) or None for free text
    library.get("manga").apply("a cat on a roof")
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import InvalidInputError

STYLES_FILE = Path(__file__).resolve().parents[2] / "assets" / "styles" / "styles.yaml"
PLACEHOLDER = "{prompt}"
_NAME_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def style_key(name: str) -> str:
    """What style names are matched by: case-folded, runs of spaces, hyphens and underscores as one '-'."""
    return re.sub(r"[\s_-]+", "-", name.strip().casefold()).strip("-")


@dataclass(frozen=True)
class Style:
    """A named style: ``prompt`` is a template with one ``{prompt}`` placeholder."""

    name: str
    description: str
    prompt: str
    negative: str = ""

    def apply(self, text: str) -> str:
        """The template with the panel's text in place of ``{prompt}``."""
        return self.prompt.replace(PLACEHOLDER, text)


class StyleLibrary:
    """Styles by name (see :func:`style_key`), in the order they were given."""

    def __init__(self, styles: Iterable[Style]):
        self._styles: dict[str, Style] = {}
        for style in styles:
            key = style_key(style.name)
            if key in self._styles:
                raise InvalidInputError(f"style {style.name!r} is listed twice; keep one")
            self._styles[key] = style

    @classmethod
    def load(cls, path: str | Path) -> "StyleLibrary":
        """Read and check a style file (YAML: ``styles:`` a list of name/description/prompt/negative)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise InvalidInputError(f"{path}: cannot read the style library ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise InvalidInputError(f"{path}: not valid YAML ({err}); fix the file") from None
        entries = data.get("styles") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise InvalidInputError(f"{path}: expected 'styles:' with a list of styles")
        return cls(_style_from(entry, f"{path}: styles[{i}]") for i, entry in enumerate(entries))

    @classmethod
    def builtin(cls) -> "StyleLibrary":
        """The shipped library (read once per process)."""
        return _builtin()

    def __iter__(self) -> Iterator[Style]:
        return iter(self._styles.values())

    def __len__(self) -> int:
        return len(self._styles)

    def names(self) -> list[str]:
        return [style.name for style in self]

    def find(self, value: str | None) -> Style | None:
        """The style ``value`` names, or None when it is free text (or empty)."""
        return self._styles.get(style_key(value)) if value and value.strip() else None

    def get(self, name: str) -> Style:
        """The style called ``name``; InvalidInputError with a suggestion if there is none."""
        found = self.find(name)
        if found is None:
            raise InvalidInputError(f"no style called {name!r}; {self.suggest(name) or 'choose one of'} "
                                    f"(styles: {', '.join(self.names())})")
        return found

    def suggest(self, value: str) -> str | None:
        """'did you mean ...?' for a value that looks like a misspelt style name (one phrase, no commas)."""
        if not value or "," in value or self.find(value) is not None:
            return None
        close = difflib.get_close_matches(style_key(value), list(self._styles), n=1, cutoff=0.75)
        return f"did you mean {self._styles[close[0]].name!r}?" if close else None


def _style_from(entry: Any, where: str) -> Style:
    if not isinstance(entry, dict):
        raise InvalidInputError(f"{where}: expected a mapping with name, description, prompt, negative")
    unknown = sorted(set(entry) - {"name", "description", "prompt", "negative"})
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {key: entry.get(key, "") for key in ("name", "description", "prompt", "negative")}
    for key, value in values.items():
        if not isinstance(value, str) or "\n" in value:
            raise InvalidInputError(f"{where}: {key} must be one line of text")
    if not _NAME_RE.fullmatch(values["name"]):
        raise InvalidInputError(f"{where}: name {values['name']!r} must be kebab-case, e.g. pencil-storyboard")
    if not values["description"].strip():
        raise InvalidInputError(f"{where}: {values['name']} has no description; write one line")
    if values["prompt"].count(PLACEHOLDER) != 1:
        raise InvalidInputError(f"{where}: the prompt of {values['name']} must contain {PLACEHOLDER} once")
    return Style(**{key: value.strip() for key, value in values.items()})


@lru_cache(maxsize=1)
def _builtin() -> StyleLibrary:
    return StyleLibrary.load(STYLES_FILE)
