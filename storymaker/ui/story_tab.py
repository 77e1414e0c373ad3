"""Story tab: the script editor, the format's help, live validation and the derived panel list."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .common import NOTICE_SECONDS, ok, user_errors, warn
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

DOCS_FILE = Path(__file__).resolve().parents[2] / "docs" / "script.md"
DOCS_LINK = "docs/script.md"


def format_reference() -> str:
    """The whole script format documentation (docs/script.md), shown inside the app."""
    try:
        return DOCS_FILE.read_text(encoding="utf-8")
    except OSError:
        return (f"The full format is described in `{DOCS_LINK}` in the StoryMaker Studio repository "
                "(not installed with this copy).")


# ---------------------------------------------------------------- handlers

def validate(ctx: StudioContext, sid: str, text: str, base: str | None = None) -> tuple[str, list[list[Any]]]:
    """Save the script (work is never lost, even with problems), then check it: a Markdown list of
    every error and warning at its line, and the panel table. ``base``: the text this editor last
    loaded or saved (see :func:`save_script`)."""
    return check_report(ctx, sid, text, save_script(ctx, sid, text, base))


def save_script(ctx: StudioContext, sid: str, text: str, base: str | None = None):
    """Save the editor's text. If the saved script is neither ``base`` nor ``text``, another tab or
    window changed it since this editor loaded it: that text is kept in the project's script
    history and returned (a :class:`ScriptVersion`), else None. An untitled project takes the
    script's title."""
    text = text or ""
    project = ctx.project(sid)
    # An untitled project takes the script's title and follows it while it is typed ("M", "Mo",
    # ... "Moon Walk"), so the project list tells projects apart; a title given by hand stays.
    follows = project.title in ("", UNTITLED) or project.title == script_header(project.read_script())[0]
    kept = project.write_script(text, base=base)
    if follows:
        title = script_header(text)[0]
        if title and title != project.title:
            project.set_title(title)
    return kept


OTHER_TAB = ("This script had been changed in another tab or window since this one loaded it. Your text "
             "here is saved; the other text is kept under *Earlier texts of this script* (below the editor): "
             "restore it there if you need it.")


def check_report(ctx: StudioContext, sid: str, text: str, kept=None) -> tuple[str, list[list[Any]]]:
    """(Markdown report, panel rows) of the saved ``text``; ``kept``: a text another tab had saved
    (:func:`save_script`), announced first."""
    from ..domain.script import check

    text = text or ""
    lines = [warn(OTHER_TAB)] if kept is not None else []
    checks = ctx.script_checks(sid)
    names = checks["characters"]
    if not text.strip():
        return "\n\n".join([*lines, "Write a story: one panel per line (see the format help)."]), []
    report = check(text, **checks)  # the render's own limits: what is valid here renders
    rows = panel_rows(report.story) if report.story is not None else []
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
        lines.append("\nNo characters registered yet: add them in the Characters tab to use `[Name]`.")
    return "\n".join(lines), rows


def history_choices(ctx: StudioContext, sid: str) -> list[tuple[str, str]]:
    """(label, id) of the kept earlier texts of the script, newest first."""
    return [(version.label(), version.id) for version in ctx.project(sid).script_history()]


def restore_script(ctx: StudioContext, sid: str, version_id: str | None) -> tuple[str, str]:
    """Make a kept earlier text the script again (the one it replaces is kept too):
    (the script now, a message)."""
    from ..errors import InvalidInputError

    if not version_id:
        raise InvalidInputError("Choose an earlier text in the list first.")
    project = ctx.project(sid)
    project.restore_script(version_id)
    return project.read_script(), ok("Restored that text; the one it replaced is kept in the list.")


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


UNTITLED = "Untitled story"


def script_header(text: str | None) -> tuple[str, str | None]:
    """(title, style-menu value) of a script's header: the style when it names a library style,
    else None. Registered names are not checked here: only the header matters."""
    from ..domain.script import check
    from ..domain.styles import StyleLibrary

    story = check(text or "").story
    if story is None:
        return "", None
    style = StyleLibrary.builtin().find(story.style)
    return story.title, style.name if style is not None else None


def style_choices() -> list[tuple[str, str]]:
    """The style menu: ``(label, name)``, the label with the style's one-line description."""
    from ..domain.styles import StyleLibrary

    return [(f"{style.name}: {style.description}", style.name) for style in StyleLibrary.builtin()]


def apply_style(text: str, name: str | None) -> str:
    """The script with its header's ``style:`` set to the chosen style (unchanged if none chosen)."""
    from ..domain.script import with_header_value

    return with_header_value(text or "", "style", name) if name else (text or "")


def example_needs_confirmation(text: str | None) -> bool:
    """Inserting the example replaces the script: ask first unless there is nothing to lose."""
    current = (text or "").strip()
    return bool(current) and current != EXAMPLE_SCRIPT.strip()


# ---------------------------------------------------------------- layout

def render(ctx: StudioContext, session) -> dict[str, Any]:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=7):
            editor = gr.Code(label="Story script", language=None, lines=22, max_lines=40,
                             interactive=True, wrap_lines=True, elem_id="script-editor")
            with gr.Row():
                example_btn = gr.Button("Insert an example script", elem_id="insert-example")
                gr.Markdown("The script is checked and saved as you type.")
            style_menu = gr.Dropdown(choices=style_choices(), value=None, label="Style",
                                     info="Sets the script's style: line (docs/prompts.md lists them)",
                                     elem_id="style-menu")
            with gr.Group(visible=False) as confirm_box:
                gr.Markdown("Replace your whole script with the example? Your script is kept under *Earlier "
                            "texts of this script*, where you can restore it.", elem_id="example-question")
                with gr.Row():
                    replace_btn = gr.Button("Yes, replace my script", variant="stop", elem_id="example-yes")
                    keep_btn = gr.Button("No, keep my script", elem_id="example-no")
            with gr.Accordion("Earlier texts of this script", open=False, elem_id="script-history"):
                gr.Markdown("Kept when another tab or window changed the script while you wrote here, and "
                            "before a text is replaced (the example, a restore).")
                with gr.Row():
                    history = gr.Dropdown(choices=[], value=None, label="Earlier text", scale=4,
                                          elem_id="script-history-list")
                    restore_btn = gr.Button("Restore this text", scale=1, elem_id="script-restore")
                earlier = gr.Code(label="That text", language=None, lines=6, max_lines=12, interactive=False,
                                  elem_id="script-history-text")
        with gr.Column(scale=5):
            issues = gr.Markdown(elem_id="script-issues")
            with gr.Accordion("Script format", open=True):
                gr.Markdown(FORMAT_HELP)
            with gr.Accordion(f"The whole format, with examples ({DOCS_LINK})", open=False,
                              elem_id="script-docs"):
                gr.Markdown(format_reference())
    panels = gr.Dataframe(headers=PANEL_HEADERS, label="Panels", interactive=False, wrap=True,
                          column_widths=["40px", "110px", "110px", "160px", "260px"], value=[],
                          elem_id="panel-table")

    # The text this page's editor last loaded or saved: a save over a text that another tab saved
    # meanwhile keeps that text (save_script).
    base = gr.State(None)

    def on_change(sid, text, seen):
        kept = save_script(ctx, sid, text, seen)
        listed = gr.update(choices=history_choices(ctx, sid)) if kept is not None else gr.skip()
        if kept is not None:  # a notice too: the line below the editor changes at the next key
            gr.Warning(OTHER_TAB, duration=NOTICE_SECONDS, title="Another tab changed this script")
        # The style menu follows a style: line typed by hand.
        return (*check_report(ctx, sid, text, kept), text or "", listed, script_header(text)[1])

    checked = [issues, panels, base, history, style_menu]
    changed = editor.change(user_errors(on_change), [session, editor, base], checked, trigger_mode="always_last",
                            show_progress="hidden", api_name="validate_script")

    def on_example(text):
        if example_needs_confirmation(text):
            return gr.skip(), gr.update(visible=True)
        return EXAMPLE_SCRIPT, gr.update(visible=False)

    example_btn.click(on_example, [editor], [editor, confirm_box], api_visibility="private")
    def on_replace(sid):
        ctx.project(sid).keep_script()
        return EXAMPLE_SCRIPT, gr.update(visible=False), gr.update(choices=history_choices(ctx, sid))

    replace_btn.click(user_errors(on_replace), [session], [editor, confirm_box, history], api_visibility="private")
    def on_pick(sid, version_id):
        return next((v.text for v in ctx.project(sid).script_history() if v.id == version_id), "")

    history.change(user_errors(on_pick), [session, history], [earlier], show_progress="hidden",
                   api_visibility="private")

    def on_restore(sid, version_id):
        text, message = restore_script(ctx, sid, version_id)
        gr.Info(message)
        return text, text, gr.update(choices=history_choices(ctx, sid), value=None)

    restore_btn.click(user_errors(on_restore), [session, history], [editor, base, history], api_name="restore_script")
    keep_btn.click(lambda: gr.update(visible=False), None, [confirm_box], api_visibility="private")
    style_menu.input(user_errors(apply_style), [editor, style_menu], [editor], api_visibility="private")

    def reload(sid):
        # The style menu shows the script's style again (after a reload or another project).
        text = load_script(ctx, sid)
        return text, script_header(text)[1], text, gr.update(choices=history_choices(ctx, sid), value=None)

    return {"editor": editor, "refresh": (user_errors(reload), [editor, style_menu, base, history]),
            "revalidate": (user_errors(on_change), [session, editor, base], checked),
            "events": [changed]}
