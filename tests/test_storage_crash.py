"""Interrupted saves: project.json is always the old or the new state, never broken."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from storymaker.services import storage
from storymaker.services.storage import Project

ROOT = Path(__file__).resolve().parents[1]


class Boom(RuntimeError):
    pass


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_failed_rename_keeps_the_old_state(tmp_path, monkeypatch):
    project = Project.create(tmp_path / "p", "Old")
    before = project.manifest_path.read_bytes()

    def fail(*args, **kwargs):
        raise Boom("disk gone")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(Boom):
        project.set_title("New")
    with pytest.raises(Boom):
        project.write_script("[Mara] new text\n")
    monkeypatch.undo()
    assert project.manifest_path.read_bytes() == before
    assert Project.open(project.path).title == "Old" and project.read_script() == ""
    assert _leftovers(project.path) == []  # the temporary files were removed


def test_failure_in_the_middle_of_writing_keeps_the_old_state(tmp_path, monkeypatch):
    project = Project.create(tmp_path / "p")
    project.set_comic_settings({"n": 1})
    real_fdopen = os.fdopen

    class HalfFile:
        """Writes half of the data, then fails, like a full disk."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise Boom("no space left")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: HalfFile(real_fdopen(fd, *a, **k)))
    with pytest.raises(Boom):
        project.set_comic_settings({"n": 2, "big": "x" * 10_000})
    monkeypatch.undo()
    assert Project.open(project.path).comic_settings() == {"n": 1}
    assert _leftovers(project.path) == []


def test_crash_between_png_and_json_leaves_no_listed_version(tmp_path, monkeypatch):
    project = Project.create(tmp_path / "p")
    project.write_script("a street\n")
    kept = project.add_version(0, Image.new("RGB", (8, 8)), {"seed": 1})

    def fail(*args, **kwargs):
        raise Boom("killed before the version was committed")

    monkeypatch.setattr(storage.versions, "atomic_write_json", fail)  # where add_version writes
    with pytest.raises(Boom):
        project.add_version(0, Image.new("RGB", (8, 8)), {"seed": 2})
    monkeypatch.undo()
    assert [v.id for v in project.versions(0)] == [kept.id]
    assert project.selected(0).id == kept.id
    assert len(list(project.panel_dir(0).glob("*.png"))) == 2  # the orphan PNG is never listed


CHILD = r"""
import sys
from PIL import Image
from storymaker.services.storage import Project

project = Project.open(sys.argv[1])
img = Image.new("RGB", (64, 64), "blue")
i = project.comic_settings().get("n", 0)
while True:
    i += 1
    project.set_comic_settings({"n": i, "pad": "x" * (i % 5000)})
    project.write_script(f"title: save {i}\n" + "[Mara] waits\n" * (i % 50))
    if i % 7 == 0 and i % 50 > i % 3:  # the script has a panel at position i % 3
        version = project.add_version(i % 3, img, {"seed": i})
        project.select(i % 3, version.id)
    if i % 5 == 0:
        print(f"saved {i}", flush=True)
"""


def test_sigkill_in_the_middle_of_a_loop_of_saves(tmp_path):
    project = Project.create(tmp_path / "p", "Crash test")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    last = 0
    for delay in (0.0, 0.05, 0.13, 0.21, 0.34):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(project.path)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = child.stdout.readline()  # some saves are done: now kill it at a random moment
        assert line.startswith("saved"), child.stderr.read()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        # Every file is whole: project.json parses, the script is one complete save.
        data = json.loads(project.manifest_path.read_text(encoding="utf-8"))
        reopened = Project.open(project.path)
        assert data["title"] == "Crash test"
        n = reopened.comic_settings()["n"]
        assert n >= 1 and reopened.comic_settings()["pad"] == "x" * (n % 5000)
        script = reopened.read_script()
        assert script.startswith("title: save ") and script.endswith("\n")
        saved = int(script.split("\n")[0].split()[-1])
        assert script == f"title: save {saved}\n" + "[Mara] waits\n" * (saved % 50)
        assert saved in (n, n - 1)  # the kill fell between the two writes or after both
        for index in range(3):
            for version in reopened.versions(index):  # every listed version has its image
                with Image.open(version.image_path) as png:
                    png.load()
            selected = reopened.selected(index)
            assert selected is None or selected.image_path.is_file()
        assert n > last  # the child saved more since the previous kill
        last = n
    reopened = Project.open(project.path)  # the last script may have had no panel: look at them all
    assert any(reopened.versions(panel.id) for panel in reopened.known_panels())


def test_leftovers_of_interrupted_saves_are_removed_when_old(tmp_path):
    project = Project.create(tmp_path / "p")
    project.write_script("a street\n")
    kept = project.add_version(0, Image.new("RGB", (8, 8)), {"seed": 1})
    old_tmp = project.path / ".project.json.abc.tmp"
    young_tmp = project.path / ".story.txt.def.tmp"
    orphan = project.panel_dir(0) / "0009-abcdef.png"
    for path in (old_tmp, young_tmp, orphan):
        path.write_bytes(b"partial")
    hour_ago = time.time() - 7200
    for path in (old_tmp, orphan, kept.image_path, kept.meta_path):
        os.utime(path, (hour_ago, hour_ago))
    Project.open(project.path)  # opening cleans up
    assert not old_tmp.exists() and not orphan.exists()
    assert young_tmp.exists()  # may be a save in progress
    assert [v.id for v in project.versions(0)] == [kept.id] and kept.image_path.exists()
