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
