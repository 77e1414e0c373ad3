"""What the models see in a photo (storymaker.services.character_analysis), apart from the registry."""

from __future__ import annotations

import torch

from perception_helpers import PHOTO, FakeFace, FakeSegmenter, tree_snapshot
from storymaker.services.character_analysis import PhotoAnalyzer
from storymaker.services.characters import CharacterRegistry


def test_the_analyzer_alone_sees_what_the_registry_stores_and_loads_models_lazily(tmp_path):
    from storymaker.perception.clip import tiny_clip_encoder

    encoder = tiny_clip_encoder()
    made = []

    def face_factory():
        made.append("face")
        return FakeFace()

    analyzer = PhotoAnalyzer(face_analyzer=face_factory, segmenter=FakeSegmenter(), image_encoder=encoder)
    assert made == []  # nothing is built until a photo is analysed
    preview = analyzer.analyze(PHOTO, name="Eileen", description="an astronaut")
    assert made == ["face"] and analyzer.face_analyzer is analyzer.face_analyzer  # built once
    assert analyzer.stats.snapshot()["face_passes"] == 1 and analyzer.stats.clip_passes == 2

    registry = CharacterRegistry(tmp_path / "characters", face_analyzer=FakeFace(), segmenter=FakeSegmenter(),
                                 image_encoder=encoder)
    assert registry.stats is registry.analysis.stats  # one count of the passes
    same = registry.analyze("Eileen", PHOTO, description="an astronaut")
    assert tree_snapshot(tmp_path) == []  # analysing writes nothing
    assert same.face == preview.face and list(same.body_crop.getdata()) == list(preview.body_crop.getdata())
    assert torch.equal(same.clip_character, preview.clip_character) and torch.equal(same.face_id, preview.face_id)
