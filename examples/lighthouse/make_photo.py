"""Rebuild ``tessa.png``: the public-domain astronaut photo mirrored, the orange suit recoloured blue.

Run from the repository root: ``python examples/lighthouse/make_photo.py``. The face is the same
person's (the only person photo this project may ship); the example uses it as a second character
to show two characters in one panel, not as a second identity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "photos" / "astronaut.png"


def make_tessa(source: Path = SOURCE) -> Image.Image:
    img = ImageOps.mirror(Image.open(source).convert("RGB"))
    hsv = np.array(img.convert("HSV")).astype(np.int16)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    rows = np.arange(hsv.shape[0])[:, None]
    # The suit: saturated orange below the face (the hair and the flag are left alone).
    suit = (hue >= 4) & (hue <= 24) & (sat > 140) & (val > 80) & (rows > hsv.shape[0] * 0.37)
    mask = Image.fromarray((suit * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3))
    mask = mask.filter(ImageFilter.GaussianBlur(1.5))
    turned = hsv.copy()
    turned[..., 0] = (hue + 128) % 256
    blue = Image.fromarray(turned.astype(np.uint8), "HSV").convert("RGB")
    return Image.composite(blue, img, mask)


if __name__ == "__main__":
    make_tessa().save(HERE / "tessa.png", optimize=True)
    print(HERE / "tessa.png")
