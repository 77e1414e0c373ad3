"""Consistency scores in the studio: badges on panel versions, sorting versions by score, and the
"Consistency" view (the story report and a character sheet per character) on the Comic tab.

Thin: the scores are computed by the render engine (:mod:`storymaker.services.scores`) and read
here from each version's metadata; the view scores what has no scores yet, never changes the
selection (a hand selection always wins).
"""

from __future__ import annotations

import logging
from typing import Any

from .common import user_errors
from .context import StudioContext

logger = logging.getLogger(__name__)

SORTS = {"Render order": "order", "Face similarity (best first)": "face", "CLIP-T (best first)": "clip_t"}
DRAFT_NOTE = "Draft sketches have no consistency scores (they are not renders of the characters)."


def _scores(version):
    from ..services.scores import scores_from_meta

    return scores_from_meta(getattr(version, "meta", None))


def badge(version) -> str:
    """``face 0.71 · CLIP-T 0.31 · OFF-MODEL: Theo`` for a scored version; a note otherwise."""
    scores = _scores(version)
    if scores is not None:
        return scores.badge()
    if (version.meta or {}).get("backend") == "draft":
        return "draft: no scores"
    return "not scored"


def sorted_versions(versions: list, sort: str | None) -> list[tuple[int, Any]]:
    """``(1-based number in render order, version)`` in the order asked for: ``order`` (render
    order), ``face`` (highest lowest-character face similarity first, CLIP-T breaking ties) or
    ``clip_t``; unscored versions last. Labels of :data:`SORTS` are accepted too."""
    key = SORTS.get(sort or "", sort or "order")
    numbered = list(enumerate(versions, start=1))
    if key == "order":
        return numbered

    def rank(item):
        scores = _scores(item[1])
        if scores is None:
            return (1, 0.0, 0.0, item[0])
        face, clip_t = scores.selection_key()
        return (0, -clip_t, -face, item[0]) if key == "clip_t" else (0, -face, -clip_t, item[0])

    return sorted(numbered, key=rank)


def panel_flag(version) -> str:
    """`` · OFF-MODEL: Mara`` when a character of the version is off-model, else ''."""
    scores = _scores(version)
    if scores is None or not scores.off_model:
        return ""
    return " · OFF-MODEL: " + ", ".join(scores.off_model_names) + (" (stand-in scores)" if scores.stand_in else "")


# ---------------------------------------------------------------- the consistency view


def consistency(ctx: StudioContext, sid: str) -> tuple[list[tuple[Any, str]], str]:
    """(character sheets for a gallery, the report as markdown) of the session's project. Selected
    versions without scores are scored now with the app's models (never the draft backend's)."""
    from ..services.scores import make_scorer, score_selected
    from ..services.sheet import character_sheets, format_table, reference_images, story_report

    project = ctx.project(sid)
    if not project.panel_indices():
        return [], "Render some panels first: the scores are computed with every render."
    registry = ctx.registry(sid)
    backend = ctx.services.backend.name
    scorer = make_scorer(backend, ctx.settings.replace(score_renders=True), registry)
    scored = score_selected(project, scorer, poses=ctx.poses(sid))
    report = story_report(scored)
    sheets = character_sheets(scored, reference_images(registry, [c.name for c in registry.list()]))
    notes = []
    if backend == "draft":
        notes.append(DRAFT_NOTE)
    if report["story"]["stand_in"]:
        notes.append("**These scores come from stand-in models: the figures are meaningless.**")
    text = "\n\n".join([*notes, "```\n" + format_table(report) + "\n```"])
    return [(sheet, f"{name}: face similarity per panel") for name, sheet in sheets.items()], text


def render(ctx: StudioContext, session) -> dict[str, Any]:
    """The "Consistency" accordion: a button, the report and the character sheets."""
    import gradio as gr

    with gr.Accordion("Consistency: scores and character sheets", open=False):
        gr.Markdown("Face similarity to each character's photo, CLIP-I to its body crop and CLIP-T to the "
                    "prompt, for the chosen version of every panel. Off-model characters are flagged. "
                    + (DRAFT_NOTE if ctx.services.backend.name == "draft" else ""))
        button = gr.Button("Show consistency", size="md")
        report = gr.Markdown(elem_id="consistency-report")
        sheets = gr.Gallery(label="Character sheets", columns=1, height=320, object_fit="contain",
                            buttons=["download", "fullscreen"], elem_id="character-sheets")
    from .gpu import GPU_QUEUE, gpu_event

    def on_show(sid):  # versions without scores are scored here: model calls, so through the GPU worker
        return consistency(ctx, sid)

    button.click(gpu_event(ctx, user_errors(on_show)), [session], [sheets, report], api_name="consistency",
                 **GPU_QUEUE)
    return {"sheets": sheets, "report": report}
