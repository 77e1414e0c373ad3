"""Work is never lost (issue 12): projects side by side, nothing replaced without asking,
character deletion that asks, names the panels and can be undone, a summary that follows."""

from __future__ import annotations

import pytest

from ui_helpers import PHOTO, THREE_PANELS

from storymaker.errors import StoryMakerError
from storymaker.services import storage
from storymaker.ui import characters_tab, comic_tab, project_tab, render_tab, story_tab
from storymaker.ui.session import SessionManager


def add(ctx, sid, name="Eileen"):
    character, _ = characters_tab.save_character(ctx, sid, str(PHOTO), name, "an astronaut", None)
    return character


def render_all(ctx, sid):
    options = render_tab.settings_from_widgets(64, 64, 2, 7.5, 0.8, 0.8, 0.7, -1)
    return render_tab.run_render(ctx, sid, "all", 1, options)


# ---------------------------------------------------------------- storage: project-level operations

def test_list_rename_duplicate_delete_projects(tmp_path):
    a = storage.Project.create(tmp_path / "a", "Alpha")
    a.write_script("a harbour\n")
    storage.Project.create(tmp_path / "b", "Beta")
    (tmp_path / "not-a-project").mkdir()
    (tmp_path / ".a.tmp").mkdir()
    assert {p.title for p in storage.list_projects(tmp_path)} == {"Alpha", "Beta"}

    assert storage.rename_project(tmp_path / "a", "  Alpha   two ").title == "Alpha two"
    with pytest.raises(StoryMakerError, match="cannot be empty"):
        storage.rename_project(tmp_path / "a", "  ")

    copy = storage.duplicate_project(tmp_path / "a", tmp_path / "c")
    assert copy.title == "Alpha two (copy)" and copy.read_script() == "a harbour\n"
    copy.write_script("changed\n")
    assert storage.Project.open(tmp_path / "a").read_script() == "a harbour\n"  # a real copy
    with pytest.raises(StoryMakerError, match="already exists"):
        storage.duplicate_project(tmp_path / "a", tmp_path / "b")

    storage.delete_project(tmp_path / "c")
    assert not (tmp_path / "c").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".deleted")]
    with pytest.raises(StoryMakerError, match="nothing was deleted"):
        storage.delete_project(tmp_path / "not-a-project")
    assert (tmp_path / "not-a-project").is_dir()

    assert storage.last_opened(tmp_path) is None
    storage.set_last_opened(tmp_path, "b")
    assert storage.last_opened(tmp_path) == "b"
    storage.set_last_opened(tmp_path, "../b")
    assert storage.last_opened(tmp_path) is None  # never a path outside the workspace


def test_project_info_counts_characters_and_renders(ctx, sid):
    add(ctx, sid)
    story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    render_all(ctx, sid)
    info = storage.project_info(ctx.project(sid).path)
    assert (info.characters, info.renders) == (1, 3)


# ---------------------------------------------------------------- the Project tab

def test_new_project_and_example_are_made_beside_the_current_one(ctx, sid):
    add(ctx, sid)
    story_tab.validate(ctx, sid, "[Eileen] waves\n")
    mine = ctx.project(sid).path
    project_tab.new_project(ctx, sid, "Second story")
    assert ctx.project(sid).title == "Second story"
    project_tab.make_example(ctx, sid)
    titles = [label.split(" · ")[0] for label, _ in project_tab.project_choices(ctx, sid)]
    assert len(titles) == 3 and "Second story" in titles and "Untitled story" in titles
    # The first project is untouched and opens again.
    project_tab.switch_project(ctx, sid, mine.name)
    assert ctx.project(sid).path == mine
    assert ctx.project(sid).read_script() == "[Eileen] waves\n"
    assert [c.name for c in ctx.registry(sid).list()] == ["Eileen"]


def test_reopening_shows_the_last_project(ctx, sid):
    project_tab.new_project(ctx, sid, "One")
    project_tab.new_project(ctx, sid, "Two")
    one = next(name for label, name in project_tab.project_choices(ctx, sid) if label.startswith("One"))
    project_tab.switch_project(ctx, sid, one)
    # A reload (or a restarted local app) resumes the same workspace and the same project.
    again = SessionManager(ctx.sessions.root, 0)
    assert again.resume(sid) == sid and again.project_dir(sid).name == one


def test_rename_duplicate_and_delete_with_a_question_first(ctx, sid):
    add(ctx, sid)
    name = ctx.project(sid).path.name
    assert "Renamed to **Moon trip**" in project_tab.rename_project(ctx, sid, name, "Moon trip")
    project_tab.duplicate_project(ctx, sid, name)
    assert ctx.project(sid).title == "Moon trip (copy)"  # the copy is opened
    assert [c.name for c in ctx.registry(sid).list()] == ["Eileen"]
    copy_name = ctx.project(sid).path.name

    question = project_tab.ask_delete_project(ctx, sid, copy_name)
    assert "Moon trip (copy)" in question and "1 character" in question and "cannot be undone" in question
    assert ctx.project(sid).path.is_dir()  # asking deletes nothing
    assert "Deleted" in project_tab.delete_project(ctx, sid, copy_name)[0]
    assert ctx.project(sid).title == "Moon trip"  # back to the other one
    with pytest.raises(StoryMakerError, match="does not exist any more"):
        project_tab.delete_project(ctx, sid, copy_name)


def test_summary_follows_characters_script_and_renders(ctx, sid):
    assert "characters: none yet" in project_tab.project_summary(ctx, sid)
    add(ctx, sid)
    assert "characters: Eileen" in project_tab.project_summary(ctx, sid)
    story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    assert "panels in the script: 3; rendered: 0" in project_tab.project_summary(ctx, sid)
    render_all(ctx, sid)
    assert "rendered: 3" in project_tab.project_summary(ctx, sid)
    story_tab.validate(ctx, sid, "[Nobody] waves\n")
    assert "the script has problems" in project_tab.project_summary(ctx, sid)


def test_summary_is_chained_after_every_change_in_the_app(tmp_path):
    """Saving or deleting a character, editing the script and rendering each update the summary."""
    from ui_helpers import make_studio

    studio = make_studio(tmp_path / "data")
    try:
        fns = list(studio.blocks.fns.values())
        by_name = {fn.api_name: fn for fn in fns if fn.api_name}
        summary_id = next(b._id for b in studio.blocks.blocks.values() if getattr(b, "elem_id", None) == "project-summary")
        for name in ("save_character", "delete_character", "undo_delete_character", "validate_script", "render_all"):
            fn = by_name[name]
            follow = [f for f in fns if f.trigger_after == fn._id]
            assert any(summary_id in [o._id for o in f.outputs] for f in follow), name
    finally:
        studio.close()


# ---------------------------------------------------------------- deleting a character

def test_delete_character_asks_names_the_panels_and_can_be_undone(ctx, sid):
    eileen = add(ctx, sid)
    add(ctx, sid, "Tom")
    story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    render_all(ctx, sid)

    question = characters_tab.ask_delete(ctx, sid, eileen.id)
    assert "Delete **Eileen**" in question and "Panels 1 and 2" in question and "undo" in question
    assert ctx.registry(sid).find("Eileen") is not None  # asking deletes nothing

    message = characters_tab.delete_character(ctx, sid, eileen.id)
    assert "Deleted **Eileen**" in message and "Panels 1 and 2" in message and "Undo" in message
    assert [c.name for c in ctx.registry(sid).list()] == ["Tom"]
    status, _ = story_tab.validate(ctx, sid, ctx.project(sid).read_script())
    assert "line 4" in status  # the script reports the binding clearly
    # The Comic tab says why the rendered panels are not shown (not "render some panels first").
    layout = comic_tab.layout_options(ctx, sid, "Printed pages", 2, "A4", "portrait", "cover", 10, 2, "")
    pages, note = comic_tab.preview_pages(ctx, sid, layout)
    assert pages == [] and note == comic_tab.SCRIPT_PROBLEMS
    assert render_tab.panel_gallery(ctx, sid) == [] and "Story tab" in render_tab.gallery_note(ctx, sid)
    with pytest.raises(StoryMakerError, match="Story tab lists them"):
        comic_tab.export_comic(ctx, sid, layout, "pdf")

    assert "Eileen" in characters_tab.undo_delete(ctx, sid)
    back = ctx.registry(sid).get("Eileen")
    assert back.id == eileen.id and back.description == "an astronaut"
    assert ctx.registry(sid).conditioning("Eileen") is not None  # usable again, files and all
    status, _ = story_tab.validate(ctx, sid, ctx.project(sid).read_script())
    assert "valid: 3 panels" in status
    assert render_tab.gallery_note(ctx, sid) == "" and len(render_tab.panel_gallery(ctx, sid)) == 3
    with pytest.raises(StoryMakerError, match="no deleted character"):
        characters_tab.undo_delete(ctx, sid)


def test_undo_refuses_when_the_name_was_taken_again(ctx, sid):
    eileen = add(ctx, sid)
    message = characters_tab.delete_character(ctx, sid, eileen.id)
    assert "still use" not in message  # no panel used her
    add(ctx, sid)
    with pytest.raises(StoryMakerError, match="exists again"):
        characters_tab.undo_delete(ctx, sid)
    assert [c.name for c in ctx.registry(sid).list()] == ["Eileen"]


def test_an_untitled_project_takes_the_scripts_title_and_the_style_menu_follows_the_script(ctx, sid):
    """Found by using the studio: two projects written from scratch were both listed as
    "Untitled story", and after a reload the style menu was empty although the script said
    ``style: manga``."""
    add(ctx, sid)
    for typed in ("t", "title: M", "title: Mo", "title: Moo", "title: Moon Walk\nstyle: manga\n\n[Eileen] waves\n"):
        story_tab.validate(ctx, sid, typed)  # the editor checks the script as it is typed
    assert ctx.project(sid).title == "Moon Walk"
    assert project_tab.project_choices(ctx, sid)[0][0].startswith("Moon Walk · ")
    # A title the person chose is kept.
    project_tab.rename_project(ctx, sid, ctx.project(sid).path.name, "My book")
    story_tab.validate(ctx, sid, "title: Another title\n\n[Eileen] waves\n")
    assert ctx.project(sid).title == "My book"

    # The style menu shows a library style of the header; free text or none leaves it empty,
    # and unregistered names do not hide the header.
    assert story_tab.script_header("title: T\nstyle: Manga\n\n[Nobody] waves\n") == ("T", "manga")
    assert story_tab.script_header("style: ink and watercolour\n\na cat\n") == ("", None)
    assert story_tab.script_header("") == ("", None)


def test_the_comic_layout_comes_back_with_the_project(ctx, sid):
    """A reload showed the default layout again although the last comic was a strip."""
    add(ctx, sid)
    story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    render_all(ctx, sid)
    assert comic_tab.saved_layout(ctx, sid) == comic_tab.LAYOUT_DEFAULTS  # before any comic
    strip = comic_tab.layout_options(ctx, sid, "Strip (one row)", 3, "Letter", "landscape", "fit", 4, 1, "")
    comic_tab.export_comic(ctx, sid, strip, "png")
    assert comic_tab.saved_layout(ctx, sid) == ("Strip (one row)", 3, "Letter", "landscape", "fit", 4, 1, "")
    own = comic_tab.layout_options(ctx, sid, "Grid", 2, "A4", "portrait", "cover", 10, 2, "My own title")
    comic_tab.export_comic(ctx, sid, own, "pdf")
    assert comic_tab.saved_layout(ctx, sid)[0] == "Grid" and comic_tab.saved_layout(ctx, sid)[-1] == "My own title"


def test_the_author_goes_into_the_pdf_and_comes_back_with_the_project(ctx, sid):
    """The README says the PDF carries its author, but nothing let a person give one."""
    from pypdf import PdfReader

    add(ctx, sid)
    story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    render_all(ctx, sid)
    assert comic_tab.saved_author(ctx, sid) == ""
    layout = comic_tab.layout_options(ctx, sid, *comic_tab.LAYOUT_DEFAULTS)
    path, _ = comic_tab.export_comic(ctx, sid, layout, "pdf", "  Ada   Lovelace ")
    assert PdfReader(path).metadata.author == "Ada Lovelace"
    assert comic_tab.saved_author(ctx, sid) == "Ada Lovelace"  # the field shows it again after a reload
    assert comic_tab.saved_layout(ctx, sid) == comic_tab.LAYOUT_DEFAULTS  # the author is not a layout value


# ---------------------------------------------------------------- undo in the project it belongs to

def _by_elem_id(studio):
    return {b.elem_id: b for b in studio.blocks.blocks.values() if getattr(b, "elem_id", None)}


def _outputs(fn, values):
    """{elem_id: value} of a Gradio function's outputs."""
    return {getattr(o, "elem_id", None): v for o, v in zip(fn.outputs, values)}


def test_undo_belongs_to_the_project_the_character_was_deleted_from(ctx, sid):
    """QA r01: delete Mara in project A, open project B, press Undo: Mara landed in B."""
    view_a = ctx.open_view(sid)
    mara = add(ctx, view_a, "Mara")
    characters_tab.delete_character(ctx, view_a, mara.id)
    assert characters_tab.can_undo(ctx, view_a)
    _, view_b = project_tab.new_project(ctx, view_a, "Project B")
    assert not characters_tab.can_undo(ctx, view_b)  # not offered in B
    with pytest.raises(StoryMakerError, match="no deleted character"):
        characters_tab.undo_delete(ctx, view_b)
    assert ctx.registry(view_b).list() == []
    # A deletion in B keeps A's copy: each project has its own Undo.
    tom = add(ctx, view_b, "Tom")
    characters_tab.delete_character(ctx, view_b, tom.id)
    assert "Mara" in characters_tab.undo_delete(ctx, view_a)
    assert [c.name for c in ctx.registry(view_a).list()] == ["Mara"]
    assert "Tom" in characters_tab.undo_delete(ctx, view_b)
    assert [c.name for c in ctx.registry(view_b).list()] == ["Tom"]
    assert not characters_tab.can_undo(ctx, view_a) and not characters_tab.can_undo(ctx, view_b)


def test_undo_is_offered_again_after_a_reload_and_only_in_its_project(tmp_path):
    """QA s10: after a reload the Undo button was gone although the copy was still there; and the
    Characters tab of another project kept offering it (and the last action's line)."""
    from ui_helpers import make_studio

    studio = make_studio(tmp_path / "data")
    try:
        ctx = studio.context
        fns = {f.api_name: f for f in studio.blocks.fns.values() if f.api_name}
        sid = ctx.sessions.new_session()
        view_a = ctx.open_view(sid)
        mara = add(ctx, view_a, "Mara")
        deleted = _outputs(fns["delete_character"], fns["delete_character"].fn(view_a, mara.id))
        assert deleted["char-undo"]["visible"] is True and "Deleted **Mara**" in deleted["char-manage-status"]

        reload_a = _outputs(fns["start_session"], fns["start_session"].fn(sid))
        assert reload_a["char-undo"]["visible"] is True  # the copy is still there: offered again

        in_b = _outputs(fns["new_project"], fns["new_project"].fn(view_a, "Project B"))
        view_b = in_b["project-view"]
        assert in_b["char-undo"]["visible"] is False and in_b["char-manage-status"] == ""
        assert in_b["char-delete-confirm"]["visible"] is False  # no question about A's characters
        assert _outputs(fns["start_session"], fns["start_session"].fn(sid))["char-undo"]["visible"] is False

        back = _outputs(fns["switch_project"], fns["switch_project"].fn(view_b, ctx.project(view_a).path.name))
        assert back["char-undo"]["visible"] is True
        undone = _outputs(fns["undo_delete_character"], fns["undo_delete_character"].fn(view_a))
        assert undone["char-undo"]["visible"] is False and "Mara" in undone["char-manage-status"]
        assert [c.name for c in ctx.registry(view_a).list()] == ["Mara"] and ctx.registry(view_b).list() == []
    finally:
        studio.close()


def test_the_confirmation_deletes_what_it_asked_about(tmp_path):
    """Ask to delete Mara, choose Tom in the list, press "Yes, delete": Mara goes, not Tom (the
    question's character, not the list's); the same for a project."""
    from ui_helpers import make_studio

    studio = make_studio(tmp_path / "data")
    try:
        ctx = studio.context
        fns = {f.api_name: f for f in studio.blocks.fns.values() if f.api_name}
        view = ctx.open_view(ctx.sessions.new_session())
        mara, tom = add(ctx, view, "Mara"), add(ctx, view, "Tom")
        ask, delete = fns["ask_delete_character"], fns["delete_character"]
        asked = _outputs(ask, ask.fn(view, mara.id))
        assert "Delete **Mara**" in asked["char-delete-question"]
        kept = [v for o, v in zip(ask.outputs, ask.fn(view, mara.id)) if o in delete.inputs]
        assert kept == [mara.id]  # the question's character goes to the Yes button...
        delete.fn(view, tom.id, mara.id)  # ...which deletes it although Tom is chosen in the list now
        assert [c.name for c in ctx.registry(view).list()] == ["Tom"]
        # An API call without a question deletes the chosen one.
        api = {p["parameter_name"] for p in studio.blocks.get_api_info()["named_endpoints"]["/delete_character"]["parameters"]}
        assert len(api) == 2
        delete.fn(view, tom.id, None)
        assert ctx.registry(view).list() == []

        # The same for projects.
        first = ctx.project(view).path.name
        _, other = project_tab.new_project(ctx, view, "Other")
        ask, delete = fns["ask_delete_project"], fns["delete_project"]
        kept = [v for o, v in zip(ask.outputs, ask.fn(other, first)) if o in delete.inputs]
        assert kept == [first]
        delete.fn(other, ctx.project(other).path.name, first)
        assert [p.title for p in ctx.sessions.projects(view)] == ["Other"]
    finally:
        studio.close()


def test_a_deleted_projects_undo_is_not_offered_to_a_project_made_after_it(ctx, sid):
    """The first project's folder name comes back when all projects are deleted."""
    view = ctx.open_view(sid)
    mara = add(ctx, view, "Mara")
    characters_tab.delete_character(ctx, view, mara.id)
    name = ctx.project(view).path.name
    next_view = project_tab.delete_project(ctx, view, name)[1]
    fresh = ctx.open_view(next_view)
    assert ctx.project(fresh).path.name == name  # a new, empty project in the same folder
    assert not characters_tab.can_undo(ctx, fresh)
    with pytest.raises(StoryMakerError, match="no deleted character"):
        characters_tab.undo_delete(ctx, fresh)


# ---------------------------------------------------------------- titles that tell projects apart

def test_copies_imports_and_examples_get_a_title_of_their_own(ctx, sid, tmp_path):
    """QA: after a .zip import or a second example, two projects had the same title."""
    project_tab.rename_project(ctx, sid, ctx.project(sid).path.name, "Moon trip")
    first = ctx.project(sid).path.name
    zip_path, _ = project_tab.save_project(ctx, sid)
    project_tab.open_project(ctx, sid, zip_path)
    assert ctx.project(sid).title == "Moon trip (2)"
    project_tab.open_project(ctx, sid, zip_path)
    assert ctx.project(sid).title == "Moon trip (3)"
    project_tab.duplicate_project(ctx, sid, first)
    assert ctx.project(sid).title == "Moon trip (copy)"
    project_tab.duplicate_project(ctx, sid, first)
    assert ctx.project(sid).title == "Moon trip (copy) (2)"
    for _ in range(2):
        _, view = project_tab.make_example(ctx, sid)
    titles = [label.split(" · ")[0] for label, _ in project_tab.project_choices(ctx, sid)]
    example = ctx.project(view).title
    assert example.endswith(" (2)") and example[:-4] in titles
    assert len(titles) == len(set(titles)) == 7
    # Titles the user types stay as typed, even when another project has them.
    project_tab.new_project(ctx, sid, "Moon trip")
    assert ctx.project(sid).title == "Moon trip"
    project_tab.rename_project(ctx, sid, ctx.project(sid).path.name, "Moon trip (2)")
    assert ctx.project(sid).title == "Moon trip (2)"
