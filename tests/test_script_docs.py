"""docs/script.md is the format's user documentation: its examples parse and its tables list every key."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from storymaker.domain.script import (
    HEADER_KEYS,
    PANEL_KEYS,
    check,
    format_script,
    parse_script,
    story_from_data,
)
from storymaker.domain.story import Dialogue

DOC = Path(__file__).resolve().parents[1] / "docs" / "script.md"
NAMES = ["Mara", "Theo"]
POSES = {"standing-arms-crossed": 1, "two-sitting-facing": 2}


def _section(title: str) -> str:
    """The lines from the heading ``title`` to the next heading of any level (outside code blocks)."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(title)
    out, fenced = [], False
    for line in lines[start + 1:]:
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            break
        out.append(line)
    return "\n".join(out) + "\n"


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def _table_keys(section: str) -> tuple[str, ...]:
    return tuple(re.findall(r"^\| `([a-z]+)` \|", section, flags=re.M))


def test_the_example_script_in_the_docs_parses_as_described():
    (example,) = _blocks(_section("## An example"), "text")
    story = parse_script(example, NAMES, poses=POSES)
    assert story.title == "The Lighthouse Keeper" and story.size == (960, 1280)
    assert len(story.panels) == 4
    cliff, tea, boat, beach = story.panels
    assert cliff.characters == ("Mara",) and cliff.caption.startswith("Every night")
    assert tea.characters == ("Mara", "Theo") and tea.pose == "two-sitting-facing" and tea.seed == 1234
    assert tea.dialogue == (Dialogue("Mara", "You came back."), Dialogue("Theo", "I always do."))
    assert boat.outfits == (("Theo", "raincoat"),) and boat.size == (1280, 768) and boat.style == "manga"
    assert beach.characters == ()
    assert parse_script(format_script(story), NAMES, poses=POSES) == story


def test_the_docs_tables_list_every_header_key_and_panel_attribute():
    assert _table_keys(_section("### Header")) == HEADER_KEYS
    assert _table_keys(_section("### Panel attributes")) == PANEL_KEYS


def test_the_indented_line_examples_in_the_docs_behave_as_described():
    base = "[Mara] waits\n"
    starts = [p.prompt for p in parse_script(base + "  close up: [Mara] smiles\n  [Theo] rows a boat\n", NAMES).panels]
    assert starts == ["[Mara] waits", "close up: [Mara] smiles", "[Theo] rows a boat"]
    report = check(base + "  closeup: [Mara] smiles\n", NAMES)
    assert [e.line for e in report.errors] == [2] and "unknown panel attribute 'closeup'" in report.errors[0].message


def test_the_error_examples_in_the_docs_are_real_messages():
    text = "[Theoo] a\n[Mara] b\n  pose: two-talking\n  posse: x\n"
    messages = [e.message for e in check(text, NAMES, poses={"two-talking": 2}).errors]
    (block,) = _blocks(_section("## Errors and warnings"), "text")
    documented = [line.split(": ", 1)[1] for line in block.strip().splitlines()]
    assert len(messages) == len(documented) == 3
    for message, doc in zip(messages, documented):
        assert message.startswith(doc.removesuffix("...")), (message, doc)


def test_the_yaml_example_in_the_docs_loads():
    (example,) = _blocks(_section("## The YAML and JSON form"), "yaml")
    story = story_from_data(yaml.safe_load(example), NAMES, poses=POSES)
    assert [p.characters for p in story.panels] == [("Mara",), ("Mara", "Theo")]
    assert story.panels[1].outfits == (("Theo", "raincoat"),)
