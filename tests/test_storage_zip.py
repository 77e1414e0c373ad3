"""Project archives: export/import round trip; zip slip, absurd and foreign archives are refused."""

from __future__ import annotations

import json
import stat
import zipfile

import pytest
from PIL import Image

from storymaker.errors import ProjectError
from storymaker.services.storage import FORMAT_VERSION, Project, export_zip, import_zip


@pytest.fixture
def project(tmp_path) -> Project:
    p = Project.create(tmp_path / "src", "The Lighthouse Keeper")
    p.write_script("title: The Lighthouse Keeper\n[Mara] waits\n")
    p.set_comic_settings({"layout": "grid", "columns": 2})
    first = p.add_version(0, Image.new("RGB", (8, 8), "red"), {"seed": 1})
    p.add_version(0, Image.new("RGB", (8, 8), "blue"), {"seed": 2})
    p.select(0, first.id)
    (p.characters_dir / "mara").mkdir()
    (p.characters_dir / "mara" / "character.json").write_text('{"name": "Mara"}')
    (p.poses_dir / "wave.json").write_text("{}")
    (p.exports_dir / "comic.pdf").write_bytes(b"%PDF-1.4")
    return p


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def make_zip(path, entries: dict[str, bytes], manifest: dict | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        if manifest is not None:
            zf.writestr("project.json", json.dumps(manifest))
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


MANIFEST = {"format_version": FORMAT_VERSION, "title": "x", "comic": {}, "selected": {}}


def test_export_then_import_round_trips(tmp_path, project):
    archive = export_zip(project, tmp_path / "out")  # a folder: named after the title
    assert archive == tmp_path / "out" / "the-lighthouse-keeper.zip"
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert "project.json" in names and "story.txt" in names
    assert not any(n.startswith("exports/") or n.split("/")[-1].startswith(".") for n in names)
    copy = import_zip(archive, tmp_path / "copy")
    expected = {k: v for k, v in files_of(project.path).items() if not k.startswith("exports/")}
    assert files_of(copy.path) == expected
    assert copy.title == "The Lighthouse Keeper" and copy.read_script() == project.read_script()
    assert copy.comic_settings() == {"layout": "grid", "columns": 2}
    assert [v.id for v in copy.versions(0)] == [v.id for v in project.versions(0)]
    assert copy.selected(0).id == project.selected(0).id and copy.selected(0).seed == 1
    assert copy.exports_dir.is_dir()


def test_export_to_a_zip_path_can_include_exports(tmp_path, project):
    archive = export_zip(project, tmp_path / "mine.zip", include_exports=True)
    assert archive == tmp_path / "mine.zip"
    with zipfile.ZipFile(archive) as zf:
        assert "exports/comic.pdf" in zf.namelist()


def test_export_into_the_project_itself_skips_the_archive(project):
    archive = export_zip(project, project.exports_dir / "self.zip", include_exports=True)
    with zipfile.ZipFile(archive) as zf:
        assert "exports/self.zip" not in zf.namelist()


def test_import_accepts_a_single_top_folder(tmp_path):
    archive = tmp_path / "nested.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("story/project.json", json.dumps(MANIFEST))
        zf.writestr("story/story.txt", "[Mara] x\n")
    project = import_zip(archive, tmp_path / "dest")
    assert project.read_script() == "[Mara] x\n" and (project.path / "project.json").is_file()


@pytest.mark.parametrize("name", [
    "../evil.txt",
    "panels/../../evil.txt",
    "/tmp/evil.txt",
    "C:/evil.txt",
    "..\\evil.txt",
])
def test_zip_slip_is_refused_and_nothing_is_written(tmp_path, name):
    archive = make_zip(tmp_path / "slip.zip", {"story.txt": b"x", name: b"owned"}, MANIFEST)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ProjectError, match="cannot be imported: entry .* (outside the project|absolute path)"):
        import_zip(archive, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no dest, no evil.txt
    assert not (tmp_path.parent / "evil.txt").exists()


def test_symlinks_are_refused(tmp_path):
    archive = make_zip(tmp_path / "link.zip", {}, MANIFEST)
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("characters/photo.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ProjectError, match="symbolic link.*Nothing was written"):
        import_zip(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_absurd_archives_are_refused(tmp_path):
    archive = make_zip(tmp_path / "big.zip", {"panels/000/a.png": b"\0" * 200_000}, MANIFEST)
    with pytest.raises(ProjectError, match="unpacks to .* MiB \\(the limit is"):
        import_zip(archive, tmp_path / "dest", max_bytes=100_000)
    many = make_zip(tmp_path / "many.zip", {f"poses/{i}.json": b"{}" for i in range(30)}, MANIFEST)
    with pytest.raises(ProjectError, match="31 entries \\(the limit is 10\\)"):
        import_zip(many, tmp_path / "dest", max_files=10)
    assert not (tmp_path / "dest").exists()


def test_size_limit_setting(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "big.zip", {"panels/000/a.png": b"\0" * (2 * 1024 * 1024)}, MANIFEST)
    monkeypatch.setenv("STORYMAKER_MAX_PROJECT_MB", "1")
    with pytest.raises(ProjectError, match="the limit is 1.0 MiB"):
        import_zip(archive, tmp_path / "dest")


def test_foreign_and_broken_archives_are_refused(tmp_path):
    plain = make_zip(tmp_path / "photos.zip", {"holiday/beach.jpg": b"jpeg"})
    with pytest.raises(ProjectError, match="not a StoryMaker project"):
        import_zip(plain, tmp_path / "d1")
    (tmp_path / "fake.zip").write_bytes(b"this is not a zip")
    with pytest.raises(ProjectError, match="not a zip archive"):
        import_zip(tmp_path / "fake.zip", tmp_path / "d2")
    newer = make_zip(tmp_path / "newer.zip", {}, {**MANIFEST, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(ProjectError, match="newer StoryMaker Studio"):
        import_zip(newer, tmp_path / "d3")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("project.json", "{not json")
    with pytest.raises(ProjectError, match="project.json is damaged"):
        import_zip(broken, tmp_path / "d4")
    with pytest.raises(ProjectError, match="does not exist"):
        import_zip(tmp_path / "missing.zip", tmp_path / "d5")
    assert not any((tmp_path / f"d{i}").exists() for i in range(1, 6))


def test_import_needs_a_new_or_empty_folder(tmp_path, project):
    archive = export_zip(project, tmp_path / "p.zip")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ProjectError, match="not an empty folder"):
        import_zip(archive, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert import_zip(archive, tmp_path / "empty").title == "The Lighthouse Keeper"


def test_corrupted_member_is_refused_and_nothing_is_written(tmp_path, project):
    archive = export_zip(project, tmp_path / "p.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("story.txt")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start] ^= 0xFF  # flip a byte of the (deflated) script: CRC or inflate fails
    archive.write_bytes(bytes(data))
    with pytest.raises(ProjectError, match="damaged|not a zip"):
        import_zip(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_member_larger_than_it_declares_is_refused(tmp_path):
    """A zip bomb that lies in its directory is refused (CRC at the declared size; bytes are also counted)."""
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("project.json", json.dumps(MANIFEST))
        zf.writestr("panels/000/bomb.png", b"\0" * 300_000)
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("panels/000/bomb.png")
    central = bytes(data).find(b"panels/000/bomb.png", info.header_offset + 40) - 46
    assert data[central:central + 4] == b"PK\x01\x02"
    data[central + 24:central + 28] = (100).to_bytes(4, "little")  # declared uncompressed size
    archive.write_bytes(bytes(data))
    with pytest.raises(ProjectError, match="unpacks to more than it declares|damaged"):
        import_zip(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_export_leaves_out_symlinks_and_hidden_files(tmp_path, project):
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of the project")
    (project.characters_dir / "link.txt").symlink_to(outside)
    (project.characters_dir / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    (project.path / ".project.json.x.tmp").write_text("half a save")
    with zipfile.ZipFile(export_zip(project, tmp_path / "p.zip")) as zf:
        names = zf.namelist()
    assert "characters/mara/character.json" in names
    assert not any("link" in n or n.endswith(".tmp") or "secret" in n for n in names)
