"""The Story tab, the Render tab and the command line agree on what a script may ask for: an outfit
the character has, a size the app renders, a seed in range (QA r04, r05, r09). What the Story tab
calls valid renders; what it refuses is refused before any work, whatever the backend."""

from __future__ import annotations

import pytest

from ui_helpers import PHOTO

from storymaker.cli import main
from storymaker.errors import InvalidInputError, ScriptError
from storymaker.ui import characters_tab, render_tab, story_tab

OUTFIT_SCRIPT = "title: Outfit\n\n[Eileen] waves in the rain\n  outfit: Eileen=raincoat\n"
BIG_SCRIPT = "title: Big\nsize: 4096x4096\n\na quiet street\n"


def register(ctx, sid, name="Eileen"):
    character, _ = characters_tab.save_character(ctx, sid, str(PHOTO), name, "an astronaut", None)
    return character


def widgets(seed=-1):
    return render_tab.settings_from_widgets(256, 256, 2, 7.5, 0.8, 0.8, 0.7, seed)


def test_story_tab_reports_an_outfit_the_character_lacks_and_no_render_runs(ctx, sid, tmp_path):
    from PIL import Image

    character = register(ctx, sid)
    status, rows = story_tab.validate(ctx, sid, OUTFIT_SCRIPT)
    assert "1 problem" in status and "line 4, column 18" in status and rows == []
    assert "Eileen has no outfit called 'raincoat' (no outfits yet)" in status and "Characters tab" in status
    # The draft backend (ignores outfits when drawing) refuses it too, before any panel renders.
    with pytest.raises(ScriptError, match="no outfit called 'raincoat'"):
        render_tab.run_render(ctx, sid, "all", 1, widgets())
    assert ctx.project(sid).versions(0) == []
    # Once the outfit is added, the same script is valid and renders.
    outfit = tmp_path / "raincoat.png"
    Image.new("RGB", (120, 200), (240, 200, 0)).save(outfit)
    characters_tab.add_outfit(ctx, sid, character.id, "Raincoat", str(outfit))
    status, rows = story_tab.validate(ctx, sid, OUTFIT_SCRIPT)
    assert "valid: 1 panel" in status
    assert "1 of 1 panel rendered" in render_tab.run_render(ctx, sid, "all", 1, widgets())
    status, _ = story_tab.validate(ctx, sid, OUTFIT_SCRIPT.replace("raincoat", "tuxedo"))
    assert "Eileen's outfits: Raincoat" in status


def test_story_tab_uses_the_configured_largest_side(ctx, sid):
    assert ctx.settings.max_panel_side == 2048
    status, rows = story_tab.validate(ctx, sid, BIG_SCRIPT)
    assert "line 2, column 7" in status and "(2048 pixels)" in status and rows == []
    assert ctx.story(sid, strict=False) is None  # the Render and Comic tabs see the same problem
    with pytest.raises(ScriptError, match="2048 pixels"):
        render_tab.run_render(ctx, sid, "all", 1, widgets())
    assert "valid" in story_tab.validate(ctx, sid, BIG_SCRIPT.replace("4096x4096", "2048x1024"))[0]


def test_render_tab_seed_box_refuses_out_of_range_seeds():
    for seed in (99999999999999999999, 1e20, -5, 2**32):
        with pytest.raises(InvalidInputError, match="use 0 to 4294967295, or -1 for the story's seeds"):
            widgets(seed)
    assert widgets(-1).seed is None and widgets(None).seed is None
    assert widgets(2**32 - 1).seed == 2**32 - 1 and widgets(7.0).seed == 7


def run_cli(tmp_path, script: str, *extra: str, characters: bool = False) -> int:
    story = tmp_path / "story.txt"
    story.write_text(script, encoding="utf-8")
    argv = ["render", str(story), "--project", str(tmp_path / "p"), "--out", str(tmp_path / "c.pdf"),
            "--backend", "draft", "--size", "64x64", *extra]
    if characters:
        argv += ["--characters", f"Eileen={PHOTO}"]
    return main(argv)


def test_cli_refuses_what_the_story_tab_refuses_before_any_work(tmp_path, capsys):
    from storymaker.services.storage import Project

    assert run_cli(tmp_path, OUTFIT_SCRIPT, characters=True) == 2
    err = capsys.readouterr().err
    assert "line 4, column 18: Eileen has no outfit called 'raincoat' (no outfits yet)" in err
    assert "python -m storymaker characters outfit Eileen raincoat IMAGE" in err and "Traceback" not in err
    assert Project.open(tmp_path / "p").versions(0) == []  # nothing rendered
    assert run_cli(tmp_path, BIG_SCRIPT) == 2
    err = capsys.readouterr().err
    assert "line 2, column 7: size 4096x4096 is above the largest panel side this app renders (2048 pixels)" in err
    assert not (tmp_path / "c.pdf").exists()


@pytest.mark.parametrize("seed", ["99999999999999999999", "-5", "4294967296"])
def test_cli_seed_goes_through_the_same_rule(tmp_path, capsys, seed):
    assert run_cli(tmp_path, "a quiet street\n", "--seed", seed) == 2
    err = capsys.readouterr().err
    assert f"--seed {seed} is out of range: use 0 to 4294967295, or -1 for the story's seeds." in err
    assert "Traceback" not in err and not (tmp_path / "c.pdf").exists()


def test_cli_seed_minus_one_keeps_the_scripts_seeds(tmp_path, capsys):
    from storymaker.services.jobs import derive_seed
    from storymaker.services.storage import Project

    assert run_cli(tmp_path, "seed: 9\n\na quiet street\n", "--seed", "-1") == 0, capsys.readouterr().err
    assert Project.open(tmp_path / "p").selected(0).seed == derive_seed(9, 0)
