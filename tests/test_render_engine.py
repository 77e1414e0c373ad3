"""The render engine on the tiny backend (the real pipeline code on tiny random weights).

What these prove: one pipeline load for many panels (with and without a pose), zero face/CLIP
encoder passes for characters seen before, prompt embeddings reused, seeds reproducible, every
render kept as a version (render, re-roll, select), cancel keeps finished panels, and a GPU
out-of-memory error fails one panel with a clear message while the engine keeps working.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace

import pytest
from PIL import Image

from render_helpers import PHOTO, panel, pixels, story, tiny_settings
from storymaker.errors import GPUOutOfMemoryError, RenderError
from storymaker.services.container import TINY_LABEL, build_services
from storymaker.services.jobs import derive_seed
from storymaker.services.pipelines import PipelineCache



@pytest.fixture(scope="module")
def cache() -> PipelineCache:
    """A private pipeline cache, so that this module's load count is its own."""
    return PipelineCache()


@pytest.fixture(scope="module")
def services(tmp_path_factory, cache):
    settings = tiny_settings(tmp_path_factory.mktemp("data"))
    return build_services(settings, backend="tiny", pipeline_cache=cache)


@pytest.fixture(scope="module")
def characters_dir(services, tmp_path_factory):
    """Ava and Ben registered once (stand-in perception, tiny CLIP); copied into each test's project."""
    project = services.open_project(tmp_path_factory.mktemp("seed") / "project", title="Seed")
    registry = services.character_registry(project)
    registry.add("Ava", str(PHOTO))
    registry.add("Ben", str(PHOTO), description="a tall man in a blue coat")
    return project.characters_dir


@pytest.fixture
def project(services, characters_dir, tmp_path):
    project = services.open_project(tmp_path / "project", title="Test")
    shutil.copytree(characters_dir, project.characters_dir, dirs_exist_ok=True)
    return project


def _three_panels():
    return story(
        panel("[Ava] on a hill", "Ava"),
        panel("[Ava] waves", "Ava", pose="waving"),
        panel("[Ava] and [Ben] talk", "Ava", "Ben"),
        negative="blurry",
    )


def test_caches_pipeline_characters_prompts_and_seeds_reproduce(services, project, cache):
    engine = services.engine(project)
    registry = services.character_registry(project)
    backend = services.backend
    entry = backend.entry()
    encodes = entry.encode_calls

    first = engine.render_story(_three_panels())
    assert [r.status for r in first.results] == ["ok", "ok", "ok"], first.summary()
    # One pipeline load for every panel, with and without a pose (the ControlNet is part of it).
    assert cache.loads[backend.key] == 1
    # Three prompts and one shared negative prompt were encoded, each once.
    assert entry.encode_calls - encodes == 4
    passes = registry.encoder_passes

    second = engine.render_story(_three_panels())
    assert second.ok, second.summary()
    # Characters seen before: zero face/segmentation/CLIP passes; prompts: zero text encodes.
    assert registry.encoder_passes == passes
    assert entry.encode_calls - encodes == 4
    assert cache.loads[backend.key] == 1
    # Same story, same seeds (derived from the story seed and the position), identical images.
    assert [r.seed for r in first.results] == [derive_seed(0, i) for i in range(3)]
    assert [r.seed for r in second.results] == [r.seed for r in first.results]
    for a, b in zip(first.results, second.results):
        assert (pixels(a.image) == pixels(b.image)).all()
    # Every tiny image carries its mark: a yellow TINY MODEL band across its middle.
    for result in first.results:
        image = pixels(result.image)  # the label band crosses the middle, left edge to right edge
        assert tuple(image[image.shape[0] // 2, 0]) == tuple(image[image.shape[0] // 2, -1]) == (255, 230, 0)
    # The same panel with and without its pose differs (the ControlNet ran), still one load.
    posed = _three_panels().panels[1]
    unposed = story(replace(posed, pose=None), negative="blurry")
    plain = engine.render_panel(unposed, 0, seed=first.results[1].seed, keep=False)
    assert (pixels(plain.image) != pixels(first.results[1].image)).any()
    assert cache.loads[backend.key] == 1
    assert len(project.versions(2)) == 2 and project.selected(2).id == second.results[2].version


def test_seeds_story_seed_explicit_seed(services, project):
    engine = services.engine(project)
    s = story(panel("a quiet harbour"), panel("a quiet harbour", seed=1234), seed=7)
    assert engine.job(s, 0).seed == derive_seed(7, 0)
    assert engine.job(s, 0, story_seed=8).seed == derive_seed(8, 0)
    assert engine.job(s, 1).seed == 1234 and engine.job(s, 1).seed_source == "explicit"
    assert derive_seed(7, 0) != derive_seed(7, 1) != derive_seed(8, 1)
    # Another story seed gives other pixels.
    a = engine.render_story(s, panels=[0], keep=False).results[0]
    b = engine.render_story(s, panels=[0], seed=8, keep=False).results[0]
    assert a.seed == derive_seed(7, 0) and b.seed == derive_seed(8, 0)
    assert (pixels(a.image) != pixels(b.image)).any()


def test_prompt_and_negative_reach_the_model_as_the_spec_says(services, project):
    engine = services.engine(project)
    s = story(panel("[Ava] and [Ben] at sea", "Ava", "Ben", negative="fog, Lowres"), negative="lowres, ugly")
    job = engine.job(s, 0)
    assert job.prompt == "a person and a tall man in a blue coat at sea, ink drawing"
    default = services.settings.negative_prompt  # "bad quality, NSFW, low quality, ugly, ..."
    assert job.negative_prompt == default + ", lowres, fog"
    no_negative = story(panel("[Ava] alone", "Ava"))
    assert engine.job(no_negative, 0).negative_prompt == default


def test_versions_render_reroll_select(services, project):
    engine = services.engine(project)
    s = story(panel("[Ava] on a hill", "Ava"))
    report = engine.render_story(s)
    assert report.ok
    first = project.versions(0)
    assert len(first) == 1 and project.selected(0).id == first[0].id
    meta = first[0].meta
    assert meta["seed"] == report.results[0].seed == first[0].seed
    assert meta["backend"] == "tiny" and meta["label"] == TINY_LABEL
    assert meta["model_ids"]["base_model"].startswith("tiny")
    assert meta["width"] == 64 and meta["num_inference_steps"] == 2
    assert meta["prompt"].endswith("ink drawing") and meta["characters"][0]["name"] == "Ava"

    rerolled = engine.reroll(s, 0)
    assert rerolled.ok
    versions = project.versions(0)
    assert len(versions) == 2
    assert project.selected(0).id == rerolled.version == versions[1].id
    assert versions[1].meta["seed_source"] == "reroll" and versions[1].seed == rerolled.seed
    # Selecting the old version works; rendering with its seed reproduces its image.
    project.select(0, versions[0].id)
    assert project.selected(0).id == versions[0].id
    again = engine.render_panel(s, 0, seed=versions[0].seed, keep=False)
    with Image.open(versions[0].image_path) as im:
        assert (pixels(im) == pixels(again.image)).all()
    assert len(project.versions(0)) == 2  # keep=False kept nothing


def test_cancel_after_a_step_keeps_finished_panels(services, project):
    engine = services.engine(project)
    s = story(panel("[Ava] one", "Ava"), panel("[Ava] two", "Ava"), panel("[Ava] three", "Ava"))
    cancel = threading.Event()
    seen = []

    def progress(position, count, step, steps):
        seen.append((position, count, step, steps))
        if position == 1 and step == 1:
            cancel.set()

    report = engine.render_story(s, progress=progress, cancel=cancel)
    assert report.cancelled and not report.ok
    assert [r.status for r in report.results] == ["ok", "cancelled", "cancelled"]
    # Panel 1 ran both steps; panel 2 stopped after step 1; panel 3 never started.
    assert (0, 3, 2, 2) in seen and (1, 3, 1, 2) in seen
    assert (1, 3, 2, 2) not in seen and not any(p == 2 for p, *_ in seen)
    assert len(project.versions(0)) == 1
    assert project.versions(1) == [] and project.versions(2) == []
    # The engine is usable afterwards.
    assert engine.render_story(s, panels=[1]).ok
    assert len(project.versions(1)) == 1


def test_only_missing_renders_the_panels_without_a_render_of_their_wording(services, project, cache):
    from storymaker.services.render import missing_panels

    engine = services.engine(project)
    s = story(panel("a quiet harbour"), panel("an empty beach"), panel("a hill at dawn"))
    assert missing_panels(None, s) == [0, 1, 2]  # no project: nothing is kept, everything is missing
    cancel = threading.Event()

    def cancel_in_panel_2(position, count, step, steps):
        if position == 1 and step == 1:
            cancel.set()

    first = engine.render_story(s, progress=cancel_in_panel_2, cancel=cancel)
    assert [r.status for r in first.results] == ["ok", "cancelled", "cancelled"]
    assert engine.missing_panels(s) == [1, 2]
    seen = []
    again = engine.render_story(s, only_missing=True, progress=lambda *a: seen.append(a))
    assert [r.index for r in again.results] == [1, 2] and again.ok and again.skipped == (0,)
    assert again.summary() == "2 of 2 panels rendered, 1 skipped (already rendered)."
    assert {count for _, count, _, _ in seen} == {2}  # the progress counts the panels it renders
    assert [len(project.versions(i)) for i in range(3)] == [1, 1, 1]
    # The seeds are the story's, as "render all" would have used: panel 2 is not panel 1's seed.
    assert [project.selected(i).seed for i in range(3)] == [derive_seed(0, i) for i in range(3)]

    loads = cache.loads[services.backend.key]
    nothing = engine.render_story(s, only_missing=True)
    assert nothing.results == () and nothing.skipped == (0, 1, 2) and nothing.ok
    assert nothing.summary() == "Nothing to render: all 3 panels already have a render of their current wording."
    assert [len(project.versions(i)) for i in range(3)] == [1, 1, 1]
    assert cache.loads[services.backend.key] == loads

    # New words for panel 2: only it renders; a list of panels is respected.
    edited = story(panel("a quiet harbour"), panel("an empty beach at dusk"), panel("a hill at dawn"))
    assert engine.missing_panels(edited) == [1] and engine.missing_panels(edited, [0, 2]) == []
    report = engine.render_story(edited, panels=[0, 1], only_missing=True)
    assert [r.index for r in report.results] == [1] and report.skipped == (0,)
    assert [len(project.versions(i)) for i in range(3)] == [1, 2, 1]


def test_out_of_memory_fails_one_panel_and_the_engine_recovers(services, project, monkeypatch):
    import torch

    engine = services.engine(project)
    pipe = services.backend.entry().pipeline
    real_render = type(pipe).render  # the denoising call inside the pipeline's __call__
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_render(self, *args, **kwargs)

    freed = []
    monkeypatch.setattr(type(pipe), "render", flaky)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))

    s = story(panel("[Ava] one", "Ava"), panel("[Ava] two", "Ava"))
    report = engine.render_story(s)
    assert [r.status for r in report.results] == ["error", "ok"]
    message = report.results[0].error
    assert "ran out of memory" in message and "STORYMAKER_CPU_OFFLOAD=1" in message
    assert "smaller size" in message and "fewer characters" in message
    assert freed  # torch.cuda.empty_cache ran
    assert "Panel 1" in report.summary()
    assert project.versions(0) == [] and len(project.versions(1)) == 1
    # The next render works (the real denoising runs again).
    assert engine.render_panel(s, 0).ok
    assert issubclass(GPUOutOfMemoryError, RenderError)


def test_pose_with_the_wrong_number_of_people_fails_that_panel(services, project):
    engine = services.engine(project)
    report = engine.render_story(story(panel("[Ava] alone", "Ava", pose="two-hug")), keep=False)
    assert report.results[0].status == "error"
    assert "two-hug" in report.results[0].error


def test_two_sessions_render_at_once_on_the_shared_pipeline(services, project, cache):
    s = story(panel("[Ava] on a hill", "Ava"), panel("a quiet harbour"))
    results: dict[int, object] = {}

    def run(slot: int, cancel_after_first_step: bool):
        cancel = threading.Event()

        def progress(position, count, step, steps):
            if cancel_after_first_step and step == 1:
                cancel.set()

        results[slot] = services.engine(project).render_story(s, keep=False, cancel=cancel, progress=progress)

    # Session 1 cancels during its first panel; sessions 0 and 2 must not notice (per-call state only).
    threads = [threading.Thread(target=run, args=(slot, slot == 1)) for slot in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0].ok and results[2].ok, (results[0].summary(), results[2].summary())
    assert results[1].cancelled and [r.status for r in results[1].results] == ["cancelled", "cancelled"]
    for a, b in zip(results[0].results, results[2].results):
        assert (pixels(a.image) == pixels(b.image)).all()
    assert cache.loads[services.backend.key] == 1
