"""A sample comic (the demo and the tests): coloured panels with drawn figures, captions in three
scripts and dialogue; :func:`main` is ``python -m storymaker.services.export --demo OUT_DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ...domain.heads import SpeakerAnchor
from ...domain.layout import LayoutOptions
from ...domain.story import Dialogue
from ...errors import StoryMakerError
from .compose import ComicPanel
from .pdf import export_pdf
from .png import export_png

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


def sample_panel_image(size: tuple[int, int], color: tuple[int, int, int],
                       heads: Sequence[tuple[float, float]] = ()) -> "Image.Image":
    """A flat-coloured panel with a horizon and one stick figure per head (normalised 0..1)."""
    from PIL import Image, ImageDraw

    w, h = size
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    ground = tuple(max(0, c - 60) for c in color)
    draw.rectangle((0, int(h * 0.78), w, h), fill=ground)
    r = max(4, int(min(w, h) * 0.07))
    lw = max(2, r // 4)
    for hx, hy in heads:
        cx, cy = hx * w, hy * h
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 220, 190), outline=(30, 30, 30),
                     width=lw)
        neck, hip = cy + r, cy + r + 3.2 * r
        draw.line((cx, neck, cx, hip), fill=(30, 30, 30), width=lw)
        draw.line((cx - 1.6 * r, neck + r, cx + 1.6 * r, neck + r), fill=(30, 30, 30), width=lw)
        draw.line((cx, hip, cx - r, hip + 2.6 * r), fill=(30, 30, 30), width=lw)
        draw.line((cx, hip, cx + r, hip + 2.6 * r), fill=(30, 30, 30), width=lw)
    return image


def sample_panels() -> list[ComicPanel]:
    """Six panels of mixed aspects with captions (Latin, Cyrillic, Chinese) and dialogue."""
    ids = {"base_model": "stabilityai/stable-diffusion-xl-base-1.0",
           "adapter_model": "RED-AIGC/StoryMaker", "backend": "sample"}

    def panel(size, color, heads, caption, lines, slots, seed, prompt):
        anchors = tuple(
            SpeakerAnchor(name, heads[slot] if slot < len(heads) and slot >= 0 else None, slot,
                          max(1, len(heads)))
            for name, slot in slots
        )
        return ComicPanel(sample_panel_image(size, color, heads), caption,
                          tuple(Dialogue(n, t) for n, t in lines), anchors,
                          {"seed": seed, "prompt": prompt, **ids})

    return [
        panel((960, 1280), (120, 160, 210), [(0.5, 0.45)],
              "Every night, Mara climbed to the lighthouse.", [], [], 101,
              "[Mara] stands on a rocky cliff at dusk"),
        panel((960, 1280), (200, 170, 120), [(0.3, 0.5), (0.7, 0.48)], None,
              [("Mara", "You came back."), ("Theo", "I always do. The storm can't keep me away.")],
              [("Mara", 0), ("Theo", 1)], 102, "[Mara] and [Theo] drink tea beside the great lamp"),
        panel((1280, 768), (90, 110, 140), [(0.6, 0.42)], "Буря не утихала всю ночь.",
              [("Theo", "Hold on!")], [("Theo", 0)], 103, "[Theo] rows a small boat through the storm"),
        panel((1024, 1024), (230, 200, 160), [], "灯塔的光穿过了雾。", [("Mara", "Theo? Is that you?")],
              [("Mara", -1)], 104, "an empty beach at dawn, seagulls over the water"),
        panel((768, 1024), (170, 200, 170), [(0.35, 0.4), (0.72, 0.42)], None,
              [("Theo", "I brought you something."), ("Mara", "A compass?"),
               ("Theo", "So you always find your way home.")],
              [("Theo", 0), ("Mara", 1)], 105, "[Theo] gives [Mara] a compass"),
        panel((1280, 720), (250, 190, 140), [(0.25, 0.5), (0.75, 0.5)], "The end.",
              [("Mara", "Goodnight, Theo.")], [("Mara", 0)], 106,
              "[Mara] and [Theo] watch the sunrise"),
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m storymaker.services.export --demo OUT_DIR``: write the sample comic."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m storymaker.services.export")
    parser.add_argument("--demo", metavar="OUT_DIR", required=True,
                        help="write the sample comic (PNG pages, strip, grid, scroll, PDF) here")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    panels = sample_panels()
    out = Path(args.demo)
    title, author = "The Lighthouse Keeper", "StoryMaker Studio demo"
    written: list[Path] = []
    try:
        for kind, extra in (("pages", {}), ("strip", {}), ("grid", {"columns": 3}), ("scroll", {})):
            opts = LayoutOptions(kind=kind, title=title, **extra)
            stem = f"demo-{kind}"
            written += export_png(panels, out, opts, author=author, filename=stem,
                                  overwrite=args.overwrite)
        written.append(export_pdf(panels, out, LayoutOptions(kind="pages", title=title),
                                  author=author, filename="demo-pages", overwrite=args.overwrite))
    except StoryMakerError as err:
        print(f"error: {err}")
        return 2
    for path in written:
        print(path)
    return 0
