"""Consistency scores: matching faces to characters, the scorer with a deterministic stand-in
identity embedder, best-of-N selection, storage of the scores, and the draft backend (no scores)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storymaker.domain.character import Character
from storymaker.domain.poses import Person, Pose
from storymaker.perception.base import DetectedFace
from storymaker.services.scores import (
    CharacterScore,
    PanelScores,
    Scorer,
    character_regions,
    make_scorer,
    match_faces,
    pick_best,
    score_selected,
    scores_from_meta,
)

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photos" / "astronaut.png"


# ----------------------------------------------------------------------------------------------
# Helpers


def unit(*values: float, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def face(x: float, embedding: np.ndarray, y: float = 20.0, size: float = 30.0) -> DetectedFace:
    return DetectedFace(bbox=(x, y, x + size, y + size), kps=np.zeros((5, 2), np.float32), embedding=embedding)


def standing(x: float) -> Person:
    """A person standing at horizontal position x (normalised): head, neck, shoulders, hips."""
    points: list = [None] * 18
    points[0] = (x, 0.2)  # nose
    points[1] = (x, 0.3)  # neck
    points[2], points[5] = (x - 0.05, 0.3), (x + 0.05, 0.3)
    points[8], points[11] = (x - 0.03, 0.6), (x + 0.03, 0.6)
    points[14], points[15] = (x - 0.01, 0.18), (x + 0.01, 0.18)  # eyes
    return Person(tuple(points))


class FakeAnalyzer:
    """Returns the faces it was given (controlled boxes and embeddings)."""

    name = "fake-faces (not a real face model)"

    def __init__(self, faces):
        self.faces = list(faces)
        self.calls = 0

    def analyze(self, rgb):
        self.calls += 1
        return list(self.faces)


class Refs:
    def __init__(self, faces: dict, body: Image.Image | None = None):
        self.faces = faces
        self._body = body or Image.new("RGB", (224, 224), "white")

    def face_id(self, name):
        return self.faces[name]

    def body(self, name):
        return self._body


def tiny_clip():
    from storymaker.perception.clip import shared_text_encoder, tiny_clip_encoder

    return tiny_clip_encoder(), shared_text_encoder(None, tiny=True)


def scorer_with(analyzer, refs, threshold=0.28) -> Scorer:
    image, text = tiny_clip()
    return Scorer(face_analyzer=analyzer, image_encoder=image, text_encoder=text, references=refs,
                  threshold=threshold)


def head_crop(photo: Image.Image, box, margin: float = 0.6) -> Image.Image:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return photo.crop((int(x1 - margin * w), int(y1 - margin * h), int(x2 + margin * w), int(y2 + margin * h)))


def render_with(head: Image.Image, at=(150, 120), size=(512, 384)) -> Image.Image:
    """A stand-in "render": grey canvas with one head pasted in, resized (not pixel-identical)."""
    canvas = Image.new("RGB", size, (128, 128, 128))
    canvas.paste(head.resize((int(head.width * 0.9), int(head.height * 0.9)), Image.Resampling.BICUBIC), at)
    return canvas


@pytest.fixture(scope="module")
def two_people():
    """The registered person (the example astronaut photo) and another person's head (a face of
    insightface's bundled group photo, read at run time, never copied)."""
    import insightface

    from storymaker.perception.standins import StandInFaceAnalyzer

    analyzer = StandInFaceAnalyzer()
    mara_photo = Image.open(PHOTO).convert("RGB")
    mara_face = analyzer.analyze(np.asarray(mara_photo))[0]
    group_path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    if not group_path.is_file():
        pytest.skip("insightface's sample photo t1.jpg is not installed")
    group = Image.open(group_path).convert("RGB")
    other_face = analyzer.analyze(np.asarray(group))[0]
    return analyzer, mara_face.embedding, head_crop(mara_photo, mara_face.bbox), head_crop(group, other_face.bbox)


# ----------------------------------------------------------------------------------------------
# Matching


def test_one_character_takes_the_face_that_resembles_it_most():
    mara = unit(1, 0)
    faces = [face(10, unit(0, 1)), face(60, unit(0.9, 0.1))]
    assert match_faces(faces, [mara]) == [1]


def test_two_characters_get_the_best_total_not_a_greedy_pick():
    a, b = unit(1, 0, 0), unit(0, 1, 0)
    # Greedy would give A face 0 (0.71 > 0.6) and leave B face 1 (0.0): total 0.71. The optimum
    # is A-face 1 + B-face 0 (0.6 + 0.71 = 1.31).
    f0 = unit(0.7, 0.7, 0.14)
    f1 = unit(0.6, 0.0, 0.8)
    sims = lambda r, f: float(r @ f)  # noqa: E731
    greedy_total = sims(a, f0) + sims(b, f1)
    optimal_total = sims(a, f1) + sims(b, f0)
    assert sims(a, f0) > sims(a, f1) and optimal_total > greedy_total  # the case is the one intended
    assert match_faces([face(0, f0), face(50, f1)], [a, b]) == [1, 0]


def test_three_characters_with_a_pose_are_matched_left_to_right_whatever_they_look_like():
    from storymaker.services.scores import slot_positions

    pose = Pose("three", (standing(0.2), standing(0.5), standing(0.8)), width=300, height=300)
    xs = slot_positions(pose, 300, 300)
    assert xs[0] < xs[1] < xs[2]
    refs = [unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)]
    # Faces listed out of order, each looking like another character than its position says.
    faces = [face(xs[2] - 15, refs[0]), face(xs[0] - 15, refs[1]), face(xs[1] - 15, refs[2])]
    assert match_faces(faces, refs, slot_x=xs, width=300) == [1, 2, 0]
    # Without the pose the same faces go by resemblance.
    assert match_faces(faces, refs) == [0, 1, 2]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_missing_face_leaves_exactly_that_character_unmatched(count):
    refs = [unit(*np.eye(3)[i]) for i in range(count)]
    faces = [face(40.0 * i, refs[i]) for i in range(count) if i != count - 1]  # the last one is missing
    matched = match_faces(faces, refs)
    assert matched[-1] is None
    assert matched[:-1] == list(range(count - 1))


def test_missing_face_with_a_pose_goes_to_the_slot_without_a_face_nearby():
    from storymaker.services.scores import slot_positions

    pose = Pose("two", (standing(0.25), standing(0.75)), width=200, height=200)
    xs = slot_positions(pose, 200, 200)
    only = face(xs[1] - 15, unit(1, 0))  # someone stands where slot 1 is
    assert match_faces([only], [unit(1, 0), unit(0, 1)], slot_x=xs, width=200) == [None, 0]


def test_regions_whole_image_for_one_character_and_per_person_boxes_with_a_pose():
    assert character_regions(100, 80, 1) == [(0, 0, 100, 80)]
    pose = Pose("two", (standing(0.25), standing(0.75)), width=200, height=200)
    left, right = character_regions(200, 200, 2, pose=pose)
    assert left[2] <= right[0] + 5 and left[0] < 100 < right[2]
    strips = character_regions(90, 60, 3)
    assert [b[0] for b in strips] == [0, 30, 60]


# ----------------------------------------------------------------------------------------------
# The scorer


def test_stand_in_identity_a_render_with_the_registered_face_scores_higher(two_people):
    analyzer, mara_id, mara_head, other_head = two_people
    scorer = scorer_with(analyzer, Refs({"Mara": mara_id}))
    same = scorer.score(render_with(mara_head), prompt="a woman in a spacesuit", characters=["Mara"])
    other = scorer.score(render_with(other_head), prompt="a woman in a spacesuit", characters=["Mara"])
    assert same.characters[0].face_found and other.characters[0].face_found
    assert same.characters[0].face_similarity > other.characters[0].face_similarity + 0.2
    assert same.characters[0].face_similarity > 0.8
    # The stand-in threshold test: above it the same face, below it the other one.
    flagged = scorer_with(analyzer, Refs({"Mara": mara_id}), threshold=0.7)
    assert not flagged.score(render_with(mara_head), prompt="x", characters=["Mara"]).off_model
    assert flagged.score(render_with(other_head), prompt="x", characters=["Mara"]).off_model_names == ["Mara"]


def test_a_render_is_analysed_for_faces_once_for_lettering_and_scores():
    from storymaker.domain.heads import recorded
    from storymaker.perception.heads import detect_and_record

    from dataclasses import replace

    mara = unit(1, 0)
    analyzer = FakeAnalyzer([replace(face(40, mara), det_score=0.9), replace(face(300, unit(0, 1)), det_score=0.9)])
    image = detect_and_record(Image.new("RGB", (400, 200), "grey"), analyzer)  # as the render backend does
    assert len(recorded(image)["heads"]) == 2 and analyzer.calls == 1
    scores = scorer_with(analyzer, Refs({"Mara": mara})).score(image, prompt="x", characters=["Mara"])
    assert analyzer.calls == 1  # the scores reused the render's analysis
    assert scores.faces_detected == 2 and scores.characters[0].face_similarity == 1.0
    # An image the backend did not analyse (a stored version read back) is analysed by the scorer.
    scorer_with(analyzer, Refs({"Mara": mara})).score(Image.new("RGB", (400, 200)), prompt="x", characters=["Mara"])
    assert analyzer.calls == 2


def test_scores_name_their_models_and_say_they_are_stand_ins(two_people):
    analyzer, mara_id, mara_head, _ = two_people
    scores = scorer_with(analyzer, Refs({"Mara": mara_id})).score(render_with(mara_head), prompt="p", characters=["Mara"])
    assert scores.stand_in
    assert "not a real" in scores.models["face"] and "not a real" in scores.models["text_encoder"]
    data = scores.to_dict()
    assert "meaningless" in data["note"] and PanelScores.from_dict(json.loads(json.dumps(data))) == scores
    assert "(stand-in models)" in scores.badge()


def test_a_character_without_a_face_scores_zero_and_says_so():
    refs = Refs({"Ann": unit(1, 0, 0), "Bob": unit(0, 1, 0), "Cy": unit(0, 0, 1)})
    analyzer = FakeAnalyzer([face(10, unit(1, 0.1, 0)), face(200, unit(0, 0.2, 1))])
    scores = scorer_with(analyzer, refs).score(Image.new("RGB", (300, 200), "grey"), prompt="three friends",
                                                 characters=["Ann", "Bob", "Cy"])
    by_name = {c.name: c for c in scores.characters}
    assert by_name["Bob"].face_similarity == 0.0 and not by_name["Bob"].face_found
    assert by_name["Bob"].off_model and "no face" in by_name["Bob"].note
    assert by_name["Ann"].face_similarity > 0.9 and by_name["Cy"].face_similarity > 0.9
    assert scores.min_face_similarity == 0.0 and scores.off_model_names == ["Bob"]
    assert scores.clip_t is not None and all(c.clip_i is not None for c in scores.characters)
    assert scores.faces_detected == 2


# ----------------------------------------------------------------------------------------------
# Best of N


def _scores(face_sims, clip_t) -> PanelScores:
    return PanelScores(tuple(CharacterScore(f"c{i}", s, True, 0.5, False, (0, 0, 8, 8)) for i, s in enumerate(face_sims)),
                       clip_t, 0.28)


def test_pick_best_uses_the_lowest_character_then_clip_t():
    candidates = [("a", _scores([0.9, 0.2], 0.3)), ("b", _scores([0.5, 0.45], 0.1)), ("c", _scores([0.45, 0.5], 0.2))]
    assert pick_best(candidates) == "c"  # b and c tie on the lowest face (0.45): CLIP-T decides
    assert pick_best([("x", None), ("y", _scores([], 0.1))]) == "y"
    assert pick_best([("x", None), ("y", None)]) == "x"


class FakeRegistry:
    def get(self, name):
        return Character(id=name.lower(), name=name)


class SequenceBackend:
    """Renders the given images in turn (whatever the job), like a model whose seeds differ."""

    name = "fake"
    label = ""

    def __init__(self, images):
        self.images = list(images)
        self.calls = 0

    def model_ids(self):
        return {"renderer": "fake"}

    def prepare(self):
        return None

    def render(self, job, *, registry, on_step, cancel):
        on_step(1, 1)
        image = self.images[self.calls % len(self.images)]
        self.calls += 1
        return image


@pytest.fixture
def best_of_project(tmp_path, two_people):
    """A project whose panel 1 was rendered best of 3: other person, Mara, other person."""
    from storymaker.config import Settings
    from storymaker.domain.story import Panel, Story
    from storymaker.services.render import RenderEngine
    from storymaker.services.storage import Project

    analyzer, mara_id, mara_head, other_head = two_people
    project = Project.create(tmp_path / "p", title="Best of")
    backend = SequenceBackend([render_with(other_head), render_with(mara_head, at=(200, 100)), render_with(other_head)])
    scorer = scorer_with(analyzer, Refs({"Mara": mara_id}))
    engine = RenderEngine(backend, Settings(data_dir=tmp_path, width=64, height=64, best_of=3),
                          project=project, registry=FakeRegistry(), scorer=scorer)
    story = Story(panels=(Panel(prompt="[Mara] waves", characters=("Mara",)),))
    result = engine.render_panel(story, 0)
    return project, result, scorer


def test_best_of_n_keeps_all_n_and_selects_the_highest_score(best_of_project):
    project, result, scorer = best_of_project
    versions = project.versions(0)
    assert len(versions) == 3 and scorer.calls == 3
    assert len({v.seed for v in versions}) == 3
    assert [v.meta["best_of"]["round"] for v in versions] == [1, 2, 3]
    sims = [scores_from_meta(v.meta).min_face_similarity for v in versions]
    assert sims[1] == max(sims) and sims[1] > sims[0] + 0.2
    assert project.selected(0).id == versions[1].id == result.version


def test_a_hand_selection_survives_rescoring_and_nothing_is_scored_twice(best_of_project):
    project, _, scorer = best_of_project
    first = project.versions(0)[0]
    project.select(0, first.id)  # the user prefers another version
    calls = scorer.calls
    once = score_selected(project, scorer)
    assert scorer.calls == calls and not once[0].fresh  # it had scores: nothing re-scored
    again = score_selected(project, scorer, rescore=True)
    assert scorer.calls == calls + 1 and again[0].fresh
    assert project.selected(0).id == first.id
    assert scores_from_meta(project.selected(0).meta) == again[0].scores


def test_scores_live_in_the_json_and_the_png_and_survive_zip_and_open(best_of_project, tmp_path):
    from storymaker.services.storage import PNG_META_KEY, Project, export_zip, import_zip

    project, _, _ = best_of_project
    version = project.selected(0)
    with Image.open(version.image_path) as im:
        chunk = json.loads(im.text[PNG_META_KEY])
    assert chunk["meta"]["scores"] == version.meta["scores"]
    copy = import_zip(export_zip(project, tmp_path / "p.zip"), tmp_path / "opened")
    reopened = Project.open(copy.path)
    assert reopened.selected(0).id == version.id
    assert scores_from_meta(reopened.selected(0).meta) == scores_from_meta(version.meta)


def test_update_version_meta_keeps_pixels_id_and_selection(best_of_project):
    project, _, _ = best_of_project
    version = project.selected(0)
    before = np.asarray(version.load_image())
    updated = project.update_version_meta(0, version.id, {"scores": {"format": 1, "characters": [], "clip_t": 0.5}})
    assert updated.id == version.id and project.selected(0).id == version.id
    assert np.array_equal(np.asarray(updated.load_image()), before)
    assert project.selected(0).meta["scores"]["clip_t"] == 0.5 and project.selected(0).meta["seed"] == version.meta["seed"]


def test_scoring_failure_keeps_the_render_without_scores(tmp_path):
    from storymaker.config import Settings
    from storymaker.domain.story import Panel, Story
    from storymaker.errors import WeightsNotFoundError
    from storymaker.services.render import RenderEngine
    from storymaker.services.storage import Project

    class Broken:
        def score_job(self, job, image):
            raise WeightsNotFoundError("no weights")

    project = Project.create(tmp_path / "p")
    engine = RenderEngine(SequenceBackend([Image.new("RGB", (64, 64))]), Settings(data_dir=tmp_path, width=64, height=64),
                          project=project, registry=FakeRegistry(), scorer=Broken())
    result = engine.render_panel(Story(panels=(Panel(prompt="a beach"),)), 0)
    assert result.ok and "scores" not in project.selected(0).meta


def test_draft_backend_has_no_scores(tmp_path):
    from storymaker.config import Settings
    from storymaker.domain.story import Panel, Story
    from storymaker.services.backends import DraftBackend
    from storymaker.services.render import RenderEngine
    from storymaker.services.storage import Project

    settings = Settings(data_dir=tmp_path, width=64, height=64, backend="draft")
    assert make_scorer("draft", settings, object()) is None
    project = Project.create(tmp_path / "p")
    engine = RenderEngine(DraftBackend(settings), settings, project=project, registry=None, poses=None)
    assert engine.scorer is None
    engine.render_panel(Story(panels=(Panel(prompt="a beach"),)), 0)
    assert "scores" not in project.selected(0).meta
    listed = score_selected(project, scorer_with(FakeAnalyzer([]), Refs({})))
    assert listed[0].scores is None and "draft" in listed[0].reason


# ----------------------------------------------------------------------------------------------
# The CLIP text tower, read from a whole-CLIP folder like the laion repository


@pytest.fixture(scope="module")
def clip_folders(tmp_path_factory):
    """A tiny CLIPModel (both towers) saved like the laion repository, without tokenizer files,
    and an SDXL-like base folder whose ``tokenizer`` subfolder holds the vocabulary."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from storymaker.models.tiny import tiny_tokenizer

    root = tmp_path_factory.mktemp("clip")
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=224, patch_size=14, projection_dim=16),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "base" / "tokenizer")
    return root / "clip", root / "base"


def test_text_tower_loads_from_the_image_encoder_folder_with_the_base_models_tokenizer(clip_folders):
    from storymaker.config import Settings
    from storymaker.perception.clip import ClipImageEncoder, image_embeddings, shared_text_encoder

    clip, base = clip_folders
    settings = Settings(image_encoder=str(clip), base_model=str(base), device="cpu")
    text = shared_text_encoder(settings)
    embeds = text.embed(["a woman on a cliff at dusk", "a boat"])
    assert embeds.shape == (2, 16) and np.allclose(embeds.norm(dim=-1).numpy(), 1.0, atol=1e-5)
    images = image_embeddings(ClipImageEncoder(source=str(clip), device="cpu"), [Image.new("RGB", (80, 60), "red")])
    assert images.shape == (1, 16)  # the same projection space: CLIP-T is a cosine of the two


def test_missing_text_tower_says_what_to_do(tmp_path):
    from storymaker.config import Settings
    from storymaker.errors import WeightsNotFoundError
    from storymaker.perception.clip import ClipTextEncoder

    encoder = ClipTextEncoder(source=str(tmp_path / "absent"), name="absent")
    with pytest.raises(WeightsNotFoundError, match="STORYMAKER_SCORE_RENDERS=0"):
        encoder.embed(["x"])
    assert Settings(score_renders=False).score_renders is False


def test_a_removed_character_skips_that_panel_with_the_reason(best_of_project):
    from storymaker.errors import CharacterError

    project, _, scorer = best_of_project

    class Gone(Refs):
        def face_id(self, name):
            raise CharacterError(f"There is no character called {name!r}.")

    scorer.references = Gone({})
    listed = score_selected(project, scorer, rescore=True)
    assert listed[0].scores is not None and not listed[0].fresh and "no character called" in listed[0].reason


def test_clip_i_compares_with_the_outfit_the_panel_asks_for(tmp_path):
    """With ``outfit: Mara=raincoat`` the reference for CLIP-I is the raincoat image, not the body crop."""

    class Dressed(Refs):
        asked: list = []

        def body(self, name, outfit=None):
            self.asked.append((name, outfit))
            return Image.new("RGB", (224, 224), "yellow" if outfit else "white")

    refs = Dressed({"Mara": unit(1, 0)})
    scorer = scorer_with(FakeAnalyzer([face(5, unit(1, 0))]), refs)
    yellow = Image.new("RGB", (64, 64), "yellow")
    dressed = scorer.score(yellow, prompt="p", characters=["Mara"], outfits={"Mara": "raincoat"})
    plain = scorer.score(yellow, prompt="p", characters=["Mara"])
    assert refs.asked == [("Mara", "raincoat"), ("Mara", None)]
    assert dressed.characters[0].clip_i > plain.characters[0].clip_i
