"""storymaker.images: every photo a user may hand us becomes an upright RGB image, or a clear error.

Variants (EXIF-rotated, RGBA, grayscale, CMYK, 16-bit, WebP, huge) are made at test time from the
public-domain example photo.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from perception_helpers import PHOTO
from storymaker import images
from storymaker.errors import ImageError
from storymaker.images import load_image, load_mask, read_image


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    with Image.open(PHOTO) as im:
        return im.convert("RGB")


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_example_photo_is_rgb_512(astronaut):
    loaded = read_image(PHOTO)
    assert loaded.image.mode == "RGB" and loaded.image.size == (512, 512)
    assert loaded.format == "PNG" and not loaded.downscaled
    assert _diff(loaded.image, astronaut) == 0.0


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "file", "pil"])
def test_every_source_kind(astronaut, kind):
    data = _encode(astronaut, "PNG")
    source = {
        "path": PHOTO,
        "str": str(PHOTO),
        "bytes": data,
        "file": io.BytesIO(data),
        "pil": astronaut,
    }[kind]
    out = load_image(source)
    assert out.mode == "RGB" and _diff(out, astronaut) == 0.0
    if kind == "pil":
        assert out is not astronaut  # never the caller's own object


def test_exif_rotation_is_applied(astronaut):
    wide = astronaut.crop((0, 64, 512, 448))  # 512x384: rotation swaps the sides
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _encode(wide, "JPEG", quality=95, exif=exif.tobytes())
    loaded = read_image(data)
    assert loaded.image.size == (384, 512)
    assert loaded.original_size == (384, 512)
    expected = wide.transpose(Image.Transpose.ROTATE_270)
    assert _diff(loaded.image, expected) < 4.0  # JPEG loss only


def test_rgba_is_composited_on_white(astronaut):
    rgba = astronaut.convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, 256, 512))
    rgba.putalpha(alpha)
    out = load_image(_encode(rgba, "PNG"))
    array = np.asarray(out)
    assert out.mode == "RGB"
    assert (array[:, :256] == 255).all()
    assert (array[:, 256:] == np.asarray(astronaut)[:, 256:]).all()


def test_grayscale_becomes_rgb(astronaut):
    gray = astronaut.convert("L")
    out = load_image(_encode(gray, "PNG"))
    array = np.asarray(out)
    assert out.mode == "RGB"
    assert (array[..., 0] == np.asarray(gray)).all() and (array[..., 0] == array[..., 2]).all()


def test_sixteen_bit_png_keeps_its_range(astronaut):
    gray8 = np.asarray(astronaut.convert("L")).astype(np.uint16)
    sixteen = Image.fromarray(gray8 * 257)  # full 16-bit range
    data = _encode(sixteen, "PNG")
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode.startswith("I")  # really a 16-bit file
    out = load_image(data)
    assert np.abs(np.asarray(out)[..., 0].astype(int) - gray8.astype(int)).max() <= 1


def test_cmyk_jpeg_becomes_rgb(astronaut):
    data = _encode(astronaut.convert("CMYK"), "JPEG", quality=95)
    loaded = read_image(data)
    assert loaded.source_mode == "CMYK" and loaded.image.mode == "RGB"
    assert _diff(loaded.image, astronaut) < 6.0


def test_webp(astronaut):
    out = load_image(_encode(astronaut, "WEBP", lossless=True))
    assert out.mode == "RGB" and _diff(out, astronaut) == 0.0


def test_palette_with_transparency(astronaut):
    pal = astronaut.convert("P")
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])
    out = load_image(_encode(pal, "PNG", transparency=pal.info["transparency"]))
    assert out.mode == "RGB" and tuple(np.asarray(out)[0, 0]) == (255, 255, 255)


def test_huge_photo_is_downscaled_not_a_crash():
    big = Image.new("RGB", (12000, 9000), (200, 30, 30))
    big.paste((20, 20, 220), (6000, 0, 12000, 9000))
    data = _encode(big, "JPEG", quality=80)
    del big
    loaded = read_image(data, max_side=2048)
    assert loaded.original_size == (12000, 9000)
    assert loaded.image.size == (2048, 1536) and loaded.downscaled
    left, right = np.asarray(loaded.image)[768, 100], np.asarray(loaded.image)[768, 1900]
    assert left[0] > 150 and right[2] > 150  # the content survived, in the right places


def test_too_many_pixels_is_refused(monkeypatch, astronaut):
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match="megapixel"):
        load_image(_encode(astronaut, "PNG"))


@pytest.mark.parametrize(
    "data, words",
    [
        (b"this is not an image at all", "not an image"),
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not an image"),
    ],
)
def test_not_an_image(data, words):
    with pytest.raises(ImageError, match=words) as info:
        load_image(data)
    assert "JPEG, PNG or WebP" in str(info.value)


def test_truncated_jpeg(astronaut):
    data = _encode(astronaut, "JPEG", quality=90)
    with pytest.raises(ImageError, match="truncated") as info:
        load_image(data[: len(data) // 2], what="photo")
    assert "save or export it again" in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_text_file_with_image_name(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("hello")
    with pytest.raises(ImageError, match="'photo.jpg' is not an image"):
        load_image(fake)


# ---- masks


def test_mask_first_channel_and_size(astronaut):
    mask = Image.new("RGB", (512, 512), (0, 0, 0))
    mask.paste((255, 0, 0), (100, 100, 300, 400))
    out = load_mask(_encode(mask, "PNG"), size=(512, 512))
    assert out.mode == "L" and out.getbbox() == (100, 100, 300, 400)


def test_mask_of_another_size_is_refused():
    mask = Image.new("L", (300, 300), 255)
    with pytest.raises(ImageError, match="300x300 pixels but the photo is 512x512"):
        load_mask(_encode(mask, "PNG"), size=(512, 512))


def test_mask_matching_the_original_size_follows_a_downscaled_photo():
    mask = Image.new("L", (4000, 3000), 0)
    mask.paste(255, (1000, 1000, 3000, 2000))
    out = load_mask(mask, size=(2000, 1500), original_size=(4000, 3000))
    assert out.size == (2000, 1500)
    box = out.getbbox()  # the resize may soften the edge by one pixel
    assert all(abs(a - b) <= 1 for a, b in zip(box, (500, 500, 1500, 1000)))


def test_transparent_cutout_mask_uses_alpha():
    cut = Image.new("RGBA", (64, 64), (255, 255, 255, 0))
    cut.paste((255, 255, 255, 255), (10, 20, 30, 40))
    out = load_mask(cut)
    assert out.getbbox() == (10, 20, 30, 40)


def test_sixteen_bit_mask():
    array = np.zeros((32, 32), np.uint16)
    array[4:8, 4:8] = 65535
    out = load_mask(_encode(Image.fromarray(array), "PNG"))
    assert np.asarray(out)[5, 5] == 255 and np.asarray(out)[0, 0] == 0


def test_exif_transpose_matches_pillow(astronaut):
    """Every EXIF orientation gives what Pillow's own exif_transpose gives."""
    wide = astronaut.crop((0, 0, 512, 256))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = _encode(wide, "PNG", exif=exif.tobytes())
        with Image.open(io.BytesIO(data)) as probe:
            expected = ImageOps.exif_transpose(probe).convert("RGB")
        assert _diff(load_image(data), expected) == 0.0, orientation
