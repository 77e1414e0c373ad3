"""Small helpers shared by the tabs: user-facing errors, status lines, image loading."""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Any, Callable

from ..errors import StoryMakerError

logger = logging.getLogger(__name__)


def _as_gr_error(err: BaseException):
    import gradio as gr

    return gr.Error(str(err), duration=None, print_exception=False)


def user_errors(fn: Callable) -> Callable:
    """Wrap a Gradio handler: a :class:`StoryMakerError` becomes ``gr.Error(message)``; anything
    else is logged with its traceback and shown as a short generic message (never a traceback)."""
    import gradio as gr

    def convert(err: Exception):
        if isinstance(err, gr.Error):
            return err
        if isinstance(err, StoryMakerError):
            return _as_gr_error(err)
        logger.exception("unexpected error in %s", fn.__name__)
        return gr.Error(
            f"Unexpected error ({type(err).__name__}): {err}. The details are in the server log.",
            duration=None, print_exception=False,
        )

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - converted for display, logged above
                raise convert(err) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - converted for display, logged above
            raise convert(err) from None
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
