"""The Hugging Face Spaces GPU shim.

On a ZeroGPU Space ``spaces.GPU`` attaches a GPU for the duration of each call; anywhere else the
``spaces`` package returns the function unchanged. If ``spaces`` is not installed at all, this shim
does the same, so the app runs everywhere.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable)


def gpu(duration: int = 120) -> Callable[[F], F]:
    """Decorator: ``spaces.GPU(duration=duration)`` where available, identity otherwise."""
    try:
        import spaces
    except ImportError:
        logger.debug("spaces is not installed: GPU functions run as they are")
        return lambda fn: fn
    return spaces.GPU(duration=duration)

