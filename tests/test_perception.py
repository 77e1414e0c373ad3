"""Perception: the SPEC crops, the real insightface / rembg / CLIP code paths on tiny models,
clear errors when weights are missing (fast, nothing left behind), and the offline stand-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from net_guard import no_network, refuse_imports  # noqa: F401  (no_network: a fixture)
from perception_helpers import (
    PHOTO,
    FakeFace,
    bright_square_photo,
    build_tiny_face_pack,
    build_tiny_scrfd,
    build_tiny_u2net,
)
from storymaker.errors import ImageError, WeightsNotFoundError
from storymaker.perception.base import FaceAnalyzer, ImageEncoder, Segmenter
from storymaker.perception.crops import (
    character_crop,
    draw_faces,
    face_crop,
    mask_bbox,
    outfit_crop,
    white_composite,
)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    with Image.open(PHOTO) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def face_pack(tmp_path_factory) -> Path:
    return build_tiny_face_pack(tmp_path_factory.mktemp("facepack") / "tinypack")


@pytest.fixture(scope="module")
def tiny_encoder():
    from storymaker.perception.clip import tiny_clip_encoder

    return tiny_clip_encoder()


# ---- crops (SPEC-model.md "Per character: three conditioning inputs")


def test_mask_bbox_uses_first_channel_nonzero():
    mask = Image.new("RGB", (100, 80), (0, 0, 0))
    mask.putpixel((10, 5), (1, 0, 0))
    mask.putpixel((60, 70), (200, 0, 0))
    mask.putpixel((90, 75), (0, 255, 255))  # not in the first channel: ignored
    assert mask_bbox(mask) == (10, 5, 61, 71)


def test_all_black_mask_is_an_error():
    with pytest.raises(ImageError, match="empty"):
        mask_bbox(Image.new("L", (10, 10), 0))


def _hand_gaussian_5x5(mask8: np.ndarray) -> np.ndarray:
    """OpenCV's GaussianBlur(ksize 5x5, sigma 0) of an 8-bit image, by hand: the kernel is
    [1, 4, 6, 4, 1] / 16 in each direction, the border BORDER_REFLECT_101 (numpy's "reflect"), and
    the 8-bit result is the sum / 256 rounded half up."""
    k = np.array([1, 4, 6, 4, 1], np.int64)
    padded = np.pad(mask8.astype(np.int64), 2, mode="reflect")
    h, w = mask8.shape
    rows = sum(k[i] * padded[:, i:i + w] for i in range(5))
    total = sum(k[i] * rows[i:i + h, :] for i in range(5))
    return ((total + 128) // 256).astype(np.uint8)


def test_character_crop_matches_a_hand_computed_reference():
    """SPEC-model.md, "Per character", item 1, computed by hand on a small image: 8-bit blur, scaled
    to 0..1 in float64, ``crop*m + 255*(1-m)``, truncated to 8 bits, bicubic 224x224 (aspect not kept)."""
    import cv2

    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    mask = np.zeros((12, 16), np.uint8)
    mask[2:10, 3:14] = 255
    mask[5:7, 6:9] = 0  # a hole
    mask[3, 4], mask[9, 12] = 128, 37  # soft pixels
    crop, mask_crop = photo[2:10, 3:14], mask[2:10, 3:14]  # the bounding box of the non-zero pixels
    assert np.array_equal(_hand_gaussian_5x5(mask_crop), cv2.GaussianBlur(mask_crop, (5, 5), 0))

    m = (_hand_gaussian_5x5(mask_crop) / 255.0)[:, :, None]
    exact = crop * m + 255.0 * (1.0 - m)
    composite = exact.astype(np.uint8)
    expected = np.asarray(Image.fromarray(composite).resize((224, 224), Image.Resampling.BICUBIC))

    # An RGB mask counts by its first channel only.
    rgb_mask = np.stack([mask, rng.integers(0, 256, mask.shape, dtype=np.uint8), np.zeros_like(mask)], axis=-1)
    for mask_image in (Image.fromarray(mask), Image.fromarray(rgb_mask)):
        assert np.array_equal(np.asarray(white_composite(Image.fromarray(photo), mask_image)), composite)
        assert np.array_equal(np.asarray(character_crop(Image.fromarray(photo), mask_image)), expected)

    # The details are visible on this image: rounding instead of truncating, or blurring the mask in
    # floating point instead of 8 bits, would give other pixels.
    assert not np.array_equal(np.rint(exact).astype(np.uint8), composite)
    float_m = (cv2.GaussianBlur(mask_crop.astype(np.float32), (5, 5), 0) / 255.0)[:, :, None]
    assert not np.array_equal((crop * float_m + 255.0 * (1.0 - float_m)).astype(np.uint8), composite)


def test_white_composite_on_a_photo(astronaut):
    mask = Image.new("L", astronaut.size, 0)
    mask.paste(255, (100, 50, 400, 500))
    mask.paste(0, (200, 200, 260, 260))  # a hole: white shows through
    out = white_composite(astronaut, mask)
    assert out.size == (300, 450)
    assert tuple(np.asarray(out)[180, 130]) == (255, 255, 255)  # inside the hole (photo x=230, y=230)
    assert (np.asarray(out)[300, 150] == np.asarray(astronaut)[350, 250]).all()  # inside the person


def test_character_crop_is_224_without_keeping_aspect(astronaut):
    mask = Image.new("L", astronaut.size, 0)
    mask.paste(255, (200, 0, 300, 512))  # tall and thin: 100x512
    crop = character_crop(astronaut, mask)
    assert crop.size == (224, 224) and crop.mode == "RGB"
    expected = white_composite(astronaut, mask).resize((224, 224), Image.Resampling.BICUBIC)
    assert (np.asarray(crop) == np.asarray(expected)).all()
    # stretched, not padded: the left and right columns are photo, not white
    assert np.asarray(crop)[:, 0].mean() < 250


def test_mask_of_other_size_is_an_error(astronaut):
    with pytest.raises(ImageError, match="same size"):
        white_composite(astronaut, Image.new("L", (10, 10), 255))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image deprecation inside insightface
def test_face_crop_is_norm_crop_of_the_original_photo(astronaut):
    from insightface.utils import face_align

    kps = FakeFace().analyze(np.asarray(astronaut))[0].kps
    crop = face_crop(astronaut, kps)
    expected = face_align.norm_crop(np.asarray(astronaut), landmark=kps, image_size=224)
    assert crop.size == (224, 224)
    assert (np.asarray(crop) == expected).all()


def test_outfit_crop_is_plain_resize(astronaut):
    wide = astronaut.crop((0, 0, 512, 200))
    out = outfit_crop(wide)
    assert out.size == (224, 224)
    assert (np.asarray(out) == np.asarray(wide.resize((224, 224), Image.Resampling.BICUBIC))).all()


def test_draw_faces_marks_the_chosen_face(astronaut):
    faces = FakeFace(boxes=((180, 60, 280, 170), (10, 10, 60, 60))).analyze(np.asarray(astronaut))
    out = draw_faces(astronaut, faces, 0)
    array = np.asarray(out)
    assert tuple(array[60, 230]) == (0, 200, 0)  # green top edge of box 1
    assert tuple(array[10, 30]) == (160, 160, 160)  # grey edge of box 2
    assert (np.asarray(astronaut) == np.asarray(Image.open(PHOTO).convert("RGB"))).all()  # original untouched


# ---- insightface: the real FaceAnalysis code on tiny ONNX models


def test_insightface_path_on_tiny_models(face_pack):
    from storymaker.perception.face import InsightFaceAnalyzer

    analyzer = InsightFaceAnalyzer(str(face_pack), "/nonexistent-root")
    assert isinstance(analyzer, FaceAnalyzer)
    assert analyzer.name == "tinypack"
    faces = analyzer.analyze(np.asarray(bright_square_photo()))
    assert len(faces) == 1
    face = faces[0]
    # The tiny detector's box for input cell (1, 1): 96x96 input pixels = 192x192 photo pixels.
    assert face.bbox == pytest.approx((0.0, 0.0, 192.0, 192.0), abs=1e-3)
    assert face.kps.shape == (5, 2) and face.kps.dtype == np.float32
    assert face.embedding.shape == (512,) and np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    assert face.gender == "woman" and face.age == 30  # the tiny gender/age head's fixed answer
    assert len(analyzer.analyze(np.asarray(bright_square_photo(cells=((0, 0), (3, 3)))))) == 2
    assert analyzer.analyze(np.zeros((200, 300, 3), np.uint8)) == []


def test_insightface_gets_bgr(face_pack, monkeypatch):
    from storymaker.perception.face import InsightFaceAnalyzer

    analyzer = InsightFaceAnalyzer(str(face_pack), "/nonexistent-root")
    app = analyzer.load()
    seen = {}
    real_get = app.get

    def spy(img, *args, **kwargs):
        seen["pixel"] = img[0, 0].copy()
        return real_get(img, *args, **kwargs)

    monkeypatch.setattr(app, "get", spy)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 200  # red
    analyzer.analyze(rgb)
    assert tuple(seen["pixel"]) == (0, 0, 200)


def test_missing_face_model_is_fast_and_leaves_nothing(tmp_path, no_network, monkeypatch):
    """Found missing on disk before insightface is imported (it would try to download the pack)."""
    from storymaker.perception.face import InsightFaceAnalyzer

    root = tmp_path / "insightface"
    refuse_imports(monkeypatch, "insightface")
    with pytest.raises(WeightsNotFoundError) as info:
        InsightFaceAnalyzer("buffalo_l", root).analyze(np.zeros((64, 64, 3), np.uint8))
    no_network.check()
    message = str(info.value)
    assert "buffalo_l" in message and "det_10g.onnx" in message and str(root / "models" / "buffalo_l") in message
    assert not root.exists()  # no empty folder to break the next try


def test_empty_or_incomplete_face_model_folder(tmp_path):
    from storymaker.perception.face import InsightFaceAnalyzer

    pack = tmp_path / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    with pytest.raises(WeightsNotFoundError, match="is empty"):
        InsightFaceAnalyzer("buffalo_l", tmp_path).load()
    build_tiny_scrfd(pack / "det.onnx")
    with pytest.raises(WeightsNotFoundError, match="no recognition model"):
        InsightFaceAnalyzer("buffalo_l", tmp_path).load()


def test_shared_face_analyzer_is_one_instance(tmp_path):
    from storymaker.config import Settings
    from storymaker.perception.face import shared_face_analyzer

    settings = Settings(face_model_root=tmp_path)
    assert shared_face_analyzer(settings) is shared_face_analyzer(settings)


# ---- rembg: the real session code on a tiny U2Net-shaped model


def test_rembg_path_on_tiny_model(tmp_path, monkeypatch):
    from storymaker.perception.segment import RembgSegmenter

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2net"))
    build_tiny_u2net(tmp_path / "u2net" / "u2net_human_seg.onnx")
    segmenter = RembgSegmenter("u2net_human_seg")
    assert isinstance(segmenter, Segmenter)
    photo = bright_square_photo()
    mask = segmenter.segment(photo)
    assert mask.mode == "L" and mask.size == photo.size
    array = np.asarray(mask)
    assert array[96, 96] > 200 and array[10, 10] < 50  # bright square = "person" for this tiny model


def test_rembg_leaves_torch_threads_alone(tmp_path):
    """rembg imports numba, whose OpenMP thread pool starts at import (through pymatting) and sets
    the OpenMP thread count, which torch shares, to numba's own (every CPU): every later render in
    the process then ran with that many threads, its float sums in another order (a panel rendered
    after a character was registered differed from the same panel on a Ray worker). In a fresh
    process, where rembg is imported for the first time: torch keeps the thread count it had."""
    import os
    import subprocess
    import sys

    build_tiny_u2net(tmp_path / "u2net" / "u2net_human_seg.onnx")
    code = (
        "import torch\n"
        "torch.ones(1000, 1000).sum()\n"  # torch has computed (its thread pool is set up), as before a registration
        "from perception_helpers import bright_square_photo\n"
        "from storymaker.perception.segment import RembgSegmenter\n"
        "RembgSegmenter('u2net_human_seg').segment(bright_square_photo())\n"
        "import rembg, numba; print(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)\n"
    )
    env = dict(os.environ, U2NET_HOME=str(tmp_path / "u2net"), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "2"]  # numba has its 2 threads; torch still has 1


def test_missing_rembg_model_is_fast_and_downloads_nothing(tmp_path, no_network, monkeypatch):
    """Found missing on disk before rembg is imported (numba compiles on import; rembg would download)."""
    from storymaker.perception.segment import RembgSegmenter

    home = tmp_path / "u2net"
    monkeypatch.setenv("U2NET_HOME", str(home))
    refuse_imports(monkeypatch, "rembg")
    with pytest.raises(WeightsNotFoundError) as info:
        RembgSegmenter("u2net_human_seg").segment(bright_square_photo())
    no_network.check()
    assert "u2net_human_seg.onnx" in str(info.value) and "--mask" in str(info.value)
    assert not home.exists()


# ---- CLIP image encoder


def test_tiny_encoder_gives_penultimate_hidden_states(tiny_encoder, astronaut):
    import torch
    from transformers import CLIPImageProcessor

    assert isinstance(tiny_encoder, ImageEncoder)
    assert "not a real" in tiny_encoder.name
    crops = [astronaut.resize((224, 224)), astronaut.crop((100, 100, 324, 324))]
    features = tiny_encoder.encode(crops)
    assert features.shape == (2, 257, 32) and features.dtype == torch.float32
    pixels = CLIPImageProcessor()(images=crops, return_tensors="pt").pixel_values
    with torch.no_grad():
        hidden = tiny_encoder.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert torch.allclose(features, hidden[-2], atol=1e-6)
    assert not torch.allclose(features, hidden[-1])


def test_encoder_wraps_an_already_loaded_model():
    from storymaker.models.tiny import tiny_image_encoder
    from storymaker.perception.clip import ClipImageEncoder

    model = tiny_image_encoder()
    encoder = ClipImageEncoder(model, name="pipeline's encoder")
    assert encoder.model is model
    assert encoder.encode([Image.new("RGB", (224, 224), "white")]).shape == (1, 257, 32)


def test_encoder_loads_a_local_folder(tmp_path):
    from storymaker.models.tiny import tiny_image_encoder
    from storymaker.perception.clip import ClipImageEncoder

    tiny_image_encoder().save_pretrained(tmp_path / "clip")
    encoder = ClipImageEncoder(source=tmp_path / "clip")
    assert encoder.name == str(tmp_path / "clip")
    assert encoder.encode([Image.new("RGB", (224, 224), "gray")]).shape == (1, 257, 32)


def test_missing_encoder_weights_fail_fast(tmp_path, no_network):
    """Offline, a hub id not in the cache fails without a network attempt or a retry wait."""
    from storymaker.perception.clip import ClipImageEncoder

    with pytest.raises(WeightsNotFoundError) as info:
        ClipImageEncoder(source="laion/CLIP-ViT-H-14-laion2B-s32B-b79K").encode([Image.new("RGB", (8, 8))])
    no_network.check()
    assert "laion/CLIP-ViT-H-14-laion2B-s32B-b79K" in str(info.value)
    assert "STORYMAKER_IMAGE_ENCODER" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        ClipImageEncoder(source=tmp_path / "empty").encode([Image.new("RGB", (8, 8))])


# ---- stand-ins (the tiny backend's perception)


def test_standin_face_finds_the_astronaut(astronaut):
    from storymaker.perception.standins import StandInFaceAnalyzer

    analyzer = StandInFaceAnalyzer()
    assert isinstance(analyzer, FaceAnalyzer) and "not a real" in analyzer.name
    faces = analyzer.analyze(np.asarray(astronaut))
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].bbox
    assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 180  # her face, top centre
    assert x2 - x1 >= 64
    assert np.linalg.norm(faces[0].embedding) == pytest.approx(1.0, abs=1e-5)
    again = StandInFaceAnalyzer().analyze(np.asarray(astronaut))[0]
    assert again.bbox == faces[0].bbox and np.array_equal(again.embedding, faces[0].embedding)


def test_standin_face_several_people():
    """insightface's bundled group photo (loaded from the package, never copied)."""
    import insightface

    from storymaker.perception.standins import StandInFaceAnalyzer

    t1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    if not t1.exists():
        pytest.skip("insightface's t1.jpg is not installed")
    from storymaker.images import load_image

    faces = StandInFaceAnalyzer().analyze(np.asarray(load_image(t1)))
    assert len(faces) >= 2
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)


def test_standin_segmenter_is_deterministic(astronaut):
    from storymaker.perception.standins import StandInSegmenter

    segmenter = StandInSegmenter()
    assert isinstance(segmenter, Segmenter) and "not a real" in segmenter.name
    mask = segmenter.segment(astronaut)
    assert mask.mode == "L" and mask.size == astronaut.size
    array = np.asarray(mask)
    assert array[120, 230] == 255  # her face
    assert array[5, 5] == 0  # the frame's corner
    assert 0.15 < (array > 127).mean() < 0.8
    assert np.array_equal(array, np.asarray(StandInSegmenter().segment(astronaut)))
