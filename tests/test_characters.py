"""The character registry and its CLI.

Proves: one photo -> preview (face box, mask, body crop on white, aligned face crop, embeddings)
with nothing written; add stores it atomically and it loads back with zero encoder passes; a
changed face model / image encoder recomputes from the stored photo; outfits; rename, redescribe,
delete; every bad input gives a clear message, leaves the list unchanged and writes nothing; the
real insightface + rembg code paths (tiny ONNX models) and the tiny CLIP work end to end; the CLI.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from perception_helpers import (
    PHOTO,
    FakeFace,
    FakeSegmenter,
    bright_square_photo,
    build_tiny_face_pack,
    build_tiny_u2net,
    tree_snapshot,
)
from storymaker.errors import CharacterError, ImageError, ProjectError, StoryMakerError
from storymaker.services.characters import CharacterPreview, CharacterRegistry, validate_name


@pytest.fixture(scope="module")
def encoder():
    from storymaker.perception.clip import tiny_clip_encoder

    return tiny_clip_encoder()


@pytest.fixture
def project(tmp_path) -> Path:
    return tmp_path / "project"


def make(project: Path, encoder, face=None, seg=None) -> CharacterRegistry:
    return CharacterRegistry(
        project / "characters",
        face_analyzer=face if face is not None else FakeFace(),
        segmenter=seg if seg is not None else FakeSegmenter(),
        image_encoder=encoder,
    )


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# ---- analyze -> preview -> add


def test_analyze_previews_and_writes_nothing(project, encoder):
    registry = make(project, encoder)
    preview = registry.analyze("Eileen", PHOTO, description="  an astronaut in an orange suit ")
    assert isinstance(preview, CharacterPreview)
    assert tree_snapshot(project) == []
    assert preview.name == "Eileen" and preview.description == "an astronaut in an orange suit"
    assert preview.photo.size == (512, 512) and preview.photo.mode == "RGB"
    assert preview.mask.mode == "L" and preview.mask.size == (512, 512)
    assert preview.mask.getbbox() == (128, 51, 384, 461)  # FakeSegmenter's rectangle
    assert preview.body_crop.size == (224, 224) and preview.face_crop.size == (224, 224)
    assert preview.face_overlay.size == (512, 512)
    assert preview.face.bbox == (180.0, 60.0, 280.0, 170.0) and preview.face.faces_found == 1
    assert preview.face_id.shape == (512,)
    assert preview.clip_character.shape == (257, 32) and preview.clip_face.shape == (257, 32)
    assert preview.mask_source == "fake-seg" and preview.face_model == "fake-face"
    assert preview.image_encoder == encoder.name
    assert preview.prompt_noun == "an astronaut in an orange suit"
    assert registry.stats.snapshot() == {
        "face_passes": 1, "segment_passes": 1, "clip_passes": 2,
        "disk_loads": 0, "memory_hits": 0, "recomputed": 0,
    }
    # The body crop is the photo inside the mask box on white, stretched to 224x224.
    from storymaker.perception.crops import character_crop, face_crop

    assert np.array_equal(np.asarray(preview.body_crop), np.asarray(character_crop(preview.photo, preview.mask)))
    astronaut = Image.open(PHOTO).convert("RGB")
    kps = np.asarray(preview.face.kps, np.float32)
    assert np.array_equal(np.asarray(preview.face_crop), np.asarray(face_crop(astronaut, kps)))


def test_add_stores_everything_and_loads_back_without_passes(project, encoder):
    registry = make(project, encoder)
    preview = registry.analyze("Eileen", PHOTO)
    character = registry.add(preview)
    folder = project / "characters" / character.id
    assert character.id.startswith("eileen-") and folder.is_dir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["character.json", "photo.png", "mask.png", "body.png", "face.png", "preview.png", "embeddings.safetensors"]
    )
    record = json.loads((folder / "character.json").read_text())
    assert record["name"] == "Eileen" and record["face_model"] == "fake-face"
    assert record["image_encoder"] == encoder.name and record["format_version"] == 1
    tensors = load_file(folder / "embeddings.safetensors")
    assert set(tensors) == {"face_id", "clip_character", "clip_face"}
    assert torch.equal(tensors["clip_face"], preview.clip_face)
    assert Image.open(folder / "body.png").size == (224, 224)
    assert [c.name for c in registry.list()] == ["Eileen"]
    assert not [p for p in (project / "characters").iterdir() if p.name.startswith(".")]  # no temp folders

    # A new registry (new process): everything from disk, no face / segmentation / CLIP pass.
    face, seg = FakeFace(), FakeSegmenter()
    fresh = make(project, encoder, face, seg)
    loaded = fresh.get("  EILEEN ")
    assert loaded == character
    cond = fresh.conditioning("eileen")
    assert torch.equal(cond.face_id, preview.face_id)
    assert torch.equal(cond.clip_character, preview.clip_character)
    assert torch.equal(cond.clip_face, preview.clip_face)
    assert fresh.stats.disk_loads == 1 and fresh.encoder_passes == 0
    assert face.calls == 0 and seg.calls == 0
    fresh.conditioning("Eileen")
    assert fresh.stats.memory_hits == 1 and fresh.encoder_passes == 0


def test_register_in_one_call_and_ui_aliases(project, encoder):
    registry = make(project, encoder, face=FakeFace(gender="woman"))
    preview = registry.preview(PHOTO)  # photo first, no name yet
    assert preview.name == "" and preview.annotated is preview.face_overlay
    with pytest.raises(CharacterError, match="empty"):
        registry.add(preview)
    stored = registry.add(preview, name="Eileen")
    assert stored.prompt_noun == "a woman"
    other = registry.add("Ava", _png(Image.open(PHOTO)), description="a pilot")
    assert other.prompt_noun == "a pilot"
    assert registry.names() == ["Ava", "Eileen"]
    registry.delete(other.id)
    assert registry.names() == ["Eileen"]


def test_prompt_noun_without_description(project, encoder):
    plain = make(project, encoder).register("Pat", PHOTO)
    assert plain.prompt_noun == "a person"
    man = make(project, encoder, face=FakeFace(gender="man")).register("Max", PHOTO)
    assert man.prompt_noun == "a man"


def test_several_faces_the_largest_is_used_and_said(project, encoder):
    face = FakeFace(boxes=((10, 10, 80, 80), (180, 60, 280, 170), (400, 400, 470, 480)))
    preview = make(project, encoder, face=face).analyze("Eileen", PHOTO)
    assert preview.face.bbox == (180.0, 60.0, 280.0, 170.0)
    assert preview.face.faces_found == 3 and len(preview.faces) == 3
    assert any("3 faces found" in note and "largest" in note for note in preview.notes)
    assert tuple(np.asarray(preview.face_overlay)[60, 230]) == (0, 200, 0)  # the chosen box is green


def test_user_mask_wins(project, encoder):
    seg = FakeSegmenter()
    mask = Image.new("L", (512, 512), 0)
    mask.paste(255, (100, 20, 420, 512))
    preview = make(project, encoder, seg=seg).analyze("Eileen", PHOTO, mask=_png(mask))
    assert seg.calls == 0 and preview.mask_source == "user"
    assert preview.mask.getbbox() == (100, 20, 420, 512)


def test_huge_photo_is_downscaled(project, encoder):
    big = Image.new("RGB", (12000, 9000), (90, 90, 120))
    big.paste(Image.open(PHOTO).convert("RGB").resize((3000, 3000)), (4500, 3000))
    data = _png(big, "JPEG")
    del big
    registry = make(project, encoder)
    character = registry.add(registry.analyze("Eileen", data))
    assert Image.open(project / "characters" / character.id / "photo.png").size == (2048, 1536)
    assert character.extra["original_size"] == [12000, 9000]


# ---- bad input: clear message, list unchanged, nothing written


def _text_file(tmp: Path) -> Path:
    path = tmp / "photo.jpg"
    path.write_text("not a picture")
    return path


def _truncated(tmp: Path) -> bytes:
    data = _png(Image.open(PHOTO).convert("RGB"), "JPEG")
    return data[: len(data) // 2]


BAD_INPUTS = {
    "not an image": (dict(photo=_text_file), ImageError, "not an image"),
    "truncated jpeg": (dict(photo=_truncated), ImageError, "truncated"),
    "no face": (dict(face=FakeFace(boxes=())), ImageError, "No face"),
    "face too small": (dict(face=FakeFace(boxes=((10, 10, 60, 200),))), ImageError, "too small"),
    "empty name": (dict(name="   "), CharacterError, "empty"),
    "duplicate name": (dict(name="eILEEN"), CharacterError, "already exists"),
    "slash": (dict(name="a/b"), CharacterError, "'/'"),
    "dotdot": (dict(name=".."), CharacterError, "'..'"),
    "control char": (dict(name="Eve\x07"), CharacterError, "control"),
    "newline": (dict(name="Eve\nAdam"), CharacterError, "control"),
    "bracket": (dict(name="[Eve]"), CharacterError, "script"),
    "mask other size": (dict(mask=lambda tmp: _png(Image.new("L", (300, 200), 255))), ImageError, "300x200"),
    "all black mask": (dict(mask=lambda tmp: _png(Image.new("L", (512, 512), 0))), ImageError, "empty"),
    "empty automatic mask": (dict(seg=FakeSegmenter(box=(0, 0, 0, 0))), ImageError, "supply your own mask"),
    "long description": (dict(description="x" * 500), CharacterError, "short"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_changes_nothing(case, project, encoder, tmp_path):
    make(project, encoder).register("Eileen", PHOTO)
    before_tree = tree_snapshot(project)
    before_list = make(project, encoder).list()
    spec, error, words = BAD_INPUTS[case]
    photo = spec.get("photo", lambda tmp: PHOTO)(tmp_path)
    mask = spec["mask"](tmp_path) if "mask" in spec else None
    registry = make(project, encoder, face=spec.get("face"), seg=spec.get("seg"))
    with pytest.raises(error, match=words) as info:
        registry.register(spec.get("name", "Bob"), photo, description=spec.get("description", ""), mask=mask)
    assert len(str(info.value)) > 30  # a sentence that says what to do, not a bare word
    assert make(project, encoder).list() == before_list
    assert tree_snapshot(project) == before_tree


def test_name_rules():
    assert validate_name("  Mara   Lee ") == "Mara Lee"
    assert validate_name("Zoë") == "Zoë"
    for bad in ["", "../x", "a\\b", "x" * 41, "a:b", "a=b", "a,b", 'a"b', "Ta\tb"]:
        with pytest.raises(CharacterError):
            validate_name(bad)


def test_failed_write_leaves_nothing(project, encoder, monkeypatch):
    registry = make(project, encoder)
    preview = registry.analyze("Eileen", PHOTO)
    import storymaker.services.characters as module

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "embeddings_bytes", broken)
    with pytest.raises(ProjectError, match="No space left"):
        registry.add(preview)
    assert registry.list() == []
    assert list((project / "characters").iterdir()) == []  # no half-written or temp folder


# ---- models change: recompute from the stored photo, never silently reuse


def test_other_image_encoder_recomputes_clip_only(project, encoder):
    from storymaker.perception.clip import ClipImageEncoder

    original = make(project, encoder).register("Eileen", PHOTO)
    other = ClipImageEncoder(encoder.model, name="another-encoder")
    face = FakeFace()
    registry = make(project, other, face=face)
    registry.conditioning("Eileen")
    assert registry.stats.recomputed == 1 and registry.stats.clip_passes == 2
    assert face.calls == 0 and registry.stats.face_passes == 0  # same face model: face_id reused
    assert registry.get("Eileen").image_encoder == "another-encoder"
    assert registry.get("Eileen").id == original.id
    again = make(project, other)
    again.conditioning("Eileen")
    assert again.encoder_passes == 0 and again.stats.disk_loads == 1


def test_other_face_model_recomputes_face_and_clip(project, encoder):
    make(project, encoder).register("Eileen", PHOTO)
    registry = make(project, encoder, face=FakeFace(name="other-face", boxes=((175, 55, 285, 175), (0, 0, 70, 70))))
    cond = registry.conditioning("Eileen")
    assert registry.stats.face_passes == 1 and registry.stats.clip_passes == 2
    assert cond.face_id[0] == 1.0  # the face that overlaps the stored box (the fake's first)
    record = registry.get("Eileen")
    assert record.face_model == "other-face" and record.face.bbox == (175.0, 55.0, 285.0, 175.0)


# ---- outfits, rename, redescribe, remove


def test_outfits(project, encoder, tmp_path):
    registry = make(project, encoder)
    registry.register("Eileen", PHOTO)
    base = registry.conditioning("Eileen")
    suit = Image.open(PHOTO).convert("RGB").crop((0, 200, 512, 512))
    character = registry.add_outfit("eileen", "Flight Suit", _png(suit))
    assert [o.name for o in character.outfits] == ["Flight Suit"]
    assert (project / "characters" / character.id / character.outfits[0].image_file).is_file()
    dressed = registry.conditioning("Eileen", outfit="flight suit")
    assert torch.equal(dressed.face_id, base.face_id) and torch.equal(dressed.clip_face, base.clip_face)
    assert not torch.equal(dressed.clip_character, base.clip_character)
    fresh = make(project, encoder)
    assert torch.equal(fresh.conditioning("Eileen", outfit="Flight Suit").clip_character, dressed.clip_character)
    assert fresh.encoder_passes == 0
    with pytest.raises(CharacterError, match="no outfit called 'pyjamas'"):
        fresh.conditioning("Eileen", outfit="pyjamas")
    with pytest.raises(CharacterError, match="already has an outfit"):
        fresh.add_outfit("Eileen", "flight suit", _png(suit))
    with pytest.raises(ImageError):
        fresh.add_outfit("Eileen", "broken", b"not an image")
    assert [o.name for o in fresh.get("Eileen").outfits] == ["Flight Suit"]
    fresh.remove_outfit("Eileen", "FLIGHT SUIT")
    assert fresh.get("Eileen").outfits == ()


def test_rename_redescribe_remove(project, encoder):
    registry = make(project, encoder, face=FakeFace(gender="woman"))
    eileen = registry.register("Eileen", PHOTO)
    registry.register("Ava", PHOTO)
    renamed = registry.rename("eileen", "Collins")
    assert renamed.id == eileen.id and registry.find("Eileen") is None
    assert registry.get("collins").name == "Collins"
    with pytest.raises(CharacterError, match="already exists"):
        registry.rename("Collins", "AVA")
    assert registry.rename("Collins", "COLLINS").name == "COLLINS"  # a change of case is fine
    assert registry.redescribe("collins", "a pilot in orange").prompt_noun == "a pilot in orange"
    assert registry.redescribe("collins", "").prompt_noun == "a woman"
    registry.remove("Collins")
    assert registry.names() == ["Ava"]
    assert not (project / "characters" / eileen.id).exists()
    with pytest.raises(CharacterError, match="There is no character called 'Colins'"):
        registry.conditioning("Colins")


def test_listing_and_editing_load_no_model(project, encoder):
    make(project, encoder).register("Eileen", PHOTO)

    def forbidden():
        raise AssertionError("a model was loaded")

    registry = CharacterRegistry(project / "characters", face_analyzer=forbidden, segmenter=forbidden, image_encoder=forbidden)
    assert registry.names() == ["Eileen"]
    registry.rename("Eileen", "Eve")
    registry.redescribe("Eve", "an astronaut")
    registry.remove("Eve")
    assert registry.list() == []


def test_unreadable_record_is_skipped(project, encoder):
    registry = make(project, encoder)
    registry.register("Eileen", PHOTO)
    broken = project / "characters" / "broken-1234"
    broken.mkdir()
    (broken / "character.json").write_text("{not json")
    assert registry.names() == ["Eileen"]


# ---- real code paths: insightface FaceAnalysis + rembg on tiny ONNX models, tiny CLIP


def test_real_perception_end_to_end_on_tiny_models(tmp_path, monkeypatch):
    from storymaker.config import Settings
    from storymaker.models.tiny import tiny_image_encoder

    pack = build_tiny_face_pack(tmp_path / "models" / "tinypack")
    seg_model = build_tiny_u2net(tmp_path / "u2net" / "u2net_human_seg.onnx")
    # A path to the .onnx (not the bare name): the process-wide shared segmenter is keyed by it.
    settings = Settings(face_model=str(pack), segmentation_model=str(seg_model), image_encoder="tiny-clip-test")
    from storymaker.perception.clip import shared_image_encoder
    from storymaker.services.container import build_services

    model = tiny_image_encoder()
    shared_image_encoder(settings, model=model)  # what loading the storymaker pipeline does
    services = build_services(settings, backend="storymaker")
    registry = services.character_registry(tmp_path / "project")
    assert registry.image_encoder.model is model  # the pipeline's instance, not a second copy
    photo = bright_square_photo()
    preview = registry.analyze("Tess", _png(photo))
    assert preview.face.bbox == pytest.approx((0.0, 0.0, 192.0, 192.0), abs=1e-2)
    assert preview.face.gender == "woman" and preview.prompt_noun == "a woman"
    assert preview.face_model == "tinypack" and preview.mask_source == "u2net_human_seg"
    assert np.asarray(preview.mask)[96, 96] > 200 and np.asarray(preview.mask)[250, 250] < 50
    assert preview.clip_character.shape == (257, 32)
    assert abs(float(preview.face_id.norm()) - 1.0) < 1e-5
    character = registry.add(preview)
    again = build_services(settings, backend="storymaker").character_registry(tmp_path / "project")
    cond = again.conditioning("tess")
    assert again.encoder_passes == 0 and torch.equal(cond.face_id, preview.face_id)
    assert character.face_model == "tinypack" and character.image_encoder == "tiny-clip-test"


def test_real_backend_offline_says_what_is_missing(project):
    from storymaker.config import Settings
    from storymaker.errors import WeightsNotFoundError

    from storymaker.services.container import build_services

    registry = build_services(Settings.from_env(), backend="storymaker").character_registry(project)
    with pytest.raises(WeightsNotFoundError) as info:
        registry.register("Eileen", PHOTO)
    message = str(info.value)  # every missing model at once, each with how to provide it
    assert "buffalo_l" in message and "u2net_human_seg.onnx" in message
    assert "laion/CLIP-ViT-H-14-laion2B-s32B-b79K" in message and message.count("--backend tiny") >= 3
    with pytest.raises(WeightsNotFoundError) as info:
        registry.register("Eileen", PHOTO, mask=PHOTO)  # own mask: no segmentation model needed
    assert "u2net" not in str(info.value)
    assert tree_snapshot(project) == []


# ---- CLI


def _cli(args: list[str]) -> int:
    from storymaker.cli import main

    return main(args)


def test_cli_add_list_remove_tiny(project, capsys):
    assert _cli(["characters", "add", "Eileen", str(PHOTO), "--project", str(project), "--backend", "tiny",
                 "--description", "an astronaut"]) == 0
    out = capsys.readouterr().out
    assert "Registered Eileen" in out and "'an astronaut'" in out and "not a real" in out
    assert (project / "project.json").is_file()  # a real project folder (storage's format)
    assert _cli(["characters", "list", "--project", str(project)]) == 0
    assert "Eileen" in capsys.readouterr().out
    assert _cli(["characters", "add", "eileen", str(PHOTO), "--project", str(project), "--backend", "tiny"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert _cli(["characters", "rename", "Eileen", "Collins", "--project", str(project)]) == 0
    assert _cli(["characters", "remove", "collins", "--project", str(project)]) == 0
    capsys.readouterr()
    assert _cli(["characters", "list", "--project", str(project)]) == 0
    assert "No characters yet" in capsys.readouterr().out


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    project = tmp_path / "new-project"
    bad = _text_file(tmp_path)
    assert _cli(["characters", "add", "Eileen", str(bad), "--project", str(project), "--backend", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not an image" in err and "Traceback" not in err
    assert not project.exists()
    mask = tmp_path / "mask.png"
    Image.new("L", (10, 10), 255).save(mask)
    assert _cli(["characters", "add", "Eileen", str(PHOTO), "--mask", str(mask), "--project", str(project),
                 "--backend", "tiny"]) == 2
    assert "10x10" in capsys.readouterr().err and not project.exists()


def test_cli_storymaker_backend_offline_fails_clearly(tmp_path, capsys):
    project = tmp_path / "p"
    assert _cli(["characters", "add", "Eileen", str(PHOTO), "--project", str(project), "--backend", "storymaker"]) == 2
    err = capsys.readouterr().err
    assert "buffalo_l" in err and "--backend tiny" in err
    assert not project.exists()


def test_cli_default_backend_offline_falls_back_like_the_app(tmp_path, capsys):
    """One wiring for the app and the CLI: without the registration weights the default (auto)
    registers with the labelled stand-ins, as the app's draft mode does, and says so."""
    project = tmp_path / "p"
    assert _cli(["characters", "add", "Eileen", str(PHOTO), "--project", str(project)]) == 0
    captured = capsys.readouterr()
    assert "stand-ins" in captured.err and "buffalo_l" in captured.err
    assert "Registered Eileen" in captured.out and "not a real image encoder" in captured.out


def test_cli_list_of_a_folder_that_is_not_a_project(tmp_path, capsys):
    assert _cli(["characters", "list", "--project", str(tmp_path / "nothing")]) == 2
    assert "not a StoryMaker project" in capsys.readouterr().err


def test_errors_are_storymaker_errors():
    assert issubclass(CharacterError, StoryMakerError) and issubclass(ImageError, StoryMakerError)


def _variant(kind: str) -> bytes:
    rgb = Image.open(PHOTO).convert("RGB")
    if kind == "exif-rotated jpeg":
        exif = Image.Exif()
        exif[0x0112] = 8  # stored turned; displayed upright after a 90-degree turn
        return _png_with(rgb.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=95, exif=exif.tobytes())
    if kind == "cmyk jpeg":
        return _png_with(rgb.convert("CMYK"), "JPEG", quality=95)
    if kind == "webp":
        return _png_with(rgb, "WEBP", quality=90)
    if kind == "rgba png":
        return _png_with(rgb.convert("RGBA"), "PNG")
    if kind == "16-bit grayscale png":
        return _png_with(Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257), "PNG")
    raise AssertionError(kind)


def _png_with(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["exif-rotated jpeg", "cmyk jpeg", "webp", "rgba png", "16-bit grayscale png"])
def test_photo_formats_register_upright(kind, project, encoder):
    """The stand-in face detector (upright faces only) finds her face where it is in the upright photo."""
    from storymaker.perception.standins import StandInFaceAnalyzer

    preview = make(project, encoder, face=StandInFaceAnalyzer()).analyze("Eileen", _variant(kind))
    assert preview.photo.size == (512, 512) and preview.photo.mode == "RGB"
    x1, y1, x2, y2 = preview.face.bbox
    assert 180 < (x1 + x2) / 2 < 270 and 80 < (y1 + y2) / 2 < 150
