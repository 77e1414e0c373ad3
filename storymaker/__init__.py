"""StoryMaker Studio: consistent characters across a multi-panel story, rendered with StoryMaker.

The public API is small and imports nothing heavy; torch, diffusers and the perception models are
imported only when used.
"""

from .config import Settings
from .errors import StoryMakerError

__version__ = "0.1.0"

__all__ = ["Settings", "StoryMakerError", "__version__"]
