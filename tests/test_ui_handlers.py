"""The studio's handlers over real services (draft backend, stand-in perception), without a server."""

from __future__ import annotations

import pytest

from ui_helpers import PHOTO, THREE_PANELS, make_services

from storymaker.errors import StoryMakerError
from storymaker.ui import characters_tab, comic_tab, poses_tab, project_tab, render_tab, story_tab
from storymaker.ui.context import StudioContext
from storymaker.ui.session import SessionManager


def add_eileen(ctx, sid, name="Eileen"):
    character, message = characters_tab.save_character(ctx, sid, str(PHOTO), name, "an astronaut", None)
    assert name in message
    return character


def test_preview_shows_face_box_mask_and_both_crops(ctx, sid):
    face_box, mask, body, face, info, checked = characters_tab.analyze_photo(ctx, sid, str(PHOTO), None)
    assert face_box.size == mask.size  # drawn over the photo
    assert body.size == (224, 224) and face.size == (224, 224)
    assert "Faces found" in info
    assert characters_tab.gallery_items(ctx, sid) == []  # nothing saved by a preview
    registry = ctx.registry(sid)
    passes = registry.encoder_passes
    character, _ = characters_tab.save_character(ctx, sid, str(PHOTO), "Eileen", "", None, checked)
    assert registry.encoder_passes == passes  # the checked photo is saved without encoding it again
    assert character.name == "Eileen"
    assert not checked.matches(str(PHOTO), "other-mask.png")  # a different mask is analysed again


def test_add_rename_redescribe_delete_character(ctx, sid):
    character = add_eileen(ctx, sid)
    items = characters_tab.gallery_items(ctx, sid)
    assert len(items) == 1 and items[0][1].startswith("Eileen")
    assert characters_tab.character_choices(ctx, sid) == [("Eileen", character.id)]
    assert "Mara" in characters_tab.rename_character(ctx, sid, character.id, "Mara")
    characters_tab.redescribe_character(ctx, sid, character.id, "a woman in a flight suit")
    assert characters_tab.gallery_items(ctx, sid)[0][1] == "Mara: a woman in a flight suit"
    characters_tab.delete_character(ctx, sid, character.id)
    assert characters_tab.gallery_items(ctx, sid) == []


def test_missing_inputs_are_user_errors(ctx, sid):
    with pytest.raises(StoryMakerError, match="Upload a photo"):
        characters_tab.save_character(ctx, sid, None, "X", "", None)
    with pytest.raises(StoryMakerError, match="Choose a character"):
        characters_tab.delete_character(ctx, sid, None)


def test_sessions_do_not_see_each_other(ctx):
    a, b = ctx.sessions.new_session(), ctx.sessions.new_session()
    add_eileen(ctx, a)
    assert characters_tab.gallery_items(ctx, b) == []
    assert "none yet" in project_tab.project_summary(ctx, b)
    assert "Eileen" in project_tab.project_summary(ctx, a)


def test_live_validation_names_each_error_line_and_lists_panels(ctx, sid):
    add_eileen(ctx, sid)
    status, rows = story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    assert "valid: 3 panels" in status
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[0][1] == "Eileen" and rows[0][3] == "The big day."
    assert ctx.project(sid).read_script() == THREE_PANELS.format(name="Eileen")  # saved as typed

    bad = "title: x\ncolour: red\n\n[Eileen] smiles\n[Nobody] waves\n"
    status, rows = story_tab.validate(ctx, sid, bad)
    assert "line 2" in status and "line 5" in status
    assert rows == []


def test_render_all_versions_reroll_and_choice(ctx, sid):
    add_eileen(ctx, sid)
    story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    options = render_tab.settings_from_widgets(256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1)
    seen = []
    message = render_tab.run_render(ctx, sid, "all", 1, options, lambda f, desc=None: seen.append((f, desc)))
    assert "3 of 3 panels rendered" in message
    assert seen and seen[-1][0] == pytest.approx(1.0)
    assert [c for _, c in render_tab.panel_gallery(ctx, sid)] == [
        "Panel 1 · version 1 of 1", "Panel 2 · version 1 of 1", "Panel 3 · version 1 of 1"]

    assert "Panel 2 rendered" in render_tab.run_render(ctx, sid, "reroll", 2, options)
    items, text = render_tab.version_gallery(ctx, sid, 2)
    assert len(items) == 2 and "(chosen)" in items[1][1]
    render_tab.choose_version(ctx, sid, 2, 0)
    items, _ = render_tab.version_gallery(ctx, sid, 2)
    assert "(chosen)" in items[0][1]
    assert render_tab.panel_gallery(ctx, sid)[1][1] == "Panel 2 · version 1 of 2"


def test_render_panel_number_out_of_range_is_a_user_error(ctx, sid):
    story_tab.validate(ctx, sid, "a quiet street at night\n")
    options = render_tab.settings_from_widgets(256, 256, 2, 7.5, 0.8, 0.8, 0.7, 5)
    with pytest.raises(StoryMakerError, match=r"^Panel 4 does not exist: the story has 1 panel\."):
        render_tab.run_render(ctx, sid, "panel", 4, options)
    with pytest.raises(StoryMakerError, match="multiples of 8"):
        render_tab.settings_from_widgets(250, 256, 2, 7.5, 0.8, 0.8, 0.7, -1)


def test_cancel_stops_the_remaining_panels(ctx, sid):
    story_tab.validate(ctx, sid, "a street\n\na harbour\n\na hill\n")
    options = render_tab.settings_from_widgets(256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1)

    def progress(fraction, desc=None):
        ctx.cancels.cancel(sid)  # the user presses Cancel during the first panel

    message = render_tab.run_render(ctx, sid, "all", 1, options, progress)
    assert "cancelled" in message
    assert len(render_tab.panel_gallery(ctx, sid)) < 3


def test_comic_preview_and_pdf_export(ctx, sid):
    from pypdf import PdfReader

    add_eileen(ctx, sid)
    story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    options = render_tab.settings_from_widgets(256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1)
    render_tab.run_render(ctx, sid, "all", 1, options)
    layout = comic_tab.layout_options(ctx, sid, "Printed pages", 1, "A4", "portrait", "cover", 10, 2, "Test")
    pages, status = comic_tab.preview_pages(ctx, sid, layout)
    assert pages and "page" in status
    path, status = comic_tab.export_comic(ctx, sid, layout, "pdf")
    assert len(PdfReader(path).pages) == len(pages)


def test_project_save_new_and_open(ctx, sid):
    add_eileen(ctx, sid)
    story_tab.validate(ctx, sid, THREE_PANELS.format(name="Eileen"))
    first = ctx.project(sid).path
    zip_path, _ = project_tab.save_project(ctx, sid)
    project_tab.new_project(ctx, sid, "Blank")
    assert characters_tab.gallery_items(ctx, sid) == []
    assert ctx.project(sid).title == "Blank"
    assert first.is_dir()  # the first project is still there, beside the new one
    project_tab.open_project(ctx, sid, zip_path)
    assert [c for _, c in characters_tab.gallery_items(ctx, sid)] == ["Eileen: an astronaut"]
    assert ctx.project(sid).read_script() == THREE_PANELS.format(name="Eileen")
    assert len(ctx.sessions.projects(sid)) == 3  # first, Blank, the imported copy


def test_pose_gallery_and_preview(ctx, sid):
    items = poses_tab.pose_items(ctx, sid)
    assert items, "the preset library is empty"
    name = poses_tab.pose_names(ctx, sid)[0]
    image, info = poses_tab.preview_pose(ctx, sid, name, 256, 384)
    assert image.size[0] > 256 and image.size[1] > 384  # the panel plus its frame
    assert name in info


def test_example_project_in_one_call(ctx, sid):
    message, view = project_tab.make_example(ctx, sid)
    assert "ready" in message and view.startswith(f"{sid}/project-")  # the tab now shows the example
    story = ctx.story(view, strict=True)
    assert len(render_tab.panel_gallery(ctx, view)) == len(story.panels) >= 3
    pages, _ = comic_tab.preview_pages(
        ctx, view, comic_tab.layout_options(ctx, view, "Printed pages", 2, "A4", "portrait", "cover", 10, 2, ""))
    assert pages


def test_user_errors_show_one_message_and_leave_outputs_unchanged():
    import gradio as gr

    from storymaker.errors import CharacterError
    from storymaker.ui.common import user_errors

    def handler():
        raise CharacterError("There is no character named Bob: check the name.")

    # Outside a request gr.Warning is a Python warning; in the app it is a notice that stays.
    with pytest.warns(UserWarning, match="There is no character named Bob: check the name."):
        result = user_errors(handler)()
    assert result == gr.skip()  # every output keeps its value: no red "Error" badge anywhere

    def broken():
        raise KeyError("x")

    with pytest.warns(UserWarning, match="Something went wrong .KeyError"):
        assert user_errors(broken)() == gr.skip()

    def steps():
        yield 1
        raise CharacterError("stop here")

    with pytest.warns(UserWarning, match="stop here"):
        assert list(user_errors(steps)()) == [1, gr.skip()]


class SteppingDraft:
    """The draft backend, reporting ``job.steps`` steps like a diffusion backend does (test double
    for the progress plumbing; the tiny pipeline's own step callbacks are tested with the engine)."""

    def __init__(self, settings):
        from storymaker.services.backends import DraftBackend

        self.inner = DraftBackend(settings)
        self.name, self.label = "draft", "DRAFT"

    def model_ids(self):
        return self.inner.model_ids()

    def render(self, job, *, registry, on_step, cancel):
        for step in range(1, job.steps + 1):
            on_step(step, job.steps)
        return self.inner.render(job, registry=registry, on_step=lambda *a: None, cancel=cancel)


def test_progress_moves_per_step(tmp_path):
    from storymaker.services.container import build_services, tiny_perception

    from ui_helpers import studio_settings

    settings = studio_settings(tmp_path / "data")
    services = build_services(settings, backend=SteppingDraft(settings), perception=tiny_perception())
    ctx = StudioContext(services, settings, SessionManager(settings.sessions_dir))
    sid = ctx.sessions.new_session()
    story_tab.validate(ctx, sid, "a lighthouse on a cliff\n\na boat in a storm\n")
    options = render_tab.settings_from_widgets(64, 64, 3, 7.5, 0.8, 0.8, 0.7, 7)
    seen = []
    message = render_tab.run_render(ctx, sid, "all", 1, options, lambda f, desc=None: seen.append((f, desc)))
    assert "2 of 2 panels rendered" in message
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert "Panel 2 of 2: step 2 of 3" in [d for _, d in seen]
    for step in (1, 2, 3):
        assert f"Panel 1 of 2: step {step} of 3" in [d for _, d in seen]
    assert ctx.project(sid).selected(0).meta["num_inference_steps"] == 3


def test_example_works_in_draft_mode_without_face_weights(tmp_path):
    """A first-time user with no weights at all: draft backend, real perception (not installed)."""
    from storymaker.services.container import build_services

    from ui_helpers import studio_settings

    settings = studio_settings(tmp_path / "data")
    services = build_services(settings, backend="draft")  # buffalo_l, rembg, CLIP: all absent
    ctx = StudioContext(services, settings, SessionManager(settings.sessions_dir))
    sid = ctx.sessions.new_session()
    *_, info, _ = characters_tab.analyze_photo(ctx, sid, str(PHOTO), None)
    assert "not a real face model" in info  # the stand-ins say what they are
    message, _ = project_tab.make_example(ctx, sid)
    assert "ready" in message and "5 of 5 panels rendered" in message  # examples/lighthouse
    assert len(render_tab.panel_gallery(ctx, sid)) == len(ctx.story(sid).panels)


def test_outfits_are_added_and_listed(ctx, sid, tmp_path):
    from PIL import Image

    character = add_eileen(ctx, sid)
    outfit = tmp_path / "raincoat.png"
    Image.new("RGB", (120, 200), (240, 200, 0)).save(outfit)
    message = characters_tab.add_outfit(ctx, sid, character.id, "raincoat", str(outfit))
    assert "raincoat" in message and "outfit: Eileen=raincoat" in message
    assert characters_tab.gallery_items(ctx, sid)[0][1].endswith("(outfits: raincoat)")
    with pytest.raises(StoryMakerError, match="outfit"):
        characters_tab.add_outfit(ctx, sid, character.id, "coat", None)


def test_extract_pose_from_photo_with_an_injected_estimator(tmp_path):
    """OpenPose weights are not on test machines: the estimator is injected like the app allows."""
    from storymaker.domain.poses import Person

    class OnePerson:
        name = "test-estimator"

        def detect(self, image):
            points = [(0.5, 0.1), (0.5, 0.2), (0.4, 0.2), (0.35, 0.35), (0.3, 0.5), (0.6, 0.2), (0.65, 0.35),
                      (0.7, 0.5), (0.45, 0.5), (0.45, 0.7), (0.45, 0.9), (0.55, 0.5), (0.55, 0.7), (0.55, 0.9),
                      (0.48, 0.08), (0.52, 0.08), (0.46, 0.09), (0.54, 0.09)]
            return [Person(tuple(points))]

    services = make_services(tmp_path / "data")
    settings = services.settings
    ctx = StudioContext(services, settings, SessionManager(settings.sessions_dir), pose_estimator_factory=OnePerson)
    sid = ctx.sessions.new_session()
    name, message = poses_tab.extract_from_photo(ctx, sid, str(PHOTO), "my-pose")
    assert name == "my-pose" and "1 person" in message
    assert "my-pose" in poses_tab.pose_names(ctx, sid)
    assert any(caption == "my-pose: 1 person (project)" for _, caption in poses_tab.pose_items(ctx, sid))
    image, info = poses_tab.preview_pose(ctx, sid, "my-pose", 256, 256)
    assert "my-pose" in info
    # The project's pose is usable in a script right away.
    characters_tab.save_character(ctx, sid, str(PHOTO), "Eileen", "", None)
    status, rows = story_tab.validate(ctx, sid, "[Eileen] stretches\n  pose: my-pose\n")
    assert "valid: 1 panel" in status and rows[0][2] == "my-pose"


def test_pose_extraction_without_weights_says_what_it_needs_in_one_sentence(ctx, sid):
    with pytest.raises(StoryMakerError) as info:
        poses_tab.extract_from_photo(ctx, sid, str(PHOTO), "from-photo")
    message = str(info.value)
    assert message == poses_tab.EXTRACT_NEEDS
    assert "Annotators" in message and "python -m storymaker download" in message
    assert "\n" not in message and "STORYMAKER_" not in message and "/root" not in message  # no wall of paths
    assert not poses_tab.extraction_available(ctx)  # so the tab says it before anyone tries


def test_a_failure_of_several_lines_keeps_its_lines_in_the_notice():
    """A script's problems (one a line) ran together into one paragraph in the notice."""
    from storymaker.errors import ScriptError, ScriptIssue
    from storymaker.ui.common import user_errors

    def render():
        raise ScriptError([ScriptIssue(2, 7, "size 100x100: use multiples of 8", "size: 100x100"),
                           ScriptIssue(4, 1, "[Nobody] is not a registered character", "[Nobody] walks")])

    with pytest.warns(UserWarning) as caught:
        user_errors(render)()
    text = str(caught[0].message)
    assert text.startswith("The story script has 2 problems:<br>line 2, column 7: size 100x100")
    assert "<br>line 4, column 1: [Nobody] is not a registered character<br>" in text
