"""Shared helpers for the render tests: tiny settings, the example photo, stories built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storymaker.config import Settings
from storymaker.domain.story import Panel, Story

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photos" / "astronaut.png"

# Tiny renders: 64x64, 2 steps (the tiny VAE halves the size: latents are 32x32).
TINY = dict(width=64, height=64, steps=2)


def tiny_settings(data_dir: Path, backend: str = "tiny", **changes) -> Settings:
    values = dict(data_dir=data_dir, backend=backend, **TINY)
    values.update(changes)
    return Settings(**values)


def story(*panels: Panel, **fields) -> Story:
    fields.setdefault("title", "Test story")
    fields.setdefault("style", "ink drawing")
    return Story(panels=tuple(panels), **fields)


def panel(prompt: str, *characters: str, **fields) -> Panel:
    return Panel(prompt=prompt, characters=tuple(characters), **fields)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))
