"""The YAML/JSON form of a story: one JSON Schema, the script's rules, errors with JSON paths."""

from __future__ import annotations

import json

import jsonschema
import pytest

from storymaker.domain.script import (
    STORY_SCHEMA,
    StoryDataError,
    load_story,
    parse_script,
    save_story,
    story_from_data,
    story_to_data,
)
from storymaker.errors import InvalidInputError, ScriptError

NAMES = ["Mara", "Theo"]
POSES = {"standing": 1, "two-talking": 2}

GOOD = {
    "title": "The Lighthouse Keeper",
    "style": "ink",
    "size": [960, 1280],
    "seed": 5,
    "guidance": 7,
    "panels": [
        {"prompt": "[mara] on a cliff", "pose": "standing", "caption": "Night."},
        {"prompt": "[Theo] and [Mara] talk", "pose": "two-talking",
         "outfits": {"Mara": "coat", "theo": "raincoat"},
         "dialogue": [{"speaker": "Mara", "text": "You came \"back\"."}]},
    ],
}


def problems(data, characters=NAMES, poses=POSES) -> dict[str, str]:
    with pytest.raises(StoryDataError) as info:
        story_from_data(data, characters, poses=poses)
    return dict(info.value.problems)


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(STORY_SCHEMA)


def test_good_data_builds_the_same_story_as_the_script():
    story = story_from_data(GOOD, NAMES, poses=POSES)
    assert story.guidance == 7.0 and story.size == (960, 1280)
    assert story.panels[0].characters == ("Mara",)
    # outfits are kept in character-slot order and with registered spelling
    assert story.panels[1].outfits == (("Theo", "raincoat"), ("Mara", "coat"))
    text = (
        "title: The Lighthouse Keeper\nstyle: ink\nsize: 960x1280\nseed: 5\nguidance: 7\n"
        "[mara] on a cliff\n  pose: standing\n  caption: Night.\n"
        "[Theo] and [Mara] talk\n  pose: two-talking\n  outfit: Mara=coat, theo=raincoat\n"
        "  Mara: \"You came \"back\".\"\n"
    )
    assert parse_script(text, NAMES, poses=POSES) == story
    assert story_from_data(story_to_data(story), NAMES, poses=POSES) == story


def test_schema_errors_name_the_json_path_and_are_all_listed():
    bad = {
        "title": 3,
        "colour": "red",
        "size": [961, 1280],
        "panels": [
            {"prompt": "x", "seed": -1},
            {"caption": "no prompt"},
            {"prompt": "y", "dialogue": [{"speaker": "Mara"}]},
        ],
    }
    found = problems(bad)
    assert "is not of type 'string'" in found["$.title"]
    assert "'colour' was unexpected" in found["$"]
    assert "multiple of 8" in found["$.size[0]"]
    assert "less than the minimum" in found["$.panels[0].seed"]
    assert "'prompt' is a required property" in found["$.panels[1]"]
    assert "'text' is a required property" in found["$.panels[2].dialogue[0]"]
    message = str(StoryDataError(list(found.items())))
    assert message.startswith("The story data has 6 problems:")


def test_not_a_mapping():
    assert "is not of type 'object'" in problems([1, 2])["$"]
    assert "is not of type 'object'" in problems(None)["$"]


def test_script_rules_apply_with_json_paths():
    data = {
        "panels": [
            {"prompt": "[Theoo] rows"},
            {"prompt": "[Mara] waits", "pose": "two-talking"},
            {"prompt": "[Mara] waves", "outfits": {"Theo": "coat"}},
            {"prompt": "[Mara] says", "dialogue": [{"speaker": "Maraa", "text": "hi"}]},
            {"prompt": "# not a comment", "caption": "two\nlines"},
            {"prompt": "[Mara] [Theo] [A] [B]"},
        ]
    }
    found = problems(data, characters=NAMES + ["A", "B"])
    assert found["$.panels[0].prompt"] == "[Theoo] is not a registered character; did you mean [Theo]?"
    assert "has 2 people but the panel has 1 character" in found["$.panels[1].pose"]
    assert "outfit for Theo, who is not in this panel" in found["$.panels[2].outfits.Theo"]
    assert "did you mean Mara?" in found["$.panels[3].dialogue[0].speaker"]
    assert "cannot start with '#'" in found["$.panels[4].prompt"]
    assert "one line" in found["$.panels[4].caption"]
    assert "4 characters in one panel" in found["$.panels[5].prompt"]


def test_load_story_by_extension(tmp_path):
    story = story_from_data(GOOD, NAMES, poses=POSES)
    for name in ("a.txt", "a.story", "a.yaml", "a.yml", "a.json"):
        save_story(story, tmp_path / name)
        assert load_story(tmp_path / name, NAMES, poses=POSES) == story
    assert (tmp_path / "a.yaml").read_text(encoding="utf-8").startswith("title: The Lighthouse Keeper\n")
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["size"] == [960, 1280]


def test_load_story_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown story file type '.md'"):
        load_story(tmp_path / "a.md")
    with pytest.raises(InvalidInputError, match="no such story file"):
        load_story(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        load_story(tmp_path / "latin1.txt")
    (tmp_path / "bad.yaml").write_text("title: x\npanels:\n  - prompt: [unclosed\n", encoding="utf-8")
    with pytest.raises(StoryDataError) as info:
        load_story(tmp_path / "bad.yaml")
    (where, message), = info.value.problems
    assert where.startswith("line 4") and "not valid YAML" in message and "bad.yaml" in str(info.value)
    (tmp_path / "bad.json").write_text('{"title": "x",\n "panels": [}\n', encoding="utf-8")
    with pytest.raises(StoryDataError) as info:
        load_story(tmp_path / "bad.json")
    assert info.value.problems[0][0] == "line 2, column 13"
    (tmp_path / "bad.txt").write_text("titel: x\n", encoding="utf-8")
    with pytest.raises(ScriptError, match="did you mean 'title'"):
        load_story(tmp_path / "bad.txt")


def test_yaml_with_a_byte_order_mark_and_unicode(tmp_path):
    path = tmp_path / "u.yml"
    path.write_bytes("\ufefftitle: Café ☕\npanels:\n- prompt: '[Mara] sips 茶'\n".encode("utf-8"))
    story = load_story(path, NAMES)
    assert story.title == "Café ☕" and story.panels[0].prompt == "[Mara] sips 茶"


def test_data_form_refuses_unregistered_outfits_and_sizes_above_the_limit_as_the_script_does(tmp_path):
    outfits = {"Mara": ["coat"], "Theo": ["raincoat"]}
    assert story_from_data(GOOD, NAMES, poses=POSES, outfits=outfits, max_side=1280) == story_from_data(GOOD, NAMES)
    data = json.loads(json.dumps(GOOD))
    data["size"] = [4096, 4096]
    data["panels"][0]["size"] = [1024, 3000]
    data["panels"][1]["outfits"] = {"Mara": "dress", "theo": "raincoat"}
    with pytest.raises(StoryDataError) as info:
        story_from_data(data, NAMES, poses=POSES, outfits=outfits, max_side=2048)
    found = dict(info.value.problems)
    assert set(found) == {"$.size", "$.panels[0].size", "$.panels[1].outfits.Mara"}
    assert "above the largest panel side this app renders (2048 pixels)" in found["$.size"]
    assert "Mara has no outfit called 'dress'" in found["$.panels[1].outfits.Mara"]
    # load_story passes them on for every form.
    for name, text in (("s.json", json.dumps(data)), ("s.txt", "[Mara] a\n  outfit: Mara=dress\n  size: 4096x8\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(InvalidInputError, match="(?s)(?=.*no outfit called 'dress')(?=.*2048 pixels)"):
            load_story(tmp_path / name, NAMES, poses=POSES, outfits=outfits, max_side=2048)
        load_story(tmp_path / name, NAMES, poses=POSES)  # not checked without them
