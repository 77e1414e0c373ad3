"""Every failure says what happened (issue 12): one readable message, no output left in an error
state; a file that is not an image gets the CLI's message; settings speak the user's language."""

from __future__ import annotations

import pytest

from ui_helpers import PHOTO, make_studio

from storymaker.errors import ImageError
from storymaker.ui import characters_tab, poses_tab, story_tab
from storymaker.ui.common import check_image_file, image_input

CLI_MESSAGE = "The photo 'photo.png' is not an image file that can be read: use a JPEG, PNG or WebP image."


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    app = make_studio(tmp_path_factory.mktemp("failures") / "data")
    yield app
    app.close()


@pytest.fixture
def text_file_called_photo_png(tmp_path):
    path = tmp_path / "upload" / "photo.png"
    path.parent.mkdir()
    path.write_text("this is a text file, not a picture\n")
    return path


def test_the_cli_says_the_same_for_a_text_file_called_photo_png(text_file_called_photo_png, tmp_path, capsys):
    from storymaker.cli import main

    code = main(["characters", "add", "Bad", str(text_file_called_photo_png), "--project", str(tmp_path / "p"),
                 "--backend", "tiny"])
    assert code == 2 and CLI_MESSAGE in capsys.readouterr().err


def test_the_photo_box_hands_an_undecodable_upload_to_the_handler(text_file_called_photo_png):
    """Gradio's own image box fails before the handler (a red badge, no message); ours passes the
    file on so the handler can say what is wrong with it."""
    import gradio as gr
    from gradio.data_classes import ImageData
    from PIL import UnidentifiedImageError

    payload = ImageData(path=str(text_file_called_photo_png), orig_name="photo.png")
    with pytest.raises(UnidentifiedImageError):
        gr.Image(type="filepath", image_mode=None).preprocess(payload)
    box = image_input(label="Photo")
    assert box.preprocess(payload) == str(text_file_called_photo_png)
    assert box.get_block_name() == "image"  # the stock widget in the browser
    good = ImageData(path=str(PHOTO), orig_name="astronaut.png")
    assert box.preprocess(good) == str(PHOTO)


def test_check_save_and_outfit_give_the_cli_message_and_change_nothing(ctx, text_file_called_photo_png):
    sid = ctx.sessions.new_session()
    bad = str(text_file_called_photo_png)
    with pytest.raises(ImageError) as info:
        characters_tab.analyze_photo(ctx, sid, bad, None)
    assert str(info.value) == CLI_MESSAGE
    with pytest.raises(ImageError, match="not an image file that can be read"):
        characters_tab.save_character(ctx, sid, bad, "Bad", "", None)
    with pytest.raises(ImageError, match="mask 'photo.png' is not an image"):
        characters_tab.save_character(ctx, sid, str(PHOTO), "Good", "", bad)
    assert characters_tab.gallery_items(ctx, sid) == []
    with pytest.raises(ImageError, match="not an image file that can be read"):
        poses_tab.extract_from_photo(ctx, sid, bad, "from-text")
    check_image_file(None)  # an empty box is not an error
    check_image_file(str(PHOTO))


def test_every_session_handler_shows_failures_readably(studio):
    """A failure in any handler that works on the user's project is one message, outputs unchanged
    (user_errors), never Gradio's bare red "Error" badge."""
    browser = next(b for b in studio.blocks.blocks.values() if type(b).__name__ == "BrowserState")
    view = next(b for b in studio.blocks.blocks.values() if getattr(b, "elem_id", None) == "project-view")
    handlers = [fn for fn in studio.blocks.fns.values()
                if fn.fn is not None and any(i is browser or i is view for i in fn.inputs)]
    assert len(handlers) > 20
    unwrapped = [fn.name for fn in handlers if not getattr(fn.fn, "shows_failures", False)]
    assert unwrapped == []


def _blocks(studio, kind):
    return [b for b in studio.blocks.blocks.values() if type(b).__name__ == kind]


def test_sliders_speak_the_users_language_with_the_technical_name_in_the_help(studio):
    sliders = {s.label: s for s in _blocks(studio, "Slider")}
    for label, technical in (("Likeness", "ip_adapter_scale"), ("Style strength", "lora_scale"),
                             ("Pose strength", "controlnet_conditioning_scale")):
        assert technical in sliders[label].info
        assert sliders[label].interactive is False  # draft mode: they do nothing, so they are off
    notes = [m for m in _blocks(studio, "Markdown") if m.elem_id == "draft-settings-note"]
    assert notes and "Draft mode ignores these" in notes[0].value


def test_model_settings_stay_usable_with_a_real_backend(tmp_path):
    studio = make_studio(tmp_path / "data", backend="tiny")
    try:
        sliders = {s.label: s for s in _blocks(studio, "Slider")}
        assert sliders["Likeness"].interactive is not False
        assert not [m for m in _blocks(studio, "Markdown") if m.elem_id == "draft-settings-note"]
    finally:
        studio.close()


def test_pose_extraction_says_in_one_sentence_what_it_needs_before_anyone_tries(studio):
    notes = [m for m in _blocks(studio, "Markdown") if m.elem_id == "extract-needs"]
    assert len(notes) == 1 and notes[0].value == poses_tab.EXTRACT_NEEDS


def test_insert_example_asks_before_replacing_a_script():
    assert not story_tab.example_needs_confirmation("")
    assert not story_tab.example_needs_confirmation("  \n")
    assert not story_tab.example_needs_confirmation(story_tab.EXAMPLE_SCRIPT)
    assert story_tab.example_needs_confirmation("[Mara] waves\n")


def test_the_editor_links_the_script_documentation(studio, tmp_path, monkeypatch):
    docs = [a for a in _blocks(studio, "Accordion") if a.elem_id == "script-docs"]
    assert len(docs) == 1 and "docs/script.md" in docs[0].label
    page = tmp_path / "script.md"
    page.write_text("# The story script\nEvery panel...\n")
    monkeypatch.setattr(story_tab, "DOCS_FILE", page)
    assert story_tab.format_reference().startswith("# The story script")
    monkeypatch.setattr(story_tab, "DOCS_FILE", tmp_path / "absent.md")
    assert "docs/script.md" in story_tab.format_reference()


def test_the_photo_box_says_the_upload_limit_before_the_browser_refuses_a_file(studio):
    """Gradio refuses a larger file in the browser with its own notice, which says nothing of
    what to do: the tab states the formats and the limit (5 MB in these tests) beside the box."""
    notes = [m.value for m in _blocks(studio, "Markdown") if "New character" in str(m.value)]
    assert len(notes) == 1 and "JPEG, PNG or WebP, at most 5 MB" in notes[0]


def test_another_project_shows_no_download_scores_or_versions_of_the_one_before(studio):
    """After "Make the example comic" the Comic tab still offered the previous project's PNG for
    download. Every event that changes the project refreshes the download and the scores too, and
    a refresh hides the download box and empties the report."""
    fns = {f.api_name: f for f in studio.blocks.fns.values() if getattr(f, "api_name", None)}
    for name in ("start_session", "new_project", "switch_project", "open_project", "duplicate_project",
                 "delete_project", "example_project"):
        ids = [o.elem_id for o in fns[name].outputs]
        assert {"comic-download", "character-sheets", "consistency-report", "versions", "versions-status",
                "render-status"} <= set(ids), name
    start = fns["start_session"]
    values = dict(zip([o.elem_id for o in start.outputs], start.fn(None)))
    assert values["comic-download"] == {"__type__": "update", "value": None, "visible": False}
    assert values["character-sheets"] == [] and values["consistency-report"] == ""
    # The versions of another project's panel are gone: a click there would choose a version of
    # this project's panel that nobody saw.
    assert values["versions"] == [] and values["versions-status"] == values["render-status"] == ""


def test_a_click_on_a_version_chooses_for_the_panel_whose_versions_are_shown(studio):
    """The click read the Panel field: show panel 2's versions, type 1 in the field, click v2,
    and panel 1's version 2 was chosen. The click now uses the panel the gallery was filled for."""
    versions = next(b for b in studio.blocks.blocks.values() if getattr(b, "elem_id", None) == "versions")
    (select,) = [f for f in studio.blocks.fns.values() if (versions._id, "select") in f.targets]
    show = next(f for f in studio.blocks.fns.values() if getattr(f, "api_name", None) == "panel_versions")
    shown = select.inputs[1]
    assert type(shown).__name__ == "State" and shown in show.outputs
    assert not any(getattr(b, "label", None) == "Panel" for b in select.inputs)


# ---------------------------------------------------------------- inputs the app checks itself

def test_pose_preview_refuses_a_size_above_the_maximum_before_drawing(ctx, sid, monkeypatch):
    """QA r06: a 100000x100000 preview failed with "MemoryError: Unable to allocate 27.9 GiB";
    sizes up to ~20000 really allocated gigabytes. The Render tab's limit and message apply."""
    from storymaker.config import check_panel_size
    from storymaker.errors import InvalidInputError, PoseError
    from storymaker.perception import pose

    name = poses_tab.pose_names(ctx, sid)[0]
    with pytest.raises(InvalidInputError) as render_tab_says:
        check_panel_size(100000, 100000, ctx.settings)

    def no_drawing(*args, **kwargs):
        raise AssertionError("drawn before the size was checked")

    monkeypatch.setattr(pose, "render_pose", no_drawing)
    with pytest.raises(InvalidInputError) as info:
        poses_tab.preview_pose(ctx, sid, name, 100000, 100000)
    assert str(info.value) == str(render_tab_says.value)
    limit = ctx.settings.max_panel_side
    with pytest.raises(InvalidInputError, match=f"{limit} pixels"):
        poses_tab.preview_pose(ctx, sid, name, limit + 8, 64)
    # An emptied or odd box says what to type, not "Something went wrong (TypeError ...)".
    for width in (None, "", float("nan"), 12):
        with pytest.raises(PoseError, match="multiples of 8"):
            poses_tab.preview_pose(ctx, sid, name, width, 64)
    monkeypatch.undo()
    image, _ = poses_tab.preview_pose(ctx, sid, name, limit, 64)  # the largest allowed side works
    assert image.size[0] > limit


def test_a_file_that_is_not_a_project_zip_gets_the_apps_message(ctx, sid, tmp_path):
    """QA r07: a .png dropped on "Open a project .zip" got Gradio's "Invalid file type... Only .zip
    allowed." with red Error badges. The handler now says it, and nothing is added."""
    from storymaker.errors import ProjectError
    from storymaker.ui import project_tab

    before = [p.name for p in ctx.sessions.projects(sid)]
    for bad in (PHOTO, tmp_path / "story.zip"):
        if bad.suffix == ".zip":
            bad.write_bytes(PHOTO.read_bytes())  # a picture renamed .zip
        with pytest.raises(ProjectError, match="made with Save project as .zip") as info:
            project_tab.open_project(ctx, sid, str(bad))
        assert bad.name in str(info.value) and "Nothing was opened" in str(info.value)
    assert [p.name for p in ctx.sessions.projects(sid)] == before


def _tab_inputs(studio, tab_id):
    tab = next(b for b in studio.blocks.blocks.values() if type(b).__name__ == "Tab" and b.id == tab_id)
    found, todo = [], list(tab.children)
    while todo:
        block = todo.pop()
        found.append(block)
        todo.extend(getattr(block, "children", []))
    return found


@pytest.mark.parametrize("tab_id", ["project", "characters", "poses"])
def test_no_input_of_the_tab_is_refused_by_gradio_before_the_app_can_explain(studio, tab_id):
    """Gradio checks file types (in the browser) and number limits before the handler runs, with
    its own red "Error": these tabs check their inputs themselves and say what to do."""
    blocks = _tab_inputs(studio, tab_id)
    assert blocks
    for block in blocks:
        kind = type(block).__name__
        if kind == "File" and block.interactive is not False:
            assert block.file_types is None, block.label
        if kind == "Number":
            assert block.minimum is None and block.maximum is None, block.label
        if kind in ("Image", "PhotoInput") and block.interactive is not False:
            assert kind == "PhotoInput", block.label  # an undecodable upload reaches the handler


def test_an_empty_outfit_name_is_asked_for_as_an_outfit(ctx, sid):
    """QA r10: "The outfit name is empty: type a name such as 'Mia'"."""
    from storymaker.errors import CharacterError

    character, _ = characters_tab.save_character(ctx, sid, str(PHOTO), "Mara", "", None)
    with pytest.raises(CharacterError) as info:
        characters_tab.add_outfit(ctx, sid, character.id, "  ", str(PHOTO))
    assert "outfit name is empty" in str(info.value) and "Mia" not in str(info.value)
    assert "raincoat" in str(info.value)
    with pytest.raises(CharacterError, match="such as 'Mia'"):
        characters_tab.save_character(ctx, sid, str(PHOTO), " ", "", None)


def test_a_new_action_or_a_failure_leaves_no_earlier_status_line(studio):
    """QA s18: after a failed .zip import the Project tab still said "Project saved as ...:
    download it below". Every action of the Project, Characters and Poses tabs first empties its
    status line, then runs: whatever its outcome, the line shown is its own (or none)."""
    fns = list(studio.blocks.fns.values())
    by_id = {f._id: f for f in fns}
    by_name = {f.api_name: f for f in fns if f.api_name}
    ids = {b.elem_id: b._id for b in studio.blocks.blocks.values() if getattr(b, "elem_id", None)}
    actions = {"project-status": ("new_project", "open_project", "switch_project", "rename_project",
                                  "duplicate_project", "delete_project", "save_project", "example_project"),
               "char-status": ("save_character",),
               "char-manage-status": ("rename_character", "redescribe_character", "delete_character",
                                      "undo_delete_character", "add_outfit"),
               "pose-extract-status": ("extract_pose",)}
    for status, names in actions.items():
        for name in names:
            first = by_id.get(by_name[name].trigger_after)
            assert first is not None, name
            assert ids[status] in [o._id for o in first.outputs], name
            assert first.fn() in ("", ("", )) or list(first.fn()) == [""] * len(first.outputs), name


def test_another_project_shows_no_pose_choice_preview_or_line_of_the_one_before(studio, tmp_path):
    """A pose chosen in project A stayed chosen in project B's list; a pose of A's own is not a
    choice there, and Gradio refuses such a value with its red "Value ... is not in the list of
    choices" (Dropdown.preprocess) before the handler runs. Another project starts with none."""
    fns = {f.api_name: f for f in studio.blocks.fns.values() if f.api_name}
    ctx = studio.context
    view = ctx.open_view(ctx.sessions.new_session())
    new = fns["new_project"]
    values = {getattr(o, "elem_id", None): v for o, v in zip(new.outputs, new.fn(view, "Project B"))}
    assert values["pose-chosen"]["value"] is None and values["pose-chosen"]["choices"]
    assert values["pose-preview"] is None and values["pose-info"] == values["pose-extract-status"] == ""
