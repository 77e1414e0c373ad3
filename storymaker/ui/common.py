"""Small helpers shared by the tabs: user-facing errors, status lines, image loading.

A failing handler never leaves a component in Gradio's red "Error" state: :func:`user_errors`
shows the failure as one readable message (a notice) and leaves every
output as it was.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
from pathlib import Path
from typing import Any, Callable

from ..errors import StoryMakerError

logger = logging.getLogger(__name__)

FAILURE_TITLE = "That did not work"


def failure_message(err: BaseException, where: str = "") -> str:
    """The one sentence a user sees for ``err``: a :class:`StoryMakerError`'s own message (it says
    what to do), or a short generic line for a bug (the traceback goes to the server log)."""
    import gradio as gr

    if isinstance(err, StoryMakerError):
        return str(err)
    if isinstance(err, gr.Error):
        return str(err.message)
    logger.exception("unexpected error in %s", where or "a handler")
    return (f"Something went wrong ({type(err).__name__}: {err}). Your work is saved; "
            "the details are in the server log.")


NOTICE_SECONDS = 20  # long enough to read twice; old notices do not pile up after later successes


def show_failure(message: str) -> None:
    """Show ``message`` as a notice (outside a request: a Python warning)."""
    import gradio as gr

    # The notice shows HTML: keep the message's own lines (a script's problems, one a line).
    gr.Warning(html.escape(message).replace("\n", "<br>"), duration=NOTICE_SECONDS, title=FAILURE_TITLE)


def user_errors(fn: Callable) -> Callable:
    """Wrap a Gradio handler: on failure, show one readable message and leave every output
    unchanged (``gr.skip()``), so no component is left in an error state."""
    import gradio as gr

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - shown readably, bugs logged with traceback
                show_failure(failure_message(err, fn.__name__))
                yield gr.skip()
        gen_wrapper.shows_failures = True
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - shown readably, bugs logged with traceback
            show_failure(failure_message(err, getattr(fn, "__name__", "handler")))
            return gr.skip()
    wrapper.shows_failures = True  # marks handlers checked by the tests: every session handler is wrapped
    return wrapper


def ok(text: str) -> str:
    """A success line (plain text: emoji fonts are not everywhere)."""
    return text


def warn(text: str) -> str:
    return f"**Attention:** {text}"


def as_path(value: Any) -> Path | None:
    """A Gradio file value (str path, dict with ``path``, or object with ``.name``) as a Path."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(value, dict) and value.get("path"):
        return Path(value["path"])
    name = getattr(value, "name", None) or getattr(value, "path", None)
    return Path(name) if name else None


def check_image_file(path: Any, what: str = "photo") -> None:
    """ImageError (the CLI's message: "... cannot be decoded ...: save it again as JPEG, PNG or
    WebP") when the uploaded file is not a readable image; nothing for an empty box."""
    from ..images import load_image

    file = as_path(path)
    if file is not None:
        load_image(file, what=what, max_side=64)


def image_input(**kwargs):
    """A ``gr.Image`` (type="filepath") that hands an undecodable upload (a text file called
    ``photo.png``) to the handler as its path, instead of failing before the handler runs with no
    message: the handler then says what is wrong with it."""
    import gradio as gr
    from PIL import UnidentifiedImageError

    class PhotoInput(gr.Image):
        def get_block_name(self) -> str:  # the stock image widget in the browser
            return "image"

        def preprocess(self, payload):
            try:
                return super().preprocess(payload)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                path = getattr(payload, "path", None)
                return str(path) if path else None

    kwargs.setdefault("type", "filepath")
    kwargs.setdefault("image_mode", None)
    return PhotoInput(**kwargs)


def clears_first(listener: Callable, statuses: list) -> Callable:
    """``listener`` (e.g. ``button.click``) whose events first empty the ``statuses`` (status
    lines), then run: a new action, failed or not, never leaves the previous action's line
    standing (a failure shows its own notice and leaves the line empty)."""
    def listen(fn, inputs=None, outputs=None, **kwargs):
        def empty():
            return "" if len(statuses) == 1 else [""] * len(statuses)

        first = listener(empty, None, statuses, queue=False, show_progress="hidden", api_visibility="private")
        return first.then(fn, inputs, outputs, **kwargs)
    return listen
