"""The story script (``docs/script.md``): parse, check and format text; the YAML/JSON form.

Public API::

    parse_script(text, characters=None, *, poses=None, outfits=None, max_side=None) -> Story  # ScriptError
    parse_script_with_warnings(text, characters=None, *, ...) -> tuple[Story, tuple[ScriptIssue, ...]]
    check(text, characters=None, *, ...) -> ScriptReport               # never raises (live validation)
    panel_warnings(panel, *, poses=None) -> tuple[str, ...]
    with_header_value(text, key, value) -> str                          # set e.g. style: in the text
    format_script(story) -> str                                         # parse(format(s)) == s
    prompt_for_model(panel, story, nouns, styles=None) -> str           # [Name] -> noun, style applied
    negative_for_model(panel, story, default="", styles=None) -> str
    style_for_panel(panel, story, styles=None) -> (Style | None, str)   # library style or free text
    story_from_data(data, characters=None, *, ...) -> Story             # StoryDataError with JSON paths
    story_to_data(story) -> dict
    load_story(path, characters=None, *, ...) -> Story                  # .txt/.story, .yaml/.yml, .json
    save_story(story, path) -> Path
    story_to_json(story) -> str / story_to_yaml(story) -> str
    seed_option(value, what="Seed") -> int | None                       # a seed box / --seed: -1 = story's

``characters`` are the registered names (``None``: do not check registration, keep names as
written). ``poses`` tells how many people a named pose has: a callable returning ``int | None``
(None = unknown pose) or a mapping name -> count (which also gives "did you mean" suggestions).
``outfits`` maps each registered name to its outfit names (``None``: outfits not checked);
``max_side`` is the largest panel side the app renders (``None``: only the format's :data:`MAX_SIDE`).
All plain data: the callers (the studio, the CLI) read them from the registry and the settings, so
that the check refuses exactly what the render would, whatever the backend.

The modules: :mod:`.rules` (what the text and data forms share: names, markers, poses, values),
:mod:`.parser` (text -> Story), :mod:`.formatter` (Story -> text), :mod:`.model_text` (the text
sent to the model), :mod:`.data` (the YAML/JSON schema and story files).

Format details beyond the spec (the escape rules):
- dialogue text is everything between the first and the last double quote of the line, so quotes
  inside need no escaping; it cannot contain a line break;
- ``[Name]: "text"`` is also dialogue (needed when a name equals an attribute key, e.g. "Pose",
  or contains a colon);
- a line ``---`` ends the header early (needed when the first panel's prompt looks like ``key: value``);
- a prompt, caption or other value cannot start with ``#`` when it starts a line (that is a comment).
"""

from .data import (
    JSON_SUFFIXES,
    SCRIPT_SUFFIXES,
    STORY_SCHEMA,
    YAML_SUFFIXES,
    StoryDataError,
    load_story,
    save_story,
    story_from_data,
    story_to_data,
    story_to_json,
    story_to_yaml,
)
from .formatter import format_script
from .model_text import negative_for_model, prompt_for_model, style_for_panel
from .parser import (
    ScriptReport,
    check,
    panel_warnings,
    parse_script,
    parse_script_with_warnings,
    with_header_value,
)
from .rules import (
    HEADER_END,
    HEADER_KEYS,
    MAX_CHARACTERS,
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    PANEL_KEYS,
    STORY_SEEDS,
    TRAINED_CHARACTERS,
    OutfitLookup,
    PoseLookup,
    normalize_name,
    scan_markers,
    seed_option,
)

__all__ = [
    "HEADER_END", "HEADER_KEYS", "JSON_SUFFIXES", "MAX_CHARACTERS", "MAX_GUIDANCE", "MAX_SEED", "MAX_SIDE",
    "MAX_STEPS", "PANEL_KEYS", "SCRIPT_SUFFIXES", "STORY_SCHEMA", "STORY_SEEDS", "TRAINED_CHARACTERS",
    "YAML_SUFFIXES", "OutfitLookup", "PoseLookup", "ScriptReport", "StoryDataError", "check", "format_script", "load_story", "negative_for_model",
    "normalize_name", "panel_warnings", "parse_script", "parse_script_with_warnings", "prompt_for_model",
    "save_story", "scan_markers", "seed_option", "story_from_data", "style_for_panel", "story_to_data", "story_to_json", "story_to_yaml",
    "with_header_value",
]
