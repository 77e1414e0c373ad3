"""Story tab: the script editor, the format's help, live validation and the derived panel list."""

from __future__ import annotations

import logging
from typing import Any

from .common import ok, user_errors, warn
from .context import StudioContext

logger = logging.getLogger(__name__)

FORMAT_HELP = """\
**Header** (before the first panel): `title:`, `style:` (a style from the menu, or free text
added to every panel), `negative:`,
`size: 960x1280` (multiples of 8), `seed:`, `steps:`, `guidance:`.

**Panels**: every other line starts a panel (indented or not); the line is its prompt. `[Name]`
puts a registered character in the panel (at most 3; 1-2 work best).

**Under a panel** (indented `word: value`): `pose: <pose name>`, `caption: <narration>`, `seed: 1234`,
`size: 1280x768`, `outfit: Name=outfit`, `steps:`, `guidance:`, `negative:`, `style:`, and dialogue as
`Name: "text"`.

Lines starting with `#` are comments. The full format: `docs/script.md`.
"""

EXAMPLE_SCRIPT = """\
# A three-panel story: replace Mara with the name of a character you registered.
title: A Day at the Sea
style: graphic novel, ink and watercolor

[Mara] stands on a rocky cliff at dusk, wind in her hair
  caption: Every evening, Mara climbed the cliff.

[Mara] walks along the beach at dawn
  Mara: "The sea is calm today."

an empty beach at dawn, seagulls over the water
  caption: The end.
"""

PANEL_HEADERS = ["#", "characters", "pose", "caption", "prompt"]


# ---------------------------------------------------------------- handlers

def validate(ctx: StudioContext, sid: str, text: str) -> tuple[str, list[list[Any]]]:
    """Save the script (work is never lost, even with problems), then check it: a Markdown list of
    every error and warning at its line, and the panel table."""
    from ..domain.script import check

    text = text or ""
    ctx.project(sid).write_script(text)
    _, names, poses = ctx.script_inputs(sid)
    if not text.strip():
        return "Write a story: one panel per line (see the format help).", []
    report = check(text, names, poses=poses)
    rows = panel_rows(report.story) if report.story is not None else []
    lines = []
    if report.errors:
        count = len(report.errors)
        lines.append(warn(f"{count} problem{'s' if count != 1 else ''} (nothing renders until fixed):"))
        lines += [_issue_line(i) for i in report.errors]
    else:
        count = len(report.story.panels) if report.story is not None else 0
        lines.append(ok(f"The script is valid: {count} panel{'s' if count != 1 else ''} (saved)."))
    if report.warnings:
        lines.append("**Warnings:**")
        lines += [_issue_line(i) for i in report.warnings]
    if not names:
        lines.append("No characters registered yet: add them in the Characters tab to use `[Name]`.")
    return "\n".join(lines), rows


def _issue_line(issue) -> str:
    source = issue.source_line.strip()
    return (f"- **line {issue.line}, column {issue.column}**: {issue.message}"
            + (f"  \n  `{source}`" if source else ""))


def panel_rows(story) -> list[list[Any]]:
    return [
        [i + 1, ", ".join(p.characters), p.pose or "", p.caption or "", p.prompt]
        for i, p in enumerate(story.panels)
    ]


def load_script(ctx: StudioContext, sid: str) -> str:
    return ctx.project(sid).read_script()


def style_choices() -> list[tuple[str, str]]:
    """The style menu: ``(label, name)``, the label with the style's one-line description."""
    from ..domain.styles import StyleLibrary

    return [(f"{style.name}: {style.description}", style.name) for style in StyleLibrary.builtin()]


def apply_style(text: str, name: str | None) -> str:
    """The script with its header's ``style:`` set to the chosen style (unchanged if none chosen)."""
    from ..domain.script import with_header_value

    return with_header_value(text or "", "style", name) if name else (text or "")


# ---------------------------------------------------------------- layout

def render(ctx: StudioContext, session) -> dict[str, Any]:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=7):
            editor = gr.Code(label="Story script", language=None, lines=22, max_lines=40,
                             interactive=True, wrap_lines=True, elem_id="script-editor")
            with gr.Row():
                example_btn = gr.Button("Insert an example script")
                gr.Markdown("The script is checked and saved as you type.")
            style_menu = gr.Dropdown(choices=style_choices(), value=None, label="Style",
                                     info="Sets the script's style: line (docs/prompts.md lists them)",
                                     elem_id="style-menu")
        with gr.Column(scale=5):
            with gr.Accordion("Script format", open=True):
                gr.Markdown(FORMAT_HELP)
            issues = gr.Markdown(elem_id="script-issues")
    panels = gr.Dataframe(headers=PANEL_HEADERS, label="Panels", interactive=False, wrap=True,
                          column_widths=["5%", "15%", "15%", "25%", "40%"], value=[])

    def on_change(sid, text):
        return validate(ctx, sid, text)

    editor.change(user_errors(on_change), [session, editor], [issues, panels], trigger_mode="always_last",
                  show_progress="hidden", api_name="validate_script")
    example_btn.click(lambda: EXAMPLE_SCRIPT, None, [editor], api_visibility="private")
    style_menu.input(user_errors(apply_style), [editor, style_menu], [editor], api_visibility="private")

    def reload(sid):
        return load_script(ctx, sid)

    return {"editor": editor, "refresh": (user_errors(reload), [editor]),
            "revalidate": (user_errors(on_change), [session, editor], [issues, panels])}
