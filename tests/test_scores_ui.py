"""Scores in the studio's handlers: badges, sorting versions by score, best of N from the Render tab,
the consistency view; the draft backend says it has no scores."""

from __future__ import annotations

from ui_helpers import PHOTO, make_context

from storymaker.services.scores import scores_from_meta
from storymaker.ui import characters_tab, render_tab, scores_view, story_tab

STORY = "title: Scores\n\n[Eileen] waves from a rocket\n\na clear sky\n"


def studio(tmp_path, backend):
    ctx = make_context(tmp_path / "data", backend, width=64, height=64, steps=1)
    sid = ctx.sessions.new_session()
    characters_tab.save_character(ctx, sid, str(PHOTO), "Eileen", "an astronaut", None)
    story_tab.validate(ctx, sid, STORY)
    return ctx, sid


def test_tiny_best_of_badges_sorting_and_consistency_view(tmp_path):
    ctx, sid = studio(tmp_path, "tiny")
    options = render_tab.settings_from_widgets(64, 64, 1, 7.5, 0.8, 0.8, 0.7, -1, 3)
    assert options.overrides()["best_of"] == 3
    assert "2 of 2 panels rendered" in render_tab.run_render(ctx, sid, "all", 1, options)
    project = ctx.project(sid)
    versions = project.versions(0)
    assert len(versions) == 3

    items, text = render_tab.version_gallery(ctx, sid, 1)
    assert all("(stand-in models)" in caption and "CLIP-T" in caption for _, caption in items)

    by_clip_t = render_tab.version_gallery(ctx, sid, 1, "CLIP-T (best first)")[0]
    values = [scores_from_meta(v.meta).clip_t for v in versions]
    order = sorted(range(3), key=lambda i: (-values[i], i))
    assert [caption.split(":")[0] for _, caption in by_clip_t] == [f"v{i + 1}" for i in order]

    # Choosing the first item of the sorted list picks that version (hand selection wins).
    message = render_tab.choose_version(ctx, sid, 1, 0, "CLIP-T (best first)")
    assert project.selected(0).id == versions[order[0]].id and f"version {order[0] + 1}" in message

    sheets, report = scores_view.consistency(ctx, sid)
    assert "meaningless" in report and "Eileen" in report
    assert [caption for _, caption in sheets] == ["Eileen: face similarity per panel"]
    assert project.selected(0).id == versions[order[0]].id  # the view never changes the choice


def test_draft_versions_say_they_have_no_scores(tmp_path):
    ctx, sid = studio(tmp_path, "draft")
    options = render_tab.settings_from_widgets(64, 64, 1, 7.5, 0.8, 0.8, 0.7, -1)
    render_tab.run_render(ctx, sid, "panel", 1, options)
    items, text = render_tab.version_gallery(ctx, sid, 1)
    assert items[0][1].endswith("draft: no scores") and scores_view.DRAFT_NOTE in text
    _, report = scores_view.consistency(ctx, sid)
    assert scores_view.DRAFT_NOTE in report and "drafts have no scores" in report
