"""The two image crops StoryMaker conditions on (``SPEC-model.md``, "Per character"), and previews.

1. Character crop: bounding rectangle of the non-zero pixels of the mask's first channel; crop
   photo and mask; 5x5 Gaussian on the 8-bit mask, scaled to 0..1; ``crop*m + 255*(1-m)`` (on
   white) truncated to 8 bits; plain bicubic resize to 224x224 that does not keep the aspect ratio.
2. Face crop: insightface ``face_align.norm_crop(original RGB photo, landmark=kps, image_size=224)``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ImageError
from .base import DetectedFace

CROP_SIZE = 224


def mask_bbox(mask: Image.Image) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2), exclusive end, of the non-zero pixels of the mask's first channel.

    An all-black mask raises :class:`ImageError`.
    """
    first = np.asarray(mask if mask.mode in ("L", "1") else mask.getchannel(0))
    ys, xs = np.nonzero(first)
    if xs.size == 0:
        raise ImageError(
            "The person mask is empty (all black): nobody to take. Draw the person in white on black, "
            "or leave the mask out to compute it automatically."
        )
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def white_composite(photo: Image.Image, mask: Image.Image) -> Image.Image:
    """The photo cropped to the mask's box, on white, with the mask edge softened (not resized).

    Exactly as the reference computes it: OpenCV's 5x5 Gaussian (sigma 0) on the 8-bit mask (so
    the blurred mask is 8-bit too), divided by 255 (float64), ``crop*m + 255*(1-m)`` in float64,
    cast to 8 bits by truncation (``astype(uint8)``), not rounding.
    """
    import cv2

    if photo.size != mask.size:
        raise ImageError(
            f"The mask is {mask.size[0]}x{mask.size[1]} but the photo is {photo.size[0]}x{photo.size[1]}: "
            "they must have the same size."
        )
    box = mask_bbox(mask)
    crop = np.asarray(photo.convert("RGB").crop(box))
    first = mask if mask.mode == "L" else (mask.convert("L") if mask.mode == "1" else mask.getchannel(0))
    mask8 = np.ascontiguousarray(np.asarray(first.crop(box), dtype=np.uint8))
    m = (cv2.GaussianBlur(mask8, (5, 5), 0) / 255.0)[:, :, None]
    out = crop * m + 255.0 * (1.0 - m)
    return Image.fromarray(out.astype(np.uint8))  # H x W x 3 uint8: RGB


def character_crop(photo: Image.Image, mask: Image.Image, size: int = CROP_SIZE) -> Image.Image:
    """The body crop on white, resized to ``size`` x ``size`` (bicubic, aspect NOT kept)."""
    return white_composite(photo, mask).resize((size, size), Image.Resampling.BICUBIC)


def outfit_crop(image: Image.Image, size: int = CROP_SIZE) -> Image.Image:
    """An outfit image prepared like a body crop: a plain bicubic resize to ``size`` x ``size``."""
    return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def face_crop(photo: Image.Image | np.ndarray, kps: np.ndarray, size: int = CROP_SIZE) -> Image.Image:
    """The aligned face crop from the ORIGINAL RGB photo (insightface ``norm_crop``)."""
    from .face import align_face

    return align_face(np.asarray(photo.convert("RGB") if isinstance(photo, Image.Image) else photo), kps, size)


def draw_faces(photo: Image.Image, faces: Sequence[DetectedFace], chosen: int = 0) -> Image.Image:
    """A copy of the photo with every detected face outlined: the chosen one in green, others in
    grey with their number, keypoints as dots. What the user checks before saving."""
    out = photo.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    for index, face in enumerate(faces):
        x1, y1, x2, y2 = face.bbox
        colour = (0, 200, 0) if index == chosen else (160, 160, 160)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        label = f"{index + 1}" + (" (used)" if index == chosen else "")
        draw.text((x1 + width, max(0, y1 - 12 - width)), label, fill=colour)
        if index == chosen:
            r = width + 1
            for x, y in np.asarray(face.kps).reshape(-1, 2):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 64, 64))
    return out


def mask_overlay(photo: Image.Image, mask: Image.Image, colour: tuple[int, int, int] = (0, 160, 255)) -> Image.Image:
    """The photo with the mask tinted over it (what the segmentation took as the person)."""
    tint = Image.new("RGB", photo.size, colour)
    alpha = mask.convert("L").point(lambda v: v * 45 // 100)
    return Image.composite(tint, photo.convert("RGB"), alpha)
