"""`python -m storymaker render` end to end: photo -> character -> story -> PDF / PNG."""

from __future__ import annotations

import pytest

from render_helpers import PHOTO
from storymaker.cli import main

STORY = """\
title: Test Flight
style: ink drawing

[Ava] stands beside a rocket at dawn
  caption: The big day.

[Ava] waves from the launch tower
  pose: waving
  Ava: "See you soon!"

a rocket climbing into a clear sky
"""

TINY_ARGS = ["--size", "64x64", "--steps", "2"]



@pytest.fixture
def story_file(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(STORY, encoding="utf-8")
    return path


def test_tiny_photo_to_pdf(tmp_path, story_file, capsys):
    from pypdf import PdfReader

    from storymaker.services.storage import Project

    project_dir = tmp_path / "proj"
    rc = main(["characters", "add", "Ava", str(PHOTO), "--project", str(project_dir), "--backend", "tiny"])
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "comic.pdf"
    rc = main(["render", str(story_file), "--project", str(project_dir), "--out", str(out),
               "--backend", "tiny", *TINY_ARGS])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert out.is_file()
    assert len(PdfReader(str(out)).pages) >= 1
    project = Project.open(project_dir)
    for index in range(3):
        version = project.selected(index)
        assert version is not None and version.meta["backend"] == "tiny"
    assert "panel 3: ok" in err
    # The same command again refuses to overwrite; --overwrite replaces it.
    assert main(["render", str(story_file), "--project", str(project_dir), "--out", str(out),
                 "--backend", "tiny", *TINY_ARGS]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_tiny_characters_option_and_panels_subset(tmp_path, story_file, capsys):
    from storymaker.services.storage import Project

    project_dir = tmp_path / "proj"
    out = tmp_path / "strip.png"
    rc = main(["render", str(story_file), "--project", str(project_dir), "--out", str(out),
               "--backend", "tiny", "--characters", f"Ava={PHOTO}", "--panels", "2", "--layout", "strip",
               "--seed", "3", *TINY_ARGS])
    assert rc == 0, capsys.readouterr().err
    assert out.is_file()
    project = Project.open(project_dir)
    assert project.versions(0) == [] and len(project.versions(1)) == 1
    from storymaker.services.jobs import derive_seed

    assert project.selected(1).seed == derive_seed(3, 1)


def test_draft_to_png(tmp_path, story_file, capsys):
    from PIL import Image

    project_dir = tmp_path / "proj"
    out = tmp_path / "board.png"
    rc = main(["render", str(story_file), "--project", str(project_dir), "--out", str(out),
               "--backend", "draft", "--characters", f"Ava={PHOTO}", "--layout", "grid", "--size", "256x192",
               "--author", "Ada Lovelace"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Draft mode" in captured.err
    with Image.open(out) as im:
        assert im.width > 256
        assert im.text["Author"] == "Ada Lovelace"  # the README: the author is in the metadata


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--out", "x.gif"], ".pdf or a .png"),
        (["--panels", "9"], "panel 9 does not exist"),
        (["--panels", "a"], "not a panel number"),
        (["--size", "65x64"], "multiples of 8"),
    ],
)
def test_user_errors_exit_2_without_traceback(tmp_path, capsys, args, needle):
    plain = tmp_path / "plain.txt"
    plain.write_text("a rocket at dawn\n\na quiet sea\n", encoding="utf-8")
    argv = ["render", str(plain), "--project", str(tmp_path / "p"), "--backend", "draft"]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "c.pdf")]
    argv += [a if a != "x.gif" else str(tmp_path / "x.gif") for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_missing_story_and_unknown_character(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope.txt"), "--project", str(tmp_path / "p"),
                 "--out", str(tmp_path / "c.pdf"), "--backend", "draft"]) == 2
    assert "does not exist" in capsys.readouterr().err
    story = tmp_path / "s.txt"
    story.write_text("[Zed] walks\n", encoding="utf-8")
    assert main(["render", str(story), "--project", str(tmp_path / "p"),
                 "--out", str(tmp_path / "c.pdf"), "--backend", "draft"]) == 2
    err = capsys.readouterr().err
    assert "Zed" in err and "Traceback" not in err
    # The file is named (batch reads several) and the command line's own way to register is given.
    assert f"{story}: The story script has 1 problem" in err and "--characters NAME=PHOTO" in err


def test_progress_bar_counts_the_panels_still_to_come(story_file):
    """The bar's total covered only the panels begun so far: it said 100% after every panel."""
    from storymaker.cli.render import _progress_bar

    bar, progress = _progress_bar(None, [0, 1, 2], "draft")
    try:
        progress(0, 3, 0, 4)
        assert bar.total == 12
        for step in range(1, 5):
            progress(0, 3, step, 4)
        progress(1, 3, 0, 2)  # a panel with its own steps: the estimate follows
        assert (bar.n, bar.total) == (4, 8)
        progress(1, 3, 2, 2)
        progress(2, 3, 2, 2)
        assert bar.n == bar.total == 8
    finally:
        bar.close()


def test_storymaker_without_weights_exits_2_once_and_writes_nothing(tmp_path, capsys):
    story = tmp_path / "s.txt"
    story.write_text("a rocket at dawn\n\na quiet sea\n", encoding="utf-8")
    out = tmp_path / "c.pdf"
    assert main(["render", str(story), "--project", str(tmp_path / "p"), "--out", str(out),
                 "--backend", "storymaker"]) == 2
    err = capsys.readouterr().err
    assert err.count("stabilityai/stable-diffusion-xl-base-1.0") == 1
    assert "STORYMAKER_BASE_MODEL" in err and "No comic was written" in err and "Traceback" not in err
    assert not out.exists()


def test_missing_renders_only_the_panels_without_a_render_of_their_wording(tmp_path, story_file, capsys):
    from storymaker.services.storage import Project

    project_dir = tmp_path / "proj"
    base = ["render", str(story_file), "--project", str(project_dir), "--out", str(tmp_path / "c.png"),
            "--backend", "draft", "--characters", f"Ava={PHOTO}", "--layout", "strip", "--size", "64x64",
            "--overwrite"]
    assert main([*base, "--panels", "2"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main([*base, "--missing"]) == 0
    err = capsys.readouterr().err
    assert "1 panel already has a render of its current wording: skipped (--missing); 2 to render" in err
    assert "panel 1: ok" in err and "panel 3: ok" in err and "panel 2:" not in err
    project = Project.open(project_dir)
    assert [len(project.versions(i)) for i in range(3)] == [1, 1, 1]
    # Nothing missing: nothing renders, and the comic is written from the panels' own renders.
    (tmp_path / "c.png").unlink()
    assert main([*base, "--missing"]) == 0
    captured = capsys.readouterr()
    assert "3 panels already have a render of their current wording" in captured.err and "0 to render" in captured.err
    assert (tmp_path / "c.png").is_file() and "wrote" in captured.out
    assert [len(project.versions(i)) for i in range(3)] == [1, 1, 1]
