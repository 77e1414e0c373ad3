"""storymaker.services.storage is a package of small modules; its public names stay where they were."""

from __future__ import annotations

import importlib

import pytest

# Every public name storymaker.services.storage offered as one module, and the module that now has it.
HOMES = {
    "FORMAT_VERSION": "folder", "PROJECT_FILE": "folder", "SCRIPT_FILE": "folder", "LOCK_FILE": "folder",
    "SUBDIRS": "folder", "PNG_META_KEY": "versions", "PanelVersion": "versions", "PanelRender": "versions",
    "Project": "project", "STALE_AFTER_S": "project", "DEFAULT_MAX_IMPORT_FILES": "archive",
    "export_zip": "archive", "import_zip": "archive", "LAST_OPENED_FILE": "workspace", "ProjectInfo": "workspace",
    "project_info": "workspace", "list_projects": "workspace", "rename_project": "workspace",
    "duplicate_project": "workspace", "delete_project": "workspace", "last_opened": "workspace",
    "set_last_opened": "workspace",
}


@pytest.mark.parametrize("name", sorted(HOMES))
def test_every_public_name_is_still_importable_from_storage(name):
    storage = importlib.import_module("storymaker.services.storage")
    home = importlib.import_module(f"storymaker.services.storage.{HOMES[name]}")
    assert getattr(storage, name) is getattr(home, name)
    assert name in storage.__all__


def test_a_project_has_the_panel_api_and_compares_by_folder(tmp_path):
    from storymaker.services.storage import Project

    project = Project.create(tmp_path / "p", "T")
    assert repr(project) == f"Project({str(tmp_path / 'p')!r})"
    assert project == Project.open(tmp_path / "p") and len({project, Project(tmp_path / "p")}) == 1
    project.write_script("[Mara] a street\n")
    assert project.panel_indices() == [] and len(project.panel_ids(["a street"])) == 1


def test_remove_directory_removes_all_or_nothing(tmp_path, monkeypatch):
    from pathlib import Path

    from storymaker.fsutil import remove_directory

    folder = tmp_path / "p"
    (folder / "panels" / "x").mkdir(parents=True)
    (folder / "panels" / "x" / "0001.json").write_text("{}")
    kept = tmp_path / "other"
    kept.mkdir()

    def refuse(self, target):
        raise PermissionError("read-only")

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(OSError):
        remove_directory(folder)
    monkeypatch.undo()
    assert (folder / "panels" / "x" / "0001.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "p"]  # no hidden leftover
    remove_directory(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]
