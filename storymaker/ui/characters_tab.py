"""Characters tab: upload a photo, check what was detected, save; manage the saved characters."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import check_image_file, clears_first, image_input, ok, show_failure, user_errors
from .context import StudioContext
from .gpu import GPU_QUEUE, gpu_event

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- handlers (no server needed)

def gallery_items(ctx: StudioContext, sid: str) -> list[tuple[str, str]]:
    """(image path, caption) for every character of the session, face crop first if it exists."""
    registry = ctx.registry(sid)
    items = []
    for character in registry.list():
        folder = Path(registry.folder(character.id))
        image = folder / character.face_crop_file
        if not image.exists():
            image = folder / character.photo_file
        caption = character.name + (f": {character.description}" if character.description else "")
        if character.outfits:
            caption += f" (outfits: {', '.join(o.name for o in character.outfits)})"
        items.append((str(image), caption))
    return items


def character_choices(ctx: StudioContext, sid: str) -> list[tuple[str, str]]:
    return [(c.name, c.id) for c in ctx.registry(sid).list()]


@dataclass(frozen=True)
class CheckedPhoto:
    """A photo (and optional mask) already analysed by "Check the photo": saving it right after
    reuses the analysis instead of running the models again."""

    photo: str
    mask: str | None
    preview: Any = field(repr=False, compare=False)

    def matches(self, photo, mask) -> bool:
        return self.photo == str(photo) and self.mask == (str(mask) if mask else None)


def analyze_photo(ctx: StudioContext, sid: str, photo, mask):
    """Preview: the photo with the chosen face boxed, the mask, the body crop and the face crop;
    the last value is the :class:`CheckedPhoto` to hand to :func:`save_character`."""
    from ..errors import ImageError

    if photo is None:
        raise ImageError("Upload a photo of the character first (one clearly visible face).")
    check_image_file(photo, "photo")
    check_image_file(mask, "mask")
    preview = ctx.registry(sid).preview(photo, mask=mask)
    face = preview.face
    lines = [f"Faces found: **{face.faces_found}** (the largest, boxed in green, is used)."]
    if face.gender:
        lines.append(f"Face analysis says: {face.gender}" + (f", about {face.age}" if face.age else "")
                     + f". Without a description the script writes [Name] as \"{preview.prompt_noun}\".")
    lines.append(f"Mask from: {preview.mask_source}. Models: {preview.face_model}, {preview.image_encoder}.")
    lines += [f"Note: {note}" for note in preview.notes]
    checked = CheckedPhoto(str(photo), str(mask) if mask else None, preview)
    return preview.annotated, preview.mask, preview.body_crop, preview.face_crop, "\n\n".join(lines), checked


def save_character(ctx: StudioContext, sid: str, photo, name: str, description: str, mask,
                   checked: CheckedPhoto | None = None):
    """Register the character (reusing ``checked`` when it is the same photo and mask)."""
    from ..errors import ImageError

    if photo is None:
        raise ImageError("Upload a photo of the character first (one clearly visible face).")
    check_image_file(photo, "photo")
    check_image_file(mask, "mask")
    registry = ctx.registry(sid)
    if checked is not None and checked.matches(photo, mask):
        character = registry.add(checked.preview, name=name, description=description or "")
    else:
        character = registry.add(name, photo, description=description or "", mask=mask)
    return character, ok(f"Saved **{character.name}**. Use `[{character.name}]` in the story script.")


def rename_character(ctx: StudioContext, sid: str, character_id: str, new_name: str):
    character = ctx.registry(sid).rename(_need(character_id), new_name)
    return ok(f"Renamed to **{character.name}** (update `[...]` in your script).")


def redescribe_character(ctx: StudioContext, sid: str, character_id: str, description: str):
    character = ctx.registry(sid).redescribe(_need(character_id), description or "")
    return ok(f"Description of **{character.name}** saved.")


def panels_using(ctx: StudioContext, sid: str, name: str) -> list[int]:
    """Panel numbers (1-based) of the saved script that put ``[name]`` in the picture; the script
    is read without checking names, so this works while the script has other problems."""
    from ..domain.script import check, normalize_name

    story = check(ctx.project(sid).read_script(), None).story
    if story is None:
        return []
    key = normalize_name(name)
    return [i + 1 for i, panel in enumerate(story.panels)
            if any(normalize_name(c) == key for c in panel.characters)]


def _panel_list(numbers: list[int]) -> str:
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def ask_delete(ctx: StudioContext, sid: str, character_id: str) -> str:
    """The question asked before deleting: which character, and which panels use it."""
    character = ctx.registry(sid).get(_need(character_id))
    uses = panels_using(ctx, sid, character.name)
    where = (f"Panel{'s' if len(uses) > 1 else ''} {_panel_list(uses)} of the script use `[{character.name}]`: "
             "the script will report them until you change them." if uses
             else f"No panel of the script uses `[{character.name}]`.")
    return f"Delete **{character.name}** (photo, crops, outfits)? {where} You can undo it right after."


TRASH = "character"


def _trash(ctx: StudioContext, sid: str) -> Path:
    """Where the project's last deleted character waits for Undo: one per project of the
    workspace (``trash/<project folder>/character``), so an Undo never restores into another project."""
    return ctx.sessions.trash_dir(sid) / ctx.project(sid).path.name / TRASH


def can_undo(ctx: StudioContext, sid: str) -> bool:
    """Whether the project of ``sid`` has a deleted character that Undo can bring back (offered
    again after a reload; never in another project)."""
    return (_trash(ctx, sid) / "character.json").is_file()


def forget_deleted(ctx: StudioContext, sid: str, project_name: str) -> None:
    """Drop what a deleted project kept for Undo (a later project may get its folder name)."""
    import shutil

    shutil.rmtree(ctx.sessions.trash_dir(sid) / project_name, ignore_errors=True)


def delete_character(ctx: StudioContext, sid: str, character_id: str):
    """Delete a character, keeping a copy for :func:`undo_delete` (the project's last deleted one only)."""
    import shutil

    registry = ctx.registry(sid)
    character = registry.get(_need(character_id))
    trash = _trash(ctx, sid)
    shutil.rmtree(trash, ignore_errors=True)
    trash.parent.mkdir(exist_ok=True)
    shutil.copytree(registry.folder(character.id), trash)
    registry.remove(character.id)
    uses = panels_using(ctx, sid, character.name)
    text = f"Deleted **{character.name}**."
    if uses:
        text += (f" Panel{'s' if len(uses) > 1 else ''} {_panel_list(uses)} of the script still use "
                 f"`[{character.name}]`: change them in the Story tab, or press Undo.")
    return ok(text)


def undo_delete(ctx: StudioContext, sid: str):
    """Bring back the character deleted last from this project, with all its files."""
    import json
    import shutil

    from ..errors import CharacterError

    trash = _trash(ctx, sid)
    record = trash / "character.json"
    if not record.is_file():
        raise CharacterError("There is no deleted character to bring back in this project.")
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CharacterError("The deleted character's copy cannot be read: add it again from its photo.") from None
    name, character_id = str(data.get("name", "")), str(data.get("id", ""))
    registry = ctx.registry(sid)
    if registry.find(name) is not None:
        raise CharacterError(f"A character called {name!r} exists again: rename it first, then press Undo.")
    target = registry.root / character_id
    if not character_id or target.exists():
        raise CharacterError(f"{name!r} cannot be brought back (its folder is taken): add it again from its photo.")
    staging = registry.root / f".{character_id}.restore"  # hidden from the registry until complete
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(trash, staging)
    staging.rename(target)
    shutil.rmtree(trash, ignore_errors=True)
    return ok(f"**{name}** is back.")


def add_outfit(ctx: StudioContext, sid: str, character_id: str, outfit_name: str, image):
    from ..errors import ImageError

    if image is None:
        raise ImageError("Upload an image of the outfit (clothes on a plain background work best).")
    character = ctx.registry(sid).add_outfit(_need(character_id), outfit_name, image)
    names = ", ".join(o.name for o in character.outfits)
    return ok(f"**{character.name}** has outfits: {names}. Use `outfit: {character.name}={outfit_name}`.")


def _need(character_id: str | None) -> str:
    from ..errors import CharacterError

    if not character_id:
        raise CharacterError("Choose a character in the list first.")
    return character_id


# ---------------------------------------------------------------- layout

def render(ctx: StudioContext, session) -> dict[str, Any]:
    """Build the tab inside the current Blocks; returns the components other tabs refresh."""
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=5):
            gr.Markdown("### New character\nOne photo with one clear face. The whole person helps the "
                        "model keep the clothes and hair. JPEG, PNG or WebP, at most "
                        f"{int(ctx.settings.max_upload_mb)} MB (the browser refuses larger files).")
            photo = image_input(label="Photo", height=260, sources=["upload", "clipboard"], elem_id="char-photo")
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="Mara", scale=1, elem_id="char-name")
                description = gr.Textbox(label="Description (optional)", placeholder="a woman with red hair", scale=2)
            with gr.Accordion("Optional: your own person mask (white = person)", open=False):
                mask = image_input(label="Mask", height=160)
            with gr.Row():
                analyze_btn = gr.Button("1. Check the photo")
                save_btn = gr.Button("2. Save character", variant="primary")
            status = gr.Markdown(elem_id="char-status")
        with gr.Column(scale=6):
            gr.Markdown("### What the model will see")
            with gr.Row():
                face_box = gr.Image(label="Face found", interactive=False, height=200)
                mask_view = gr.Image(label="Person mask", interactive=False, height=200)
            with gr.Row():
                body_crop = gr.Image(label="Body crop (on white)", interactive=False, height=200)
                face_crop = gr.Image(label="Aligned face crop", interactive=False, height=200)
            face_info = gr.Markdown()
    gr.Markdown("### Your characters")
    with gr.Row():
        with gr.Column(scale=6):
            gallery = gr.Gallery(fit_columns=False, label="Characters", columns=5, height=240, allow_preview=False,
                                 object_fit="contain", elem_id="char-gallery",
                                 buttons=["fullscreen"])
        with gr.Column(scale=5):
            chosen = gr.Dropdown(label="Character", choices=[], interactive=True, elem_id="char-chosen")
            with gr.Row():
                new_name = gr.Textbox(label="New name", scale=3)
                rename_btn = gr.Button("Rename", scale=1)
            with gr.Row():
                new_desc = gr.Textbox(label="New description", scale=3)
                desc_btn = gr.Button("Save description", scale=1)
            with gr.Accordion("Outfits", open=False):
                outfit_name = gr.Textbox(label="Outfit name", placeholder="raincoat")
                outfit_image = image_input(label="Outfit image", height=160)
                outfit_btn = gr.Button("Add outfit")
            delete_btn = gr.Button("Delete character...", variant="stop", elem_id="char-delete")
            with gr.Group(visible=False, elem_id="char-delete-confirm") as confirm_box:
                confirm_text = gr.Markdown(elem_id="char-delete-question")
                with gr.Row():
                    confirm_btn = gr.Button("Yes, delete", variant="stop", elem_id="char-delete-yes")
                    keep_btn = gr.Button("No, keep it")
            manage_status = gr.Markdown(elem_id="char-manage-status")
            undo_btn = gr.Button("Undo the deletion", visible=False, elem_id="char-undo")

    def listing(sid):
        """The project's characters, and Undo while its last deleted one can come back."""
        choices = character_choices(ctx, sid)
        return (gallery_items(ctx, sid), gr.update(choices=choices, value=choices[-1][1] if choices else None),
                gr.update(visible=can_undo(ctx, sid)))

    listing_outputs = [gallery, chosen, undo_btn]

    def refresh(sid):
        """Another project (or a reload): its characters and Undo; no line or question of before."""
        return (*listing(sid), "", "", gr.update(visible=False))

    refresh_outputs = [*listing_outputs, status, manage_status, confirm_box]

    def on_photo(p):
        """A file that is not an image: say so and empty the box instead of a broken picture."""
        from ..errors import ImageError

        try:
            check_image_file(p, "photo")
        except ImageError as err:
            show_failure(str(err))
            return None, str(err), None
        return gr.skip(), "", None

    checked = gr.State(None)  # server-side, per browser session
    photo.upload(on_photo, [photo], [photo, status, checked], show_progress="hidden",
                 api_visibility="private")

    def on_analyze(sid, p, m):
        return analyze_photo(ctx, sid, p, m)

    analyze_btn.click(gpu_event(ctx, user_errors(on_analyze)),
                      [session, photo, mask], [face_box, mask_view, body_crop, face_crop, face_info, checked],
                      api_name="analyze_character", **GPU_QUEUE)

    def on_save(sid, p, n, d, m, c):
        _, message = save_character(ctx, sid, p, n, d, m, c)
        return (message, None, *listing(sid))

    events = [clears_first(save_btn.click, [status])(
        gpu_event(ctx, user_errors(on_save)), [session, photo, name, description, mask, checked],
        [status, checked, *listing_outputs], api_name="save_character", **GPU_QUEUE)]

    def on_manage(fn, on_gpu=False):
        def handler(sid, *args):
            message = fn(ctx, sid, *args)
            return (message, *listing(sid))
        return gpu_event(ctx, user_errors(handler)) if on_gpu else user_errors(handler)

    def managing(button):  # each action's own line replaces the one before, even when it fails
        return clears_first(button.click, [manage_status])

    events += [managing(rename_btn)(on_manage(rename_character), [session, chosen, new_name],
                                    [manage_status, *listing_outputs], api_name="rename_character")]
    events += [managing(desc_btn)(on_manage(redescribe_character), [session, chosen, new_desc],
                                  [manage_status, *listing_outputs], api_name="redescribe_character")]

    # The character the question names: "Yes, delete" deletes that one, not one chosen in the list
    # since (an API call without a question deletes the chosen one).
    asked = gr.State(None)

    def on_ask(sid, character_id):
        return gr.update(visible=True), ask_delete(ctx, sid, character_id), character_id

    delete_btn.click(user_errors(on_ask), [session, chosen], [confirm_box, confirm_text, asked],
                     api_name="ask_delete_character")
    keep_btn.click(lambda: (gr.update(visible=False), None), None, [confirm_box, asked], api_visibility="private")

    def on_delete(sid, character_id, asked_id=None):
        message = delete_character(ctx, sid, asked_id or character_id)
        return (message, gr.update(visible=False), None, *listing(sid))

    events += [managing(confirm_btn)(user_errors(on_delete), [session, chosen, asked],
                                     [manage_status, confirm_box, asked, *listing_outputs],
                                     api_name="delete_character")]

    def on_undo(sid):
        message = undo_delete(ctx, sid)
        return (message, *listing(sid))

    events += [managing(undo_btn)(user_errors(on_undo), [session], [manage_status, *listing_outputs],
                                  api_name="undo_delete_character")]
    events += [managing(outfit_btn)(on_manage(add_outfit, on_gpu=True), [session, chosen, outfit_name, outfit_image],
                                    [manage_status, *listing_outputs], api_name="add_outfit", **GPU_QUEUE)]

    return {"refresh": (user_errors(refresh), refresh_outputs), "gallery": gallery, "chosen": chosen,
            "events": events}
