"""Errors a user can act on.

Every error raised for a user's mistake or a missing resource is a :class:`StoryMakerError`
whose message says what happened *and what to do*. The UI shows the message with ``gr.Error``;
the command line prints it and exits with status 2. Nothing else is shown to users.
"""

from __future__ import annotations

from dataclasses import dataclass


class StoryMakerError(Exception):
    """Base class: ``str(err)`` is a complete, user-facing message."""

    exit_code = 2


class ConfigError(StoryMakerError):
    """A setting (environment variable, command-line option) has an unusable value."""


class WeightsNotFoundError(StoryMakerError):
    """Model weights are absent locally and cannot be downloaded (offline, no access)."""


class CheckpointError(StoryMakerError):
    """An adapter checkpoint is not a checkpoint, or does not match the expected layout."""


class InvalidInputError(StoryMakerError):
    """Bad user input: a file, a name, a size, a value."""


class ImageError(InvalidInputError):
    """An image cannot be read or used (not an image, truncated, no face, wrong mask...)."""


class CharacterError(InvalidInputError):
    """A character name or operation is invalid (empty, duplicate, unknown...)."""


class PoseError(InvalidInputError):
    """A pose is invalid or does not fit the panel (wrong number of people...)."""


class ConditioningError(InvalidInputError):
    """Pipeline inputs are inconsistent (too many characters, wrong shapes, wrong pose size)."""


@dataclass(frozen=True)
class ScriptIssue:
    """One problem in a story script, located at a 1-based line and column."""

    line: int
    column: int
    message: str
    source_line: str = ""

    def __str__(self) -> str:
        text = f"line {self.line}, column {self.column}: {self.message}"
        if self.source_line:
            text += f"\n    {self.source_line}"
        return text


class ScriptError(InvalidInputError):
    """A story script has one or more problems; ``issues`` lists all of them."""

    def __init__(self, issues: list[ScriptIssue] | tuple[ScriptIssue, ...]):
        self.issues = tuple(issues)
        count = len(self.issues)
        head = f"The story script has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(str(i) for i in self.issues)]))


class RenderError(StoryMakerError):
    """Rendering a panel failed for a reason the user can address."""


class GPUOutOfMemoryError(RenderError):
    """The GPU ran out of memory; the message says what to change."""


class RenderCancelled(StoryMakerError):
    """The user cancelled a render; finished panels are kept."""


class ProjectError(StoryMakerError):
    """A project folder or archive cannot be read or written."""
