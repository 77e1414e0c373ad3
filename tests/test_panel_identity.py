"""Issue 12: renders belong to panels, not to positions.

A person inserts, deletes, reorders or rewords panels in the script; every render stays under the
panel it was made for (a reworded panel keeps it, marked "script changed since render"), the comic
never letters a render with another panel's caption, and format 1 projects (renders under
panels/NNN) migrate without losing a version. The UI and CLI tests go through the handlers and the
command as a person would (draft backend: real images, no model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from storymaker.services.storage import Project
from storymaker.ui import comic_tab, render_tab, story_tab

A = "a lighthouse on a cliff at dusk"
B = "a small boat in a storm"
C = "an empty beach at dawn"
N = "a seagull over the harbour at noon"  # inserted later
B_EDITED = "a small wooden boat in a heavy storm"
X = "two children build a sandcastle"  # unrelated to B
CAPTION = {A: "The lamp.", B: "The storm.", C: "The morning.", N: "The gull.", B_EDITED: "The storm.",
           X: "The castle."}


def script(*prompts: str) -> str:
    return "title: Identity\n\n" + "\n".join(f"{p}\n  caption: {CAPTION[p]}\n" for p in prompts)


OPTIONS = render_tab.settings_from_widgets(64, 64, 1, 7.5, 0.8, 0.8, 0.7, -1)


def rendered(ctx, sid, *prompts):
    story_tab.validate(ctx, sid, script(*prompts))
    message = render_tab.run_render(ctx, sid, "all", 1, OPTIONS)
    assert f"{len(prompts)} of {len(prompts)} panels rendered" in message


def gallery(ctx, sid) -> list[tuple[int, str, str]]:
    """(panel number shown, prompt the shown render was made for, caption) per gallery item."""
    out = []
    for path, caption in render_tab.panel_gallery(ctx, sid):
        record = json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))
        out.append((int(caption.split()[1]), record["meta"]["source_prompt"], caption))
    return out


def shown(ctx, sid) -> list[tuple[int, str]]:
    return [(number, prompt) for number, prompt, _ in gallery(ctx, sid)]


# -- the gallery: each render under the panel it was made for -------------------------------------

def test_inserting_a_panel_at_the_top_keeps_each_render_under_its_panel(ctx, sid):
    rendered(ctx, sid, A, B, C)
    story_tab.validate(ctx, sid, script(N, A, B, C))
    assert shown(ctx, sid) == [(2, A), (3, B), (4, C)]  # the new panel 1 has no render yet


def test_deleting_a_panel_keeps_the_others_and_putting_it_back_restores_its_render(ctx, sid):
    rendered(ctx, sid, A, B, C)
    story_tab.validate(ctx, sid, script(A, C))
    assert shown(ctx, sid) == [(1, A), (2, C)]
    story_tab.validate(ctx, sid, script(A, B, C))  # undo: B's render was kept
    assert shown(ctx, sid) == [(1, A), (2, B), (3, C)]


def test_reordering_panels_moves_their_renders_with_them(ctx, sid):
    rendered(ctx, sid, A, B, C)
    story_tab.validate(ctx, sid, script(C, A, B))
    assert shown(ctx, sid) == [(1, C), (2, A), (3, B)]


def test_an_edited_prompt_keeps_its_render_marked_script_changed(ctx, sid):
    rendered(ctx, sid, A, B, C)
    story_tab.validate(ctx, sid, script(A, B_EDITED, C))
    items = gallery(ctx, sid)
    assert [(n, p) for n, p, _ in items] == [(1, A), (2, B), (3, C)]
    assert items[1][2].endswith("script changed since render")
    assert "changed" not in items[0][2] and "changed" not in items[2][2]
    versions, _ = render_tab.version_gallery(ctx, sid, 2)
    assert "(script changed since render)" in versions[0][1]
    render_tab.run_render(ctx, sid, "panel", 2, OPTIONS)  # re-rendered: the new wording, no mark
    items = gallery(ctx, sid)
    assert items[1][:2] == (2, B_EDITED) and "changed" not in items[1][2]
    assert len(render_tab.version_gallery(ctx, sid, 2)[0]) == 2  # the old render is still a version


def test_a_render_is_never_shown_under_an_unrelated_prompt(ctx, sid):
    rendered(ctx, sid, A, B, C)
    story_tab.validate(ctx, sid, script(A, X, C))  # B replaced by something else entirely
    assert shown(ctx, sid) == [(1, A), (3, C)]


def test_rendering_the_new_panel_leaves_the_moved_panels_versions_alone(ctx, sid):
    rendered(ctx, sid, A, B, C)
    story_tab.validate(ctx, sid, script(N, A, B, C))
    render_tab.run_render(ctx, sid, "panel", 1, OPTIONS)
    assert shown(ctx, sid) == [(1, N), (2, A), (3, B), (4, C)]
    for number, prompt in ((1, N), (2, A)):
        items, _ = render_tab.version_gallery(ctx, sid, number)
        assert len(items) == 1
    render_tab.choose_version(ctx, sid, 2, 0)
    assert shown(ctx, sid)[1] == (2, A)


def test_a_script_edited_during_a_render_does_not_misplace_the_render(ctx, sid):
    story_tab.validate(ctx, sid, script(A, B))
    inserted = []

    def progress(fraction, desc=None):  # the person inserts a panel while panel 1 renders
        if not inserted:
            inserted.append(story_tab.validate(ctx, sid, script(N, A, B)))

    render_tab.run_render(ctx, sid, "panel", 1, OPTIONS, progress)
    assert inserted and shown(ctx, sid) == [(2, A)]


# -- typing: a prompt retyped key by key (the script is saved at each key) ----------------------------

STREET = "a quiet street at noon"
DRAGON = "a red dragon over a castle"


def keyed(ctx, sid, old: str, new: str) -> None:
    """Delete ``old`` (panel 1 of a two-panel script) with Backspace and type ``new``, each key
    saved as the Story tab saves it."""
    for text in [old[:n] for n in range(len(old) - 1, -1, -1)] + [new[:n] for n in range(1, len(new) + 1)]:
        story_tab.validate(ctx, sid, f"title: Identity\n\n{text}\n\n{C}\n")


def test_a_prompt_retyped_key_by_key_into_another_scene_is_a_new_empty_panel(ctx, sid):
    story_tab.validate(ctx, sid, f"title: Identity\n\n{STREET}\n\n{C}\n")
    render_tab.run_render(ctx, sid, "all", 1, OPTIONS)
    keyed(ctx, sid, STREET, DRAGON)
    assert shown(ctx, sid) == [(2, C)]  # the street render is not shown under the dragon
    project = ctx.project(sid)
    assert [len(p.versions) for p in project.panel_renders([DRAGON, C])] == [0, 1]
    assert [p.metadata["source_prompt"] for p in comic_tab.comic_panels(ctx, sid)] == [C]
    left = [k for k in project.known_panels() if k.position is None]
    assert [[v.prompt for v in project.versions(k.id)] for k in left] == [[STREET]]  # kept
    keyed(ctx, sid, DRAGON, STREET)  # typed back: the street panel and its render return
    items = gallery(ctx, sid)
    assert [(n, p) for n, p, _ in items] == [(1, STREET), (2, C)] and "changed" not in items[0][2]


def test_a_gradual_rewording_close_to_the_rendered_prompt_keeps_the_render(ctx, sid):
    story_tab.validate(ctx, sid, f"title: Identity\n\n{STREET}\n\n{C}\n")
    render_tab.run_render(ctx, sid, "all", 1, OPTIONS)
    night = "a quiet street at night"
    for text in [STREET[:n] for n in range(len(STREET) - 1, len(STREET) - 5, -1)] + [
            night[:n] for n in range(len(STREET) - 3, len(night) + 1)]:  # "noon" -> "night"
        story_tab.validate(ctx, sid, f"title: Identity\n\n{text}\n\n{C}\n")
    narrow = "a quiet narrow street at night"
    for n in range(len("a quiet "), len("a quiet narrow ") + 1):  # "narrow " typed in
        story_tab.validate(ctx, sid, f"title: Identity\n\n{narrow[:n] + night[len('a quiet '):]}\n\n{C}\n")
    items = gallery(ctx, sid)
    assert [(n, p) for n, p, _ in items] == [(1, STREET), (2, C)]
    assert items[0][2].endswith("script changed since render")
    assert [p.metadata["script_changed"] for p in comic_tab.comic_panels(ctx, sid)] == [True, False]


# -- the comic --------------------------------------------------------------------------------------

def comic_pairs(ctx, sid) -> list[tuple[str, str]]:
    """(lettered caption, prompt its render was made for) per comic panel."""
    return [(p.caption, p.metadata["source_prompt"]) for p in comic_tab.comic_panels(ctx, sid)]


def test_the_comic_never_letters_a_render_with_another_panels_caption(ctx, sid):
    rendered(ctx, sid, A, B, C)
    for order in ((N, A, B, C), (C, A), (B, C, A, X)):
        story_tab.validate(ctx, sid, script(*order))
        pairs = comic_pairs(ctx, sid)
        assert pairs and all(CAPTION[prompt] == caption for caption, prompt in pairs), (order, pairs)
        assert [prompt for _, prompt in pairs] == [p for p in order if p in (A, B, C)]


def test_the_comic_uses_an_edited_panels_render_and_says_so(ctx, sid):
    rendered(ctx, sid, A, B, C)
    story_tab.validate(ctx, sid, script(A, B_EDITED, C))
    panels = comic_tab.comic_panels(ctx, sid)
    assert [p.metadata["script_changed"] for p in panels] == [False, True, False]
    layout = comic_tab.layout_options(ctx, sid, "Strip (one row)", 3, "A4", "portrait", "cover", 10, 2, "")
    pages, status = comic_tab.preview_pages(ctx, sid, layout)
    assert pages and "Panel 2: script changed since render" in status
    path, status = comic_tab.export_comic(ctx, sid, layout, "png")
    from storymaker.services.export import read_png_metadata

    chunks = read_png_metadata(path)
    records = [json.loads(chunks[f"storymaker:panel:{n}"]) for n in (1, 2, 3)]
    assert [(r["script_panel"], r["source_prompt"], r["script_changed"]) for r in records] == [
        (1, A, False), (2, B, True), (3, C, False)]


def test_cli_comic_after_inserting_a_panel_shows_every_render_under_its_own_panel(tmp_path, capsys):
    from storymaker.cli import main
    from storymaker.services.export import read_png_metadata

    project = tmp_path / "proj"
    story = tmp_path / "story.txt"
    base = ["--project", str(project), "--backend", "draft", "--layout", "strip", "--size", "64x64"]
    story.write_text(script(A, B, C), encoding="utf-8")
    assert main(["render", str(story), "--out", str(tmp_path / "one.png"), *base]) == 0, capsys.readouterr().err
    story.write_text(script(N, A, B, C), encoding="utf-8")
    out = tmp_path / "two.png"
    assert main(["render", str(story), "--out", str(out), "--panels", "1", *base]) == 0, capsys.readouterr().err
    chunks = read_png_metadata(out)
    prompts = [json.loads(chunks[f"storymaker:panel:{n}"])["source_prompt"] for n in (1, 2, 3, 4)]
    assert prompts == [N, A, B, C]


# -- the project: identity through typing, and format 1 projects ----------------------------------

def test_typing_a_new_panel_and_retyping_a_word_keep_the_other_panels_ids(tmp_path):
    project = Project.create(tmp_path / "p")
    project.write_script(script(A, B, C))
    ids = project.panel_ids([A, B, C])
    new = "a red kite"
    for n in range(1, len(new) + 1):  # saved as typed, one key at a time, above panel 1
        project.write_script(f"{new[:n]}\n\n" + script(A, B, C).split("\n", 2)[2])
    assert project.panel_ids([new, A, B, C])[1:] == ids
    edited = B.replace("storm", "gale")
    for text in (B[:-1], B[:-2], B[:-3], B[:-4], B[:-5], B[:-5] + "g", B[:-5] + "ga", B[:-5] + "gal", edited):
        project.write_script(f"{new}\n\n{A}\n\n{text}\n\n{C}\n")
    assert project.panel_ids([new, A, edited, C])[1:] == ids


def legacy_version(project_dir: Path, folder: str, day: int, prompt: str | None, color: str) -> str:
    """A render as format 1 wrote it: panels/NNN/<number>-<hex>.png + .json (numbered per folder),
    the record naming no panel id."""
    target = project_dir / "panels" / folder
    target.mkdir(parents=True, exist_ok=True)
    vid = f"{len(list(target.glob('*.json'))) + 1:04d}-{day:06x}"
    Image.new("RGB", (16, 16), color).save(target / f"{vid}.png")
    meta = {"seed": day, **({"source_prompt": prompt} if prompt is not None else {})}
    record = {"id": vid, "panel_index": int(folder), "seed": day, "created": f"2026-01-0{day}T00:00:00Z",
              "image": f"{vid}.png", "meta": meta}
    (target / f"{vid}.json").write_text(json.dumps(record), encoding="utf-8")
    return vid


def legacy_project(tmp_path) -> tuple[Path, dict[str, str]]:
    """The old bug's history: [A, B] rendered, B twice; N inserted above; A and N rendered again,
    so panels/000 mixes A and N and panels/001 mixes B and A; an unlabelled render in panels/005."""
    path = tmp_path / "old"
    Project.create(path)
    v = {
        "a1": legacy_version(path, "000", 1, A, "red"),
        "b1": legacy_version(path, "001", 2, B, "blue"),
        "b2": legacy_version(path, "001", 3, B, "navy"),
        "a2": legacy_version(path, "001", 4, A, "orange"),  # number 3 of its folder, newer than a1
        "n1": legacy_version(path, "000", 5, N, "white"),
        "u1": legacy_version(path, "005", 6, None, "black"),
    }
    manifest = json.loads((path / "project.json").read_text())
    manifest.update(format_version=1, selected={"0": v["n1"], "1": v["b1"]})
    manifest.pop("panels", None)
    (path / "project.json").write_text(json.dumps(manifest))
    (path / "story.txt").write_text(script(N, A, B), encoding="utf-8")
    return path, v


def test_format_1_projects_migrate_without_losing_or_misplacing_a_version(tmp_path):
    path, v = legacy_project(tmp_path)
    project = Project.open(path)
    assert project.manifest()["format_version"] == 2
    panels = project.panel_renders([N, A, B])
    assert [[x.id for x in p.versions] for p in panels] == [[v["n1"]], [v["a1"], v["a2"]], [v["b1"], v["b2"]]]
    assert [p.selected.id for p in panels] == [v["n1"], v["a2"], v["b1"]]  # b1: chosen in format 1
    assert not any(p.changed for p in panels)
    everything = {x.id for k in project.known_panels() for x in project.versions(k.id)}
    assert everything == set(v.values())  # the unlabelled render is kept too, as a panel that left
    assert all(x.image_path.is_file() for k in project.known_panels() for x in project.versions(k.id))
    assert Project.open(path).panel_renders([N, A, B]) == panels  # opening again changes nothing


def test_a_migrated_panels_versions_are_in_the_order_they_were_made(tmp_path):
    path = tmp_path / "old"
    Project.create(path)
    legacy_version(path, "000", 1, B, "blue")  # [B, A] rendered
    a = [legacy_version(path, "001", day, A, "red") for day in (2, 3, 4)]  # A three times
    a.append(legacy_version(path, "000", 5, A, "orange"))  # reordered to [A, B]; A again: 000's 2nd
    manifest = json.loads((path / "project.json").read_text())
    manifest.update(format_version=1, selected={})
    (path / "project.json").write_text(json.dumps(manifest))
    (path / "story.txt").write_text(script(A, B), encoding="utf-8")
    first = Project.open(path).panel_renders([A, B])[0]
    assert [x.id for x in first.versions] == a and first.selected.id == a[-1]  # the newest


def test_an_interrupted_migration_is_done_again_the_same_way(tmp_path, monkeypatch):
    from storymaker.services import storage

    path, v = legacy_project(tmp_path)
    real = storage.folder.atomic_write_json
    calls = []

    def dies_on_the_third_write(target, data):
        calls.append(target)
        if len(calls) == 3:
            raise OSError("killed")
        real(target, data)

    for module in (storage.folder, storage.versions, storage.migration):  # every write of an open
        monkeypatch.setattr(module, "atomic_write_json", dies_on_the_third_write)
    with pytest.raises(OSError):
        Project.open(path)
    monkeypatch.undo()
    assert json.loads((path / "project.json").read_text())["format_version"] == 1
    panels = Project.open(path).panel_renders([N, A, B])
    assert [[x.id for x in p.versions] for p in panels] == [[v["n1"]], [v["a1"], v["a2"]], [v["b1"], v["b2"]]]


# -- the matching rules (storymaker.domain.panel_identity) ------------------------------------------

def match(known: list[tuple[str, str | None]], prompts: list[str], retired=()):
    from storymaker.domain.panel_identity import KnownPanel, match_panels

    counter = iter(range(1000))
    panels = [KnownPanel(pid, prompt, i) for i, (pid, prompt) in enumerate(known)]
    panels += [KnownPanel(pid, prompt, None) for pid, prompt in retired]
    return match_panels(panels, prompts, new_id=lambda: f"new{next(counter)}")


def test_matching_rules():
    old = [("a", A), ("b", B), ("c", C)]
    assert match(old, [N, A, B, C]).ids == ("new0", "a", "b", "c")  # insert
    assert match(old, [A, C]).ids == ("a", "c")  # delete
    assert match(old, [C, B, A]).ids == ("c", "b", "a")  # reorder
    assert match(old, [A, B_EDITED, C]).ids == ("a", "b", "c")  # reworded
    assert match(old, [A, X, C]).ids == ("a", "new0", "c")  # replaced
    assert match(old, [A.upper(), "  " + B.replace(" ", "   "), C]).ids == ("a", "b", "c")  # case, spaces
    assert match(old, [N, B_EDITED, A, C]).ids == ("new0", "new1", "a", "c")  # edited *and* moved: new
    left = match(old, [A, C])
    assert [(k.id, k.position) for k in left.panels] == [("a", 0), ("c", 1), ("b", None)]
    assert match(old, [A, B, C], retired=[("z", N)]).panels[-1].id == "z"  # still remembered
    assert match([("a", A)], [A, N], retired=[("z", N)]).ids == ("a", "z")  # put back
    # put back wins over a similar edit of a panel in the same place
    assert match([("a", A), ("b", B)], [A, B_EDITED], retired=[("e", B_EDITED)]).ids == ("a", "e")
    assert match([("a", A), ("a2", A)], [A, A, A]).ids == ("a", "a2", "new0")  # duplicates, in order
    assert match([("a", A), ("u", None)], [A, X]).ids == ("a", "u")  # unknown prompt: by place


def test_a_panel_with_renders_is_compared_with_what_was_rendered_not_with_its_last_wording():
    from storymaker.domain.panel_identity import KnownPanel, match_panels

    def ids(known, prompts):
        counter = iter(range(1000))
        return match_panels(known, prompts, new_id=lambda: f"new{next(counter)}").ids

    # the QA chain: "a quiet street at noon" rendered, deleted down to "a", now "a r"
    assert ids([KnownPanel("p", "a", 0)], ["a r", C]) == ("p", "new0")  # no render: follows
    assert ids([KnownPanel("p", "a", 0, (STREET,))], ["a r", C]) == ("new0", "new1")
    # still close to what was rendered, however far the last save had drifted
    drifted = KnownPanel("p", "a quiet street at noon, rain", 0, (STREET,))
    assert ids([drifted], ["a quiet street at night"]) == ("p",)
    # any of its renders' wordings counts
    assert ids([KnownPanel("p", "x", 0, (STREET, X))], ["two children build a sandcastle at noon"]) == ("p",)
    # put back by its last wording or by a rendered one (typed, or pasted in one save)
    left = [KnownPanel("n", "a red", 0), KnownPanel("p", "a quiet st", None, (STREET,))]
    assert ids(left, ["a quiet st"]) == ("p",) and ids(left, [STREET]) == ("p",)
    matching = match_panels(left, [STREET])
    assert [(k.id, k.position, k.rendered) for k in matching.panels] == [("p", 0, (STREET,)), ("n", None, ())]


def test_the_wordings_a_panel_was_rendered_for_follow_its_versions(tmp_path):
    from storymaker.domain.panel_identity import KnownPanel

    project = Project.create(tmp_path / "p")
    [pid] = project.panel_ids([STREET])
    image = Image.new("RGB", (16, 16))
    first = project.add_version(pid, image, {"seed": 1, "source_prompt": STREET})
    project.panel_ids(["a quiet street at night"])
    second = project.add_version(pid, image, {"seed": 2, "source_prompt": "a quiet street at night"})
    night = "a quiet street at night"
    assert project.known_panels() == [KnownPanel(pid, night, 0, (STREET, night))]
    # recorded in project.json: a save of the script reads no render
    [entry] = json.loads(project.manifest_path.read_text())["panels"]
    assert entry["rendered"] == [STREET, "a quiet street at night"]
    project.delete_version(pid, second.id)
    assert project.known_panels()[0].rendered == (STREET,)
    # a project saved before the wordings were recorded: read from the versions, then recorded
    data = json.loads(project.manifest_path.read_text())
    del data["panels"][0]["rendered"]
    project.manifest_path.write_text(json.dumps(data))
    assert project.panel_ids(["a"]) != [pid]  # compared with the rendered street: a new panel
    assert json.loads(project.manifest_path.read_text())["panels"][-1]["rendered"] == [STREET]
    project.panel_ids([STREET])  # back
    project.delete_version(pid, first.id)  # no render left: the panel follows its wording again
    assert "rendered" not in json.loads(project.manifest_path.read_text())["panels"][0]
    assert [project.panel_ids([STREET[:n]]) for n in range(len(STREET) - 1, 0, -1)][-1] == [pid]


def test_similarity_threshold_examples_from_the_docstring():
    from storymaker.domain.panel_identity import EDIT_SIMILARITY, similarity

    assert similarity("[Mara] stands on a cliff", "[Mara] stands on a rocky cliff at dusk") >= EDIT_SIMILARITY
    assert similarity("[Mara] stands on a rocky cliff at dusk",
                      "[Mara] and [Theo] drink tea beside the great lamp") < EDIT_SIMILARITY
    assert similarity(B, B_EDITED) >= EDIT_SIMILARITY and similarity(B, X) < EDIT_SIMILARITY


def test_a_format_1_archive_is_migrated_when_imported(tmp_path):
    import zipfile

    from storymaker.services.storage import import_zip

    path, v = legacy_project(tmp_path)
    archive = tmp_path / "old.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for item in path.rglob("*"):
            if item.is_file() and not item.name.startswith("."):
                zf.write(item, item.relative_to(path).as_posix())
    project = import_zip(archive, tmp_path / "imported")
    assert project.manifest()["format_version"] == 2
    assert [p.selected.id for p in project.panel_renders([N, A, B])] == [v["n1"], v["a2"], v["b1"]]
