"""Property tests: any Story within the format's rules survives format -> parse (and data/YAML/JSON)."""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storymaker.domain.script import (
    PANEL_KEYS,
    check,
    format_script,
    load_story,
    normalize_name,
    parse_script,
    save_story,
    story_from_data,
    story_to_data,
    story_to_json,
    story_to_yaml,
)
from storymaker.domain.story import Dialogue, Panel, Story

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Letters whose upper/lower/casefold agree, punctuation that must survive, a few scripts.
NAME_ALPHABET = "abcdefgXYZ éüøß茶☕-'.:#\"0123"
TEXT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r")


def _clean(s: str) -> str:
    return s.strip()


names_st = st.text(NAME_ALPHABET, min_size=1, max_size=10).map(lambda s: " ".join(s.split())).filter(bool)
registry_st = st.lists(
    st.one_of(names_st, st.sampled_from(["Pose", "seed", "Mara", "Old Tom"])),
    min_size=1, max_size=5, unique_by=normalize_name,
)
line_text_st = st.text(TEXT_CHARS, min_size=1, max_size=30).map(_clean).filter(bool)
fragment_st = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r[]"), max_size=12)
size_st = st.tuples(st.integers(1, 1024), st.integers(1, 1024)).map(lambda t: (t[0] * 8, t[1] * 8))
seed_st = st.integers(0, 2**32 - 1)
steps_st = st.integers(1, 1000)
guidance_st = st.floats(0, 100, allow_nan=False, allow_infinity=False)


def _variant(draw, name: str) -> str:
    """How a user might write a registered name inside brackets."""
    form = draw(st.sampled_from(["same", "lower", "upper", "padded"]))
    written = {"same": name, "lower": name.lower(), "upper": name.upper(), "padded": f"  {name} "}[form]
    return written if normalize_name(written) == normalize_name(name) else name


@st.composite
def panels(draw, registry: list[str]) -> Panel:
    cast = draw(st.lists(st.sampled_from(registry), max_size=3, unique_by=normalize_name))
    pieces = [draw(fragment_st)]
    order = list(cast) + draw(st.lists(st.sampled_from(cast), max_size=2)) if cast else []
    for name in order:
        pieces += [f"[{_variant(draw, name)}]", draw(fragment_st)]
    prompt = "".join(pieces).strip()
    if not prompt or prompt.startswith("#"):
        prompt = ("x " + prompt).strip()
    outfit_names = draw(st.lists(st.sampled_from(cast), unique_by=normalize_name)) if cast else []
    outfit_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r,"), min_size=1,
                          max_size=10).map(_clean).filter(bool)
    outfit_names.sort(key=cast.index)  # outfits are kept in character-slot order
    outfits = tuple((n, draw(outfit_text)) for n in outfit_names if "," not in n and "=" not in n)
    speech = st.text(TEXT_CHARS, min_size=1, max_size=30).filter(lambda t: t.strip())
    dialogue = tuple(Dialogue(draw(st.sampled_from(registry)), draw(speech))
                     for _ in range(draw(st.integers(0, 3))))
    optional = lambda s: draw(st.one_of(st.none(), s))  # noqa: E731
    return Panel(
        prompt=prompt,
        characters=tuple(cast),
        pose=optional(line_text_st),
        caption=optional(line_text_st),
        seed=optional(seed_st),
        size=optional(size_st),
        outfits=outfits,
        steps=optional(steps_st),
        guidance=optional(guidance_st),
        negative=optional(line_text_st),
        style=optional(line_text_st),
        dialogue=dialogue,
    )


@st.composite
def stories(draw) -> tuple[Story, list[str]]:
    registry = draw(registry_st)
    text_or_empty = st.one_of(st.just(""), line_text_st)
    optional = lambda s: draw(st.one_of(st.none(), s))  # noqa: E731
    story = Story(
        title=draw(text_or_empty),
        style=draw(text_or_empty),
        negative=draw(text_or_empty),
        size=optional(size_st),
        seed=optional(seed_st),
        steps=optional(steps_st),
        guidance=optional(guidance_st),
        panels=tuple(draw(st.lists(panels(registry), max_size=5))),
    )
    return story, registry


@FAST
@given(stories())
def test_format_then_parse_gives_the_same_story(case):
    story, registry = case
    text = format_script(story)
    assert parse_script(text, registry) == story
    unchecked = parse_script(text, None)  # without a registry: names as written, same people
    assert [[normalize_name(c) for c in p.characters] for p in unchecked.panels] == [
        [normalize_name(c) for c in p.characters] for p in story.panels]


@FAST
@given(stories())
def test_formatting_a_parsed_script_is_stable(case):
    story, registry = case
    text = format_script(story)
    assert format_script(parse_script(text, registry)) == text


@FAST
@given(stories())
def test_data_form_round_trips_through_the_schema_json_and_yaml(case):
    story, registry = case
    data = story_to_data(story)
    assert story_from_data(data, registry) == story
    assert story_from_data(json.loads(json.dumps(data)), registry) == story
    assert story_from_data(json.loads(story_to_json(story)), registry) == story
    assert story_from_data(yaml.safe_load(story_to_yaml(story)), registry) == story


@settings(max_examples=30, deadline=None)
@given(stories())
def test_save_and_load_by_extension(tmp_path_factory, case):
    story, registry = case
    folder = tmp_path_factory.mktemp("stories")
    for name in ("s.txt", "s.story", "s.yaml", "s.yml", "s.json"):
        path = save_story(story, folder / name)
        assert load_story(path, registry) == story, name


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("[]:\"# \t\nxyzMaraTheo=,-") + ["pose", "seed", "\r\n", "  ", "---"]),
                max_size=60).map("".join))
def test_check_never_raises_on_arbitrary_text(text):
    report = check(text, ["Mara", "Theo"], poses={"standing": 1})
    assert (report.story is None) == bool(report.errors)
    for issue in report.errors + report.warnings:
        assert issue.line >= 1 and issue.column >= 1 and issue.message
    if report.story is not None:  # whatever parses, formats and parses back the same
        assert parse_script(format_script(report.story), ["Mara", "Theo"]) == report.story


def test_attribute_keys_are_the_spec_list():
    assert PANEL_KEYS == ("pose", "caption", "seed", "size", "outfit", "steps", "guidance", "negative", "style")


@FAST
@given(stories(), st.sampled_from(["  ", "\t", "    "]))
def test_panel_lines_typed_with_the_editors_indent_read_the_same(case, indent):
    """Editors keep the indent after Enter: a prompt line without a colon reads the same indented."""
    story, registry = case
    lines = format_script(story).split("\n")
    for panel in parse_script("\n".join(lines), registry).panels:
        if ":" not in panel.prompt:
            lines[panel.line - 1] = indent + lines[panel.line - 1]
    assert parse_script("\n".join(lines), registry) == story
