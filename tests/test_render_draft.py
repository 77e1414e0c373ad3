"""The draft backend (storyboard sketches without a model) and the services container's choices."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from net_guard import no_network, refuse_model_loads  # noqa: F401  (no_network: a fixture)
from render_helpers import PHOTO, ROOT, panel, story, tiny_settings
from storymaker.services.container import build_services, choose_backend
from storymaker.services.draft import MARK, draw_draft
from storymaker.services.jobs import CharacterSlot, PanelJob


def _job(**changes) -> PanelJob:
    values = dict(index=0, prompt="a man on a hill, ink", negative_prompt="", width=320, height=240,
                  steps=25, guidance_scale=7.5, seed=5, source_prompt="[Ava] on a hill",
                  characters=(CharacterSlot("Ava"),))
    values.update(changes)
    return PanelJob(**values)


def _has_colour(image: Image.Image, colour, box=None) -> bool:
    array = np.asarray(image.crop(box) if box else image)
    return bool((array == np.array(colour, dtype=np.uint8)).all(axis=-1).any())


def test_draft_draws_mark_thumbnail_and_slug_without_torch():
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from PIL import Image
        from storymaker.services.backends import DraftBackend
        from storymaker.services.jobs import CharacterSlot, PanelJob
        job = PanelJob(index=2, prompt="p", negative_prompt="", width=320, height=240, steps=2,
                       guidance_scale=7.5, seed=1, source_prompt="[Ava] on a hill",
                       characters=(CharacterSlot("Ava"), CharacterSlot("Ben")))
        image = DraftBackend().render(job, registry=None, on_step=lambda *a: None, cancel=None)
        assert image.size == (320, 240), image.size
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_draft_content():
    red = Image.new("RGB", (50, 50), (10, 200, 10))
    image = draw_draft(_job(), {"Ava": red})
    assert image.size == (320, 240) and image.mode == "RGB"
    assert _has_colour(image, MARK, (160, 120, 320, 240))  # the DRAFT mark, bottom right
    assert _has_colour(image, (10, 200, 10))  # the character's thumbnail
    # Without a thumbnail the character is a drawn placeholder, and the sketch still renders.
    plain = draw_draft(_job(), {})
    assert not _has_colour(plain, (10, 200, 10))


def test_draft_draws_the_pose_skeleton():
    from storymaker.services.poses import PoseLibrary

    pose = PoseLibrary(None).get("waving")
    with_pose = np.asarray(draw_draft(_job(pose=pose), {}))
    without = np.asarray(draw_draft(_job(), {}))
    # controlnet-aux draws saturated limb colours; the plain sketch has none.
    saturated = lambda a: int(((a.max(axis=-1).astype(int) - a.min(axis=-1)) > 150).sum())  # noqa: E731
    assert saturated(with_pose) > saturated(without) + 200


def test_draft_engine_uses_character_photos(tmp_path):
    from storymaker.services.container import tiny_perception

    settings = tiny_settings(tmp_path / "data", backend="draft", width=256, height=192)
    services = build_services(settings, backend="draft", perception=tiny_perception())
    assert services.backend.name == "draft" and services.backend_reason
    project = services.open_project(tmp_path / "p", title="t")
    services.character_registry(project).add("Ava", str(PHOTO))
    report = services.engine(project).render_story(story(panel("[Ava] on a hill", "Ava"), panel("rain")))
    assert report.ok, report.summary()
    version = project.selected(0)
    assert version.meta["backend"] == "draft" and version.meta["label"] == "DRAFT"
    with Image.open(version.image_path) as im:
        assert im.size == (256, 192)


def test_auto_without_gpu_is_draft_with_a_reason(tmp_path):
    choice = choose_backend(tiny_settings(tmp_path, backend="auto"))
    assert choice.name == "draft"
    assert "GPU" in choice.reason and "STORYMAKER_BACKEND" in choice.reason


def test_explicit_backends(tmp_path):
    settings = tiny_settings(tmp_path)
    assert choose_backend(settings, "tiny").name == "tiny"
    assert "TINY" in choose_backend(settings, "tiny").reason
    assert choose_backend(settings, "storymaker").reason == ""
    services = build_services(settings, backend="tiny")
    assert services.backend.label == "TINY MODEL"
    assert "stand-in" in services.perception.label


def test_storymaker_backend_without_weights_fails_fast_with_one_message(tmp_path, no_network, monkeypatch):
    """One load attempt for the whole story (not one per panel), which fails before any model is
    read and without a network attempt."""
    from storymaker.models.pipeline import StoryMakerPipeline
    from storymaker.services.pipelines import PipelineCache

    attempts = []
    from_settings = StoryMakerPipeline.from_settings.__func__

    def counted(cls, *args, **kwargs):
        attempts.append(args)
        return from_settings(cls, *args, **kwargs)

    monkeypatch.setattr(StoryMakerPipeline, "from_settings", classmethod(counted))
    loaded = refuse_model_loads(monkeypatch)
    services = build_services(tiny_settings(tmp_path), backend="storymaker", pipeline_cache=PipelineCache())
    report = services.engine(None).render_story(story(panel("a quiet harbour"), panel("rain")), keep=False)
    assert len(attempts) == 1 and loaded == []
    no_network.check()
    assert [r.status for r in report.results] == ["error", "error"]
    error = report.results[0].error
    assert "stabilityai/stable-diffusion-xl-base-1.0" in error and "STORYMAKER_BASE_MODEL" in error
    summary = report.summary()
    assert "Panels 1, 2:" in summary and summary.count("stabilityai/stable-diffusion-xl-base-1.0") == 1


def test_one_registry_per_project(tmp_path):
    services = build_services(tiny_settings(tmp_path), backend="draft")
    project = services.open_project(tmp_path / "p")
    assert services.character_registry(project) is services.character_registry(project)
    again = services.open_project(tmp_path / "p")
    assert services.character_registry(again) is services.character_registry(project)


@pytest.mark.parametrize("bad", ["0x64", "64", "63x64"])
def test_cli_size_parsing(bad):
    from storymaker.cli.render import parse_size
    from storymaker.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        parse_size(bad)
