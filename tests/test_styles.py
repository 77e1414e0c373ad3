"""The style library: the shipped styles, names vs free text, per-panel override, the CLI, tiny renders."""

from __future__ import annotations

import json
import re

import pytest

from render_helpers import tiny_settings
from storymaker.cli import main
from storymaker.domain.script import negative_for_model, parse_script_with_warnings, prompt_for_model
from storymaker.domain.story import Panel, Story
from storymaker.domain.styles import STYLES_FILE, Style, StyleLibrary, style_key
from storymaker.errors import InvalidInputError
from storymaker.services.container import build_services
from storymaker.services.pipelines import PipelineCache

LIBRARY = StyleLibrary.builtin()


# ---------------------------------------------------------------------------------- the library
def test_the_shipped_library_has_the_comic_styles_with_templates_and_negatives():
    assert len(LIBRARY) >= 12
    assert {"pencil-storyboard", "black-and-white-ink", "manga"} <= set(LIBRARY.names())
    for style in LIBRARY:
        assert style.prompt.count("{prompt}") == 1 and style.prompt.startswith("{prompt}, ")
        assert style.negative and style.description and "\n" not in style.description
        assert style_key(style.name) == style.name
    assert "CC0" in STYLES_FILE.read_text(encoding="utf-8")  # the licence note


def test_the_printable_style_asks_for_black_and_white_and_refuses_colour():
    style = LIBRARY.get("black-and-white-ink")
    assert "black and white" in style.prompt and "color" in style.negative


@pytest.mark.parametrize("written", ["manga", "Manga", "  MANGA ", "Pencil Storyboard", "pencil_storyboard",
                                     "PENCIL--storyboard"])
def test_names_match_ignoring_case_spaces_hyphens_and_underscores(written):
    assert LIBRARY.find(written) is not None


@pytest.mark.parametrize("written", ["", "ink, watercolor", "manga style", "graphic novel, ink"])
def test_anything_else_is_free_text(written):
    assert LIBRARY.find(written) is None


def test_bad_library_files_say_what_to_fix(tmp_path):
    def load(text: str):
        path = tmp_path / "styles.yaml"
        path.write_text(text, encoding="utf-8")
        return StyleLibrary.load(path)

    good = "- {name: a, description: d, prompt: '{prompt}, x', negative: n}"
    assert load(f"styles:\n{good}\n").get("A") == Style("a", "d", "{prompt}, x", "n")
    with pytest.raises(InvalidInputError, match="must contain \\{prompt\\} once"):
        load("styles:\n- {name: a, description: d, prompt: 'no placeholder'}\n")
    with pytest.raises(InvalidInputError, match="listed twice"):
        load(f"styles:\n{good}\n{good}\n")
    with pytest.raises(InvalidInputError, match="kebab-case"):
        load("styles:\n- {name: Big Style, description: d, prompt: '{prompt}'}\n")
    with pytest.raises(InvalidInputError, match="unknown field"):
        load("styles:\n- {name: a, description: d, prompt: '{prompt}', colour: red}\n")
    with pytest.raises(InvalidInputError, match="expected 'styles:'"):
        load("- just a list\n")


# ---------------------------------------------------------------------------------- in a story
def test_a_style_name_in_the_header_uses_the_template_and_its_negative():
    story, warnings = parse_script_with_warnings("style: Manga\nnegative: lowres\n[Mara] on a roof\n", None)
    (panel,) = story.panels
    manga = LIBRARY.get("manga")
    assert prompt_for_model(panel, story, {"Mara": "a woman"}) == manga.apply("a woman on a roof")
    assert negative_for_model(panel, story) == f"lowres, {manga.negative}"
    assert warnings == ()


def test_free_text_style_is_added_to_the_prompt_as_before():
    story = Story(style="ink drawing, dramatic light", negative="lowres", panels=(Panel(prompt="a boat"),))
    assert prompt_for_model(story.panels[0], story, {}) == "a boat, ink drawing, dramatic light"
    assert negative_for_model(story.panels[0], story) == "lowres"


def test_a_panel_style_replaces_the_story_style():
    text = (
        "style: noir\n"
        "a street at night\n"
        "a storyboard of the same street\n  style: pencil storyboard\n"
        "a poster\n  style: neon colours, glossy\n"
    )
    story, _ = parse_script_with_warnings(text, None)
    night, board, poster = story.panels
    assert board.style == "pencil storyboard"
    assert prompt_for_model(night, story, {}) == LIBRARY.get("noir").apply("a street at night")
    assert prompt_for_model(board, story, {}) == LIBRARY.get("pencil-storyboard").apply("a storyboard of the same street")
    assert negative_for_model(board, story) == LIBRARY.get("pencil-storyboard").negative
    assert prompt_for_model(poster, story, {}) == "a poster, neon colours, glossy"
    assert negative_for_model(poster, story) == ""


def test_a_misspelt_style_name_warns_and_is_used_as_free_text():
    story, warnings = parse_script_with_warnings("style: mangaa\na cat\n  style: pencil-storybord\n", None)
    assert [(w.line, w.column) for w in warnings] == [(1, 8), (3, 10)]
    assert "did you mean 'manga'?" in warnings[0].message and "free text" in warnings[0].message
    assert "did you mean 'pencil-storyboard'?" in warnings[1].message
    assert prompt_for_model(story.panels[0], story, {}) == "a cat, pencil-storybord"


# ---------------------------------------------------------------------------------- rendering
@pytest.fixture(scope="module")
def services(tmp_path_factory):
    settings = tiny_settings(tmp_path_factory.mktemp("data"))
    return build_services(settings, backend="tiny", pipeline_cache=PipelineCache())


def test_every_style_renders_on_the_tiny_backend_and_is_recorded(services):
    panels = tuple(Panel(prompt="a lighthouse on a cliff at dusk", style=name) for name in LIBRARY.names())
    story = Story(title="Styles", negative="lowres", panels=panels)
    report = services.engine().render_story(story, keep=False)
    assert report.ok, report.summary()
    for style, result in zip(LIBRARY, report.results):
        assert result.image.size == (64, 64)
        assert result.metadata["style"] == style.name
        assert result.metadata["prompt"] == style.apply("a lighthouse on a cliff at dusk")
        terms = {term.strip() for term in result.metadata["negative_prompt"].split(",")}
        assert {term.strip() for term in style.negative.split(",")} <= terms  # repeated terms kept once


def test_a_long_weighted_prompt_with_a_short_negative_renders(services):
    long_prompt = "(a lighthouse keeper:1.3) climbs the spiral stairs at dusk, [fog] outside, " * 3
    story = Story(negative="blurry", panels=(Panel(prompt=long_prompt.strip(" ,"), style="noir"),))
    entry = services.backend.entry()
    report = services.engine().render_story(story, keep=False)
    assert report.ok, report.summary()
    prompt = report.results[0].metadata["prompt"]
    embeds, negative, _, _ = entry.embed_pair(prompt, report.results[0].metadata["negative_prompt"])
    assert embeds.shape[1] > 77 and embeds.shape == negative.shape
    assert report.results[0].metadata["style"] == "noir"


# ---------------------------------------------------------------------------------- the CLI
def test_cli_lists_and_shows_styles(capsys):
    assert main(["styles"]) == 0
    out = capsys.readouterr().out
    for style in LIBRARY:
        assert f"{style.name}  " in out and style.description in out
    assert main(["styles", "Pencil Storyboard"]) == 0
    assert LIBRARY.get("pencil-storyboard").prompt in capsys.readouterr().out
    assert main(["styles", "mangaa"]) == 2
    assert "did you mean 'manga'?" in capsys.readouterr().err


def test_a_manga_story_renders_end_to_end_with_the_tiny_backend(tmp_path, capsys):
    from storymaker.services.storage import Project

    story = tmp_path / "story.txt"
    story.write_text("title: Manga\nstyle: manga\n\na cat on a rooftop at night\n"
                     "a cat jumps between roofs\n  style: pencil-storyboard\n", encoding="utf-8")
    out = tmp_path / "comic.png"
    rc = main(["render", str(story), "--project", str(tmp_path / "proj"), "--out", str(out),
               "--backend", "tiny", "--size", "64x64", "--steps", "2"])
    assert rc == 0, capsys.readouterr().err
    assert out.is_file()
    project = Project.open(tmp_path / "proj")
    first, second = project.selected(0), project.selected(1)
    assert first.meta["style"] == "manga"
    assert first.meta["prompt"] == LIBRARY.get("manga").apply("a cat on a rooftop at night")
    assert second.meta["style"] == "pencil-storyboard"
    recorded = [json.loads(v.meta_path.read_text(encoding="utf-8"))["meta"] for v in (first, second)]  # version JSON
    assert [(r["style"], r["prompt"]) for r in recorded] == [(first.meta["style"], first.meta["prompt"]),
                                                            ("pencil-storyboard", second.meta["prompt"])]


def test_docs_prompts_md_lists_every_style():
    doc = (STYLES_FILE.parents[2] / "docs" / "prompts.md").read_text(encoding="utf-8")
    table = doc.split("## The style library", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (.+) \|$", table, flags=re.M)
    assert rows == [(style.name, style.description) for style in LIBRARY]


# ---------------------------------------------------------------------------------- the editor's menu
def test_the_style_menu_sets_the_header_style_line_and_keeps_everything_else():
    from storymaker.domain.script import with_header_value
    from storymaker.ui.story_tab import apply_style, style_choices

    choices = style_choices()
    assert [name for _, name in choices] == LIBRARY.names()
    assert all(label == f"{name}: {LIBRARY.get(name).description}" for label, name in choices)
    text = "# my story\ntitle: T\nstyle: ink\n\n[Mara] waves\n  style: noir\n"
    assert apply_style(text, "manga") == text.replace("style: ink\n", "style: manga\n")  # the panel's stays
    assert apply_style("# c\ntitle: T\n\na cat\n", "noir") == "# c\ntitle: T\nstyle: noir\n\na cat\n"
    assert apply_style("a cat\n", "noir") == "style: noir\na cat\n"
    assert apply_style("", "noir") == "style: noir\n"
    assert apply_style("title: T\n---\nstyle: x is a prompt\n", "noir") == "title: T\nstyle: noir\n---\nstyle: x is a prompt\n"
    assert apply_style(text, None) == text
    with pytest.raises(InvalidInputError):
        with_header_value(text, "pose", "standing")


def test_the_story_tab_builds_with_the_style_menu(tmp_path):
    from ui_helpers import make_studio

    studio = make_studio(tmp_path / "data")
    try:
        menus = [b for b in studio.blocks.blocks.values() if getattr(b, "elem_id", None) == "style-menu"]
        assert len(menus) == 1 and [c[1] for c in menus[0].choices] == LIBRARY.names()
    finally:
        studio.close()
