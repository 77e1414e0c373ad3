"""Command-line messages found wanting by using the commands as the README shows them."""

from __future__ import annotations

from render_helpers import PHOTO
from storymaker.cli import main


def test_rename_says_what_to_change_in_the_script(tmp_path, capsys):
    project = str(tmp_path / "p")
    assert main(["characters", "add", "Mara", str(PHOTO), "--project", project, "--backend", "tiny"]) == 0
    capsys.readouterr()
    assert main(["characters", "rename", "Mara", "Maria", "--project", project]) == 0
    assert "change [Mara] to [Maria] in your story script" in capsys.readouterr().out  # was "update [..]"
