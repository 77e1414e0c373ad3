"""The story script: every SPEC-script rule, every error with its message, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from storymaker.domain.script import (
    ScriptReport,
    check,
    format_script,
    negative_for_model,
    panel_warnings,
    parse_script,
    parse_script_with_warnings,
    prompt_for_model,
)
from storymaker.domain.story import Dialogue, Panel, Story
from storymaker.errors import InvalidInputError, ScriptError

NAMES = ["Mara", "Theo", "Old Tom", "Ada"]
POSES = {"standing": 1, "standing-arms-crossed": 1, "two-sitting-facing": 2, "two-talking": 2, "three-walking": 3}

SPEC_EXAMPLE = """\
# The Lighthouse Keeper -- lines starting with # are comments
title: The Lighthouse Keeper
style: graphic novel, ink and watercolor, dramatic light
negative: lowres, bad anatomy, extra fingers
size: 960x1280

[Mara] stands on a rocky cliff at dusk, wind in her hair
  pose: standing-arms-crossed
  caption: Every night, Mara climbed to the lighthouse.

[Mara] and [Theo] drink tea beside the great lamp
  pose: two-sitting-facing
  seed: 1234
  Mara: "You came back."
  Theo: "I always do."

[Theo] rows a small boat through the storm
  outfit: Theo=raincoat
  size: 1280x768

an empty beach at dawn, seagulls over the water
"""


def errors_of(text: str, characters=NAMES, poses=POSES) -> list:
    with pytest.raises(ScriptError) as info:
        parse_script(text, characters, poses=poses)
    return list(info.value.issues)


def one_error(text: str, characters=NAMES, poses=POSES):
    issues = errors_of(text, characters, poses)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


# ---------------------------------------------------------------------------------- the spec
def test_spec_example_parses_to_the_expected_story():
    story = parse_script(SPEC_EXAMPLE, NAMES, poses=POSES)
    assert story.title == "The Lighthouse Keeper"
    assert story.style == "graphic novel, ink and watercolor, dramatic light"
    assert story.negative == "lowres, bad anatomy, extra fingers"
    assert story.size == (960, 1280)
    assert story.seed is None and story.steps is None and story.guidance is None
    assert len(story.panels) == 4
    p1, p2, p3, p4 = story.panels
    assert p1 == Panel(
        prompt="[Mara] stands on a rocky cliff at dusk, wind in her hair",
        characters=("Mara",),
        pose="standing-arms-crossed",
        caption="Every night, Mara climbed to the lighthouse.",
    )
    assert p1.line == 7
    assert p2.characters == ("Mara", "Theo") and p2.seed == 1234 and p2.pose == "two-sitting-facing"
    assert p2.dialogue == (Dialogue("Mara", "You came back."), Dialogue("Theo", "I always do."))
    assert p3.outfits == (("Theo", "raincoat"),) and p3.size == (1280, 768)
    assert p4 == Panel(prompt="an empty beach at dawn, seagulls over the water")
    assert (p2.line, p3.line, p4.line) == (11, 17, 21)


def test_format_of_parsed_spec_is_stable_and_round_trips():
    story = parse_script(SPEC_EXAMPLE, NAMES, poses=POSES)
    text = format_script(story)
    again = parse_script(text, NAMES, poses=POSES)
    assert again == story
    assert format_script(again) == text


def test_all_header_keys_and_panel_attributes():
    text = (
        "title: T\nstyle: S\nnegative: N\nsize: 512x768\nseed: 7\nsteps: 30\nguidance: 5\n"
        "[Mara] waves\n  pose: standing\n  caption: C\n  seed: 9\n  size: 640X640\n"
        "  outfit: Mara=dress\n  steps: 12\n  guidance: 3.25\n  negative: blurry\n"
    )
    story = parse_script(text, NAMES, poses=POSES)
    assert (story.title, story.style, story.negative, story.size, story.seed, story.steps, story.guidance) == (
        "T", "S", "N", (512, 768), 7, 30, 5.0)
    (p,) = story.panels
    assert (p.pose, p.caption, p.seed, p.size, p.outfits, p.steps, p.guidance, p.negative) == (
        "standing", "C", 9, (640, 640), (("Mara", "dress"),), 12, 3.25, "blurry")
    assert isinstance(story.guidance, float)


def test_binding_is_case_and_space_insensitive_and_stores_the_registered_spelling():
    story = parse_script("[ mara ] meets [THEO] and [old   tom], then [Mara] again\n", NAMES)
    (p,) = story.panels
    assert p.characters == ("Mara", "Theo", "Old Tom")  # slot order = first appearance
    assert p.prompt == "[ mara ] meets [THEO] and [old   tom], then [Mara] again"  # markers kept as written


def test_names_as_written_without_a_registry():
    story = parse_script("[Zed] and [ zed ] and [Quinn]\n  Nobody: \"hi\"\n", None)
    assert story.panels[0].characters == ("Zed", "Quinn")
    assert story.panels[0].dialogue == (Dialogue("Nobody", "hi"),)


def test_off_panel_voice_is_allowed():
    story = parse_script('[Mara] listens\n  Theo: "Over here!"\n', NAMES)
    assert story.panels[0].dialogue == (Dialogue("Theo", "Over here!"),)


def test_comments_blank_lines_crlf_tabs_bom_unicode():
    text = (
        "\ufeff# comment\r\ntitle: Ünïcødé ☕\r\n\r\n   # indented comment\r\n"
        "[Mara] trinkt Tee — 茶\r\n\tcaption: Ça va\r\n\t  Mara: \"¿Qué?\"\r\n\r\n# end\r\n"
    )
    story = parse_script(text, NAMES)
    assert story.title == "Ünïcødé ☕"
    (p,) = story.panels
    assert p.prompt == "[Mara] trinkt Tee — 茶"
    assert p.caption == "Ça va" and p.dialogue == (Dialogue("Mara", "¿Qué?"),)
    assert p.line == 5
    assert parse_script(text.replace("\r\n", "\r"), NAMES) == story  # old Mac line ends too


def test_quotes_inside_dialogue_need_no_escape_and_round_trip():
    story = parse_script('[Mara] reads\n  Mara: "He said "no", then \\"maybe\\"."\n', NAMES)
    assert story.panels[0].dialogue[0].text == 'He said "no", then \\"maybe\\".'
    assert parse_script(format_script(story), NAMES) == story


def test_bracket_dialogue_for_names_that_look_like_attributes():
    story = parse_script('[Mara] asks\n  [Pose]: "I am a character called Pose"\n', ["Mara", "Pose"])
    assert story.panels[0].dialogue == (Dialogue("Pose", "I am a character called Pose"),)
    text = format_script(story)
    assert '  [Pose]: "I am' in text
    assert parse_script(text, ["Mara", "Pose"]) == story


def test_header_end_marker_lets_the_first_panel_look_like_a_key():
    story = Story(title="T", panels=(Panel(prompt="close-up: [Mara] smiles", characters=("Mara",)),))
    text = format_script(story)
    assert "---\n" in text
    assert parse_script(text, NAMES) == story
    assert parse_script("---\nclose-up: a lamp\n").panels[0].prompt == "close-up: a lamp"


def test_empty_script_is_an_empty_story():
    assert parse_script("") == Story()
    assert parse_script("# only a comment\n\n") == Story()
    assert parse_script("title: Only a title\n") == Story(title="Only a title")


def test_three_characters_is_a_warning_not_an_error():
    story, warnings = parse_script_with_warnings("[Mara], [Theo] and [Ada] walk\n  pose: three-walking\n",
                                                 NAMES, poses=POSES)
    assert story.panels[0].characters == ("Mara", "Theo", "Ada")
    assert len(warnings) == 1 and warnings[0].line == 1 and "3 characters" in warnings[0].message
    assert "trained on 1-2" in warnings[0].message


def test_unindented_attribute_after_the_header_warns_that_it_starts_a_panel():
    _, warnings = parse_script_with_warnings("[Mara] sits\nseed: 4\n", NAMES)
    assert [(w.line, w.column) for w in warnings] == [(2, 1)]
    assert "starts a new panel" in warnings[0].message and "indent" in warnings[0].message


# ---------------------------------------------------------------------------------- indented lines
def test_a_prompt_typed_after_an_indented_line_starts_a_panel():
    """Enter in an editor keeps the indent: the next prompt line arrives indented (issue 12)."""
    text = (
        "title: T\n"
        "[Mara] stands on a cliff\n"
        "  pose: standing\n"
        "  [Theo] rows a boat\n"
        "  pose: standing\n"
        "  Theo: \"Ahoy!\"\n"
        "  an empty beach at dawn\n"
        "  caption: The end.\n"
    )
    story = parse_script(text, NAMES, poses=POSES)
    assert [(p.prompt, p.line) for p in story.panels] == [
        ("[Mara] stands on a cliff", 2), ("[Theo] rows a boat", 4), ("an empty beach at dawn", 7)]
    mara, theo, beach = story.panels
    assert mara.pose == "standing" and mara.dialogue == ()
    assert theo.characters == ("Theo",) and theo.pose == "standing"
    assert theo.dialogue == (Dialogue("Theo", "Ahoy!"),)
    assert beach.caption == "The end."
    # The formatter writes panel lines unindented; the story reads back the same.
    formatted = format_script(story)
    assert "\n[Theo] rows a boat\n  pose: standing\n" in formatted
    assert "\nan empty beach at dawn\n  caption: The end.\n" in formatted
    assert parse_script(formatted, NAMES, poses=POSES) == story


@pytest.mark.parametrize(
    "line, expect",
    [
        ("  a lamp in the dark", "panel"),
        ("  [Mara] \"no colon\"", "panel"),  # not dialogue: no colon after the name
        ("  [Mara] says: \"hi\"", "panel"),  # a name never holds brackets
        ("  close up: [Mara] smiles", "panel"),  # two words, a colon: not a key
        ("  12:30, the clock strikes", "panel"),  # a word starts with a letter
        ("\tsunrise over the bay", "panel"),
        ("  caption: a key", "above"),
        ('  Mara: "hi"', "above"),
        ('  Old Tom: "hi"', "above"),  # dialogue by a name of two words
        ('  [Mara]: "hi"', "above"),
        ("  posse: standing", "error"),  # one word, a colon: a key, unknown
        ("  Old Tom: hi", "error"),  # a registered name: speech without quotes
    ],
)
def test_which_indented_lines_start_a_panel(line, expect):
    report = check(f"[Mara] waits\n{line}\n", NAMES, poses=POSES)
    if expect == "error":
        assert [e.line for e in report.errors] == [2]
        return
    assert report.ok, [str(e) for e in report.errors]
    prompts = [p.prompt for p in report.story.panels]
    assert prompts == (["[Mara] waits", line.strip()] if expect == "panel" else ["[Mara] waits"])


def test_without_a_registry_an_unquoted_two_word_speaker_is_a_prompt():
    story = parse_script("[Zed] waits\n  Old Tom: hi\n", None)
    assert [p.prompt for p in story.panels] == ["[Zed] waits", "Old Tom: hi"]


def test_an_indented_prompt_in_the_header_starts_the_first_panel():
    story = parse_script("title: T\n  [Mara] waves\n  caption: Hello\n", NAMES)
    assert story.title == "T"
    assert story.panels == (Panel(prompt="[Mara] waves", characters=("Mara",), caption="Hello"),)


def test_issues_in_an_indented_prompt_point_at_its_column():
    issue = one_error("[Mara] a\n    boat with [Zanzibar]\n")
    assert (issue.line, issue.column) == (2, 15)


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "text, line, column, fragments",
    [
        ("titel: X\n[Mara] a\n", 1, 1, ["unknown header key 'titel'", "did you mean 'title'?", "---"]),
        ("pose: standing\n[Mara] a\n", 1, 1, ["'pose' is a panel attribute", "indent it"]),
        ("title: A\ntitle: B\n", 2, 1, ["title is set twice (first on line 1)"]),
        ("size:\n", 1, 6, ["size has no value"]),
        ("size: 960*1280\n", 1, 7, ["is not WIDTHxHEIGHT", "size: 960x1280"]),
        ("size: 961x1280\n", 1, 7, ["multiples of 8", "960x1280"]),
        ("size: 9000x8\n", 1, 7, ["too large"]),
        ("seed: -1\n", 1, 7, ["seed -1 is out of range: use 0 to 4294967295"]),  # a whole number, out of range
        ("seed: 99999999999\n", 1, 7, ["seed 99999999999 is out of range"]),
        ("steps: 0\n", 1, 8, ["steps 0 is out of range: use 1 to 1000"]),
        ("guidance: lots\n", 1, 11, ["guidance 'lots' is not a number"]),
        ("guidance: nan\n", 1, 11, ["out of range"]),
        ("  caption: early\n[Mara] a\n", 1, 1, ["indented line before the first panel"]),
        ("[Theoo] rows\n", 1, 1, ["[Theoo] is not a registered character; did you mean [Theo]?"]),
        ("a boat with [Zanzibar]\n", 1, 13, ["[Zanzibar] is not a registered character; registered: Mara, Theo"]),
        ("[] a\n", 1, 1, ["empty []"]),
        ("[Mara waves\n", 1, 1, ["'[' is never closed"]),
        ("Mara] waves\n", 1, 5, ["']' without a matching '['"]),
        ("[Mara [Theo] x\n", 1, 1, ["never closed before the next '['"]),
        ("[Mara] [Theo] [Ada] [Old Tom] party\n", 1, 21, ["4 characters in one panel", "3 character slots"]),
        ("[Mara] a\n  pose: standin\n", 2, 9, ["unknown pose 'standin'; did you mean 'standing'?"]),
        ("[Mara] a\n  pose: two-talking\n", 2, 9, ["pose 'two-talking' has 2 people but the panel has 1 character ([Mara])"]),
        ("a beach\n  pose: standing\n", 2, 9, ["has 1 person but the panel has no [Name] characters"]),
        ("[Mara] a\n  seed: 1\n  seed: 2\n", 3, 3, ["seed is set twice for this panel (first on line 2)"]),
        ("[Mara] a\n  caption:\n", 2, 11, ["caption has no value"]),
        ("[Mara] a\n  steps: many\n", 2, 10, ["steps 'many' is not a whole number"]),
        ("[Mara] a\n  outfit: Mara\n", 2, 11, ["outfit 'Mara' is not Name=outfit", "Theo=raincoat"]),
        ("[Mara] a\n  outfit: Mara=dress, Theo=coat\n", 2, 23, ["outfit for Theo, who is not in this panel"]),
        ("[Mara] a\n  outfit: Mara=dress, mara=coat\n", 2, 23, ["Mara has two outfits"]),
        ("[Mara] a\n  outfit: Mara=\n", 2, 11, ["outfit for Mara has no outfit name"]),
        ("[Mara] a\n  outfit: Maraa=dress\n", 2, 11, ["Maraa is not a registered character; did you mean Mara?"]),
        ('[Mara] a\n  Theoo: "hi"\n', 2, 3, ["Theoo is not a registered character; did you mean Theo?"]),
        ("[Mara] a\n  Mara: hi there\n", 2, 3, ["dialogue must be in double quotes: Mara: \"hi there\""]),
        ('[Mara] a\n  Mara: "hi there\n', 2, 18, ["no closing double quote"]),
        ("[Mara] a\n  Mara: \u201chi\u201d\n", 2, 9, ["curly quotes", "straight double quotes"]),
        ('[Mara] a\n  Mara: "  "\n', 2, 9, ["dialogue is empty"]),
        ("[Mara] a\n  posse: standing\n", 2, 3, ["unknown panel attribute 'posse'; did you mean 'pose'?"]),
        ("[Mara] a\n  posse:\n", 2, 3, ["unknown panel attribute 'posse'; did you mean 'pose'?"]),
        ("[Mara] a\n  [Theoo] rows\n", 2, 3, ["[Theoo] is not a registered character"]),
        ("[Mara] a\n  Old Tom: hi\n", 2, 3, ["dialogue must be in double quotes: Old Tom: \"hi\""]),
        ("  pose: standing\n[Mara] a\n", 1, 1, ["indented line before the first panel"]),
    ],
)
def test_each_error_rule(text, line, column, fragments):
    issue = one_error(text)
    assert (issue.line, issue.column) == (line, column), str(issue)
    for fragment in fragments:
        assert fragment in issue.message, issue.message
    assert issue.source_line == text.split("\n")[line - 1].strip()


def test_no_characters_registered_says_to_register_first():
    issue = one_error("[Mara] a\n", characters=[])
    assert "no characters are registered yet" in issue.message


def test_pose_lookup_as_a_callable():
    def lookup(name: str):
        return {"standing": 1}.get(name)

    assert parse_script("[Mara] a\n  pose: standing\n", NAMES, poses=lookup).panels[0].pose == "standing"
    issue = one_error("[Mara] a\n  pose: jumping\n", poses=lookup)
    assert "unknown pose 'jumping'" in issue.message and "pose library" in issue.message


def test_poses_are_not_checked_without_a_lookup():
    assert parse_script("[Mara] a\n  pose: anything\n", NAMES).panels[0].pose == "anything"


def test_all_errors_are_reported_in_one_pass_in_line_order():
    text = "titel: x\n[Theoo] a\n  seed: x\n  pose: two-talking\n[Mara]\n  Maraa: \"hi\"\n"
    issues = errors_of(text)
    assert [(i.line, i.column) for i in issues] == [(1, 1), (2, 1), (3, 9), (6, 3)]
    message = str(ScriptError(issues))
    assert message.startswith("The story script has 4 problems:")
    assert "line 2, column 1: [Theoo] is not a registered character; did you mean [Theo]?" in message
    assert "    [Theoo] a" in message  # the quoted line


def test_a_broken_name_does_not_cascade_into_pose_and_outfit_errors():
    issues = errors_of("[Theoo] rows\n  pose: standing\n  outfit: Theo=raincoat\n")
    assert len(issues) == 1 and issues[0].line == 1


# ---------------------------------------------------------------------------------- check / warnings
def test_check_never_raises_and_lists_errors_and_warnings():
    report = check("[Mara] [Theo] [Ada] x\n  pose: standing\n[Theoo] y\n", NAMES, poses=POSES)
    assert isinstance(report, ScriptReport) and not report.ok and report.story is None
    assert [(e.line, e.column) for e in report.errors] == [(2, 9), (3, 1)]
    assert [w.line for w in report.warnings] == [1]
    good = check(SPEC_EXAMPLE, NAMES, poses=POSES)
    assert good.ok and good.story == parse_script(SPEC_EXAMPLE, NAMES)


def test_panel_warnings_for_panel_objects():
    assert panel_warnings(Panel(prompt="[A] x", characters=("A",))) == ()
    three = panel_warnings(Panel(prompt="[A] [B] [C]", characters=("A", "B", "C")))
    assert len(three) == 1 and "3 characters" in three[0]
    mismatch = panel_warnings(Panel(prompt="[A] x", characters=("A",), pose="two-talking"), poses=POSES)
    assert len(mismatch) == 1 and "has 2 people" in mismatch[0]


# ---------------------------------------------------------------------------------- formatting
def test_format_refuses_what_the_text_cannot_hold():
    with pytest.raises(InvalidInputError, match="one line"):
        format_script(Story(panels=(Panel(prompt="two\nlines"),)))
    with pytest.raises(InvalidInputError, match="do not match"):
        format_script(Story(panels=(Panel(prompt="[A] x", characters=("B",)),)))
    with pytest.raises(InvalidInputError, match="multiples of 8"):
        format_script(Story(size=(10, 10)))
    with pytest.raises(InvalidInputError, match="dialogue"):
        format_script(Story(panels=(Panel(prompt="x", dialogue=(Dialogue("A", "a\nb"),)),)))
    with pytest.raises(InvalidInputError, match="seed"):
        format_script(Story(seed=True))


def test_format_layout():
    story = Story(title="T", seed=3, panels=(
        Panel(prompt="[Mara] x", characters=("Mara",), caption="c", dialogue=(Dialogue("Mara", "hi"),)),
        Panel(prompt="y", guidance=7.0),
    ))
    assert format_script(story) == (
        "title: T\nseed: 3\n\n[Mara] x\n  caption: c\n  Mara: \"hi\"\n\ny\n  guidance: 7.0\n"
    )


# ---------------------------------------------------------------------------------- model text
def test_prompt_for_model_replaces_names_and_appends_style():
    story = parse_script("style: ink, watercolor\n[mara] hands [Theo] a cup, [Mara] smiles\n[Ghost] waits\n", None)
    nouns = {"mara": "a woman with red hair", "Theo": "a man"}
    assert prompt_for_model(story.panels[0], story, nouns) == (
        "a woman with red hair hands a man a cup, a woman with red hair smiles, ink, watercolor")
    assert prompt_for_model(story.panels[1], story, nouns) == "a person waits, ink, watercolor"
    assert prompt_for_model(story.panels[1], Story(), {}) == "a person waits"


def test_negative_for_model_joins_story_and_panel():
    panel = Panel(prompt="x", negative="blurry")
    assert negative_for_model(panel, Story(negative="lowres"), "default") == "lowres, blurry"
    assert negative_for_model(panel, Story(), "default") == "default, blurry"
    assert negative_for_model(Panel(prompt="x"), Story(), "") == ""


def test_importing_the_script_and_storage_modules_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, storymaker.domain.script, storymaker.services.storage\n"
        "heavy = [m for m in ('torch', 'diffusers', 'gradio', 'jsonschema', 'yaml', 'PIL') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# What the render would refuse, refused by the check at its line (QA r04, r05, r09, s06)
# --------------------------------------------------------------------------------------------
OUTFITS = {"Mara": ["red coat", "Dress"], "Theo": []}


def test_an_outfit_the_character_does_not_have_is_an_error_at_its_line():
    text = "[Mara] and [Theo] in the rain\n  outfit: Mara=raincoat, Theo=coat\n"
    report = check(text, NAMES, poses=POSES, outfits=OUTFITS)
    mara, theo = report.errors
    assert (mara.line, mara.column) == (2, 16)  # at the outfit's name
    assert "Mara has no outfit called 'raincoat'" in mara.message
    assert "did you mean 'red coat'?" in mara.message and "Mara's outfits: red coat, Dress" in mara.message
    assert (theo.line, theo.column) == (2, 31)
    assert "Theo has no outfit called 'coat' (no outfits yet)" in theo.message
    assert "Characters tab" in theo.message and "python -m storymaker characters outfit Theo coat IMAGE" in theo.message
    # Registered outfits pass, matched as the render matches them (case, spaces); the text is kept.
    story = parse_script("[Mara] a\n  outfit: mara= DRESS \n", NAMES, outfits=OUTFITS)
    assert story.panels[0].outfits == (("Mara", "DRESS"),)
    # A character missing from the mapping has no outfits; without a mapping nothing is checked.
    assert "Ada has no outfit called 'hat' (no outfits yet)" in str(check(
        "[Ada] a\n  outfit: Ada=hat\n", NAMES, outfits=OUTFITS).errors[0])
    assert check("[Ada] a\n  outfit: Ada=hat\n", NAMES).ok


def test_a_size_above_the_configured_largest_side_is_an_error_at_its_line():
    text = "size: 4096x4096\n\na street\n\na harbour\n  size: 1024x3000\n\na hill\n  size: 2048x2048\n"
    report = check(text, NAMES, max_side=2048)
    header, panel = report.errors
    assert (header.line, header.column) == (1, 7)
    assert "above the largest panel side this app renders (2048 pixels)" in header.message
    assert "e.g. 2048x2048" in header.message and "STORYMAKER_MAX_PANEL_SIDE" in header.message
    assert (panel.line, panel.column) == (6, 9) and "size 1024x3000" in panel.message
    assert "e.g. 696x2048" in panel.message  # the same shape, within the limit, multiples of 8
    assert check(text, NAMES).ok  # without the app's limit: only the format's 8192
    assert check(text.replace("4096x4096", "2048x1024").replace("1024x3000", "1024x2000"), NAMES, max_side=2048).ok


def test_seeds_out_of_range_are_refused_with_the_range():
    for value in ("99999999999999999999", "-5", "4294967296"):
        issue = one_error(f"[Mara] a\n  seed: {value}\n")
        assert (issue.line, issue.column) == (2, 9)
        assert issue.message == f"seed {int(value)} is out of range: use 0 to 4294967295"
    assert parse_script("seed: 4294967295\n[Mara] a\n  seed: 0\n", NAMES).seed == 4294967295


def test_seed_option_is_the_seed_box_and_command_line_rule():
    from storymaker.domain.script import MAX_SEED, seed_option

    for story_seeds in (None, "", " ", -1, -1.0, "-1"):
        assert seed_option(story_seeds) is None
    assert seed_option(0) == 0 and seed_option(5.0) == 5 and seed_option("+7") == 7
    assert seed_option(MAX_SEED) == MAX_SEED
    for bad, says in ((99999999999999999999, "out of range"), (1e20, "out of range"), (-5, "out of range"),
                      (MAX_SEED + 1, "out of range"), (2.5, "not a whole number"), ("abc", "not a whole number"),
                      (True, "not a whole number")):
        with pytest.raises(InvalidInputError) as info:
            seed_option(bad, "--seed")
        message = str(info.value)
        assert message.startswith("--seed ") and says in message
        assert "use 0 to 4294967295, or -1 for the story's seeds" in message


def test_an_unregistered_name_among_four_is_an_error_and_so_is_the_count():
    """s06: [Nobody] and three registered names got the unknown-name error with the '3 characters'
    warning: registering Nobody would then make it 4, an error. Both errors now, no warning."""
    report = check("[Nobody] and [Mara] and [Theo] and [Ada] dance\n", NAMES)
    assert [(e.line, e.column) for e in report.errors] == [(1, 1), (1, 36)]
    assert "[Nobody] is not a registered character" in report.errors[0].message
    assert "4 characters in one panel ([Nobody], [Mara], [Theo], [Ada])" in report.errors[1].message
    assert report.warnings == ()
    # A misspelt name counts as the one it is close to: three people, still the warning.
    report = check("[Maraa] and [Mara] and [Theo] and [Ada] dance\n", NAMES)
    assert len(report.errors) == 1 and "did you mean [Mara]?" in report.errors[0].message
    assert [w.message[:24] for w in report.warnings] == ["3 characters in one pane"]
