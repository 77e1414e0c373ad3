"""Plain render data: seeds, the job for one panel, its result and a run's report.

No torch, no PIL drawing, no engine: the draft renderer, the backends, the engine and the CLI all
read these.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

from PIL import Image

#: ``progress(panel_index, panel_count, step, steps)``: ``panel_index`` counts the panels of this
#: run from 0; ``step`` goes 1..``steps`` (0 when a panel starts).
ProgressCallback = Callable[[int, int, int, int], None]

SEED_LIMIT = 2**32
DEFAULT_STORY_SEED = 0

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_CANCELLED = "cancelled"


# ----------------------------------------------------------------------------------------------
# Seeds


def derive_seed(story_seed: int, index: int) -> int:
    """The seed of panel ``index`` (0-based) of a story whose base seed is ``story_seed``.

    Stable across processes and platforms: sha256 of ``"<story_seed>:<index>"``, first 4 bytes.
    """
    digest = hashlib.sha256(f"{int(story_seed)}:{int(index)}".encode("ascii")).digest()
    return int.from_bytes(digest[:4], "big")


def random_seed() -> int:
    """A fresh random seed (for "re-roll")."""
    return secrets.randbelow(SEED_LIMIT)


# ----------------------------------------------------------------------------------------------
# Jobs and results


@dataclass(frozen=True)
class CharacterSlot:
    """A character bound to a panel slot (slot order = order in the tuple)."""

    name: str
    noun: str = "a person"
    outfit: str | None = None


@dataclass(frozen=True)
class PanelJob:
    """Everything needed to render one panel; ``index`` is the panel's 0-based story position."""

    index: int
    prompt: str  # the text sent to the model ([Name] replaced, style appended)
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    source_prompt: str = ""  # the prompt as written in the script
    characters: tuple[CharacterSlot, ...] = ()
    pose: Any = None  # storymaker.domain.poses.Pose or None
    caption: str | None = None
    ip_adapter_scale: float = 0.8
    lora_scale: float = 0.8
    controlnet_conditioning_scale: float = 0.7
    quality: str = "standard"  # "fast": the Fast preset (SDXL-Lightning LoRA, storymaker/models/fast.py)
    seed_source: str = "derived"  # "explicit" (script/argument), "derived" or "reroll"
    style: str | None = None  # the style library's name the prompt was made with (None: free text or none)

    def settings_record(self) -> dict[str, Any]:
        """The settings recorded with a version (JSON-ready)."""
        return {
            "panel_index": self.index,
            "prompt": self.prompt,
            "source_prompt": self.source_prompt,
            "negative_prompt": self.negative_prompt,
            "style": self.style,
            "width": self.width,
            "height": self.height,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "seed": self.seed,
            "seed_source": self.seed_source,
            "characters": [
                {"name": c.name, "noun": c.noun, "outfit": c.outfit} for c in self.characters
            ],
            "pose": getattr(self.pose, "name", None),
            "caption": self.caption,
            "ip_adapter_scale": self.ip_adapter_scale,
            "lora_scale": self.lora_scale,
            "controlnet_conditioning_scale": self.controlnet_conditioning_scale if self.pose else None,
            "quality": self.quality,
        }


@dataclass(frozen=True)
class PanelResult:
    """The outcome of one panel: ``status`` is "ok", "error" or "cancelled"."""

    index: int
    status: str
    seed: int | None = None
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    version: str | None = None
    error: str | None = None
    seconds: float = 0.0
    metadata: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


def about_panels(numbers: list[int], reason: str) -> str:
    """``reason`` said of the panels ``numbers`` (1-based): "Panel 2: <reason>", unless the reason
    already begins with that panel ("Panel 2 asks for pose ...": not "Panel 2: Panel 2 ...")."""
    label = "Panel" if len(numbers) == 1 else "Panels"
    if len(numbers) == 1 and re.match(rf"Panel {numbers[0]}\b", reason):
        return reason
    return f"{label} {', '.join(map(str, numbers))}: {reason}"


@dataclass(frozen=True)
class RenderReport:
    """The outcome of a run: one result per panel it rendered, in order; ``skipped``: the panels
    (0-based) it left alone because they already had a render of their current wording
    (``RenderEngine.render_story(only_missing=True)``)."""

    results: tuple[PanelResult, ...]
    backend: str
    cancelled: bool = False
    skipped: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.cancelled and all(r.ok for r in self.results)

    @property
    def finished(self) -> tuple[PanelResult, ...]:
        return tuple(r for r in self.results if r.ok)

    @property
    def failed(self) -> tuple[PanelResult, ...]:
        return tuple(r for r in self.results if r.status == STATUS_ERROR)

    def summary(self) -> str:
        """One paragraph for a user: what rendered, what failed and why (each reason once)."""
        done = len(self.finished)
        if not self.results and self.skipped:
            count = len(self.skipped)
            if count == 1:
                return "Nothing to render: the panel already has a render of its current wording."
            return f"Nothing to render: all {count} panels already have a render of their current wording."
        parts = [f"{done} of {len(self.results)} panel{'s' if len(self.results) != 1 else ''} rendered"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (already rendered)")
        if self.cancelled:
            parts.append("cancelled (finished panels are kept)")
        text = ", ".join(parts) + "."
        reasons: dict[str, list[int]] = {}
        for r in self.failed:
            reasons.setdefault(r.error or "unknown error", []).append(r.index + 1)
        for reason, numbers in reasons.items():
            text += " " + about_panels(numbers, reason)
        return text
