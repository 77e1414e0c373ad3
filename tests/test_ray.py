"""Rendering on a Ray cluster (storymaker.distributed, `render --ray`, `batch`).

One local Ray cluster for the module (2 CPUs, no dashboard), the tiny backend at 64x64, 2 steps
(one panel at 24 steps, long enough to kill its worker while it renders). What these prove: six
panels on two workers give the same images and seeds as the local engine, and a second story in
the same call goes to its own project; each worker loads the pipeline once and each character's
conditioning is computed once (then fetched from the object store); a worker killed mid-panel has
its panel retried on the other, every panel kept exactly once; Ctrl+C keeps the finished panels; a worker
without the weights says so; `render --ray` renders a story on
the cluster (and `batch` the same images locally); without Ray, --ray says how to install it and
changes nothing. Worker start-up (importing torch and diffusers) is most of this module's time.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from render_helpers import PHOTO, ROOT, panel, pixels, story, tiny_settings
from storymaker.cli import main
from storymaker.errors import ConfigError, InvalidInputError
from storymaker import distributed
from storymaker.services.container import build_services
from storymaker.distributed import RayRenderPool, StoryRun, parse_address
from storymaker.services.pipelines import PipelineCache

SIX = story(
    panel("[Ava] climbs a long staircase", "Ava", steps=24),  # the slow one
    panel("[Ava] and [Ben] share a map", "Ava", "Ben"),
    panel("[Ben] looks out to sea", "Ben"),
    panel("[Ava] waves", "Ava", pose="waving"),
    panel("a lighthouse at night"),
    panel("[Ava] and [Ben] laugh", "Ava", "Ben", seed=1234),
    seed=5,
)

STORY_TEXT = """\
title: Night Watch
style: ink drawing

[Ava] climbs the lighthouse stairs

a beam of light over the waves
"""


# -- without a cluster ---------------------------------------------------------------------------


def test_parse_address():
    assert parse_address("local:2").local_workers == 2
    assert parse_address("ray://head:10001").address == "ray://head:10001"
    assert parse_address("auto").address == "auto" and not parse_address("auto").local
    for bad in ("local", "local:0", "local:x", "", "two words"):
        with pytest.raises(InvalidInputError, match="local:N|address"):
            parse_address(bad)


def test_without_ray_a_clear_message_and_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match="pip install ray"):
        distributed.import_ray()
    story_file = tmp_path / "story.txt"
    story_file.write_text(STORY_TEXT, encoding="utf-8")
    rc = main(["render", str(story_file), "--project", str(tmp_path / "p"), "--out", str(tmp_path / "c.pdf"),
               "--backend", "tiny", "--ray", "local:2"])
    assert rc == 2 and "pip install ray" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    rc = main(["batch", str(story_file), "--project-root", str(tmp_path / "root"), "--ray", "local:2"])
    assert rc == 2 and "pip install ray" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_draft_is_refused_with_ray(tmp_path, capsys):
    story_file = tmp_path / "story.txt"
    story_file.write_text(STORY_TEXT, encoding="utf-8")
    rc = main(["render", str(story_file), "--project", str(tmp_path / "p"), "--out", str(tmp_path / "c.pdf"),
               "--backend", "draft", "--ray", "local:1"])
    assert rc == 2 and "drop --ray" in capsys.readouterr().err


def test_batch_checks_every_story_before_rendering(tmp_path, capsys):
    a = tmp_path / "a" / "tale.txt"
    b = tmp_path / "b" / "tale.txt"
    for path in (a, b):
        path.parent.mkdir()
        path.write_text(STORY_TEXT, encoding="utf-8")
    rc = main(["batch", str(a), str(b), str(tmp_path / "missing.txt"), "--project-root", str(tmp_path / "root"),
               "--backend", "tiny"])
    err = capsys.readouterr().err
    assert rc == 2 and "share the project 'tale'" in err and "missing.txt" in err
    assert not (tmp_path / "root").exists()


def test_a_refused_batch_leaves_no_new_project_behind(tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text(STORY_TEXT, encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_text("title: Bad\n\n[Nobody] waves\n", encoding="utf-8")  # an unregistered character
    root = tmp_path / "root"
    root.mkdir()
    (root / "kept").mkdir()  # a folder that was there before is never removed
    rc = main(["batch", str(good), str(bad), "--project-root", str(root), "--backend", "draft",
               "--characters", f"Ava={PHOTO}"])
    err = capsys.readouterr().err
    assert rc == 2 and "Nobody" in err and "Traceback" not in err
    assert sorted(p.name for p in root.iterdir()) == ["kept"]


# -- on a local cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return tiny_settings(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def workers(cluster, settings):
    """Two workers, started first: they load the pipeline while the reference renders here."""
    with RayRenderPool("tiny", settings, workers=2, threads=1) as pool:
        pool.start()
        yield pool


@pytest.fixture(scope="module")
def local(workers, settings, tmp_path_factory):
    """The six panels rendered here without Ray (the reference), and the characters used."""
    services = build_services(settings, backend="tiny", pipeline_cache=PipelineCache())
    project = services.open_project(tmp_path_factory.mktemp("local") / "project", title="Local")
    registry = services.character_registry(project)
    registry.add("Ava", str(PHOTO))
    registry.add("Ben", str(PHOTO), description="a tall man in a blue coat")
    report = services.engine(project).render_story(SIX, keep=False)
    assert report.ok, report.summary()
    return settings, project.characters_dir, report


@pytest.fixture(scope="module")
def pool(workers, local):
    assert workers.wait_ready() == 2, workers.errors
    return workers


def _ray_project(local, folder):
    settings, characters_dir, _ = local
    services = distributed.driver_services(settings)
    project = services.open_project(folder / "project", title="On Ray")
    shutil.copytree(characters_dir, project.characters_dir, dirs_exist_ok=True)
    return services, project


def _assert_same_as_local(report, reference, project):
    assert report.ok, report.summary()
    for mine, theirs in zip(report.results, reference.results):
        assert mine.seed == theirs.seed
        assert (pixels(mine.image) == pixels(theirs.image)).all(), f"panel {mine.index + 1} differs"
        versions = project.versions(mine.index)
        assert [v.id for v in versions] == [mine.version]  # kept exactly once, and selected
        assert project.selected(mine.index).id == mine.version and versions[0].seed == mine.seed


def test_six_panels_on_two_workers_match_local(pool, local, tmp_path):
    # Two stories (a batch) in one call: each into its own project, all panels shared by the workers.
    services, project = _ray_project(local, tmp_path / "a")
    _, second = _ray_project(local, tmp_path / "b")
    seen = []
    runs = [StoryRun(services.engine(project), SIX), StoryRun(services.engine(second), SIX, panels=[4, 1])]
    report, other = pool.render(runs, progress=lambda d, t: seen.append((d, t)))
    _assert_same_as_local(report, local[2], project)
    assert [r.index for r in other.results] == [4, 1] and other.ok
    for result in other.results:
        assert (pixels(result.image) == pixels(local[2].results[result.index].image)).all()
    assert second.versions(0) == [] and len(second.versions(1)) == 1
    assert seen[0] == (0, 8) and seen[-1] == (8, 8) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert project.selected(0).meta["backend"] == "tiny" and project.selected(0).meta["num_inference_steps"] == 24
    # Each worker loaded the pipeline once and rendered some of the panels as it freed up.
    info = pool.info()
    assert len({w["pid"] for w in info}) == 2
    assert [w["pipeline_loads"] for w in info] == [1, 1]
    assert sum(w["panels"] for w in info) == 8 and all(w["panels"] >= 1 for w in info)
    # Each character's conditioning: read once per project on the driver (one registry each), put
    # in the object store once, fetched at most once per worker and project.
    for p in (project, second):
        stats = services.character_registry(p).stats
        # (memory hits are the consistency scores, computed on the driver, reading the registered
        # identities from the registry's cache: not a second read of the conditioning)
        assert stats.disk_loads <= 2 and stats.recomputed == 0 and stats.clip_passes == 0
    assert services.character_registry(project).stats.disk_loads == 2
    assert services.character_registry(second).stats.disk_loads == 2  # Ava and Ben (panel 2)
    assert all(w["conditioning_fetches"] <= 4 for w in info)


def test_killed_worker_panel_retried_elsewhere_exactly_once(pool, local, cluster, tmp_path):
    services, project = _ray_project(local, tmp_path)
    killed = []

    def progress(done: int, total: int) -> None:
        if done == 1 and not killed:  # a short panel is done; the slow panel 1 is still rendering
            killed.append(pool.busy[(0, 0)])
            cluster.kill(killed[0])

    (report,) = pool.render([StoryRun(services.engine(project), SIX)], progress=progress)
    assert len(killed) == 1 and pool.retries == 1
    _assert_same_as_local(report, local[2], project)
    (survivor,) = pool.info()
    assert survivor["pipeline_loads"] == 1


def test_ctrl_c_stops_the_workers_and_keeps_finished_panels(pool, local, tmp_path):
    services, project = _ray_project(local, tmp_path)

    on_worker = []

    def progress(done: int, total: int) -> None:
        if done == 2:
            on_worker.extend(pool.busy)
            raise KeyboardInterrupt  # what Ctrl+C raises in the driver

    fast = story(*SIX.panels[1:], seed=5)  # one worker left (the previous test killed the other)
    (report,) = pool.render([StoryRun(services.engine(project), fast)], progress=progress)
    assert report.cancelled and not report.ok
    kept = [r for r in report.results if r.ok]
    assert len(kept) == 2 and all(r.status == "cancelled" for r in report.results if not r.ok)
    # The third panel was on the worker (it gets its next panel before the driver writes the
    # last one): dropped with the worker, never written.
    assert len(on_worker) == 1 and report.results[on_worker[0][1]].status == "cancelled"
    for result in report.results:
        assert len(project.versions(result.index)) == (1 if result.ok else 0)
    assert pool.actors == [] and "cancelled" in report.summary()


def test_a_worker_without_the_weights_says_so(cluster, settings, local, tmp_path):
    """The real backend on a node without the weights: every panel fails with the loader's own
    message, naming the worker; nothing is written."""
    services, project = _ray_project(local, tmp_path)
    missing = settings.replace(backend="storymaker", base_model=str(tmp_path / "no-such-sdxl"))
    with RayRenderPool("storymaker", missing, workers=1) as pool:
        (report,) = pool.render([StoryRun(services.engine(project), story(panel("a lighthouse")))])
    (result,) = report.results
    assert result.status == "error" and "no-such-sdxl" in result.error and "Ray worker" in result.error
    assert project.versions(0) == []


def test_cli_render_on_ray(cluster, tmp_path, capsys):
    from storymaker.services.storage import Project

    story_file = tmp_path / "night.txt"
    story_file.write_text(STORY_TEXT, encoding="utf-8")
    args = ["--backend", "tiny", "--size", "64x64", "--steps", "2", "--characters", f"Ava={PHOTO}"]
    rc = main(["render", str(story_file), "--project", str(tmp_path / "single"), "--out", str(tmp_path / "c.pdf"),
               *args, "--ray", "local:1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert (tmp_path / "c.pdf").is_file() and "panel 2: ok" in err
    # The same story through `batch` without Ray (here, one story after another): the same images.
    other = tmp_path / "other.txt"
    other.write_text(STORY_TEXT, encoding="utf-8")
    root = tmp_path / "books"
    rc = main(["batch", str(story_file), str(other), "--project-root", str(root), "--format", "png",
               "--layout", "strip", *args])
    assert rc == 0, capsys.readouterr().err
    assert (root / "night.png").is_file() and (root / "other.png").is_file()
    single = Project.open(tmp_path / "single")
    for name in ("night", "other"):
        project = Project.open(root / name)
        for index in range(2):
            (version,) = project.versions(index)
            assert (pixels(_image(version)) == pixels(_image(single.selected(index)))).all()


def _image(version):
    from PIL import Image

    with Image.open(version.image_path) as im:
        return im.convert("RGB")
