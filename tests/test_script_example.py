"""The shipped example stories parse against their characters and the preset pose library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from storymaker.domain.script import format_script, parse_script_with_warnings
from storymaker.services.poses import PoseLibrary

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "example.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def preset_counts() -> dict[str, int]:
    return {info.name: info.num_people for info in PoseLibrary().list()}


@pytest.mark.parametrize("folder", [EXAMPLES / "lighthouse", EXAMPLES])
def test_example_story_is_valid(folder, preset_counts):
    manifest = _manifest(folder)
    names = [c["name"] for c in manifest["characters"]]
    for character in manifest["characters"]:
        with Image.open(folder / character["photo"]) as photo:
            assert photo.size[0] >= 256 and photo.size[1] >= 256
    text = (folder / manifest["story"]).read_text(encoding="utf-8")
    story, warnings = parse_script_with_warnings(text, names, poses=preset_counts)
    assert warnings == ()
    assert story.title == manifest["title"]
    assert 4 <= len(story.panels) <= 6
    assert all(p.pose is None or p.pose in preset_counts for p in story.panels)
    assert parse_script_with_warnings(format_script(story), names, poses=preset_counts)[0] == story


def test_lighthouse_has_two_characters_captions_dialogue_and_two_person_poses(preset_counts):
    folder = EXAMPLES / "lighthouse"
    text = (folder / "story.txt").read_text(encoding="utf-8")
    story, _ = parse_script_with_warnings(text, ["Mara", "Tessa"], poses=preset_counts)
    assert {c for p in story.panels for c in p.characters} == {"Mara", "Tessa"}
    assert any(len(p.characters) == 2 and preset_counts[p.pose] == 2 for p in story.panels)
    assert any(p.caption for p in story.panels) and any(p.dialogue for p in story.panels)
    assert (folder / "README.md").is_file()


def test_tessa_photo_is_the_astronaut_mirrored_and_recoloured():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_photo", EXAMPLES / "lighthouse" / "make_photo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rebuilt = module.make_tessa()
    with Image.open(EXAMPLES / "lighthouse" / "tessa.png") as shipped:
        assert shipped.convert("RGB").tobytes() == rebuilt.tobytes()


def test_lighthouse_manifest_reads_like_the_studio_example():
    from storymaker.ui.example import load_example

    example = load_example(EXAMPLES / "lighthouse")
    assert example.title == "The Lighthouse Keeper"
    assert [c.name for c in example.characters] == ["Mara", "Tessa"]
    assert all(c.photo.is_file() and c.credit for c in example.characters)
