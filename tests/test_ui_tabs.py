"""Two tabs of one browser share its workspace (the id in local storage) but each shows its own
project, and neither loses the other's work: not by opening another project, not by editing the
same script, not by deleting a project, not by cancelling a render."""

from __future__ import annotations

import pytest

from ui_helpers import PHOTO

from storymaker.errors import ProjectError
from storymaker.services import storage
from storymaker.ui import characters_tab, project_tab, render_tab, story_tab


def project_handlers(ctx):
    import gradio as gr

    with gr.Blocks():
        return project_tab.render(ctx, gr.Textbox())["handlers"]


def open_tab(ctx, sid):
    """What a page load gives a tab: its view and the script its editor shows."""
    view = ctx.open_view(sid)
    return view, story_tab.load_script(ctx, view)


def test_a_project_opened_in_one_tab_does_not_take_the_other_tabs_edits(ctx):
    sid = ctx.sessions.new_session()
    first, _ = open_tab(ctx, sid)
    second, _ = open_tab(ctx, sid)
    assert first == second == f"{sid}/project"
    _, second = project_tab.new_project(ctx, second, "Second story")
    assert second != first

    # The first tab goes on writing and registering: all of it lands in its own project.
    story_tab.validate(ctx, first, "title: First story\n[Eileen] on the moon\n")
    characters_tab.save_character(ctx, first, str(PHOTO), "Eileen", "an astronaut", None)
    assert "First story" in ctx.project(first).read_script()
    assert [c.name for c in ctx.registry(first).list()] == ["Eileen"]
    assert ctx.project(second).read_script() == "" and ctx.registry(second).list() == []
    assert ctx.project(second).title == "Second story"

    # A reload shows the project opened last (the second tab's); the first tab keeps its own.
    assert ctx.open_view(sid) == second
    assert "characters: Eileen" in project_tab.project_summary(ctx, first)
    assert "characters: none yet" in project_tab.project_summary(ctx, second)


def test_the_same_script_edited_in_two_tabs_keeps_both_texts(ctx):
    sid = ctx.sessions.new_session()
    view, _ = open_tab(ctx, sid)
    story_tab.validate(ctx, view, "a street at night\n")
    tab_a, base_a = open_tab(ctx, sid)
    tab_b, base_b = open_tab(ctx, sid)

    # Tab A types on; its saves follow each other without a warning.
    report, _ = story_tab.validate(ctx, tab_a, "a street at night\na harbour\n", base=base_a)
    assert "another tab" not in report
    base_a = "a street at night\na harbour\n"
    # Tab B still shows the old text and types one word: A's text is kept, and B is told.
    report, _ = story_tab.validate(ctx, tab_b, "a street at night, rain\n", base=base_b)
    assert "changed in another tab or window" in report and "Earlier texts of this script" in report
    project = ctx.project(tab_a)
    assert project.read_script() == "a street at night, rain\n"
    assert [v.text for v in project.script_history()] == ["a street at night\na harbour\n"]
    # A, typing again over B's save, keeps B's text in turn: nothing typed in either tab is lost.
    report, _ = story_tab.validate(ctx, tab_a, "a street at night\na harbour\na boat\n", base=base_a)
    assert "changed in another tab" in report
    assert [v.text for v in project.script_history()] == ["a street at night, rain\n",
                                                         "a street at night\na harbour\n"]

    # Restoring an earlier text keeps the one it replaces.
    earlier = project.script_history()[1]
    text, message = story_tab.restore_script(ctx, tab_b, earlier.id)
    assert text == earlier.text == project.read_script() and "kept" in message
    assert project.script_history()[0].text == "a street at night\na harbour\na boat\n"
    assert [label for label, _ in story_tab.history_choices(ctx, tab_b)][0].endswith("· 3 lines")


def test_a_project_deleted_in_another_tab_says_so_and_loses_nothing_else(ctx):
    sid = ctx.sessions.new_session()
    keep, _ = open_tab(ctx, sid)
    story_tab.validate(ctx, keep, "title: Kept\na harbour\n")
    _, doomed = project_tab.new_project(ctx, keep, "Doomed")
    other, _ = open_tab(ctx, sid)  # a second tab, on the project opened last
    assert other == doomed

    message, after = project_tab.delete_project(ctx, keep, doomed.split("/")[1])
    assert "Deleted" in message and after == keep  # the tab that deleted it keeps its own project
    with pytest.raises(ProjectError, match="deleted \\(in another tab or window\\): open one of your projects"):
        project_tab.project_summary(ctx, other)
    # Opening the Project tab says so, and lists the projects there are, none chosen.
    studio_summary, listing = project_handlers(ctx)["summary"](other)
    assert "was deleted" in studio_summary and listing["value"] is None
    assert [name for _, name in listing["choices"]] == [keep.split("/")[1]]
    with pytest.raises(ProjectError, match="deleted"):
        story_tab.validate(ctx, other, "typed after the deletion\n")
    assert not ctx.sessions.folder(sid).joinpath(doomed.split("/")[1]).exists()  # not brought back empty
    # Opening a project from the list works again, and the kept project is whole.
    _, other = project_tab.switch_project(ctx, other, keep.split("/")[1])
    assert other == keep and ctx.project(other).read_script() == "title: Kept\na harbour\n"

    # Deleting the project a tab shows moves that tab to the one opened last.
    _, spare = project_tab.new_project(ctx, keep, "Spare")
    _, after = project_tab.delete_project(ctx, spare, spare.split("/")[1])
    assert after == ctx.open_view(sid) and storage.Project.is_project(ctx.project(after).path)


def test_cancel_in_one_tab_stops_only_that_tabs_project(ctx):
    sid = ctx.sessions.new_session()
    tab_a, _ = open_tab(ctx, sid)
    _, tab_b = project_tab.new_project(ctx, tab_a, "Other")
    ticket_a = ctx.cancels.arm(tab_a)
    ticket_b = ctx.cancels.arm(tab_b)  # the other tab queues its render after this one
    assert ctx.cancels.cancel(tab_a)
    assert ctx.cancels.fresh(tab_a, ticket_a).is_set()
    assert not ctx.cancels.fresh(tab_b, ticket_b).is_set()


def test_inserting_the_example_keeps_the_script_it_replaces(ctx):
    sid = ctx.sessions.new_session()
    view, _ = open_tab(ctx, sid)
    story_tab.validate(ctx, view, "my own story\n")
    ctx.project(view).keep_script()  # what "Yes, replace my script" does before the editor changes
    story_tab.validate(ctx, view, story_tab.EXAMPLE_SCRIPT, base="my own story\n")
    assert [v.text for v in ctx.project(view).script_history()] == ["my own story\n"]


def test_script_history_keeps_the_newest_and_no_repeats(tmp_path):
    from storymaker.services.storage import script_history

    project = storage.Project.create(tmp_path / "p", "P")
    assert project.keep_script() is None  # an empty script is nothing to keep
    for i in range(script_history.KEEP + 5):
        project.write_script(f"text {i}\n")
        project.keep_script()
        project.keep_script()  # the same text twice is kept once
    texts = [v.text for v in project.script_history()]
    assert len(texts) == script_history.KEEP
    assert texts[0] == f"text {script_history.KEEP + 4}\n" and texts[-1] == "text 5\n"
    with pytest.raises(ProjectError, match="not kept any more"):
        project.restore_script("19990101T000000-000000")


def test_render_tab_uses_the_tabs_project(ctx):
    sid = ctx.sessions.new_session()
    tab_a, _ = open_tab(ctx, sid)
    story_tab.validate(ctx, tab_a, "a street at night\n")
    _, tab_b = project_tab.new_project(ctx, tab_a, "Other")
    options = render_tab.settings_from_widgets(64, 64, 2, 7.5, 0.8, 0.8, 0.7, -1)
    render_tab.run_render(ctx, tab_a, "all", 1, options)
    assert len(render_tab.panel_gallery(ctx, tab_a)) == 1
    assert render_tab.panel_gallery(ctx, tab_b) == []


def test_a_second_tab_showing_the_script_is_not_a_change_from_another_tab(ctx, sid):
    """The browser's editor drops a text's last line end when it shows it: a second tab that merely
    opened the Story tab saved that text back, and the first tab's next key said the script had
    been changed in another tab (found in the browser)."""
    tab_a, _ = open_tab(ctx, sid)
    story_tab.validate(ctx, tab_a, "title: Epsilon\n\na quiet street at noon\n")
    base_a = "title: Epsilon\n\na quiet street at noon\n"
    tab_b, base_b = open_tab(ctx, sid)
    project = ctx.project(tab_a)
    story_tab.validate(ctx, tab_b, base_b.rstrip("\n"), base=base_b)  # what B's editor shows, saved
    assert project.read_script() == base_a  # not rewritten: the file stays as written
    report, _ = story_tab.validate(ctx, tab_a, base_a + "x", base=base_a)
    assert "another tab" not in report and project.script_history() == []
    assert project.read_script() == base_a + "x"
