"""Projects on disk: creation, opening, script, comic settings and panel versions."""

from __future__ import annotations

import json
import threading

import pytest
from PIL import Image

from storymaker.errors import InvalidInputError, ProjectError
from storymaker.services.storage import FORMAT_VERSION, PNG_META_KEY, PanelVersion, Project


def image(color: str = "red") -> Image.Image:
    return Image.new("RGB", (16, 24), color)


@pytest.fixture
def project(tmp_path) -> Project:
    return Project.create(tmp_path / "story", title="  The   Lighthouse ")


def test_create_lays_out_the_folder(project):
    for folder in (project.characters_dir, project.poses_dir, project.panels_dir, project.exports_dir):
        assert folder.is_dir() and folder.parent == project.path
    data = json.loads(project.manifest_path.read_text(encoding="utf-8"))
    assert data["format_version"] == FORMAT_VERSION
    assert data["title"] == "The Lighthouse" == project.title
    assert data["comic"] == {} and data["selected"] == {} and data["panels"] == []
    assert data["created"].endswith("Z")
    assert project.read_script() == ""
    assert Project.is_project(project.path)
    assert sorted(p.name for p in project.path.iterdir()) == [
        "characters", "exports", "panels", "poses", "project.json", "story.txt"]


def test_create_refuses_used_folders(tmp_path, project):
    with pytest.raises(ProjectError, match="already a project: open it"):
        Project.create(project.path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "note.txt").write_text("x")
    with pytest.raises(ProjectError, match="not empty"):
        Project.create(tmp_path / "busy")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="is a file"):
        Project.create(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert Project.create(tmp_path / "empty", "ok").title == "ok"


def test_open_errors(tmp_path, project):
    with pytest.raises(ProjectError, match="does not exist"):
        Project.open(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ProjectError, match="not a StoryMaker project"):
        Project.open(tmp_path / "plain")
    manifest = json.loads(project.manifest_path.read_text())
    project.manifest_path.write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ProjectError, match="newer StoryMaker Studio.*upgrade"):
        Project.open(project.path)
    project.manifest_path.write_text(json.dumps({"title": "x"}))
    with pytest.raises(ProjectError, match="damaged"):
        Project.open(project.path)
    project.manifest_path.write_text('{"format_version": 1,')
    with pytest.raises(ProjectError, match="damaged.*restore"):
        Project.open(project.path)


def test_open_recreates_missing_sub_folders(project):
    project.exports_dir.rmdir()
    assert Project.open(project.path).exports_dir.is_dir()
    assert Project.open(project.path) == project


def test_script_and_title_and_comic_settings(project):
    text = "title: Café ☕\r\n[Mara] sips tea\n"
    project.write_script(text)
    assert Project.open(project.path).read_script() == text
    project.set_title("New title")
    assert Project.open(project.path).title == "New title"
    settings = {"layout": "grid", "columns": 2, "margins": [8, 8], "font": {"size": 14}}
    project.set_comic_settings(settings)
    got = Project.open(project.path).comic_settings()
    assert got == settings
    got["layout"] = "changed"  # a copy: changing it does not change the project
    assert project.comic_settings()["layout"] == "grid"
    with pytest.raises(InvalidInputError, match="JSON"):
        project.set_comic_settings({"image": object()})
    assert project.comic_settings() == settings


def test_add_version_writes_png_with_metadata_and_json(project):
    ids = project.panel_ids(["a harbour", "a street", "a woman on a cliff"])
    meta = {"seed": 42, "prompt": "a woman on a cliff", "steps": 25, "model_ids": {"base": "sdxl"}}
    version = project.add_version(2, image(), meta)  # position 2 of the script as last matched
    assert isinstance(version, PanelVersion)
    assert version.panel_index == 2 and version.seed == 42 and version.meta == meta
    assert version.panel_id == ids[2] and version.image_path.parent == project.panels_dir / ids[2]
    assert version.image_path.suffix == ".png" and version.meta_path.is_file()
    with Image.open(version.image_path) as png:
        assert png.size == (16, 24)
        record = json.loads(png.text[PNG_META_KEY])
    assert record["meta"] == meta and record["seed"] == 42 and record["id"] == version.id
    assert record["panel_id"] == ids[2]
    assert json.loads(version.meta_path.read_text()) == record
    assert version.load_image().getpixel((0, 0)) == (255, 0, 0)


def test_versions_selection_and_deletion(project):
    assert project.versions(0) == [] and project.selected(0) is None
    project.write_script("a harbour\n\na street\n")  # a saved script names the panels
    v1 = project.add_version(0, image("red"), {"seed": 1})
    v2 = project.add_version(0, image("blue"), {"seed": 2})
    v3 = project.add_version(0, image("green"), {"seed": 3})
    assert [v.id for v in project.versions(0)] == [v1.id, v2.id, v3.id]
    assert project.selected(0).id == v3.id  # default: the newest
    assert project.select(0, v1.id).id == v1.id
    assert Project.open(project.path).selected(0).id == v1.id  # kept in project.json
    project.delete_version(0, v1.id)
    assert not v1.image_path.exists() and not v1.meta_path.exists()
    assert project.selected(0).id == v3.id  # selection gone: newest again
    assert project.manifest()["selected"] == {}
    project.delete_version(0, v3.id)
    v4 = project.add_version(0, image(), {"seed": 4})
    assert v4.id not in (v1.id, v2.id, v3.id)  # ids are never reused
    assert [v.id for v in project.versions(0)] == [v2.id, v4.id]
    assert project.panel_indices() == [0]
    with pytest.raises(ProjectError, match="no version 'nope'"):
        project.select(0, "nope")
    with pytest.raises(ProjectError, match="no version"):
        project.delete_version(0, v1.id)
    assert project.versions(1) == [] and project.selected(1) is None


def test_incomplete_or_damaged_versions_are_skipped(project):
    project.panel_ids(["a", "b"])
    good = project.add_version(1, image(), {"seed": 1})
    folder = project.panel_dir(1)
    (folder / "0099-abcdef.png").write_bytes(b"orphan png: its json was never written")
    (folder / "0098-abcdef.json").write_text("{broken")
    (folder / "0097-abcdef.json").write_text(json.dumps({"id": "0097-abcdef", "image": "0097-abcdef.png"}))
    assert [v.id for v in project.versions(1)] == [good.id]


def test_add_version_input_errors(project):
    project.panel_ids(["a street"])
    with pytest.raises(InvalidInputError, match="PIL image"):
        project.add_version(0, b"png bytes", {})
    with pytest.raises(InvalidInputError, match="JSON"):
        project.add_version(0, image(), {"tensor": object()})
    with pytest.raises(InvalidInputError, match="seed"):
        project.add_version(0, image(), {"seed": "7"})
    with pytest.raises(InvalidInputError, match="panel index"):
        project.add_version(-1, image(), {})
    with pytest.raises(InvalidInputError, match="not a panel id"):
        project.add_version("../escape", image(), {})
    with pytest.raises(ProjectError, match="Panel 2 is not in the script"):
        project.add_version(1, image(), {})
    assert project.versions(0) == [] and not any(project.panels_dir.iterdir())


def test_cmyk_images_are_stored_as_rgb(project):
    [pid] = project.panel_ids(["a street"])
    version = project.add_version(pid, Image.new("CMYK", (8, 8)), {})
    with Image.open(version.image_path) as png:
        assert png.mode == "RGB"


def test_concurrent_versions_get_unique_ids(tmp_path):
    Project.create(tmp_path / "p").write_script("a street\n")
    errors = []

    def worker():
        try:
            mine = Project.open(tmp_path / "p")  # separate instances, like two sessions
            for _ in range(4):
                mine.add_version(0, image(), {"seed": 1})
                mine.set_comic_settings({"who": threading.get_ident()})
        except Exception as err:  # noqa: BLE001 - re-raised below through the list
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [v.id for v in Project.open(tmp_path / "p").versions(0)]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert sorted(int(i.split("-")[0]) for i in ids) == list(range(1, 13))


def test_panel_ids_remember_only_what_is_worth_remembering(project):
    ids = project.panel_ids(["a harbour", "a street", "a hill"])
    written = project.manifest_path.read_bytes()
    assert project.panel_ids(["a harbour", "a street", "a hill"]) == ids  # stable
    assert project.manifest_path.read_bytes() == written  # and nothing rewritten
    kept = project.add_version(ids[1], image(), {"seed": 1, "source_prompt": "a street"})
    project.write_script("a harbour\n")  # the street (rendered) and the hill (never rendered) leave
    known = {k.id: k for k in project.known_panels()}
    assert set(known) == {ids[0], ids[1]} and known[ids[1]].position is None
    assert project.versions(ids[1]) == [kept] and project.selected(1) is None  # no panel 2 any more
    project.write_script("a harbour\n\na street\n")
    assert project.panel_ids(["a harbour", "a street"]) == ids[:2] and project.selected(1) == kept


def test_a_render_for_a_panel_that_left_meanwhile_is_kept_under_its_id(project):
    [pid] = project.panel_ids(["a street"])
    project.write_script("a harbour\n")  # the street leaves (no render yet): forgotten
    assert pid not in {k.id for k in project.known_panels()}
    version = project.add_version(pid, image(), {"seed": 3, "source_prompt": "a street"})
    assert project.versions(pid) == [version]  # the render of the street finished: remembered
    project.write_script("a harbour\n\na street\n")
    assert project.selected(1) == version
