"""The Render tab's handlers and widgets (draft backend, no server): render only the missing
panels, the Quality radio's default, typed numbers out of range, the status after a reload."""

from __future__ import annotations

import os
import warnings

import pytest

from ui_helpers import make_studio

from storymaker.errors import StoryMakerError
from storymaker.ui import render_tab, story_tab
from storymaker.ui.common import warn

STREETS = "a quiet street\n\nan empty beach\n\na hill at dawn\n"
OPTIONS = dict(width=256, height=256, steps=2, guidance=7.5, ip_scale=0.8, lora_scale=0.8, cn_scale=0.7, seed=-1)


def _options(**changes):
    values = dict(OPTIONS, **changes)
    return render_tab.settings_from_widgets(*values.values())


def _counts(ctx, sid):
    """How many versions each panel of the current script has."""
    story = ctx.story(sid)
    return [len(item.versions) for item in ctx.project(sid).panel_renders([p.prompt for p in story.panels])]


def _component(blocks, kind, label):
    found = [b for b in blocks.blocks.values() if type(b).__name__ == kind
             and (b.value if kind == "Button" else getattr(b, "label", None)) == label]
    assert len(found) == 1, (kind, label, found)
    return found[0]


def test_render_missing_renders_only_panels_without_a_render_of_their_wording(ctx, sid):
    story_tab.validate(ctx, sid, STREETS)

    def cancel_in_panel_2(fraction, desc=None):
        if desc and desc.startswith("Panel 2 of 3"):
            ctx.cancels.cancel(sid)  # the user presses Cancel during the second panel

    assert "cancelled" in render_tab.run_render(ctx, sid, "all", 1, _options(), cancel_in_panel_2)
    before = _counts(ctx, sid)  # the draft backend finishes the panel it is drawing
    assert before in ([1, 0, 0], [1, 1, 0])
    done, left = sum(before), 3 - sum(before)

    seen = []
    message = render_tab.run_render(ctx, sid, "missing", 1, _options(), lambda f, desc=None: seen.append(desc))
    assert f"{left} of {left} panel{'s' if left > 1 else ''} rendered, {done} skipped (already rendered)." in message
    assert _counts(ctx, sid) == [1, 1, 1]  # the rendered panels kept their one version: no identical second one
    assert f"Panel 1 of {left}: step 1 of 1 ({done} already rendered, skipped)" in seen

    message = render_tab.run_render(ctx, sid, "missing", 1, _options())
    assert "Nothing to render: all 3 panels already have a render of their current wording." in message
    assert _counts(ctx, sid) == [1, 1, 1]

    # Panel 2's words change: its picture says "script changed since render", and only it renders.
    story_tab.validate(ctx, sid, STREETS.replace("an empty beach", "an empty beach at dusk"))
    assert render_tab.CHANGED in render_tab.panel_gallery(ctx, sid)[1][1]
    message = render_tab.run_render(ctx, sid, "missing", 1, _options())
    assert "1 of 1 panel rendered, 2 skipped (already rendered)." in message
    assert _counts(ctx, sid) == [1, 2, 1]
    assert render_tab.CHANGED not in render_tab.panel_gallery(ctx, sid)[1][1]

    # Render all still renders every panel again.
    assert "3 of 3 panels rendered." in render_tab.run_render(ctx, sid, "all", 1, _options())
    assert _counts(ctx, sid) == [2, 3, 2]


def test_the_buttons_are_there_and_the_gpu_duration_counts_only_missing_panels(tmp_path):
    from storymaker.services.gpu import story_work
    from storymaker.ui.gpu import render_work

    studio = make_studio(tmp_path / "data")
    ctx = studio.context
    sid = ctx.sessions.new_session()
    story_tab.validate(ctx, sid, STREETS)
    assert _component(studio.blocks, "Button", "Render missing panels")
    handler = next(fn for fn in studio.blocks.fns.values() if fn.api_name == "render_missing")
    assert handler.concurrency_limit == 1 and handler.concurrency_id == "gpu"  # the one GPU queue
    widgets = (sid, 1, 256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1, 1, "Standard")
    work = render_work(ctx, "missing")
    everything = story_work(ctx.story(sid), ctx.settings.replace(width=256, height=256, steps=2))
    assert work(*widgets) == everything
    render_tab.run_render(ctx, sid, "panel", 2, _options())
    assert work(*widgets) == [everything[0], everything[2]]  # panel 2 has its render: not counted
    message, gallery = handler.fn(*widgets, progress=lambda *a, **k: None)
    assert "2 of 2 panels rendered, 1 skipped" in message and len(gallery) == 3
    assert work(*widgets) == []


def test_quality_starts_on_standard_unless_the_settings_ask_for_fast(tmp_path):
    # STORYMAKER_STEPS=4 is a step count, not a choice of the Fast preset (which would replace
    # every panel's steps, the script's `steps: 10` included).
    studio = make_studio(tmp_path / "a", steps=4)
    assert _component(studio.blocks, "Radio", "Quality").value == "Standard"
    assert _component(studio.blocks, "Slider", "Steps").value == 4
    assert render_tab.default_quality(studio.context.settings) == "Standard"
    fast = make_studio(tmp_path / "b", quality="fast")
    assert _component(fast.blocks, "Radio", "Quality").value == "Fast"


@pytest.mark.parametrize("label", ["Panel", "Width", "Height"])
def test_typed_numbers_reach_the_handler_instead_of_a_red_gradio_error(tmp_path, label):
    studio = make_studio(tmp_path / "data")
    number = _component(studio.blocks, "Number", label)
    assert number.minimum is None and number.maximum is None
    assert number.preprocess(-1) == -1 and number.preprocess(0) == 0 and number.preprocess(20) == 20
    if label == "Panel":  # not rounded to another panel by the box: 1.5 is refused, not panel 2 (QA2)
        assert number.preprocess(1.5) == 1.5


@pytest.mark.parametrize("number, message", [(0, "Panel numbers start at 1."), (-1, "Panel numbers start at 1."),
                                             (99, "Panel 99 does not exist: the story has 3 panels."),
                                             (1.5, "Panel 1.5 is not a panel number")])
def test_a_panel_number_out_of_range_is_one_clear_message(ctx, sid, number, message):
    story_tab.validate(ctx, sid, STREETS)
    for mode in ("panel", "reroll"):
        with pytest.raises(StoryMakerError) as caught:
            render_tab.run_render(ctx, sid, mode, number, _options())
        assert str(caught.value).startswith(message)
        assert str(caught.value).count("Panel") <= 1  # not "Panel 99: Panel 99 ..."
    assert _counts(ctx, sid) == [0, 0, 0]


@pytest.mark.parametrize("changes, message", [
    (dict(width=20), "at least 64"),
    (dict(width=0), "at least 64"),  # 0 is a multiple of 8: it was told to be one (QA2)
    (dict(width=16), "at least 64"),
    (dict(width=100), "multiples of 8"),
    (dict(height=-64), "at least 64"),
    (dict(steps=0), "at least 1"),
])
def test_a_size_or_steps_out_of_range_is_one_clear_message(changes, message):
    with pytest.raises(StoryMakerError, match=message):
        _options(**changes)


def test_the_handler_shows_the_message_and_leaves_the_outputs_as_they_were(tmp_path):
    import gradio as gr

    studio = make_studio(tmp_path / "data")
    ctx = studio.context
    sid = ctx.sessions.new_session()
    story_tab.validate(ctx, sid, STREETS)
    handler = next(fn for fn in studio.blocks.fns.values() if fn.api_name == "render_panel")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = handler.fn(sid, 0, 256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1, 1, "Standard", progress=lambda *a, **k: None)
    assert isinstance(result, type(gr.skip())) or result == gr.skip()
    assert any("Panel numbers start at 1." in str(w.message) for w in shown)


def test_a_render_error_naming_its_panel_is_not_prefixed_again():
    from storymaker.services.jobs import PanelResult, RenderReport, about_panels

    assert about_panels([2], "Panel 2 asks for pose 'wave' but no pose library is available.") == (
        "Panel 2 asks for pose 'wave' but no pose library is available.")
    assert about_panels([12], "Panel 1 is odd") == "Panel 12: Panel 1 is odd"
    assert about_panels([1, 3], "The GPU ran out of memory.") == "Panels 1, 3: The GPU ran out of memory."
    report = RenderReport((PanelResult(1, "error", error="Panel 2: size 20x64 is not usable."),), backend="draft")
    assert report.summary() == "0 of 1 panel rendered. Panel 2: size 20x64 is not usable."


def test_after_a_reload_the_tab_says_a_render_is_running_and_a_new_render_clears_old_lines(ctx, sid):
    story_tab.validate(ctx, sid, STREETS)
    assert render_tab.running_note(ctx, sid) == ""
    notes = []

    def reload_during_panel_1(fraction, desc=None):
        if notes:
            return
        # What a reloaded page's Render tab shows while the render of the page before runs.
        notes.append(render_tab.running_note(ctx, sid))
        notes.append(render_tab.start_render(ctx, sid)[0])  # a second Render click meanwhile
        notes.append(render_tab.cancel_render(ctx, sid))  # then Cancel: it stops the running render

    message = render_tab.run_render(ctx, sid, "all", 1, _options(), reload_during_panel_1)
    assert notes[0] == warn(render_tab.RUNNING) and "Cancel stops it" in notes[0]
    assert "still running" in notes[1] and "Cancelling" in notes[2]
    assert "cancelled" in message and _counts(ctx, sid)[2] == 0
    assert render_tab.running_note(ctx, sid) == ""  # finished: nothing is said any more

    lines = []
    render_tab.run_render(ctx, sid, "all", 1, _options(),
                          lambda f, desc=None: lines.append(render_tab.cancel_render(ctx, sid)))
    assert "Cancelling" in lines[0]  # the status line the Cancel click left
    assert render_tab.start_render(ctx, sid)[0] == ""  # the next render's click replaces it


def test_a_running_mark_left_by_a_process_that_died_is_not_a_running_render(ctx, sid):
    marker = ctx.cancels._busy_path(sid)
    marker.parent.mkdir(parents=True, exist_ok=True)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    marker.write_text(str(pid), encoding="utf-8")
    assert not ctx.cancels.is_busy(sid)
    marker.write_text(str(os.getppid()), encoding="utf-8")  # a live process
    assert ctx.cancels.is_busy(sid)


def test_the_render_buttons_clear_the_status_at_the_click(tmp_path):
    studio = make_studio(tmp_path / "data")
    status = next(b for b in studio.blocks.blocks.values() if getattr(b, "elem_id", None) == "render-status")
    ticket = next(b for b in studio.blocks.blocks.values() if getattr(b, "elem_id", None) == "render-ticket")
    arms = [fn for fn in studio.blocks.fns.values() if getattr(fn.fn, "__name__", "") == "arm"]
    assert len(arms) == 4  # all, missing, panel, re-roll
    for fn in arms:  # the click's status line and its cancel ticket, outside the queue
        assert [o._id for o in fn.outputs] == [status._id, ticket._id] and not fn.queue
    renders = [fn for fn in studio.blocks.fns.values() if str(getattr(fn, "api_name", "")).startswith("render_")]
    assert len(renders) == 4 and all(fn.inputs[-1] is ticket for fn in renders)  # each render gets its ticket
