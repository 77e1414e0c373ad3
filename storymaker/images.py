"""Image loading shared by the whole application: photos, masks, outfits, uploads.

``load_image`` turns anything a user can hand us (a path, bytes, a file object, a PIL image) into
an RGB ``PIL.Image`` the right way up (EXIF orientation applied), with transparency composited on
white, 16-bit and CMYK converted, and huge photos downscaled while decoding (JPEG ``draft``) so a
12000x9000 photo costs a fraction of its full size. ``load_mask`` gives an "L" mask (white =
person). Every failure is an :class:`~storymaker.errors.ImageError` whose message says what to do.

Only PIL and numpy here: safe to import anywhere.
"""

from __future__ import annotations

import io
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

log = logging.getLogger(__name__)

ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO, Image.Image]

#: Largest photo accepted, in pixels (before downscaling): 12000x12000. Bigger files are refused
#: with a message instead of exhausting memory (PIL's own decompression-bomb limit is lower and is
#: replaced by this bound).
MAX_PIXELS = 144_000_000
#: Default longest side after loading; larger photos are downscaled (aspect kept).
DEFAULT_MAX_SIDE = 4096

SUPPORTED = "JPEG, PNG or WebP"


@dataclass(frozen=True)
class LoadedImage:
    """An image as loaded: the normalised image plus where it came from."""

    image: Image.Image
    original_size: tuple[int, int]  # (width, height) after EXIF rotation, before downscaling
    format: str | None  # "JPEG", "PNG", "WEBP"... (None for an in-memory PIL image)
    source_mode: str  # PIL mode of the file ("RGB", "CMYK", "I;16", "RGBA"...)

    @property
    def downscaled(self) -> bool:
        return self.image.size != self.original_size


def describe_source(source: ImageSource) -> str:
    """A short name for ``source`` in messages, with a leading space (" 'photo.jpg'"), or ""."""
    if isinstance(source, (str, os.PathLike)):
        return " " + repr(Path(source).name or str(source))
    if isinstance(source, Image.Image):
        return ""
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return " " + repr(Path(name).name)
    return ""


def _open(source: ImageSource, what: str) -> tuple[Image.Image, str]:
    """Open lazily (header only). Returns the image and the name used in messages."""
    label = describe_source(source)
    if isinstance(source, Image.Image):
        return source, label
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise ImageError(f"The {what} file {str(path)!r} does not exist: check the path.")
        if path.is_dir():
            raise ImageError(f"The {what} {str(path)!r} is a folder, not an image file: give a {SUPPORTED} file.")
        fp: object = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if not source:
            raise ImageError(f"The {what} is empty (0 bytes): upload a {SUPPORTED} image.")
        fp = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        fp = source
    else:
        raise ImageError(
            f"The {what} must be a file path, bytes or an image, not {type(source).__name__}."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)  # type: ignore[arg-type]
    except Image.DecompressionBombError:
        raise ImageError(
            f"The {what}{label} is too large to open safely (over {MAX_PIXELS // 1_000_000} "
            "megapixels): resize it below 12000x12000 pixels and try again."
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"The {what}{label} is not an image file that can be read: use a {SUPPORTED} image."
        ) from None
    except OSError as err:
        raise ImageError(f"The {what}{label} cannot be read ({err}): check the file and try again.") from None
    return image, label


def _check_pixels(image: Image.Image, what: str, label: str) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"The {what}{label} has no pixels ({width}x{height}): use another image.")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"The {what}{label} is {width}x{height} pixels, more than the {MAX_PIXELS // 1_000_000}-megapixel "
            "limit: resize it (a longest side of 4096 pixels is plenty) and try again."
        )


def _target_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode(image: Image.Image, what: str, label: str, max_side: int | None) -> Image.Image:
    """Fully decode, asking JPEG for a reduced-size decode of huge photos."""
    if max_side and max(image.size) > max_side and getattr(image, "format", None) == "JPEG":
        want = _target_size(image.size, max_side)
        image.draft(None, (math.ceil(want[0]), math.ceil(want[1])))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError:
        raise ImageError(f"The {what}{label} is too large to decode safely: resize it and try again.") from None
    except (OSError, SyntaxError, ValueError) as err:
        text = str(err)
        hint = "the file looks truncated or damaged" if "truncat" in text.lower() else text
        raise ImageError(
            f"The {what}{label} cannot be decoded ({hint}): save or export it again as a "
            f"{SUPPORTED} image and retry."
        ) from None
    return image


def _sixteen_bit_to_8(image: Image.Image) -> Image.Image:
    """I;16 / I / F (grayscale, often 16-bit PNG) -> "L" with the full range mapped to 0..255."""
    array = np.asarray(image, dtype=np.float64)
    mode = image.mode
    if mode.startswith("I;16"):
        array = array / 257.0
    elif mode == "I":
        high = float(array.max()) if array.size else 0.0
        if high > 255:
            array = array / (257.0 if high <= 65535 else high / 255.0)
    elif mode == "F":
        high = float(array.max()) if array.size else 0.0
        if high <= 1.0:
            array = array * 255.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode -> "RGB"; transparency is composited on ``background`` (white by default)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _sixteen_bit_to_8(image).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    return image.convert("RGB")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK -> RGB, through the embedded ICC profile when there is one and LittleCMS is available."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms
        except ImportError:  # Pillow built without LittleCMS
            ImageCms = None  # type: ignore[assignment]
        if ImageCms is not None:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                dst = ImageCms.createProfile("sRGB")
                converted = ImageCms.profileToProfile(image, src, dst, outputMode="RGB")
                if converted is not None:
                    return converted
            except (OSError, ValueError, ImageCms.PyCMSError) as err:
                log.debug("ICC conversion failed (%s); using PIL's plain CMYK conversion", err)
    return image.convert("RGB")


def _downscale(image: Image.Image, max_side: int | None) -> Image.Image:
    if not max_side or max(image.size) <= max_side:
        return image
    target = _target_size(image.size, max_side)
    factor = min(image.size[0] // target[0], image.size[1] // target[1])
    if factor >= 2:
        image = image.reduce(factor)  # cheap box reduction first
    if image.size != target:
        image = image.resize(target, Image.Resampling.LANCZOS)
    return image


def read_image(
    source: ImageSource, *, what: str = "photo", max_side: int | None = DEFAULT_MAX_SIDE
) -> LoadedImage:
    """Load ``source`` as RGB (EXIF-rotated, alpha on white, downscaled to ``max_side``) with details."""
    image, label = _open(source, what)
    _check_pixels(image, what, label)
    fmt = getattr(image, "format", None)
    source_mode = image.mode
    header_w, header_h = image.size  # before any draft decode
    image = _decode(image, what, label, max_side)
    # Orientation from EXIF: the size the user sees.
    try:
        transposed = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError) as err:
        log.warning("Ignoring unreadable EXIF orientation of %s: %s", label, err)
        transposed = image
    if transposed is None:  # pragma: no cover - only with in_place=True
        transposed = image
    if transposed.size != image.size:  # rotated by 90/270 degrees
        header_w, header_h = header_h, header_w
    rgb = to_rgb(transposed)
    rgb = _downscale(rgb, max_side)
    if rgb is source:  # never hand back (and let callers mutate) the caller's own object
        rgb = rgb.copy()
    if rgb.size != (header_w, header_h):
        log.info("Downscaled the %s %s from %dx%d to %dx%d", what, label, header_w, header_h, *rgb.size)
    return LoadedImage(image=rgb, original_size=(header_w, header_h), format=fmt, source_mode=source_mode)


def load_image(
    source: ImageSource, *, what: str = "photo", max_side: int | None = DEFAULT_MAX_SIDE
) -> Image.Image:
    """An RGB ``PIL.Image`` from a path, bytes, a binary file or a PIL image.

    EXIF orientation is applied; RGBA/LA/P-with-transparency are composited on white; grayscale,
    16-bit, CMYK and palette images are converted; images whose longest side exceeds ``max_side``
    are downscaled (aspect kept). Raises :class:`ImageError` with a message saying what to do.
    """
    return read_image(source, what=what, max_side=max_side).image


def to_mask(image: Image.Image) -> Image.Image:
    """Any image used as a mask -> "L" (white = person).

    The mask is the first channel (as the model's reference code reads it). A transparent cut-out
    (RGBA/LA whose colour is uniform but whose alpha varies) is read from its alpha channel.
    """
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _sixteen_bit_to_8(image)
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA"):
        alpha = image.getchannel("A")
        first = image.getchannel(0)
        lo, hi = first.getextrema()
        alo, ahi = alpha.getextrema()
        if lo == hi and alo != ahi:
            return alpha
        return first
    if mode == "L":
        return image
    if mode == "CMYK":
        image = image.convert("RGB")
    return image.getchannel(0) if len(image.getbands()) > 1 else image.convert("L")


def load_mask(
    source: ImageSource,
    *,
    what: str = "mask",
    size: tuple[int, int] | None = None,
    original_size: tuple[int, int] | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> Image.Image:
    """An "L" mask (white = person) from any image source.

    ``size``: the size of the photo as loaded; the mask must match it, or match ``original_size``
    (the photo's size before it was downscaled), and is then resized to ``size``.
    A mask of another size raises :class:`ImageError`.
    """
    image, label = _open(source, what)
    _check_pixels(image, what, label)
    image = _decode(image, what, label, None)
    try:
        transposed = ImageOps.exif_transpose(image) or image
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        transposed = image
    mask = to_mask(transposed)
    if mask is source:
        mask = mask.copy()
    if size is not None:
        accepted = {tuple(size)} | ({tuple(original_size)} if original_size else set())
        if mask.size not in accepted:
            want = original_size or size
            raise ImageError(
                f"The {what}{label} is {mask.size[0]}x{mask.size[1]} pixels but the photo is "
                f"{want[0]}x{want[1]}: the mask must have exactly the photo's size (white = the person)."
            )
        if mask.size != tuple(size):
            mask = mask.resize(tuple(size), Image.Resampling.BILINEAR)
    elif max_side:
        mask = _downscale(mask, max_side)
    return mask


def image_to_png_bytes(image: Image.Image) -> bytes:
    """PNG-encode ``image`` (for atomic writes of crops, masks and previews)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
